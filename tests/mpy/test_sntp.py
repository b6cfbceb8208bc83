"""meter.sntp against a real UDP server on 127.0.0.1 (tests/mpy/sntpserver.py),
in the same asyncio loop: good replies give the server's time, bad ones are
refused with a clear SntpError, and the loop runs on while a query waits."""

import asyncio
import struct
import time

from upytest import raises

import sntpserver
from meter import sntp

# A query returns when it reads the reply, within one POLL_MS of its
# arrival; half of that counts as network delay. Loopback is otherwise
# instant, so 60 ms is a generous bound (far below the 500 ms fraction and
# the 100 ms a 200 ms hold would add if it were not subtracted), with
# room for a loaded machine.
TOL_US = 60000


def _run(coro):
    return asyncio.run(coro)


def _ask(srv, timeout_ms=500, **kw):
    """(result or SntpError, elapsed ms, the server's time at return)."""

    async def go():
        srv.start()
        t0 = time.ticks_ms()
        try:
            r = await sntp.query("127.0.0.1", srv.port, timeout_ms, **kw)
        except sntp.SntpError as e:
            r = e
        return r, time.ticks_diff(time.ticks_ms(), t0), srv.now_us()

    try:
        return _run(go())
    finally:
        srv.close()


def _us(r):
    s, us = r
    assert 0 <= us < 1000000, r
    return s * 1000000 + us


# --- good replies -----------------------------------------------------------


def test_good_reply_gives_server_time():
    srv = sntpserver.Server(unix=1795322355, frac_us=500000)
    r, ms, expect = _ask(srv)
    assert not isinstance(r, Exception), r
    assert isinstance(r[0], int) and isinstance(r[1], int)
    assert abs(_us(r) - expect) < TOL_US, (r, expect)
    assert r[0] in (1795322355, 1795322356)
    assert ms < 200
    # the request as RFC 4330 wants it: 48 bytes, LI 0, version 4, mode 3
    assert len(srv.requests) == 1
    req = srv.requests[0][1]
    assert len(req) == 48
    assert req[0] == 0x23
    assert req[1:40] == bytes(39)
    assert req[40:48] != bytes(8)  # the nonce


def test_nonce_differs_per_query():
    nonces = []
    for _ in range(3):
        srv = sntpserver.Server()
        r, _, _ = _ask(srv)
        assert not isinstance(r, Exception), r
        nonces.append(srv.requests[0][1][40:48])
    assert len(set(nonces)) == 3


def test_server_hold_time_is_not_counted_as_network_delay():
    srv = sntpserver.Server(mode=sntpserver.HELD)
    srv.held_ms = 200
    r, ms, expect = _ask(srv)
    assert not isinstance(r, Exception), r
    assert ms >= 200
    assert abs(_us(r) - expect) < TOL_US, (r, expect)


def test_after_2036_era_rollover():
    # 2040-01-01: NTP seconds have wrapped (top bit clear): era 1
    srv = sntpserver.Server(unix=2208988800, frac_us=0)
    r, _, expect = _ask(srv)
    assert not isinstance(r, Exception), r
    assert abs(_us(r) - expect) < TOL_US, (r, expect)
    assert time.gmtime(r[0])[0] == 2040


def test_resolved_address_is_used():
    srv = sntpserver.Server()
    addr = sntp.address("127.0.0.1", srv.port)
    r, _, expect = _ask(srv, addr=addr)
    assert not isinstance(r, Exception), r
    assert abs(_us(r) - expect) < TOL_US


def test_genuine_reply_after_spoofed_one_is_taken():
    srv = sntpserver.Server(mode=sntpserver.SPOOF_THEN_GOOD)
    r, _, expect = _ask(srv)
    assert not isinstance(r, Exception), r
    assert abs(_us(r) - expect) < TOL_US, (r, expect)


# --- refused replies ----------------------------------------------------------


def _refused(mode, timeout_ms=500):
    srv = sntpserver.Server(mode=mode)
    r, ms, _ = _ask(srv, timeout_ms)
    assert isinstance(r, sntp.SntpError), (mode, r)
    assert len(srv.requests) == 1, mode
    msg = str(r)
    assert msg.startswith("127.0.0.1: "), msg
    return msg, ms


