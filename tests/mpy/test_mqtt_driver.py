"""meter.mqtt: umqtt.robust as the protocol engine, driven from asyncio.

A fake TLS stream pair stands in for the network: what the session writes
is collected, what the "broker" says is fed in pieces. Checked here: the
bytes on the wire are umqtt's (against the MQTT 3.1.1 oracle in
test_mqtt.py) and nothing else (the replayed CONNECT/SUBSCRIBE is not sent
twice); a partial packet never reaches umqtt and never holds the loop (a
probe task keeps running); a broker that never answers CONNACK/SUBACK
times out through asyncio; QoS 1 PUBLISH is acked by umqtt; an oversized
PUBLISH is dropped as it arrives; and umqtt.robust's sleeping reconnect
(`delay()`, `utime.sleep`) never runs: robust's `utime` is replaced by one
whose sleep fails the test.
"""

import asyncio
import time

from umqtt import robust
from upytest import raises

from meter import mqtt, mqtttls
from test_mqtt import (DISCONNECT, PINGREQ, connect_packet, puback_packet, publish_packet,
                       subscribe_packet)

CONNACK = b"\x20\x02\x00\x00"
WILL = b"meters/T-1/status"


class _NoSleep:
    """robust.py's `utime`: any sleep is a test failure."""

    @staticmethod
    def sleep(s):
        raise AssertionError("umqtt.robust slept (utime.sleep(%r))" % (s,))

    sleep_ms = sleep


robust.utime = _NoSleep  # for the whole module: robust must never sleep


class Net:
    """The TLS stream pair (reader and writer) of one connection."""

    def __init__(self, *chunks):
        self.out = bytearray()
        self.inq = list(chunks)
        self.ev = asyncio.Event()
        self.eof = False
        self.closed = False
        self.reads = 0

    def feed(self, data):
        self.inq.append(bytes(data))
        self.ev.set()

    def hang_up(self):
        self.eof = True
        self.ev.set()

    async def readinto(self, buf):
        while not self.inq and not self.eof:
            self.ev.clear()
            await self.ev.wait()
        self.reads += 1
        if not self.inq:
            return 0
        d = self.inq[0]
        n = min(len(d), len(buf))
        buf[:n] = d[:n]
        if n < len(d):
            self.inq[0] = d[n:]
        else:
            self.inq.pop(0)
        return n

    def write(self, b):
        self.out.extend(b)

    async def drain(self):
        await asyncio.sleep_ms(0)

    def close(self):
        self.closed = True

    async def wait_closed(self):
        pass


class Probe:
    """A task that sleeps 5 ms in a loop: its worst lateness is the longest
    time anything held the loop."""

    def __init__(self):
        self.n = 0
        self.worst = 0
        self.task = asyncio.create_task(self.run())

    async def run(self):
        last = time.ticks_ms()
        while True:
            await asyncio.sleep_ms(5)
            now = time.ticks_ms()
            self.worst = max(self.worst, time.ticks_diff(now, last) - 5)
            self.n += 1
            last = now


def session(net, will=True):
    return mqtt.Session(net, net, "T-1", 60, WILL if will else None, b"offline")


def count_wait_msg(s):
    calls = [0]
    real = s.c.wait_msg

    def counted():
        calls[0] += 1
        return real()

    s.c.wait_msg = counted
    return calls


async def connected(net, started=None):
    s = session(net)
    await s.connect()
    await s.subscribe(b"meters/T-1/cmd", 1)
    if started is not None:
        async def on_msg(topic, payload):
            started.append((topic, payload))

        s.start(on_msg)
    return s


