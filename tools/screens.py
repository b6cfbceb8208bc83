#!/usr/bin/env python3
"""Render the main screens of the firmware to PNG (docs/screens/).

    .venv/bin/python tools/screens.py [OUTDIR]

Runs the real firmware in the simulator and presses its buttons; each
picture is the display's framebuffer as the host board saves it.
"""

import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from simctl import Sim  # noqa: E402


def main(argv):
    out = os.path.abspath(argv[0] if argv else os.path.join(ROOT, "docs", "screens"))
    os.makedirs(out, exist_ok=True)
    d = tempfile.mkdtemp(prefix="screens-")
    shots = []

    def shot(sim, name):
        time.sleep(0.4)
        sim.cmd("png", os.path.join(out, name + ".png"))
        shots.append(name)

    try:
        with Sim(os.path.join(d, "dev"), profile="pv") as sim:
            shot(sim, "startup")
            sim.wait_screen("POWER W")
            time.sleep(1.5)
            for name in ("page-power", "page-voltage-current", "page-import", "page-export"):
                shot(sim, name)
                sim.tap("down")
            sim.tap("ok")
            sim.wait_screen("New PIN:")
            sim.tap("up", 4)
            shot(sim, "pin-set")
            sim.tap("ok")
            sim.enter_pin("207")
            sim.enter_pin("4207")
            sim.wait_screen("SETTINGS")
            shot(sim, "menu-settings")
            sim.select("Measurement")
            sim.select("Reset counters")
            sim.wait_screen("IRREVERSIBLE")
            shot(sim, "confirm-reset-counters")  # the whole warning first
            sim.tap("ok")
            sim.wait_screen("No (hold OK)")
            shot(sim, "confirm-reset-counters-choice")
            sim.tap("ok")  # No
            sim.wait_screen("MEASUREMENT")
            shot(sim, "menu-measurement")
            sim.tap("ok", ms=1000)
            sim.select("Device info")
            shot(sim, "device-info")
            sim.tap("ok")
            sim.select("Communication")
            sim.select("Pairing code")
            sim.wait_screen("PAIRING CODE")
            shot(sim, "pairing-code")  # a message wrapped on word boundaries
            sim.tap("ok")
            sim.tap("ok", ms=1000)
            sim.select("Security")
            shot(sim, "menu-security")
            sim.select("Module lock")
            sim.wait_screen("MODULE LOCK")
            shot(sim, "module-lock")
            assert sim.quit() == 0
        with Sim(os.path.join(d, "dev")) as sim:
            sim.cmd("press", "up")
            sim.cmd("press", "down")
            sim.wait_screen("Keep holding")
            shot(sim, "startup-pin-reset")
            sim.cmd("release", "up")
            sim.cmd("release", "down")
            sim.wait_screen("Aborted")
            sim.tap("ok")
            sim.wait_screen("POWER W")
            sim.tap("ok")
            sim.wait_screen("Enter PIN:")
            for _ in range(3):
                sim.enter_pin("1111")
                time.sleep(0.3)
            sim.wait_screen("PIN LOCKED")
            shot(sim, "pin-locked")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print("[screens] %d pictures in %s" % (len(shots), out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
