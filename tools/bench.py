#!/usr/bin/env python3
"""Benchmarks: memory floor, metering tick lateness, flash writes per day.

    python3 tools/dev.py bench [--quick] [--only NAME]

All figures come from the real firmware on the MicroPython unix port (a
64-bit build: objects take up to about twice the ESP32's bytes, so heap
figures here are an upper bound for the device). Results are printed as
JSON, one line per benchmark, then all together; docs/benchmarks.md
holds them as tables. NAME: heap, lateness, flash.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from simctl import Sim, simtool  # noqa: E402

import upy  # noqa: E402


def _runs_at(heap_k, seconds, mpy):
    """Does the simulator meter and draw for `seconds` within heap_k KiB?"""
    d = tempfile.mkdtemp(prefix="bench-heap-")
    try:
        try:
            sim = Sim(os.path.join(d, "dev"), heap="%dk" % heap_k, profile="house", mpy=mpy)
        except Exception:
            return False
        try:
            time.sleep(seconds)
            st = sim.state_()
            screen = sim.screen()
            ok = (st["counters_uwh"]["imp_t"] > 0 and st["fault"] is None
                  and "POWER W" in screen[0] and not any(st["restarts"].values()))
            sim.cmd("tap", "down")
            time.sleep(0.5)
            ok = ok and "VOLTAGE" in sim.screen()[0]
            ok = ok and sim.quit() == 0 and "MemoryError" not in sim.output()
            return ok
        except Exception:
            return False
        finally:
            if sim.proc.poll() is None:
                sim.kill()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _floor(seconds, mpy):
    lo, hi = 8, 512  # KiB: fails at lo, runs at hi
    if not _runs_at(hi, seconds, mpy):
        return None
    while hi - lo > 2:
        mid = (lo + hi) // 2
        if _runs_at(mid, seconds, mpy):
            hi = mid
        else:
            lo = mid
    floor = hi  # confirm it is stable, not a lucky run
    while not all(_runs_at(floor, seconds, mpy) for _ in range(2)):
        floor += 2
    return floor


def bench_heap(quick):
    """Lowest -X heapsize at which metering + display run: from source (the
    compiler's RAM included) and from the .mpy deploy tree (as deployed)."""
    seconds = 3 if quick else 8
    simtool.build_mpy()
    return {"min_heap_kib_source": _floor(seconds, False),
            "min_heap_kib_mpy": _floor(seconds, True), "seconds_each": seconds}


def _menu_activity(sim, seconds):
    """A user scrolling pages and walking the Settings menu, ~4 presses/s."""
    end = time.time() + seconds
    sim.tap("ok")
    sim.wait_screen("New PIN:")
    sim.enter_pin("1290")
    sim.enter_pin("1290")
    sim.wait_screen("SETTINGS")
    presses = 0
    while time.time() < end:
        for b in ("down", "down", "ok", "down", "up", "ok"):  # in and out of submenus
            sim.tap(b, ms=120)
            presses += 1
        sim.tap("ok", ms=900)  # back
        presses += 1
    return presses


def bench_lateness(quick):
    """Tick lateness at the default 1 s tick, idle and while a user walks the
    menus, measured in one run of one simulator."""
    seconds = 20 if quick else 60
    d = tempfile.mkdtemp(prefix="bench-late-")
    try:
        with Sim(os.path.join(d, "dev"), profile="house") as sim:
            sim.wait_screen("POWER W")
            sim.cmd("lateness-reset")
            time.sleep(seconds)
            idle = sim.state_()["lateness_ms"]
            sim.cmd("lateness-reset")
            presses = _menu_activity(sim, seconds)
            st = sim.state_()
            sim.quit()
        return {"seconds_each": seconds, "tick_ms": 1000, "idle": idle,
                "menu_activity": st["lateness_ms"], "button_presses": presses,
                "heap_free": st["heap_free"], "heap_used": st["heap_used"]}
    finally:
        shutil.rmtree(d, ignore_errors=True)


FLASH_DAY = r"""
import json
from meter.board.flashfile import FilePartition
from meter.board.icsim import IcSim
from meter.atm90e32 import ATM90E32, UWH_PER_LSB
from meter.logstore import LogStore, record_size
from meter.energy import EnergyCounters
class Clock:
    def time(self): return 0
    def time_valid(self): return False
now = [0]
ic = IcSim(profile=%r, clock_ms=lambda: now[0])
m = ATM90E32(ic)
m.init()
part = FilePartition(%r, 64 * 1024)
c = EnergyCounters(LogStore(part), Clock(), None, UWH_PER_LSB)
buf = [0] * 8
hours = %d
for t in range(hours * 3600):
    now[0] = t * 1000
    m.read_energy(buf)
    c.add(buf)
    if c.due(now[0]):
        c.save(now[0])
print(json.dumps({"hours": hours, "saves": c.saves, "erases": part.erases,
                  "record_bytes": record_size(72), "blocks": 16,
                  "imp_t_wh": c.uwh[3] // 1000000}))
"""


def bench_flash(quick):
    hours = 2 if quick else 24
    out = {}
    for profile in ("house", "full"):
        d = tempfile.mkdtemp(prefix="bench-flash-")
        try:
            r = json.loads(upy.exec_code(FLASH_DAY % (profile, d + "/c.bin", hours),
                                         timeout=3600).strip().splitlines()[-1])
        finally:
            shutil.rmtree(d, ignore_errors=True)
        per_day = r["saves"] * 24 / hours
        erases_day = r["erases"] * 24 / hours
        per_block_day = erases_day / r["blocks"]
        r.update({"writes_per_day": round(per_day), "erases_per_day": round(erases_day, 1),
                  "lifetime_years_100k": round(100000 / per_block_day / 365, 1)
                  if per_block_day else None})
        out[profile] = r
    return out


def main(argv):
    quick = "--quick" in argv
    only = argv[argv.index("--only") + 1] if "--only" in argv else None
    results = {}
    for name, fn in (("heap", bench_heap), ("lateness", bench_lateness), ("flash", bench_flash)):
        if only and name != only:
            continue
        t = time.time()
        results[name] = fn(quick)
        results[name]["bench_seconds"] = round(time.time() - t, 1)
        print("%s: %s" % (name, json.dumps(results[name])), flush=True)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
