#!/usr/bin/env python3
"""Run the firmware in the simulator: the MicroPython unix port + host board.

    python3 tools/dev.py sim [--state DIR] [--profile NAME] [--control PORT]
                             [--headless] [--fault MODE] [--truth]
                             [--heap SIZE] [--mpy]

The firmware is the same firmware/main.py the device runs; only the board
below it differs. The display is drawn in the terminal; w/s/enter (or the
arrows) are UP/DOWN/OK; q quits with a final counter save. --state DIR keeps
the simulated flash between runs (otherwise a fresh temporary directory is
used, so several instances can run side by side). --mpy runs the
precompiled .mpy deploy tree (tools/build.py --target sim) instead of the
sources. A firmware-requested reset (exit code 3) restarts it, as the device
would reboot. --service-pty PATH gives the simulator a USB port: PATH is a
pseudo-terminal that the REPL answers on only in service mode (exit code
4; tools/servicepty.py), for --service-s seconds (default 600), then the
firmware restarts.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")
REBOOT = 3
SERVICE = 4  # meter.service.EXIT_CODE
DEFAULT_HEAP = "512k"


MPY_TREE = os.path.join(ROOT, "build", "sim")


def firmware_path(mpy=False):
    """MICROPYPATH for the sources, or for a .mpy tree (mpy=True: the
    default tree; a string: that tree)."""
    # .frozen first: the unix port's asyncio is frozen into the binary.
    if mpy:
        return ".frozen:" + os.path.join(MPY_TREE if mpy is True else mpy, "lib")
    return ":".join([".frozen", os.path.join(ROOT, "build", "lib"),
                     os.path.join(ROOT, "firmware", "lib")])


def command(args, heap=DEFAULT_HEAP, mpy=False):
    tree = (MPY_TREE if mpy is True else mpy) if mpy else os.path.join(ROOT, "firmware")
    main = os.path.join(tree, "main.py")
    return [MICROPYTHON, "-X", "heapsize=" + heap, main] + args


def build_mpy_tree(out=MPY_TREE):
    """Build the simulator's .mpy deploy tree; returns (path, modules)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import build

    return build.build("sim", out)


def build_mpy():
    build_mpy_tree()


def _take(argv, opt, default=None):
    """Remove `opt VALUE` from argv (a launcher option); returns VALUE."""
    if opt not in argv:
        return default
    i = argv.index(opt)
    v = argv[i + 1]
    del argv[i:i + 2]
    return v


def main(argv):
    heap = _take(argv, "--heap", DEFAULT_HEAP)
    pty_path = _take(argv, "--service-pty")
    service_s = int(_take(argv, "--service-s", 600))
    mpy = "--mpy" in argv
    if mpy:
        argv.remove("--mpy")
        build_mpy()
    if "-h" in argv or "--help" in argv:
        print(__doc__)
        return 0
    env = dict(os.environ, MICROPYPATH=firmware_path(mpy))
    port = None
    if pty_path:
        import servicepty

        port = servicepty.ServicePty(pty_path)
    try:
        while True:
            rc = subprocess.call(command(argv, heap, mpy), env=env)
            if rc == SERVICE and port:
                print("[sim] service mode: REPL on " + pty_path, file=sys.stderr)
                port.serve([MICROPYTHON, "-X", "heapsize=" + heap, "-i", servicepty.SCRIPT,
                            str(service_s)] + argv, env, service_s)
            elif rc not in (REBOOT, SERVICE):  # service mode without a port: nobody comes
                return rc
            print("[sim] firmware reset: restarting", file=sys.stderr)
    finally:
        if port:
            port.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
