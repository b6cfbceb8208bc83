#!/usr/bin/env python3
"""Run the firmware in the simulator: the MicroPython unix port + host board.

    python3 tools/dev.py sim [--state DIR] [--profile NAME] [--control PORT]
                             [--headless] [--fault MODE] [--truth]
                             [--heap SIZE]

The firmware is the same firmware/main.py the device runs; only the board
below it differs. The display is drawn in the terminal; w/s/enter (or the
arrows) are UP/DOWN/OK; q quits with a final counter save. --state DIR keeps
the simulated flash between runs (otherwise a fresh temporary directory is
used, so several instances can run side by side). A firmware-requested reset
(exit code 3) restarts it, as the device would reboot.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")
REBOOT = 3
DEFAULT_HEAP = "512k"


def firmware_path():
    # .frozen first: the unix port's asyncio is frozen into the binary.
    return ":".join([".frozen", os.path.join(ROOT, "build", "lib"),
                     os.path.join(ROOT, "firmware", "lib"), os.path.join(ROOT, "firmware")])


def command(args, heap=DEFAULT_HEAP):
    return [MICROPYTHON, "-X", "heapsize=" + heap, os.path.join(ROOT, "firmware", "main.py")] + args


def main(argv):
    heap = DEFAULT_HEAP
    if "--heap" in argv:
        i = argv.index("--heap")
        heap = argv[i + 1]
        del argv[i:i + 2]
    if "-h" in argv or "--help" in argv:
        print(__doc__)
        return 0
    env = dict(os.environ, MICROPYPATH=firmware_path())
    while True:
        rc = subprocess.call(command(argv, heap), env=env)
        if rc != REBOOT:
            return rc
        print("[sim] firmware reset: restarting", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