def test_bytes_on_the_wire_are_umqtt_s():
    net = Net(CONNACK, b"\x90\x03\x00\x01\x01")

    async def go():
        s = await connected(net)
        await s.publish("meters/T-1/telemetry", '{"e": "é"}')  # str, non-ASCII: UTF-8 length
        await s.publish("meters/T-1/energy", b"y" * 300, True)
        await s.publish("t", b"z" * 20000)
        await s.ping()
        assert s.ping_sent is not None
        await s.close()
        return s

    s = asyncio.run(go())
    want = (connect_packet("T-1", 60, WILL, b"offline", will_retain=True, will_qos=1)
            + subscribe_packet(1, b"meters/T-1/cmd", 1)
            + publish_packet(b"meters/T-1/telemetry", '{"e": "é"}'.encode())
            + publish_packet(b"meters/T-1/energy", b"y" * 300, True)
            + publish_packet(b"t", b"z" * 20000)
            + PINGREQ + DISCONNECT)
    assert bytes(net.out) == want, bytes(net.out)[:80]
    assert net.closed and s.closed
    assert isinstance(s.c, robust.MQTTClient)  # the engine is umqtt.robust's client
    assert len(s.pipe.tx) == 0 and s.pipe.pos == s.pipe.end


def test_partial_packets_never_reach_umqtt_and_never_hold_the_loop():
    net = Net(CONNACK, b"\x90\x03\x00\x01\x01")
    got = []
    pkt = publish_packet(b"meters/T-1/cmd", b'{"id": "1"}', qos=1, pid=0x1234)

    async def go():
        s = await connected(net, got)
        calls = count_wait_msg(s)
        probe = Probe()
        for piece in (pkt[:1], pkt[1:2], pkt[2:9], pkt[9:-1]):
            net.feed(piece)
            n = probe.n
            await asyncio.sleep_ms(60)
            assert probe.n - n >= 5, "the loop was held"
            assert calls[0] == 0 and not got, "umqtt was given a partial packet"
            assert s.dead is None
        net.feed(pkt[-1:] + b"\xd0\x00")  # the last byte and a PINGRESP, in one read
        s.ping_sent = time.ticks_ms()
        await asyncio.sleep_ms(30)
        assert calls[0] == 2, calls
        assert got == [(b"meters/T-1/cmd", b'{"id": "1"}')], got
        assert s.ping_sent is None  # PINGRESP seen
        assert bytes(net.out).endswith(puback_packet(0x1234))  # umqtt acked the QoS 1
        # several packets split anywhere, including inside the remaining length
        big = publish_packet(b"meters/T-1/cmd", b"x" * 300)  # 2-byte remaining length
        stream = big + pkt + big
        for i in range(0, len(stream), 7):
            net.feed(stream[i:i + 7])
            await asyncio.sleep_ms(1)
        await asyncio.sleep_ms(30)
        assert [len(p) for t, p in got[1:]] == [300, 11, 300], got
        assert s.dead is None
        probe.task.cancel()
        assert probe.worst < 50, probe.worst
        await s.close()

    asyncio.run(go())


def test_oversized_publish_dropped_as_it_arrives_and_still_acked():
    net = Net(CONNACK, b"\x90\x03\x00\x01\x01")
    got = []
    big = publish_packet(b"meters/T-1/cmd", b"B" * 5000, qos=1, pid=9)
    after = publish_packet(b"meters/T-1/cmd", b"after")

    async def go():
        s = await connected(net, got)
        size = len(s.pipe.buf)
        stream = big + after
        for i in range(0, len(stream), 700):
            net.feed(stream[i:i + 700])
            await asyncio.sleep_ms(2)
        await asyncio.sleep_ms(20)
        assert got == [(b"meters/T-1/cmd", None), (b"meters/T-1/cmd", b"after")], got
        assert bytes(net.out).endswith(puback_packet(9))
        assert len(s.pipe.buf) == size == mqtt.MAX_IN + 5  # never grown
        assert s.dead is None
        # a non-PUBLISH that large is a protocol error
        net.feed(b"\x90\xff\x7f")
        await asyncio.sleep_ms(10)
        assert isinstance(s.dead, mqtt.MqttError), s.dead
        await s.close()

    asyncio.run(go())


