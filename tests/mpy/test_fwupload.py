"""The Web Admin's streamed request body (meter/web/wire.py Body, the
server's `streamed` paths and upload()), which the Firmware page's upload
rides on: exact bytes over a fake stream, then over real TCP connections
into the host board's slots through meter/otaupload.py (64 KiB test
slots, a file signed with a throwaway key)."""

import sys

_HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
if _HERE + "/fakes" not in sys.path:
    sys.path.insert(0, _HERE + "/fakes")

import asyncio  # noqa: E402
import gc  # noqa: E402
import time  # noqa: E402

import otakit  # noqa: E402
from test_ota import KEYS, K1, Audit, factory, host, slot_bytes  # noqa: E402
from upytest import tmpdir  # noqa: E402

from microdot import Microdot, Response  # noqa: E402

from meter import memory, ota  # noqa: E402
from meter.otaupload import Upload  # noqa: E402
from meter.web import admission, server  # noqa: E402
from meter.web.wire import Body  # noqa: E402

HEAP = "512k"
GOOD = otakit.update_file(K1, otakit.payload(30000, 5), version="0.2.0")


class _Reader:
    """The socket side: hands out `data` in reads of at most `step` bytes
    and records how often it was asked and for at most how much (two
    numbers, not a list of every read: thousands of 1-byte reads grew a
    list to 32 KB, which a heap fragmented by the earlier tests of this
    module could not always place)."""

    def __init__(self, data, step=700):
        self.data = memoryview(data)
        self.step = step
        self.calls = 0
        self.most = 0

    async def readinto(self, mv):
        self.calls += 1
        self.most = max(self.most, len(mv))
        n = min(len(mv), len(self.data), self.step)
        mv[:n] = self.data[:n]
        self.data = self.data[n:]
        return n


def _drain(body, size):
    out = bytearray()
    buf = bytearray(size)
    mv = memoryview(buf)

    async def go():
        while True:
            n = await body.readinto(mv)
            if not n:
                return
            out.extend(mv[:n])

    asyncio.run(go())
    return bytes(out)


def test_body_hands_out_the_head_s_bytes_first_then_the_socket_never_past_its_length():
    head = b"POST /up HTTP/1.1\r\nContent-Length: 3000\r\n\r\n"
    body = bytes((i * 7) & 255 for i in range(3000))
    for came in (0, 1, 100, 511):  # body bytes that arrived with the head
        for size in (1, 64, 1024):
            buf = bytearray(server.BUF)
            buf[:len(head) + came] = head + body[:came]
            # the socket holds the rest and then more (a pipelined request)
            r = _Reader(body[came:] + b"GET / HTTP/1.1\r\n\r\n")
            got = _drain(Body(r, buf, len(head), len(head) + came, 3000), size)
            assert got == body, (came, size, len(got))
            assert r.most <= size, (came, size, r.most)
            assert bytes(r.data) == b"GET / HTTP/1.1\r\n\r\n", (came, size, bytes(r.data)[:20])
    # more in the buffer than the length (the next request's bytes): never handed out
    buf = bytearray(server.BUF)
    buf[:len(head) + 20] = head + b"A" * 10 + b"B" * 10
    r = _Reader(b"")
    assert _drain(Body(r, buf, len(head), len(head) + 20, 10), 64) == b"A" * 10
    assert r.calls == 0, "a complete body must not touch the socket"
    # the client gone: 0, as at the end of a stream
    r = _Reader(b"xyz")
    assert _drain(Body(r, bytearray(8), 0, 0, 100), 16) == b"xyz"


# -- through the server ------------------------------------------------------

def _app(seen, o, audit):
    app = Microdot()

    @app.post("/up")
    async def up(req):
        srv, conn = req.g.server, req.g.conn
        seen["turns_before"] = srv.handling
        def progress(n, t):
            gc.collect()  # what the upload holds, chunk after chunk
            seen.setdefault("progress", []).append(n)
            seen.setdefault("heap", []).append(gc.mem_alloc())

        u = Upload(o, "host", req.content_length, keys=KEYS, audit=audit, version="0.1.0",
                   progress=progress)
        srv.upload(conn, 60000)
        seen["turns_during"] = srv.handling
        seen["phase"] = conn.phase
        # full slots, a newcomer whose request has arrived, long after: the
        # upload is never the one evicted
        seen["victim"] = admission.choose(srv.conns, time.ticks_add(time.ticks_ms(), 60000),
                                          True, False, srv.max_conn)
        spare = req.stream.spare()  # the request buffer's tail: no buffer of the upload's own
        seen["spare"] = len(spare)
        try:
            v = await u.run(req.stream, timeout_ms=2000, buf=spare)
        except ota.UpdateError as e:
            seen["error"] = str(e)
            return Response({"error": str(e)}, e.status)
        except asyncio.CancelledError:
            seen["error"] = "cancelled"
            raise
        return {"version": v}

    @app.post("/form")
    async def form(req):
        seen["form"] = len(req.body)
        return "ok"

    return app


