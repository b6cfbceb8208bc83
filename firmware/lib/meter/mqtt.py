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
  `Short`, which is not an OSError, so robust's retry loops let it pass.
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
  in `connect()` is pointed at the pipe while the call runs (`Net`).

Scope as used: clean sessions, keepalive, retained QoS 1 last will, QoS 0
PUBLISH out, QoS 0/1 PUBLISH in (umqtt sends the PUBACK), SUBSCRIBE,
PINGREQ, DISCONNECT. An incoming PUBLISH larger than MAX_IN has its payload
dropped as it arrives (never held) and is handed to umqtt without it (so a
QoS 1 one is still acked); the callback then gets None as payload.
"""

import asyncio
import time

from micropython import const
from umqtt import simple

# the pipe and the errors (meter/mqttpipe.py); MqttError and Refused are
# what callers of this module catch
from meter.mqttpipe import MAX_IN, Client, MqttError, Net, Pipe, Refused, Short  # noqa: F401

# Plain names, not const(): tests shorten the two timeouts.
CONNECT_TIMEOUT_S = 20  # TCP + TLS handshake + CONNACK (slow on an ESP32)
ACK_TIMEOUT_S = 10  # SUBACK
_SEND_TIMEOUT_S = const(10)  # a send that cannot drain by then means a dead link
_MAX_TOPIC = const(128)
_INBOX_MAX = const(4)  # PUBLISHes umqtt delivered before the session task took them

# CONNACK return code -> (short for the display, long)
CONNACK_ERRORS = {
    1: ("bad protocol", "unacceptable protocol version"),
    2: ("id rejected", "client id rejected"),
    3: ("unavailable", "broker unavailable"),
    4: ("bad credentials", "bad user name or password"),
    5: ("not authorised", "not authorised"),
}


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
            simple.socket = Net(self.pipe)  # umqtt's socket setup opens the pipe
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
        except Short:
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
        except Short:
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
        if len(self.inbox) < _INBOX_MAX:
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
            await asyncio.wait_for(self.w.drain(), _SEND_TIMEOUT_S)
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
        if keep - 2 > _MAX_TOPIC:
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
        except (Short, AssertionError):
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
    Returns a Session; raises (see meter/mqtttls.py describe()) otherwise."""
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
