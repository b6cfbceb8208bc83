"""What the firmware knows about its heap, and the one place that decides
whether there is room for more work.

The GC heap is small (96-128 KiB on the device) and shared by metering,
the display and every network service. A request that fails halfway for
want of memory would leave a user with half a page and the firmware with a
MemoryError in some task, so work that allocates (a new connection, a page,
a stream, a pairing) asks `room()` first and is refused cleanly when the
heap is short. `refused` and `errors` count what happened, for the
benchmark and the tests (control command `mem`).
"""

import gc
import sys
import time

import asyncio
from micropython import const

# A new connection, page or stream needs this much free heap after a
# collection, in bytes: the largest page renders in pieces of at most 1 KB
# into per-connection buffers, so this is headroom for the request's own
# objects plus what metering and the display allocate meanwhile.
_ROOM = const(12 * 1024)

# The HTTP request buffers (meter/web/server.py): NET_BUFS of NET_BUF bytes,
# shared by the Web Admin and the local API. Taken once, at start-up while
# the heap is one free block, and kept: opened and closed all day, the
# servers would otherwise need five contiguous 2.5 KB blocks from a heap that
# their own pages have fragmented. Four: a browser's page and its stream,
# an app's stream and one more (a newcomer beyond them waits or gets 503,
# meter/web/admission.py). The fifth went to pay for the firmware update's
# delivery (issue 13: +3.4 KB with everything open): with it, the
# all-services heap refused a page in its first seconds (docs/benchmarks.md,
# "The path to 96 KiB").
NET_BUF = const(2308)
NET_BUFS = const(4)
_net = None

# How long a newcomer waits for room before it is judged (the server's
# admission, meter/web/server.py), and how often it looks. What holds the
# heap short is most often a page or a publish in flight, gone within a
# fraction of a second: an app asking for its stream while the admin's page
# renders was refused 503 for that moment (tests/test_memory.py, 1 run in
# 10 under load). Each look collects, so one newcomer waits at a time.
WAIT_MS = const(1000)
LOOK_MS = const(100)
_waiting = False

stats = {"refused": 0, "errors": 0, "waited": 0}


def reserve():
    """Allocate the long-lived buffers; App calls it first thing."""
    global _net
    if _net is None:
        _net = [bytearray(NET_BUF) for _ in range(NET_BUFS)]


def net_buffers():
    """The shared request buffers (a list: take with pop(), give back with
    append())."""
    reserve()
    return _net


def _enough(need):
    if gc.mem_free() >= need:
        return True
    gc.collect()
    return gc.mem_free() >= need


def room(need=_ROOM):
    """True when `need` bytes are free, collecting first if they are not."""
    if _enough(need):
        return True
    stats["refused"] += 1
    return False


async def wait_room(need=_ROOM):
    """Wait, up to WAIT_MS, until `need` bytes are free; then room()
    decides. Returns at once when they are free or another newcomer is
    already waiting (a flood must not keep the loop collecting)."""
    global _waiting
    if _waiting or gc.mem_free() >= need:
        return
    _waiting = True
    try:
        t0 = time.ticks_ms()
        looked = False
        while not _enough(need):
            if time.ticks_diff(time.ticks_ms(), t0) >= WAIT_MS:
                return
            await asyncio.sleep_ms(LOOK_MS)
            looked = True
        if looked:
            stats["waited"] += 1
    finally:
        _waiting = False


def failed():
    """Count a MemoryError that was caught and answered."""
    stats["errors"] += 1
    gc.collect()


def largest_free():
    """Size of the largest block that can be allocated now, in bytes (a
    diagnostic: it allocates, so it is for the control socket, not a hot
    path)."""
    gc.collect()
    lo, hi = 0, gc.mem_free()
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            b = bytearray(mid)
            del b
            lo = mid
        except MemoryError:
            hi = mid - 1
    return lo


_hog = []


def snapshot(args=None):
    """The control command `mem`. `mem map` also prints MicroPython's heap
    block map to the console (the simulator's log); `mem hog N` holds N
    bytes more in 128-byte pieces (a test's way to make the heap short),
    `mem hog 0` lets them go."""
    if args and args[0] == "hog":
        n = int(args[1])
        if not n:
            _hog.clear()
        # Counted by what the heap says, not by the pieces' sizes: each piece
        # also costs its object header and a list slot, and the list grows.
        target = gc.mem_free() - n
        while gc.mem_free() > target:
            try:
                _hog.append(bytearray(128))
            except MemoryError:
                break
    if args and args[0] == "mods":
        import sys

        return sorted(sys.modules)
    gc.collect()
    if args and args[0] == "map":
        import micropython

        micropython.mem_info(1)
    return {"free": gc.mem_free(), "used": gc.mem_alloc(), "largest_free": largest_free(),
            "refused": stats["refused"], "errors": stats["errors"], "waited": stats["waited"],
            "waiting": _waiting}


def unload(names):
    """Remove modules from sys.modules and from their parent package's
    attributes, so that nothing keeps them (a later import loads them
    afresh): the Web Admin's window, the local API and the start-up check of
    the app slots give their modules back with it."""
    for name in names:
        if name in sys.modules:
            del sys.modules[name]
        parent, _, attr = name.rpartition(".")
        pkg = sys.modules.get(parent) if parent else None
        if pkg is not None and attr in pkg.__dict__:
            try:
                delattr(pkg, attr)
            except (AttributeError, TypeError):
                pass