def test_silent_broker_times_out_in_asyncio_never_sleeps():
    saved = mqtt.CONNECT_TIMEOUT_S, mqtt.ACK_TIMEOUT_S
    mqtt.CONNECT_TIMEOUT_S = mqtt.ACK_TIMEOUT_S = 0.3

    async def go():
        probe = Probe()
        # no CONNACK at all, and then only half of one
        for chunks in ((), (CONNACK[:3],)):
            net = Net(*chunks)
            s = session(net)
            t0 = time.ticks_ms()
            try:
                await s.connect()
                raise AssertionError("connected without a CONNACK")
            except asyncio.TimeoutError:
                pass
            dt = time.ticks_diff(time.ticks_ms(), t0)
            assert 250 <= dt < 600, dt
            assert bytes(net.out) == connect_packet("T-1", 60, WILL, b"offline", True, 1)
            assert mqtttls.describe(asyncio.TimeoutError())[0] == "timeout"
        # CONNACK, then no SUBACK
        net = Net(CONNACK)
        s = session(net)
        await s.connect()
        try:
            await s.subscribe(b"meters/T-1/cmd", 1)
            raise AssertionError("subscribed without a SUBACK")
        except mqtt.MqttError as e:
            assert e.short == "no SUBACK", e.short
        probe.task.cancel()
        assert probe.n >= 100, probe.n  # ~0.9 s of waiting, the probe ran throughout
        assert probe.worst < 50, probe.worst

    try:
        asyncio.run(go())
    finally:
        mqtt.CONNECT_TIMEOUT_S, mqtt.ACK_TIMEOUT_S = saved


def test_refusals_go_through_umqtt_checks():
    async def connect(answer):
        s = session(Net(answer))
        try:
            await s.connect()
        except Exception as e:
            return e
        return s

    e = asyncio.run(connect(b"\x20\x02\x00\x05"))
    assert isinstance(e, mqtt.Refused) and e.short == "not authorised", e
    assert mqtttls.describe(e)[0] == "not authorised"
    e = asyncio.run(connect(b"\x20\x02\x00\x02"))
    assert e.short == "id rejected", e
    e = asyncio.run(connect(b"\xd0\x00"))  # not a CONNACK
    assert isinstance(e, mqtt.MqttError) and not isinstance(e, mqtt.Refused), e

    async def subscribe(answer):
        net = Net(CONNACK, answer)
        s = session(net)
        await s.connect()
        try:
            await s.subscribe(b"meters/T-1/cmd", 1)
        except Exception as e:
            return e

    e = asyncio.run(subscribe(b"\x90\x03\x00\x01\x80"))
    assert isinstance(e, mqtt.MqttError) and e.short == "cmd topic denied", e
    e = asyncio.run(subscribe(b"\x90\x03\x00\x02\x01"))  # another packet id: umqtt's assert
    assert isinstance(e, mqtt.MqttError), e
    # a PUBLISH before the SUBACK is delivered once the session starts
    got = []
    net = Net(CONNACK, publish_packet(b"meters/T-1/cmd", b"early") + b"\x90\x03\x00\x01\x01")

    async def early():
        s = await connected(net, got)
        await asyncio.sleep_ms(10)
        await s.close()

    asyncio.run(early())
    assert got == [(b"meters/T-1/cmd", b"early")], got


def test_robust_failures_surface_instead_of_its_reconnect_loop():
    s = session(Net())

    class Broken:
        def write(self, b, n=None):
            raise OSError(104)

        def read(self, n):
            return b""  # EOF: umqtt raises OSError(-1)

        def setblocking(self, flag):
            pass

    s.c.sock = Broken()
    e = raises(OSError, s.c.publish, b"t", b"m")  # robust: log(), reconnect() -> raised
    assert e.args[0] == 104 and s.c.err is e
    e = raises(OSError, s.c.wait_msg)
    assert e.args[0] == -1
    raises(mqtt.MqttError, s.c.delay, 1)
    raises(AssertionError, robust.utime.sleep, 2)  # the guard itself works

    # the session: the broker hangs up -> the receiving task ends, sends refuse
    net = Net(CONNACK, b"\x90\x03\x00\x01\x01")

    async def go():
        s = await connected(net, [])
        net.hang_up()
        await asyncio.sleep_ms(10)
        assert isinstance(s.dead, EOFError), s.dead
        try:
            await s.publish("t", b"x")
            raise AssertionError("published on a dead session")
        except EOFError:
            pass
        await s.close()
        assert net.closed
        assert bytes(net.out).count(DISCONNECT) == 0  # not polite on a dead link

    asyncio.run(go())
