"""A small MQTT 3.1.1 client on asyncio streams, over mutual TLS only.

Why not umqtt.robust (the design card's choice), and what is reused: the
pinned umqtt.simple/robust do every socket call blocking (connect, TLS
handshake, CONNACK read, the rest of each packet after its first byte,
`publish(qos=1)` waiting for its PUBACK), and robust's reconnect loop
sleeps with `time.sleep`: a broker outage would freeze metering, the
display and the menu. Here the same packets (the byte layout of
umqtt.simple 1.3.4, which tests/mpy/test_mqtt.py checks byte for byte) go
through `asyncio.open_connection(..., ssl=ctx, server_hostname=...)`, which
on MicroPython >= 1.22 runs the socket and the TLS handshake non-blocking:
a task waits for the network instead of the loop. docs/mqtt.md has the
measured stalls.

Scope: CONNECT (clean session, keepalive, retained last will), PUBLISH
QoS 0 out, PUBLISH QoS 0/1 in (PUBACK sent), SUBSCRIBE, PINGREQ,
DISCONNECT. No QoS 2, no retransmission (clean sessions; the uplink
republishes state on every connect).

TLS: CERT_REQUIRED against one provisioned CA, the server name checked,
client certificate + key (P-256 EC) always sent. There is no plaintext
path in this module at all.
"""

import asyncio
import struct
import time

CONNECT_TIMEOUT_S = 20  # TCP + TLS handshake + CONNACK (slow on an ESP32)
SEND_TIMEOUT_S = 10  # a send that cannot drain by then means a dead link
MAX_TOPIC = 128

# CONNACK return code -> (short for the display, long)
CONNACK_ERRORS = {
    1: ("bad protocol", "unacceptable protocol version"),
    2: ("id rejected", "client id rejected"),
    3: ("unavailable", "broker unavailable"),
    4: ("bad credentials", "bad user name or password"),
    5: ("not authorised", "not authorised"),
}


class MqttError(Exception):
    """Protocol-level failure: MqttError(long text, short text)."""

    def __init__(self, msg, short="MQTT error"):
        super().__init__(msg)
        self.short = short


class Refused(MqttError):
    """The broker answered CONNECT with a refusal (CONNACK return code)."""


# -- packets (layout as umqtt.simple 1.3.4 writes them) ------------------------


