"""The update check on the 32-bit device image, for tests/test_otafetch.py.

    build/image/micropython -X heapsize=128k tests/mpy/fetchmain.py ARGS.json

Runs the frozen meter/otafetch.py against the host board's app slots in
JSON's "state" directory (files with NOR-flash rules, 1.5 MiB slots) and
prints one JSON line: the result ("ok": the version installed or null,
or "error": the message), the audit events, and what the heap did during
the download. ARGS.json is a file because an argument of 256 characters
or more crashes the unix port at start-up ("FATAL: uncaught NLR"). Its
keys: server, ip, ca (path), keys ({id: modulus hex}), version (the
running one), tune (Fetcher keywords), mode ("check": one check_now(); "upload": the
upload path, see upload()), busy (a path: the check is busy while that
file exists), measure (heap probes),
leave_free (hold heap until only that many bytes are free).
"""

import asyncio
import gc
import json
import os
import sys
import time

from meter.board.otahost import HostOta
from meter.memory import largest_free
from meter.ota import UpdateError
from meter.otafetch import Fetcher

with open(sys.argv[1]) as _f:
    A = json.load(_f)
T0 = time.ticks_ms()
EVENTS = []
MEM = {"base_free": 0, "min_free": None, "largest_min": None, "bytes": 0, "ms": 0,
       "samples": 0}
_first = [None]
_next_probe = [0]


class Audit:
    def append(self, source, event, outcome="ok", detail=""):
        EVENTS.append([time.ticks_diff(time.ticks_ms(), T0), source, event, outcome, detail])


class Cfg:
    def __init__(self, d):
        self.d = d

    def get(self, key):
        if key == "update.ca":
            with open(A["ca"], "rb") as f:
                return f.read()
        return self.d[key]


def progress(n, total):
    now = time.ticks_ms()
    if _first[0] is None:
        _first[0] = now
    MEM["bytes"] = n
    MEM["ms"] = time.ticks_diff(now, _first[0])
    if A.get("measure") and n >= _next_probe[0]:
        # every 128 KiB: the heap left after a collection, and the largest
        # block that could still be allocated
        _next_probe[0] = n + 131072
        gc.collect()
        free = gc.mem_free()
        big = largest_free()
        MEM["samples"] += 1
        MEM["min_free"] = free if MEM["min_free"] is None else min(MEM["min_free"], free)
        MEM["largest_min"] = big if MEM["largest_min"] is None else min(MEM["largest_min"], big)


def busy():
    try:
        os.stat(A["busy"])
        return True
    except (OSError, KeyError):
        return False


async def upload(keys, out):
    """mode "upload": one TCP connection on 127.0.0.1:port whose body (of
    length `length`) goes through meter/otaupload.py, as the Web Admin's
    page will feed it; replies "done" when it has ended."""
    from meter.otaupload import Upload

    done = asyncio.Event()

    async def handler(r, w):
        try:
            up = Upload(HostOta(A["state"]), "host", A["length"], audit=Audit(),
                        progress=progress, keys=keys, version=A["version"])
            out["ok"] = await up.run(r)
        except UpdateError as e:
            out["error"] = str(e)
            out["status"] = e.status
        w.write(b"done")
        await w.drain()
        await w.wait_closed()
        done.set()

    srv = await asyncio.start_server(handler, "127.0.0.1", A["port"])
    print("@@LISTENING")
    await asyncio.wait_for_ms(done.wait(), A.get("deadline_ms", 60000))
    srv.close()
    await srv.wait_closed()


async def main():
    cfg = Cfg({"update.server": A["server"], "update.ip": A.get("ip", "")})
    keys = {int(k): bytes.fromhex(v) for k, v in A["keys"].items()}
    f = Fetcher(cfg, HostOta(A["state"]), "host", audit=Audit(), progress=progress, busy=busy,
                keys=keys, version=A["version"], **A.get("tune", {}))
    hog = []
    if A.get("leave_free"):  # hold heap until only this much is free
        gc.collect()
        while gc.mem_free() > A["leave_free"] + 512:
            hog.append(bytearray(256))
    gc.collect()
    MEM["base_free"] = gc.mem_free()
    out = {}
    try:
        if A.get("mode") == "upload":
            await upload(keys, out)
        else:
            out["ok"] = await f.check_now(A.get("source", "cloud"))
    except UpdateError as e:
        out["error"] = str(e)
    except asyncio.TimeoutError:
        out["error"] = "deadline"
    out["audit"] = EVENTS
    out["mem"] = MEM
    print("@@RESULT " + json.dumps(out))


asyncio.run(main())
