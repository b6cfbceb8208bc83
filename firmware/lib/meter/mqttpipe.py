"""umqtt's socket, and the protocol's failures (meter/mqtt.py has the
design): umqtt.robust's MQTTClient is the protocol engine but never touches
the network; its socket is a `Pipe`, and asyncio moves the bytes.

- `Pipe.write()` appends to a small tx buffer that `Session.flush()`
  writes to the TLS stream.
- `Pipe.read()` serves bytes an asyncio task has already received into a
  fixed rx buffer; it never waits: with nothing (more) there it raises
  `Short`, which is not an OSError, so robust's retry loops let it pass.
- `Client` is umqtt.robust with its reconnect policy moved to asyncio.
"""

from micropython import const
from umqtt import robust

MAX_IN = const(1400)  # largest incoming packet body held in RAM (a command is <= 1024)


class MqttError(Exception):
    """Protocol-level failure: MqttError(long text, short text)."""

    def __init__(self, msg, short="MQTT error"):
        super().__init__(msg)
        self.short = short


class Refused(MqttError):
    """The broker answered CONNECT with a refusal (CONNACK return code)."""


class Short(Exception):
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
            raise Short
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


class Net:
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
