"""The uplink's MQTT session: micropython-lib umqtt.robust, driven from asyncio.

The design card names umqtt.robust (pinned 1.0, on umqtt.simple 1.3.4,
installed unmodified in build/lib). Its I/O is written for a blocking
socket: `connect()` reads the CONNACK, `subscribe()` loops on `wait_msg()`
for the SUBACK, `wait_msg()` reads the rest of a packet after its first
byte, and robust's `reconnect()` loops `connect()` with `utime.sleep()`.
Here umqtt's MQTTClient is the protocol engine (it builds every packet,
parses every incoming one, calls back for PUBLISH and acks QoS 1) but it
never touches the network: its socket is a `Pipe`, and asyncio moves the
bytes.

- `Pipe.write()` appends to a small tx buffer that `Session.flush()`
  writes to the TLS stream (one write per call, a bounded drain).
- `Pipe.read()` serves bytes an asyncio task has already received into a
  fixed rx buffer; it never waits: with nothing (more) there it raises
  `_Short`, which is not an OSError, so robust's retry loops let it pass.
- `wait_msg()` is called only once a complete packet is buffered, with
  reads limited to that packet: it cannot run short or read into the next.
- `connect()` and `subscribe()` write a request and then read its answer:
  they run first with reads refused (the request is written, the call
  stops at its first read), the answer (CONNACK / SUBACK) is awaited in
  asyncio under a timeout, and the same call runs again over the buffered
  answer with its identical request bytes dropped, so that umqtt's own
  checks decide (refusal codes, packet id).
- `robust.reconnect()`/`delay()` are overridden: a failure is raised to the
  asyncio layer (meter.mqttlink), which backs off with jitter as asyncio
  sleeps. `utime.sleep` is never reached.
- TCP, TLS (mutual, CERT_REQUIRED) and the timeouts stay in asyncio:
  `asyncio.open_connection(..., ssl=ctx, server_hostname=...)` runs the
  handshake non-blocking (MicroPython >= 1.22). umqtt's own socket setup
  in `connect()` is pointed at the pipe while the call runs (`_Net`).

Scope as used: clean sessions, keepalive, retained QoS 1 last will, QoS 0
PUBLISH out, QoS 0/1 PUBLISH in (umqtt sends the PUBACK), SUBSCRIBE,
PINGREQ, DISCONNECT. An incoming PUBLISH larger than MAX_IN has its payload
dropped as it arrives (never held) and is handed to umqtt without it (so a
QoS 1 one is still acked); the callback then gets None as payload.
"""

import asyncio
import time

from umqtt import robust, simple

CONNECT_TIMEOUT_S = 20  # TCP + TLS handshake + CONNACK (slow on an ESP32)
SEND_TIMEOUT_S = 10  # a send that cannot drain by then means a dead link
ACK_TIMEOUT_S = 10  # SUBACK
MAX_IN = 1400  # largest incoming packet body held in RAM (a command is <= 1024)
MAX_TOPIC = 128
INBOX_MAX = 4  # PUBLISHes umqtt delivered before the session task took them

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


class _Short(Exception):
    """umqtt asked the pipe for bytes that are not buffered (yet). Not an
    OSError on purpose: robust's publish()/wait_msg() retry loops catch
    OSError only."""


# -- the pipe: umqtt's socket ------------------------------------------------------


class Pipe:
    """Socket-like object for umqtt (write, read, setblocking, connect,
    close), backed by a tx bytearray and a fixed rx buffer."""

    def __init__(self):
        self.buf = bytearray(MAX_IN + 5)  # one whole packet (header <= 5 bytes)
        self.mv = memoryview(self.buf)
        self.pos = 0  # next byte umqtt reads
        self.end = 0  # end of the received bytes
        self.lim = 0  # if set: umqtt may not read past it (the packet handed over)
        self.tx = bytearray()
        self.skip = 0  # bytes of the next writes to drop (a replayed request)
        self.wo = False  # reads refused (the first run of connect/subscribe)

    def write(self, b, n=None):
        if n is None:
            n = len(b)
        k = self.skip
        if k >= n:
            self.skip = k - n
        else:
            self.skip = 0
            self.tx.extend(memoryview(b)[k:n] if k or n != len(b) else b)
        return n

    def read(self, n):
        p = self.pos
        if self.wo or p + n > (self.lim or self.end):
            raise _Short
        self.pos = p + n
        return bytes(self.mv[p:p + n])

    def setblocking(self, flag):
        pass

    def connect(self, addr):
        pass

    def close(self):
        pass  # the TLS stream is closed by Session.close()

    def head(self, at):
        """(header length, remaining length) of the packet at `at`, or None
        while its fixed header is incomplete."""
        b = self.buf
        n = sh = 0
        i = at + 1
        while i < self.end:
            c = b[i]
            n |= (c & 0x7F) << sh
            i += 1
            if not c & 0x80:
                return i - at, n
            sh += 7
            if sh > 21:
                raise MqttError("bad remaining length")
        return None

    def compact(self):
        p = self.pos
        if p:
            k = self.end - p
            if k:
                self.mv[0:k] = self.mv[p:self.end]
            self.pos = 0
            self.end = k


