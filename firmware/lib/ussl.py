"""`ussl.wrap_socket()` for the pinned umqtt.simple 1.3.4, on today's `ssl`.

umqtt.simple 1.3.4 does `import ussl; ussl.wrap_socket(sock, **ssl_params)`.
`ussl` is gone from current MicroPython; this shim maps that call onto
`ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)` and is secure by default, unlike
`ssl.wrap_socket`, whose default is CERT_NONE (which on mbedTLS verifies
nothing):

- the server certificate is always verified (CERT_REQUIRED) against the CA
  given as `cadata`;
- `server_hostname` is required: it sets SNI and the name that is checked;
- `cert` and `key` (bytes, together) give a client certificate (mTLS);
- with no CA, no server_hostname, any cert_reqs but CERT_REQUIRED, or
  server_side=True it raises ValueError instead of connecting unverified.

`cadata`, `cert` and `key` are data, never file names: DER bytes, or one
unencrypted PEM block (bytes or str), which is converted to DER here because
MicroPython's mbedTLS builds do not all parse PEM (v1.28 takes one DER CA).
Verification needs a correct clock (NTP) on the device. See docs/device-libs.md.
"""

import ssl
from binascii import a2b_base64

CERT_REQUIRED = ssl.CERT_REQUIRED


def _der(v, what):
    """Bytes of one DER object; a single PEM block is converted to DER.

    (The mbedTLS builds in use parse DER only, or only one DER certificate
    as cadata; more than one PEM block is refused rather than cut short.)"""
    if isinstance(v, str):
        v = v.encode()
    if not isinstance(v, (bytes, bytearray)) or not v:
        raise ValueError("ussl: %s must be non-empty bytes" % what)
    v = bytes(v)
    if not v.lstrip().startswith(b"-----BEGIN "):
        # DER as it is: its last byte (a signature's or a key's) is a
        # space's or a newline's code one time in 40, and strip() cut it
        return v
    v = v.strip()
    lines = v.split(b"\n")
    body = b"".join(l.strip() for l in lines[1:-1])
    # Encrypted keys say so in the BEGIN line or in "Proc-Type:" headers.
    if (v.count(b"-----BEGIN ") != 1 or not lines[-1].startswith(b"-----END ")
            or b"ENCRYPTED" in lines[0] or b":" in body):
        raise ValueError("ussl: %s must be one unencrypted PEM block or DER" % what)
    return a2b_base64(body)


def wrap_socket(sock, server_side=False, key=None, cert=None, cert_reqs=CERT_REQUIRED,
                cadata=None, server_hostname=None, do_handshake=True):
    if server_side:
        raise ValueError("ussl: client side only")
    if cert_reqs != CERT_REQUIRED:
        raise ValueError("ussl: refusing cert_reqs other than CERT_REQUIRED")
    if not cadata:
        raise ValueError("ussl: refusing to wrap without a CA (cadata): "
                         "the server could not be verified")
    if not server_hostname:
        raise ValueError("ussl: server_hostname is required to verify the server")
    if (cert is None) != (key is None):
        raise ValueError("ussl: a client cert needs its key, and a key its cert")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = CERT_REQUIRED
    ctx.load_verify_locations(cadata=_der(cadata, "cadata"))
    if cert is not None:
        ctx.load_cert_chain(_der(cert, "cert"), _der(key, "key"))
    return ctx.wrap_socket(sock, server_side=False, do_handshake_on_connect=do_handshake,
                           server_hostname=server_hostname)
