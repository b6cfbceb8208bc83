#!/usr/bin/env python3
"""Build the device image's host twin: MicroPython's unix port, 32-bit,
with the firmware frozen in.

    .venv/bin/python tools/image.py build     # build (or reuse) build/image/micropython
    .venv/bin/python tools/image.py path      # build if needed, print the binary's path
    .venv/bin/python tools/image.py esp32     # print the ESP32 build command (needs ESP-IDF)

Why 32-bit and frozen: the ESP32 is a 32-bit machine, so a 32-bit build has
its object and GC block sizes, and frozen bytecode (code, constants, names)
stays in flash instead of the GC heap. A 64-bit build running .py or .mpy
files needs about three times the heap for the same firmware
(docs/benchmarks.md). The simulator and every test that starts it run this
image at the device budget (tools/sim.py DEVICE_HEAP).

The MicroPython source is pinned by version and sha256 (MP_*). It comes
from ../shared/micropython/ when that is there (no network needed); on a
machine with network access the same version is cloned by tag instead. Both
the device board (firmware/boards/METER_ESP32) and this host image freeze
the one firmware manifest (firmware/boards/manifest.py). The result is
reused until an input changes (firmware, pinned libraries, manifests,
build flags): the check is a hash, so it is quick.
"""

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MP_VERSION = "1.28.0"
MP_TARBALL = "micropython-%s-src.tar.gz" % MP_VERSION
MP_SHA256 = "2f1e2992dfe87ddfaed631fa1d0fa813d1e55794f4aea1df6ae32ff7d5ea50ea"
MP_GIT = "https://github.com/micropython/micropython"
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "micropython")
BUILD = os.path.join(ROOT, "build")
SRC = os.path.join(BUILD, "micropython-" + MP_VERSION)
OUT = os.path.join(BUILD, "image")
IMAGE = os.path.join(OUT, "micropython")
STAMP = os.path.join(OUT, "stamp.json")
BOARDS = os.path.join(ROOT, "firmware", "boards")
HOST_MANIFEST = os.path.join(BOARDS, "host", "manifest.py")
ESP32_BOARD = os.path.join(BOARDS, "METER_ESP32")
# 32-bit like the ESP32. No FFI (it needs a 32-bit libffi) and no btree (its
# source is not in the pinned tree): the firmware uses neither.
MAKE_FLAGS = ["VARIANT=standard", "BUILD=build-meter32", "MICROPY_FORCE_32BIT=1",
              "MICROPY_PY_FFI=0", "MICROPY_PY_BTREE=0"]


class ImageError(Exception):
    pass


def log(msg):
    print("[image] " + msg, file=sys.stderr, flush=True)


def _sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def source():
    """The pinned MicroPython tree, unpacked in build/ (once)."""
    marker = os.path.join(SRC, ".meter-source")
    if os.path.exists(marker):
        return SRC
    tarball = os.path.join(SHARED, MP_TARBALL)
    tmp = SRC + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if os.path.exists(tarball):
        got = _sha256_file(tarball)
        if got != MP_SHA256:
            raise ImageError("%s: sha256 %s, pinned %s: refusing it" % (tarball, got, MP_SHA256))
        log("unpacking " + tarball)
        with tarfile.open(tarball) as t:
            t.extractall(tmp, filter="data")
        top = os.path.join(tmp, "micropython-" + MP_VERSION)
        how = "sha256:" + MP_SHA256
    else:
        # A machine with network access: the release tag and its submodules.
        log("%s not found: cloning v%s" % (tarball, MP_VERSION))
        top = tmp
        subprocess.check_call(["git", "clone", "-q", "--depth", "1", "--branch",
                               "v" + MP_VERSION, MP_GIT, top])
        subprocess.check_call(["make", "-C", os.path.join(top, "ports", "unix"), "submodules"])
        how = "git:v" + MP_VERSION
    shutil.rmtree(SRC, ignore_errors=True)
    os.rename(top, SRC)
    shutil.rmtree(tmp, ignore_errors=True)
    with open(marker, "w") as f:
        f.write(how + "\n")
    return SRC


def _inputs():
    """Every file the frozen image depends on, sorted."""
    files = [os.path.abspath(__file__), os.path.join(ROOT, "device-libs.toml")]
    for base in (BOARDS, os.path.join(ROOT, "firmware"), os.path.join(BUILD, "lib")):
        for d, dirs, names in os.walk(base):
            dirs[:] = sorted(x for x in dirs if x != "__pycache__")
            files += [os.path.join(d, n) for n in sorted(names) if not n.endswith(".pyc")]
    return sorted(set(files))


def digest():
    h = hashlib.sha256(" ".join(MAKE_FLAGS + [MP_SHA256]).encode())
    for path in _inputs():
        h.update(os.path.relpath(path, ROOT).encode() + b"\0")
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def _current(want):
    try:
        with open(STAMP) as f:
            return json.load(f).get("digest") == want and os.access(IMAGE, os.X_OK)
    except (OSError, ValueError):
        return False


def build(force=False):
    """Build the image unless it is current; returns its path. Safe to call
    from several processes at once (a file lock: one builds, the others
    wait and reuse it)."""
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        want = digest()
        if not force and _current(want):
            return IMAGE
        src = source()
        jobs = "-j%d" % (os.cpu_count() or 2)
        log("building mpy-cross")
        _make([os.path.join(src, "mpy-cross"), jobs])
        log("building the 32-bit unix image with the firmware frozen in")
        _make([os.path.join(src, "ports", "unix"), jobs, *MAKE_FLAGS,
               "FROZEN_MANIFEST=" + HOST_MANIFEST])
        built = os.path.join(src, "ports", "unix", "build-meter32", "micropython")
        tmp = IMAGE + ".tmp"
        shutil.copy2(built, tmp)
        os.replace(tmp, IMAGE)
        with open(STAMP, "w") as f:
            json.dump({"digest": want, "micropython": MP_VERSION, "flags": MAKE_FLAGS}, f)
        log("built " + IMAGE)
        return IMAGE


def _make(args):
    r = subprocess.run(["make", "-C", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if r.returncode:
        raise ImageError("make %s failed:\n%s" % (" ".join(args), r.stdout[-6000:]))


def esp32_command():
    """The device build (needs ESP-IDF v5.x, not installable here)."""
    return ("make -C %s BOARD_DIR=%s" % (os.path.join(SRC, "ports", "esp32"), ESP32_BOARD))


def main(argv):
    cmd = argv[0] if argv else "build"
    try:
        if cmd in ("build", "path"):
            path = build(force="--force" in argv)
            if cmd == "path":
                print(path)
            return 0
        if cmd == "esp32":
            print(esp32_command())
            return 0
    except ImageError as e:
        print("image: %s" % e, file=sys.stderr)
        return 1
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