def test_wrong_origin_refused():
    msg, ms = _refused(sntpserver.WRONG_ORIGIN, 300)
    assert msg == ("127.0.0.1: no valid reply (ignored: reply to another request "
                   "(origin timestamp)) within 300 ms"), msg
    assert 300 <= ms < 600, ms  # waited for a genuine reply until the deadline


def test_short_packet_refused():
    msg, ms = _refused(sntpserver.SHORT, 300)
    assert msg == "127.0.0.1: no valid reply (ignored: short packet (40 bytes)) within 300 ms", msg
    assert 300 <= ms < 600, ms


def test_unsynchronised_leap_indicator_refused():
    msg, ms = _refused(sntpserver.LI3)
    assert msg == "127.0.0.1: not synchronised (leap indicator 3)", msg
    assert ms < 200  # the server itself said so: no point waiting


def test_kiss_of_death_refused():
    msg, _ = _refused(sntpserver.KOD)
    assert msg == "127.0.0.1: kiss-o'-death RATE (stratum 0)", msg


def test_stratum_16_refused():
    msg, _ = _refused(sntpserver.STRATUM16)
    assert msg == "127.0.0.1: not synchronised (stratum 16)", msg


def test_client_mode_packet_refused():
    msg, _ = _refused(sntpserver.MODE3)
    assert msg == "127.0.0.1: not a server reply (mode 3)", msg


def test_zero_transmit_time_refused():
    msg, _ = _refused(sntpserver.ZERO_TX)
    assert msg == "127.0.0.1: reply without a transmit time", msg


def test_no_reply_times_out_and_loop_runs_on():
    srv = sntpserver.Server(mode=sntpserver.SILENT)
    ticks = []

    async def ticker():
        while True:
            ticks.append(time.ticks_ms())
            await asyncio.sleep_ms(10)

    async def go():
        srv.start()
        t = asyncio.create_task(ticker())
        t0 = time.ticks_ms()
        try:
            await sntp.query("127.0.0.1", srv.port, 400)
            r = None
        except sntp.SntpError as e:
            r = e
        ms = time.ticks_diff(time.ticks_ms(), t0)
        t.cancel()
        return r, ms

    try:
        r, ms = _run(go())
    finally:
        srv.close()
    assert isinstance(r, sntp.SntpError), r
    assert str(r) == "127.0.0.1: no reply within 400 ms", r
    assert 400 <= ms < 700, ms
    # the other task kept its 10 ms rhythm the whole time
    assert len(ticks) >= 25, len(ticks)
    gaps = [time.ticks_diff(b, a) for a, b in zip(ticks, ticks[1:])]
    assert max(gaps) < 150, max(gaps)  # a blocking wait would show 400


def test_time_before_2025_refused():
    srv = sntpserver.Server(unix=1600000000)  # 2020-09-13
    r, ms, _ = _ask(srv)
    assert isinstance(r, sntp.SntpError), r
    assert str(r).startswith("127.0.0.1: time before 2025 (16000000"), r
    assert ms < 200


def test_closed_port_refused():
    # Linux reports the ICMP "port unreachable" on the connected socket.
    port = sntpserver.free_port()

    async def go():
        try:
            await sntp.query("127.0.0.1", port, 500)
        except sntp.SntpError as e:
            return e

    r = _run(go())
    assert isinstance(r, sntp.SntpError), r
    assert str(r) == "127.0.0.1: errno 111", r


def test_time_of_reply_uses_integers_only():
    # A reply parsed directly: NTP 3976311155.75 = Unix 1767322355.75
    # (2026-01-02 02:52:35.75), no delay.
    nonce = b"12345678"
    p = bytearray(48)
    p[0] = 0x24
    p[1] = 1
    p[24:32] = nonce
    p[32:40] = p[40:48] = struct.pack("!II", 3976311155, 3 << 30)
    assert sntp._time("x", p, 0) == (1767322355, 750000)
    # 100 ms round trip, 20 ms of it inside the server: 40 ms each way
    p[32:40] = struct.pack("!II", 3976311155, (3 << 30) - 85899346)  # 20 ms earlier
    s, us = sntp._time("x", p, 100)
    assert s == 1767322355 and abs(us - 790000) <= 1, us
    raises(sntp.SntpError, sntp._time, "x", bytearray(p[:1]) + bytearray([0]) + p[2:], 0)
