#!/usr/bin/env python3
"""Build the device image's host twin: MicroPython's unix port, 32-bit,
with the firmware frozen in.

    .venv/bin/python tools/image.py build     # build (or reuse) build/image/micropython
    .venv/bin/python tools/image.py path      # build if needed, print the binary's path
    .venv/bin/python tools/image.py esp32     # print the ESP32 build command (needs ESP-IDF)
    .venv/bin/python tools/image.py build --out PATH [--version X.Y.Z] [--secver N]
                                     [--trust KEY.pem]... [--broken crash|selftest]

--out builds a test image (tests/test_ota_sim.py, tools/bench.py): the same
firmware with another version, the public keys of KEY.pem trusted (ids 1,
2, ... in the order given) instead of meter/otakeys.py's, and, with
--broken, a start that crashes (`crash`) or a self-test that fails within
a few seconds (`selftest`), to show the rollback. It is built from a copy
of the host image's build tree, so only the frozen modules and the link
are redone (seconds); the result is cached by its inputs.

Why 32-bit and frozen: the ESP32 is a 32-bit machine, so a 32-bit build has
its object and GC block sizes, and frozen bytecode (code, constants, names)
stays in flash instead of the GC heap. A 64-bit build running .py or .mpy
files needs about three times the heap for the same firmware
(docs/benchmarks.md). The simulator and every test that starts it run this
image at the device budget (tools/sim.py DEVICE_HEAP).

The MicroPython source is pinned by version and sha256 (MP_*). It comes
from ../shared/micropython/ when that is there, beside the checkout or
beside the repository a clone was made from (no network needed); on a
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
import re
import shutil
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MP_VERSION = "1.28.0"
MP_TARBALL = "micropython-%s-src.tar.gz" % MP_VERSION
MP_SHA256 = "2f1e2992dfe87ddfaed631fa1d0fa813d1e55794f4aea1df6ae32ff7d5ea50ea"
MP_GIT = "https://github.com/micropython/micropython"


def _shared_dir():
    """../shared/micropython beside this checkout or, failing that, beside
    the repository it was cloned from (and so on, a few clones back): a
    clean clone made elsewhere (say in a temporary directory, as CI may)
    still finds the pinned source without a network."""
    here = os.path.join(os.path.dirname(ROOT), "shared", "micropython")
    repo = ROOT
    for _ in range(4):
        there = os.path.join(os.path.dirname(repo), "shared", "micropython")
        if os.path.isdir(there):
            return there
        try:
            origin = subprocess.run(["git", "-C", repo, "remote", "get-url", "origin"],
                                    capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            break
        if not origin or not os.path.isdir(origin):  # not a local clone
            break
        repo = os.path.abspath(origin.rstrip("/"))
    return here


SHARED = _shared_dir()
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


PATCHES = os.path.join(BOARDS, "patches")


def patches():
    """Our patches to the pinned MicroPython source, in the order applied
    (firmware/boards/patches/*.patch; the ESP32 board's build applies the
    same ones): [(name, path)]."""
    if not os.path.isdir(PATCHES):
        return []
    return [(n, os.path.join(PATCHES, n)) for n in sorted(os.listdir(PATCHES))
            if n.endswith(".patch")]


def _patches_digest():
    h = hashlib.sha256()
    for n, path in patches():
        h.update(n.encode() + b"\0" + open(path, "rb").read())
    return h.hexdigest()


def source():
    """The pinned MicroPython tree, unpacked in build/ with our patches
    applied (again when the patches change)."""
    marker = os.path.join(SRC, ".meter-source")
    want = _patches_digest()
    try:
        with open(marker) as f:
            if f.read().split()[-1] == "patches:" + want:
                return SRC
    except (OSError, IndexError):
        pass
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
    for name, path in patches():
        log("patching the MicroPython source: " + name)
        # (GNU patch, not git apply: build/ lies inside this repository,
        # where git apply would skip paths outside the current directory)
        subprocess.check_call(["patch", "-p1", "--forward", "--batch", "--quiet", "-d", top,
                               "-i", path])
    shutil.rmtree(SRC, ignore_errors=True)
    os.rename(top, SRC)
    shutil.rmtree(tmp, ignore_errors=True)
    with open(marker, "w") as f:
        f.write(how + " patches:" + want + "\n")
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


BROKEN = ("crash", "selftest")
# --broken selftest: a check that never passes, and a short limit so that
# the rollback comes in seconds (the product waits LIMIT_MS = 120 s).
_SELFTEST_LIMIT = ("LIMIT_MS = const(120000)", "LIMIT_MS = const(4000)")
_SELFTEST_FAIL = ("    return out\n",
                  "    out.append((\"broken\", lambda: \"test image built to fail its self-test\"))\n"
                  "    return out\n")


def _overlay(d, version, secver, moduli, broken):
    """Files replacing the firmware's in a test image (manifest overlay)."""
    lib = os.path.join(ROOT, "firmware", "lib", "meter")
    os.makedirs(os.path.join(d, "meter"), exist_ok=True)
    with open(os.path.join(lib, "__init__.py")) as f:
        init = f.read()
    init = re.sub(r'(?m)^VERSION = ".*"$', 'VERSION = "%s"' % version, init)
    if secver is not None:
        init = re.sub(r"(?m)^SECURITY_VERSION = \d+$", "SECURITY_VERSION = %d" % secver, init)
    _write(os.path.join(d, "meter", "__init__.py"), init)
    _write(os.path.join(d, "meter", "otakeys.py"), "# test image: throwaway keys\nKEYS = {\n%s}\n" % "".join(
        "    %d: %r,\n" % (i + 1, n) for i, n in enumerate(moduli)))
    if broken == "crash":
        _write(os.path.join(d, "main.py"),
               "# test image built to crash on start\nraise RuntimeError(\"broken test image\")\n")
    elif broken == "selftest":
        with open(os.path.join(lib, "selftest.py")) as f:
            src = f.read()
        for old, new in (_SELFTEST_LIMIT, _SELFTEST_FAIL):
            if old not in src:
                raise ImageError("meter/selftest.py changed: %r not found for --broken selftest" % old)
            src = src.replace(old, new, 1)
        _write(os.path.join(d, "meter", "selftest.py"), src)


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def variant(out, version=None, secver=None, trust=(), broken=None):
    """Build a test image (see the module doc) and copy it to out."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import sign

    if broken not in (None,) + BROKEN:
        raise ImageError("--broken must be one of %s" % ", ".join(BROKEN))
    base = build()
    from fwimport import ROOT as _r  # noqa: F401  (meter importable)
    import meter

    version = version or meter.VERSION
    moduli = [sign.modulus(k) for k in trust]
    key = hashlib.sha256(json.dumps([digest(), version, secver, [n.hex() for n in moduli],
                                     broken]).encode()).hexdigest()[:16]
    vdir = os.path.join(OUT, "variants", key)
    exe = os.path.join(vdir, "micropython")
    with open(os.path.join(OUT, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.access(exe, os.X_OK):
            shutil.rmtree(vdir, ignore_errors=True)
            _overlay(os.path.join(vdir, "overlay"), version, secver, moduli, broken)
            manifest = os.path.join(vdir, "manifest.py")
            _write(manifest, 'include("$(PORT_DIR)/variants/standard/manifest.py")\n'
                   'include(%r, host=True, overlay=%r)\n' % (
                       os.path.join(BOARDS, "manifest.py"), os.path.join(vdir, "overlay")))
            unix = os.path.join(SRC, "ports", "unix")
            bdir = "build-var-" + key
            # A copy of the base build tree (times kept): make redoes only
            # the frozen modules and the link.
            shutil.rmtree(os.path.join(unix, bdir), ignore_errors=True)
            subprocess.check_call(["cp", "-a", os.path.join(unix, "build-meter32"),
                                   os.path.join(unix, bdir)])
            flags = [f for f in MAKE_FLAGS if not f.startswith("BUILD=")] + ["BUILD=" + bdir]
            try:
                log("building test image %s (%s%s)" % (key, version,
                                                      ", broken " + broken if broken else ""))
                _make([unix, "-j%d" % (os.cpu_count() or 2), *flags,
                       "FROZEN_MANIFEST=" + manifest])
                shutil.copy2(os.path.join(unix, bdir, "micropython"), exe + ".tmp")
                os.replace(exe + ".tmp", exe)
            finally:
                shutil.rmtree(os.path.join(unix, bdir), ignore_errors=True)
        _prune(os.path.join(OUT, "variants"), keep=vdir)
    if out:
        shutil.copy2(exe, out + ".tmp")
        os.replace(out + ".tmp", out)
    return exe if not out else out, base


KEEP_VARIANTS = 12  # test images are made with throwaway keys: rarely reused


def _prune(d, keep):
    """Drop the oldest cached test images beyond KEEP_VARIANTS."""
    dirs = sorted((os.path.getmtime(os.path.join(d, x)), os.path.join(d, x)) for x in os.listdir(d))
    for _, path in dirs[:-KEEP_VARIANTS]:
        if path != keep:
            shutil.rmtree(path, ignore_errors=True)


def _make(args):
    r = subprocess.run(["make", "-C", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if r.returncode:
        raise ImageError("make %s failed:\n%s" % (" ".join(args), r.stdout[-6000:]))


def esp32_command():
    """The device build (needs ESP-IDF v5.x, not installable here)."""
    return ("make -C %s BOARD_DIR=%s" % (os.path.join(SRC, "ports", "esp32"), ESP32_BOARD))


def _options(args):
    o = {"trust": []}
    i = 0
    while i < len(args):
        a = args[i]
        if a not in ("--out", "--version", "--secver", "--trust", "--broken") or i + 1 >= len(args):
            raise ImageError("unknown or incomplete option " + a)
        v = args[i + 1]
        if a == "--trust":
            o["trust"].append(v)
        else:
            o[a[2:]] = int(v) if a == "--secver" else v
        i += 2
    return o


def main(argv):
    cmd = argv[0] if argv else "build"
    try:
        if cmd == "build" and "--out" in argv:
            opts = _options(argv[1:])
            variant(opts["out"], opts.get("version"), opts.get("secver"), opts["trust"],
                    opts.get("broken"))
            print(opts["out"])
            return 0
        if cmd in ("build", "path"):
            path = build(force="--force" in argv)
            if cmd == "path":
                print(path)
            return 0
        if cmd == "esp32":
            print(esp32_command())
            return 0
    except Exception as e:  # ImageError, sign.SignError (a bad --trust key)
        if not isinstance(e, ImageError) and type(e).__name__ != "SignError":
            raise
        print("image: %s" % e, file=sys.stderr)
        return 1
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