def _remlen(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _s(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack("!H", len(b)) + b


def connect_packet(client_id, keepalive=0, will_topic=None, will_msg=b"", will_retain=False,
                   will_qos=0, clean=True):
    flags = 0x02 if clean else 0
    payload = _s(client_id)
    if will_topic:
        flags |= 0x04 | (will_qos << 3) | (0x20 if will_retain else 0)
        payload += _s(will_topic) + _s(will_msg)
    var = b"\x00\x04MQTT\x04" + bytes((flags, keepalive >> 8, keepalive & 0xFF))
    return b"\x10" + _remlen(len(var) + len(payload)) + var + payload


def publish_packet(topic, msg, retain=False, qos=0, pid=0):
    if isinstance(msg, str):
        msg = msg.encode()
    body = _s(topic)
    if qos:
        body += struct.pack("!H", pid)
    return bytes((0x30 | qos << 1 | (1 if retain else 0),)) + _remlen(len(body) + len(msg)) + body + msg


def subscribe_packet(pid, topic, qos=0):
    body = struct.pack("!H", pid) + _s(topic) + bytes((qos,))
    return b"\x82" + _remlen(len(body)) + body


def puback_packet(pid):
    return b"\x40\x02" + struct.pack("!H", pid)


PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


# -- TLS ---------------------------------------------------------------------------


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
        return "timeout", "no answer from the broker within %d s" % CONNECT_TIMEOUT_S
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


# -- the connection ---------------------------------------------------------------


class Connection:
    """One MQTT session on a TLS stream. send() may be called from several
    tasks (serialised by a lock); only one task may call read_packet()."""

    def __init__(self, reader, writer):
        self.r = reader
        self.w = writer
        self._lock = asyncio.Lock()
        self._pid = 0
        self.closed = False
        self.last_tx = time.ticks_ms()

    async def send(self, pkt):
        async with self._lock:
            if self.closed:
                raise OSError(9)  # EBADF: the session is over
            self.w.write(pkt)
            # A drain that cannot finish in time means the link is dead; the
            # cancelled write leaves a partial packet, so the caller must
            # close the connection (it does: any exception ends the session).
            await asyncio.wait_for(self.w.drain(), SEND_TIMEOUT_S)
            self.last_tx = time.ticks_ms()

    def next_pid(self):
        self._pid = self._pid % 65535 + 1
        return self._pid

    async def publish(self, topic, msg, retain=False):
        await self.send(publish_packet(topic, msg, retain))

    async def read_packet(self, max_len):
        """(first byte, body) of the next packet; for an incoming PUBLISH
        longer than max_len the body is None (topic kept, payload skipped in
        small pieces, never held). EOF raises OSError."""
        r = self.r
        b0 = (await r.readexactly(1))[0]
        n = 0
        sh = 0
        while True:
            b = (await r.readexactly(1))[0]
            n |= (b & 0x7F) << sh
            if not b & 0x80:
                break
            sh += 7
            if sh > 21:
                raise MqttError("bad remaining length")
        if n <= max_len:
            return b0, (await r.readexactly(n) if n else b"")
        if b0 & 0xF0 != 0x30:
            raise MqttError("oversized packet 0x%02x" % b0)
        # Oversized PUBLISH: keep topic (and packet id), drop the payload.
        tl = await r.readexactly(2)
        tl = tl[0] << 8 | tl[1]
        if tl > MAX_TOPIC:
            raise MqttError("topic too long")
        head = await r.readexactly(tl + (2 if b0 & 6 else 0))
        left = n - 2 - len(head)
        while left:
            k = min(left, 256)
            await r.readexactly(k)
            left -= k
        return b0, (struct.pack("!H", tl) + head, None)

    async def close(self, polite=True):
        if self.closed:
            return
        if polite:
            try:
                await self.send(DISCONNECT)
            except Exception:
                pass
        self.closed = True
        try:
            self.w.close()
            await self.w.wait_closed()
        except Exception:
            pass


def parse_publish(b0, body):
    """(topic, payload or None if oversized, qos, pid) of a PUBLISH packet."""
    if isinstance(body, tuple):  # oversized: (topic header, None)
        head, payload = body
    else:
        head, payload = body, None
    tl = head[0] << 8 | head[1]
    topic = bytes(head[2:2 + tl])
    qos = (b0 >> 1) & 3
    i = 2 + tl
    pid = 0
    if qos:
        pid = head[i] << 8 | head[i + 1]
        i += 2
    if not isinstance(body, tuple):
        payload = bytes(body[i:])
    return topic, payload, qos, pid


async def open_session(addr, port, hostname, ctx, client_id, keepalive, will_topic, will_msg):
    """TCP + TLS + CONNECT/CONNACK, bounded by CONNECT_TIMEOUT_S. Returns a
    Connection; raises (see describe()) otherwise."""
    conn = None
    try:
        r, w = await asyncio.wait_for(
            asyncio.open_connection(addr, port, ssl=ctx, server_hostname=hostname),
            CONNECT_TIMEOUT_S)
        conn = Connection(r, w)

        async def handshake():
            # The first write drives the (non-blocking) TLS handshake.
            await conn.send(connect_packet(client_id, keepalive, will_topic, will_msg,
                                           will_retain=True, will_qos=1))
            b0, body = await conn.read_packet(16)
            if b0 != 0x20 or len(body) != 2:
                raise MqttError("no CONNACK")
            if body[1]:
                short, long = CONNACK_ERRORS.get(body[1], ("refused %d" % body[1],) * 2)
                raise Refused(long, short)

        await asyncio.wait_for(handshake(), CONNECT_TIMEOUT_S)
        return conn
    except BaseException:
        if conn:
            await conn.close(polite=False)
        raise