async def _start(app):
    for i in range(50):  # a free port (another run may hold one)
        port = 21000 + (time.ticks_ms() + 53 * i) % 3000
        srv = server.Server(app, "127.0.0.1", port, streamed=("/up",))
        try:
            await srv.start()
            return srv, port
        except OSError:
            pass
    raise AssertionError("no free port")


async def _send(port, head, data, step=3000, close_after=None):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(head)
    await w.drain()
    end = len(data) if close_after is None else close_after
    for i in range(0, end, step):
        w.write(data[i:min(i + step, end)])
        await w.drain()
    if close_after is not None:
        w.close()
        await w.wait_closed()
        return b""
    out = b""
    while True:
        b = await r.read(512)
        if not b:
            break
        out += b
    w.close()
    return out


def _head(path, n, extra=b""):
    return (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n%s\r\n"
            % (path.encode(), n, extra))


def _fresh():
    o = host(tmpdir())
    factory(o)
    return o


def _run(app, client):
    async def main():
        srv, port = await _start(app)
        try:
            res = await client(srv, port)
            for _ in range(50):  # the connection's clean-up
                if not srv.conns:
                    break
                await asyncio.sleep_ms(10)
            return res, len(srv.conns), len(srv._bufs), srv.handling
        finally:
            await srv.close(0)

    return asyncio.run(main())


def test_a_streamed_upload_installs_exact_bytes_holds_no_turn_and_is_never_evicted():
    o = _fresh()
    seen = {}
    (out, conns, bufs, turns) = _run(_app(seen, o, Audit()), lambda srv, port: _send(
        port, _head("/up", len(GOOD)), GOOD))
    assert out.startswith(b"HTTP/1.0 200 OK\r\n") and out.endswith(b'{"version": "0.2.0"}'), out
    assert slot_bytes(o.slots[1], len(GOOD) - 448) == GOOD[448:], "slot 1 must hold the payload"
    assert o.otadata.boot_slot() == 1
    assert seen["turns_before"] == 1 and seen["turns_during"] == 0, seen
    assert seen["phase"] == server.UPLOAD and seen["victim"] is None, seen
    assert seen["spare"] == 1024, seen["spare"]
    assert seen["progress"][-1] == len(GOOD), seen["progress"][-3:]
    # everything given back
    assert (conns, bufs, turns) == (0, memory.NET_BUFS, 0), (conns, bufs, turns)
    # constant memory: the body (38 KB) is never held, whole or growing
    # (from the first payload chunk on: the header's check is done)
    h = seen["heap"][2:]
    assert len(GOOD) > 30000 and max(h) - min(h) < 2048, (min(h), max(h))


def test_a_streamed_path_needs_a_length_and_other_paths_keep_their_cap():
    o = _fresh()
    seen = {}

    async def client(srv, port):
        a = await _send(port, b"POST /up HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"")
        b = await _send(port, _head("/form", 5000), b"")  # (refused from the head)
        c = await _send(port, _head("/form", 3), b"abc")
        return a, b, c

    (a, b, c), conns, bufs, _ = _run(_app(seen, o, Audit()), client)
    assert a.startswith(b"HTTP/1.0 411 "), a
    assert b.startswith(b"HTTP/1.0 413 "), b
    assert c.startswith(b"HTTP/1.0 200 ") and seen == {"form": 3}, (c, seen)
    assert (conns, bufs) == (0, memory.NET_BUFS)


def test_a_client_gone_mid_body_ends_the_upload_and_nothing_is_installed():
    o = _fresh()
    seen = {}
    res = _run(_app(seen, o, Audit()), lambda srv, port: _send(
        port, _head("/up", len(GOOD)), GOOD, close_after=12000))
    assert "broke off at 12000 of %d" % len(GOOD) in seen["error"], seen
    assert o.otadata.boot_slot() == 0 and not ota.busy()
    assert res[1:] == (0, memory.NET_BUFS, 0), res


def test_the_server_closing_cancels_an_upload_and_nothing_is_installed():
    o = _fresh()
    seen = {}

    async def client(srv, port):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(_head("/up", len(GOOD)) + GOOD[:8000])
        await w.drain()
        for _ in range(100):  # until the handler reads
            if seen.get("progress"):
                break
            await asyncio.sleep_ms(10)
        await srv.close(200)  # the window ends: uploads are not waited for
        w.close()
        return len(seen.get("progress", ()))

    res = _run(_app(seen, o, Audit()), client)
    assert res[0] > 0 and seen["error"] == "cancelled", (res, seen)
    assert o.otadata.boot_slot() == 0 and not ota.busy()
    assert res[1:] == (0, memory.NET_BUFS, 0), res


def test_an_upload_slower_than_its_total_limit_is_ended():
    o = _fresh()

    class Trickle:
        async def readinto(self, mv):
            await asyncio.sleep_ms(20)
            mv[0] = GOOD[0]
            return 1

    u = Upload(o, "host", len(GOOD), keys=KEYS, audit=Audit(), version="0.1.0")
    try:
        asyncio.run(u.run(Trickle(), timeout_ms=1000, total_ms=200))
        raise AssertionError("a trickle must not go on past the total limit")
    except ota.UpdateError as e:
        assert "took longer than" in str(e), str(e)
    assert not ota.busy() and o.otadata.boot_slot() == 0
