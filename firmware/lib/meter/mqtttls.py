"""The uplink's TLS side: the client context from the provisioned
certificates, and what a failed connection means, in words for the display
and the status pages (meter/mqttlink.py).
"""

import asyncio

from meter import mqtt
from meter.mqttpipe import MqttError, Refused


def tls_context(ca, cert, key):
    """Client SSLContext: CERT_REQUIRED against `ca`, with the client
    certificate and key. Each is DER or one PEM block (bytes); converted by
    the project's one PEM->DER routine in ussl. Raises ValueError."""
    import ssl

    import ussl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED  # PROTOCOL_TLS_CLIENT alone verifies nothing here
    ctx.load_verify_locations(cadata=ussl._der(ca, "CA certificate"))
    ctx.load_cert_chain(ussl._der(cert, "client certificate"), ussl._der(key, "client key"))
    return ctx


def describe(e):
    """(short, detail) for a failed connection; short fits one display
    line (16 characters)."""
    msg = str(e)
    if isinstance(e, EOFError):
        return "broker closed", ("the broker closed the connection during TLS/CONNECT "
                                 "(client certificate not accepted?)")
    if isinstance(e, asyncio.TimeoutError):
        return "timeout", "no answer from the broker within %d s" % mqtt.CONNECT_TIMEOUT_S
    if isinstance(e, Refused):
        return e.short, "broker refused the session: " + msg
    if isinstance(e, MqttError):
        return e.short, "MQTT: " + msg
    if isinstance(e, ValueError):
        # mbedTLS verify flags, as the port words them (one per line)
        checks = (("not correctly signed", "TLS: wrong CA", "server certificate is not from the provisioned CA"),
                  ("does not match", "TLS: wrong name", "server certificate is for another host name"),
                  ("has expired", "TLS: expired", "server certificate has expired (or the clock is wrong)"),
                  ("in the future", "TLS: future cert", "server certificate not yet valid (or the clock is wrong)"),
                  ("revoked", "TLS: revoked", "server certificate revoked"))
        for needle, short, detail in checks:
            if needle in msg:
                return short, detail
        if "invalid" in msg or "PEM" in msg or "DER" in msg or "ussl" in msg:
            return "bad cert/key", "provisioned certificate or key unusable: " + msg.strip()
        return "TLS: unverified", "server certificate not accepted: " + " / ".join(
            l for l in msg.split("\n") if l)
    if isinstance(e, OSError):
        code = e.args[0] if e.args else 0
        if code == 111:  # ECONNREFUSED
            return "conn refused", "broker port closed (connection refused)"
        if code in (110, 113, 101, 118, 116):  # ETIMEDOUT, EHOSTUNREACH, ENETUNREACH
            return "unreachable", "broker unreachable (errno %d)" % code
        if code in (32, 104, -0x7780, -0x7880, -0x7280):  # EPIPE, ECONNRESET, TLS alert / EOF
            return "TLS: refused", ("broker closed the connection during TLS/CONNECT "
                                    "(client certificate not accepted?) (%d)" % code)
        if code == -2 or code == -202 or code == -3:  # getaddrinfo (unix / lwIP)
            return "DNS failed", "broker host name not resolved (%d)" % code
        if isinstance(code, int) and code < 0:
            return "TLS error %d" % code, "TLS error %d (mbedTLS -0x%04x)" % (code, -code)
        return "net error %s" % code, "network error %r" % (e,)
    return "error", repr(e)