class _Net:
    """Stands in for umqtt.simple's `socket` module while its connect()
    runs: the "socket" it opens is the pipe (TCP and TLS are done)."""

    def __init__(self, pipe):
        self.pipe = pipe

    def socket(self):
        return self.pipe

    def getaddrinfo(self, host, port):
        return ((None, None, None, None, None),)


class Client(robust.MQTTClient):
    """umqtt.robust with its reconnect policy moved to asyncio: a failure
    ends the call and the session (meter.mqttlink backs off and reconnects
    with asyncio sleeps); robust's delay() (utime.sleep) is never used."""

    err = None

    def log(self, in_reconnect, e):
        self.err = e

    def reconnect(self):
        raise self.err or OSError(-1)

    def delay(self, i):
        raise MqttError("umqtt.robust delay() must not run")


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


# -- the session -------------------------------------------------------------------


class Session:
    """One MQTT session on a TLS stream (reader, writer), umqtt.robust
    speaking through a Pipe. publish()/ping() may be called from several
    tasks; start() runs the one task that receives."""

    def __init__(self, r, w, client_id, keepalive=0, will_topic=None, will_msg=b""):
        self.r = r
        self.w = w
        self.pipe = Pipe()
        c = self.c = Client(client_id, "pipe", keepalive=keepalive)
        c.sock = self.pipe
        c.set_callback(self._cb)
        if will_topic:
            c.set_last_will(will_topic, will_msg, retain=True, qos=1)
        self._lock = asyncio.Lock()
        self._task = None
        self._big = False  # the PUBLISH handed to umqtt had its payload dropped
        self._drop = 0  # payload bytes of that PUBLISH still to drop as they arrive
        self.inbox = []
        self.closed = False
        self.dead = None  # why the receiving task ended
        self.last_tx = self.last_rx = time.ticks_ms()
        self.ping_sent = None

    # -- calls into umqtt ----------------------------------------------------------

    async def connect(self):
        """CONNECT (clean session) and its CONNACK, bounded by CONNECT_TIMEOUT_S."""
        def call():
            saved = simple.socket
            simple.socket = _Net(self.pipe)  # umqtt's socket setup opens the pipe
            try:
                return self.c.connect()
            finally:
                simple.socket = saved

        try:
            await asyncio.wait_for(self._ask(call, self._complete), CONNECT_TIMEOUT_S)
        except simple.MQTTException as e:
            rc = e.args[0]
            short, long = CONNACK_ERRORS.get(rc, ("refused %d" % rc,) * 2)
            raise Refused(long, short)
        except AssertionError:
            raise MqttError("no CONNACK")

    async def subscribe(self, topic, qos=0):
        """SUBSCRIBE and its SUBACK (bounded by ACK_TIMEOUT_S); before start()."""
        try:
            await asyncio.wait_for(self._ask(lambda: self.c.subscribe(topic, qos), self._suback),
                                   ACK_TIMEOUT_S)
        except simple.MQTTException:
            raise MqttError("subscription refused", "cmd topic denied")
        except AssertionError:
            raise MqttError("bad SUBACK")
        except asyncio.TimeoutError:
            raise MqttError("no SUBACK within %d s" % ACK_TIMEOUT_S, "no SUBACK")

    async def publish(self, topic, msg, retain=False):
        self._open()
        # umqtt sizes the packet with len(): for a str that counts characters,
        # not UTF-8 bytes (a reply may echo non-ASCII text). A memoryview of
        # the str has its byte length, without copying it.
        self.c.publish(memoryview(topic), memoryview(msg), retain)  # QoS 0: umqtt only writes
        await self.flush()

    async def ping(self):
        self._open()
        self.c.ping()
        self.ping_sent = time.ticks_ms()
        await self.flush()

    async def _ask(self, call, ready):
        """Run a umqtt call that writes a request and reads its answer,
        without ever letting it wait (see the module docstring)."""
        p = self.pipe
        c = self.c
        self._open()
        pid = c.pid
        n = len(p.tx)
        p.wo = True
        try:
            return call()  # (only if it read nothing)
        except _Short:
            pass
        finally:
            p.wo = False
        n = len(p.tx) - n
        await self.flush()
        while not ready():
            await self._fill()
        c.pid = pid  # the replay builds the identical request ...
        p.skip = n  # ... whose bytes are already sent: dropped
        try:
            return call()
        except _Short:
            raise MqttError("answer incomplete")
        finally:
            p.skip = 0

    def _complete(self):
        p = self.pipe
        h = p.head(p.pos)
        return h is not None and p.end - p.pos >= h[0] + h[1]

    def _suback(self):
        """Complete packets buffered up to and including a SUBACK."""
        p = self.pipe
        at = p.pos
        while True:
            h = p.head(at)
            if h is None:
                return False
            k = h[0] + h[1]
            if at - p.pos + k > len(p.buf):
                raise MqttError("oversized packet before SUBACK")
            if at + k > p.end:
                return False
            if p.buf[at] == 0x90:
                return True
            at += k

    def _cb(self, topic, msg):
        if len(self.inbox) < INBOX_MAX:
            self.inbox.append((topic, None if self._big else msg))

    def _open(self):
        if self.closed:
            raise OSError(9)  # EBADF: the session is over
        if self.dead is not None:
            raise self.dead

    # -- the network side ----------------------------------------------------------

    async def flush(self):
        """Send what umqtt wrote. A drain that cannot finish in time means a
        dead link; the cancelled write may leave a partial packet, so the
        caller must end the session (any exception does)."""
        async with self._lock:
            if self.closed:
                raise OSError(9)
            tx = self.pipe.tx
            if not tx:
                return
            self.w.write(tx)  # the stream sends it or keeps a copy
            tx[:] = b""
            await asyncio.wait_for(self.w.drain(), SEND_TIMEOUT_S)
            self.last_tx = time.ticks_ms()

    async def _fill(self):
        """Receive what the stream has into the free part of the rx buffer."""
        p = self.pipe
        p.compact()
        while True:
            n = await self.r.readinto(p.mv[p.end:])
            if n is None:  # TLS: no whole record yet
                continue
            if not n:
                raise EOFError
            p.end += n
            self.last_rx = time.ticks_ms()
            return

    def start(self, on_msg):
        """Start receiving: every complete packet goes to umqtt.robust's
        wait_msg(); each incoming PUBLISH to `await on_msg(topic, payload)`
        (payload None if it was too large). The task's failure is kept in
        `dead` (the session is then over)."""
        self._task = asyncio.create_task(self._rx(on_msg))

    async def _rx(self, on_msg):
        p = self.pipe
        try:
            while True:
                while True:
                    while self.inbox:
                        t, m = self.inbox.pop(0)
                        await on_msg(t, m)
                    k = min(self._drop, p.end - p.pos)
                    p.pos += k
                    self._drop -= k
                    if self._drop or not self._one():
                        break
                    if p.tx:  # umqtt's PUBACK
                        await self.flush()
                await self._fill()
        except Exception as e:
            self.dead = e

    def _one(self):
        """Hand the packet at the head to umqtt if it is complete."""
        p = self.pipe
        at = p.pos
        h = p.head(at)
        if h is None:
            return False
        hl, n = h
        b0 = p.buf[at]
        if hl + n <= len(p.buf):
            if p.end - at < hl + n:
                return False
            return self._hand(b0, at + hl + n)
        if b0 & 0xF0 != 0x30:
            raise MqttError("oversized packet 0x%02x" % b0)
        # A PUBLISH too large to hold: keep its topic (and packet id), drop
        # its payload, and give umqtt the packet without it.
        at += hl
        if p.end - at < 2:
            return False
        keep = 2 + (p.buf[at] << 8 | p.buf[at + 1])
        if keep - 2 > MAX_TOPIC:
            raise MqttError("topic too long")
        if b0 & 6:
            keep += 2
        if p.end - at < keep:
            return False
        b = p.buf
        if keep < 128:  # a new fixed header right before the topic (hl >= 3)
            p.pos = at - 2
            b[at - 1] = keep
        else:
            p.pos = at - 3
            b[at - 2] = keep & 0x7F | 0x80
            b[at - 1] = keep >> 7
        b[p.pos] = b0
        self._drop = n - keep
        self._big = True
        return self._hand(b0, at + keep)

    def _hand(self, b0, end):
        p = self.pipe
        p.lim = end
        try:
            self.c.wait_msg()  # umqtt.robust: parse, call back, PUBACK for QoS 1
        except (_Short, AssertionError):
            raise MqttError("malformed packet 0x%02x" % b0)
        finally:
            p.pos = end  # what umqtt does not read of a packet (e.g. a PUBACK) is skipped
            p.lim = 0
            self._big = False
        self.last_rx = time.ticks_ms()
        if b0 == 0xD0:  # PINGRESP
            self.ping_sent = None
        return True

    async def close(self, polite=True):
        if self.closed:
            return
        if self._task:
            self._task.cancel()
        if polite and self.dead is None:
            try:
                self.c.disconnect()  # umqtt: DISCONNECT (its sock.close() is the pipe's)
                await self.flush()
            except Exception:
                pass
        self.closed = True
        try:
            self.w.close()
            await self.w.wait_closed()
        except Exception:
            pass


async def open_session(addr, port, hostname, ctx, client_id, keepalive, will_topic, will_msg):
    """TCP + TLS + CONNECT/CONNACK, each bounded by CONNECT_TIMEOUT_S.
    Returns a Session; raises (see describe()) otherwise."""
    s = None
    try:
        r, w = await asyncio.wait_for(
            asyncio.open_connection(addr, port, ssl=ctx, server_hostname=hostname),
            CONNECT_TIMEOUT_S)
        s = Session(r, w, client_id, keepalive, will_topic, will_msg)
        # The first write drives the (non-blocking) TLS handshake.
        await s.connect()
        return s
    except BaseException:
        if s:
            await s.close(polite=False)
        raise
