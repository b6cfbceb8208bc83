"""Simulator entry point with the cloud uplink spawned (MicroPython).

The same as firmware/main.py (App builds and runs the uplink), plus a
clock the tests can move and an optional loop-stall probe. Test-only
control commands:

    mqtt              the uplink's snapshot (status, counts)
    pairing           the current pairing code and seconds left
    clock [SECONDS]   shift the device clock by SECONDS (the tests' NTP)
    clock_valid 0|1   pretend the clock is (not) known
    stall             worst loop stall (ms) seen by a 5 ms probe task since
                      the last call, then reset (only with --stall-probe)
"""

import sys
import time

import asyncio

probe = "--stall-probe" in sys.argv
if probe:
    sys.argv.remove("--stall-probe")

from meter import app as appmod  # noqa: E402
from meter import board as boards  # noqa: E402

board = boards.load()
_time = board.time
_valid = board.time_valid
clock = {"offset": 0, "valid": True}
board.time = lambda: _time() + clock["offset"]
board.time_valid = lambda: clock["valid"] and _valid()

app = appmod.App(board)
up = app.uplink  # App builds and runs the uplink itself
stall = {"max": 0, "n": 0}


async def stall_probe():
    last = time.ticks_ms()
    while True:
        await asyncio.sleep_ms(5)
        now = time.ticks_ms()
        gap = time.ticks_diff(now, last) - 5
        if gap > stall["max"]:
            stall["max"] = gap
        stall["n"] += 1
        last = now


def _stall(args):
    out = dict(stall)
    stall["max"] = 0
    stall["n"] = 0
    return out


def _clock(args):
    if args:
        clock["offset"] = int(args[0])
    return {"offset": clock["offset"], "time": board.time()}


def _clock_valid(args):
    clock["valid"] = args[0] == "1"
    return {"valid": clock["valid"]}


def _pairing(args):
    code, left = up.pairing_code()
    return {"code": code, "left": left, "time": board.time(), "lines": up.pairing_lines()}


_services = board.services


def services():
    s = _services()
    if probe:
        s.append(("stallprobe", stall_probe))
    return s


board.services = services
board.add_command("mqtt", lambda args: up.snapshot())
board.add_command("pairing", _pairing)
board.add_command("clock", _clock)
board.add_command("clock_valid", _clock_valid)
board.add_command("stall", _stall)

try:
    asyncio.run(app.run())
finally:
    from meter.board import host

    host.restore_terminal()
if app.exit_code:
    sys.exit(app.exit_code)
