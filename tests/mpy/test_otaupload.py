"""The upload path (meter/otaupload.py): an update file arriving as an HTTP
body of known Content-Length, over a real TCP connection in this process
(asyncio.start_server; the client side writes the file), into the host
board's slots (files with NOR-flash rules, 64 KiB test slots).
"""

import sys

_HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
if _HERE + "/fakes" not in sys.path:
    sys.path.insert(0, _HERE + "/fakes")

import asyncio  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402

import otakit  # noqa: E402
from test_ota import KEYS, K1, SLOT, Audit, factory, host, slot_bytes  # noqa: E402
from upytest import raises, tmpdir  # noqa: E402

from meter import ota  # noqa: E402
from meter.otaupload import NoLength, TooLarge, Upload, max_size  # noqa: E402

HEAP = "512k"
GOOD = otakit.update_file(K1, otakit.payload(20000, 3), version="0.2.0")


def fresh():
    d = tmpdir()
    o = host(d)
    factory(o)
    return d, o


def slot1(o):
    """SHA-256 of the whole of slot 1 (a 64 KiB copy would not fit the
    heap the test keys leave)."""
    h = hashlib.sha256()
    buf = bytearray(4096)
    for b in range(SLOT // 4096):
        o.slots[1].readblocks(b, buf, 0)
        h.update(buf)
    return h.digest()


def slot1_starts_with(o, data):
    return slot_bytes(o.slots[1], len(data)) == data


def upload(o, length, **kw):
    kw.setdefault("keys", KEYS)
    kw.setdefault("audit", Audit())
    kw.setdefault("version", "0.1.0")
    return Upload(o, "host", length, **kw)


async def _serve(up, data, send, results, **run_kw):
    """Run `up` on the server side of a TCP connection; `send(writer,
    data)` plays the browser."""
    done = asyncio.Event()

    async def handler(r, w):
        try:
            results.append(await up.run(r, **run_kw))
        except Exception as e:
            results.append(e)
        await w.wait_closed()  # (close() alone closes nothing in this asyncio)
        done.set()

    # The unix port's sockets have no getsockname(): try random ports.
    for _ in range(50):
        port = 20000 + int.from_bytes(os.urandom(2), "big") % 40000
        try:
            srv = await asyncio.start_server(handler, "127.0.0.1", port)
            break
        except OSError:
            continue
    else:
        raise AssertionError("no free TCP port for the test server")
    r, w = await asyncio.open_connection("127.0.0.1", port)
    await send(w, data)
    await asyncio.wait_for_ms(done.wait(), 10000)
    await w.wait_closed()
    srv.close()
    await srv.wait_closed()


def serve(up, data, send, **run_kw):
    results = []
    asyncio.run(_serve(up, data, send, results, **run_kw))
    return results[0]


async def send_all(w, data):
    for i in range(0, len(data), 3000):
        w.write(data[i:i + 3000])
        await w.drain()


def test_upload_installs_into_the_inactive_slot():
    d, o = fresh()
    seen = []
    up = upload(o, len(GOOD), progress=lambda n, t: seen.append((n, t)))
    v = serve(up, GOOD, send_all)
    assert v == "0.2.0", v
    assert o.otadata.boot_slot() == 1, "set_boot() must point at the new slot"
    assert slot1_starts_with(o, GOOD[448:]), "slot 1 must hold the payload"
    assert seen[-1] == (len(GOOD), len(GOOD)), seen[-3:]


def test_too_large_length_is_refused_before_any_byte_is_written():
    d, o = fresh()
    before = slot1(o)
    a = Audit()
    room = max_size(o)
    assert room == SLOT - 4096 + 448, room
    e = raises(TooLarge, upload, o, room + 1, audit=a)
    assert e.status == 413, e.status
    assert "too large" in str(e), str(e)
    assert slot1(o) == before, "nothing may be written for a refused length"
    assert not ota.busy(), "no update may be left running"
    assert a.events == [("web", "ota update", "refused", str(e))], a.events
    upload(o, room)  # exactly the slot's size is allowed
    ota._current[0] = None


def test_missing_or_tiny_length_is_refused():
    d, o = fresh()
    assert raises(NoLength, upload, o, None).status == 411
    e = raises(ota.UpdateError, upload, o, 100)
    assert "too short" in str(e), str(e)
    assert not ota.busy()


def test_client_gone_midway_leaves_the_running_firmware_untouched():
    d, o = fresh()
    a = Audit()
    up = upload(o, len(GOOD), audit=a)

    async def half_then_close(w, data):
        w.write(data[:12000])
        await w.drain()
        await w.wait_closed()

    e = serve(up, GOOD, half_then_close)
    assert isinstance(e, ota.UpdateError), repr(e)
    assert "broke off at 12000 of %d" % len(GOOD) in str(e), str(e)
    assert o.otadata.boot_slot() == 0, "the boot slot must not change"
    assert o.otadata.active() == -1, "otadata must stay as it was"
    assert not ota.busy(), "a cancelled upload must free the updater"
    assert ("web", "ota update", "cancelled") == a.events[-1][:3], a.events
    # ... and the same file, uploaded again, installs
    assert serve(upload(o, len(GOOD)), GOOD, send_all) == "0.2.0"


def test_stalled_client_times_out_and_nothing_is_installed():
    d, o = fresh()
    up = upload(o, len(GOOD))
    hold = []

    async def half_then_stall(w, data):
        w.write(data[:5000])
        await w.drain()
        hold.append(w)  # the connection stays open, silent

    e = serve(up, GOOD, half_then_stall, timeout_ms=300)
    hold[0].s.close()
    assert isinstance(e, ota.UpdateError) and "stalled" in str(e), repr(e)
    assert o.otadata.boot_slot() == 0 and not ota.busy()


def test_cancel_from_the_page_midway_installs_nothing():
    d, o = fresh()
    a = Audit()
    state = {}

    def progress(n, t):
        if n >= 8000 and "up" in state and not state.get("cancelled"):
            state["cancelled"] = True
            state["up"].cancel("the page was closed")

    up = upload(o, len(GOOD), audit=a, progress=progress)
    state["up"] = up
    e = serve(up, GOOD, send_all)
    assert isinstance(e, ota.UpdateError) and "ended" in str(e), repr(e)
    assert o.otadata.boot_slot() == 0 and not ota.busy()
    assert ("web", "ota update", "cancelled", "the page was closed") in a.events, a.events
