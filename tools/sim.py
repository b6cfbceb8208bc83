#!/usr/bin/env python3
"""Run the firmware in the simulator: the device image + host board.

    python3 tools/dev.py sim [--state DIR] [--profile NAME] [--control PORT]
                             [--headless] [--fault MODE] [--truth]
                             [--heap SIZE] [--mpy] [--dev]

By default the simulator runs the device image: MicroPython built 32-bit
with the firmware frozen in (tools/image.py, built on first use), with a GC
heap of DEVICE_HEAP, the budget the firmware is held to on the ESP32. Only
the board below the firmware differs from the device. --mpy runs the
precompiled .mpy deploy tree (tools/build.py --target sim) on the same
32-bit runtime and heap instead of the frozen copy. --dev runs the sources
on the fast 64-bit unix port from PyPI with a roomy heap, for quick edits:
not a model of the device's memory.

The display is drawn in the terminal, sized to it (128x33 for the pixels;
a smaller terminal such as 80x24 shows the display's 16x8 characters, and
one below 54x12 says what size is needed); w/s/enter (or the arrows) are
UP/DOWN/OK; q quits with a final counter save. --state DIR keeps the
simulated flash between runs (otherwise a fresh temporary directory is
used, so several instances can run side by side). A firmware-requested
reset (exit code 3) restarts it, as the device would reboot.
For the device image (not --mpy or --dev, which run a tree directly)
the launcher is the bootloader (tools/bootloader.py, docs/ota.md): the
first start flashes the built image into app slot ota_0 as a factory flash
does (again when the build changed and no update was installed; always with
--factory), and every start runs the image **from the slot** otadata picks,
after its check (SHA-256; with --boot-key KEY.pem the signature too, as
Secure Boot would). An unconfirmed new image that resets or crashes makes
the next start go back to the previous slot. --image PATH flashes that
build instead of tools/image.py's (test images: image.py build --out).
--service-pty PATH gives the simulator a USB port: PATH is a pseudo-terminal
that the REPL answers on only in service mode (exit code 4;
tools/servicepty.py), for --service-s seconds (default 600), then the
firmware restarts.
"""

import hashlib
import os
import subprocess
import tempfile
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.dirname(os.path.abspath(__file__))
# The 64-bit unix port from PyPI (in .venv): --dev and the MicroPython unit tests.
MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")
REBOOT = 3
# The device budget: the GC heap the firmware must work in with every
# service open (docs/benchmarks.md, "Device budget"). Everything that starts
# the simulator uses it; nothing raises it to pass.
DEVICE_HEAP = "128k"
DEV_HEAP = "512k"  # --dev only: 64-bit objects and source compilation
SERVICE = 4  # meter.service.EXIT_CODE
MPY_TREE = os.path.join(ROOT, "build", "sim")

# image: the frozen 32-bit image; mpy: a .mpy tree on that 32-bit runtime;
# dev: the sources on the 64-bit port; mpy64: a .mpy tree on the 64-bit
# port (benchmarks compare the three forms).
IMAGE, MPY, DEV, MPY64 = "image", "mpy", "dev", "mpy64"


def runtime_of(mpy=False, dev=False):
    if mpy and dev:
        return MPY64
    return DEV if dev else MPY if mpy else IMAGE


def image():
    """The 32-bit device image, built (or reused) by tools/image.py."""
    sys.path.insert(0, TOOLS)
    import image as imagetool

    return imagetool.build()


def firmware_path(runtime=IMAGE, tree=None):
    """MICROPYPATH for a runtime. `.frozen` is where the unix port keeps
    what is frozen in: asyncio, and in the image the whole firmware."""
    if runtime == IMAGE:
        return ".frozen"
    if runtime in (MPY, MPY64):
        # The tree first: its modules shadow the frozen copies.
        return os.path.join(tree or MPY_TREE, "lib") + ":.frozen"
    return ":".join([".frozen", os.path.join(ROOT, "build", "lib"),
                     os.path.join(ROOT, "firmware", "lib")])


def binary(runtime=IMAGE):
    return MICROPYTHON if runtime in (DEV, MPY64) else image()


def default_heap(runtime=IMAGE):
    return DEV_HEAP if runtime in (DEV, MPY64) else DEVICE_HEAP


def command(args, heap=None, runtime=IMAGE, script=None, tree=None):
    """argv of one simulator run. script: a wrapper file to run instead of
    the firmware's main (tests/mqtt_main.py)."""
    heap = heap or default_heap(runtime)
    argv = [binary(runtime), "-X", "heapsize=" + heap]
    if script:
        argv.append(script)
    elif runtime == IMAGE:
        # The frozen boot.py, then main.py, as the device runs them (boot.py
        # sets the collection threshold the heap is tuned for).
        argv += ["-c", "import boot, main"]
    else:
        argv.append(os.path.join(tree or MPY_TREE, "main.py") if runtime in (MPY, MPY64)
                    else os.path.join(ROOT, "firmware", "main.py"))
    return argv + list(args)


def env(runtime=IMAGE, tree=None):
    return dict(os.environ, MICROPYPATH=firmware_path(runtime, tree))


def _bootloader():
    sys.path.insert(0, TOOLS)
    import bootloader

    return bootloader


def flash_build(state, build=None, version=None, force=False):
    """The factory flash: the built image into ota_0 when no slot holds an
    image yet, and again when the build changed while no update was
    installed (a developer's USB flash); an installed update stays until
    `--factory` (force). version: for the slot record, by default the
    image's own meter.VERSION. Returns True when it flashed."""
    bl = _bootloader()
    build = build or image()
    if not force:
        factory_sha = None
        for i in (0, 1):
            try:
                info, payload = bl.check_slot(state, i)
            except bl.BootError:
                continue
            if info["key_id"] != bl.FACTORY_KEY:
                return False  # an installed update: the device's own business now
            if i == 0:
                factory_sha = hashlib.sha256(payload).hexdigest()
        if factory_sha == _sha256(build):
            return False
    return bl.factory_install(state, build, version or _version_of(build), force=True)


def _version_of(build):
    """meter.VERSION as frozen into the image (test images carry their
    own), else the source tree's."""
    try:
        out = subprocess.run([build, "-c", "import meter; print(meter.VERSION)"],
                             env=env(IMAGE), capture_output=True, text=True,
                             timeout=10).stdout.strip()
        _bootloader().otafmt.version_code(out)
        return out
    except Exception:  # not a MicroPython image (a test's stand-in): the sources'
        from fwimport import ROOT as _  # noqa: F401  (meter importable)
        import meter

        return meter.VERSION


_SHA = {}  # (path, mtime, size) -> sha256: a test starts the simulator hundreds of times


def _sha256(path):
    st = os.stat(path)
    k = (path, st.st_mtime_ns, st.st_size)
    if k not in _SHA:
        with open(path, "rb") as f:
            _SHA[k] = hashlib.sha256(f.read()).hexdigest()
    return _SHA[k]


def boot_slot(state, keys=None, log=None):
    """The bootloader's choice (tools/bootloader.py): the executable copied
    from the slot that boots, after otadata's rollback rule and the image
    check. keys: {id: modulus} the bootloader trusts (as Secure Boot's
    eFuse key digest); without them only the SHA-256 is checked."""
    return _bootloader().boot(state, keys=keys, log=log)


def pending(state):
    """True when the image that ran last has not confirmed itself: a crash
    of it is a reset after which the bootloader goes back."""
    bl = _bootloader()
    od = bl._otadata(state)
    try:
        with open(os.path.join(state, bl.RUNNING_FILE)) as f:
            slot = int(f.read())
    except (OSError, ValueError):
        return False
    return od.slot_state(slot) == bl.otadata.PENDING_VERIFY


def trusted(key_paths):
    """{1: modulus, 2: ...} of PEM keys (tools/sign.py), for boot_slot."""
    if not key_paths:
        return None
    sys.path.insert(0, TOOLS)
    import sign

    return {i + 1: sign.modulus(k) for i, k in enumerate(key_paths)}


def build_mpy_tree(out=MPY_TREE):
    """Build the simulator's .mpy deploy tree; returns (path, modules)."""
    sys.path.insert(0, TOOLS)
    import build

    return build.build("sim", out)


def _take(argv, opt, default=None):
    """Remove `opt VALUE` from argv (a launcher option); returns VALUE."""
    if opt not in argv:
        return default
    i = argv.index(opt)
    v = argv[i + 1]
    del argv[i:i + 2]
    return v


def main(argv):
    if "-h" in argv or "--help" in argv:
        print(__doc__)
        return 0
    heap = _take(argv, "--heap")
    build = _take(argv, "--image")
    keys = []
    while "--boot-key" in argv:
        keys.append(_take(argv, "--boot-key"))
    keys = trusted(keys)
    factory = "--factory" in argv
    if factory:
        argv.remove("--factory")
    pty_path = _take(argv, "--service-pty")
    service_s = int(_take(argv, "--service-s", 600))
    flags = {f: f in argv for f in ("--mpy", "--dev")}
    for f, on in flags.items():
        if on:
            argv.remove(f)
    runtime = runtime_of(flags["--mpy"], flags["--dev"])
    if "--headless" not in argv and "--term" not in argv and sys.stdout.isatty():
        # The firmware cannot ask the terminal its size: it is told, and
        # draws what fits (meter/board/hostterm.py).
        size = os.get_terminal_size(sys.stdout.fileno())
        argv += ["--term", "%dx%d" % (size.columns, size.lines)]
    if runtime == MPY:
        build_mpy_tree()
    state = _take(list(argv), "--state")
    if runtime == IMAGE and state is None:  # the bootloader needs the flash's place
        state = tempfile.mkdtemp(prefix="meter-sim-")
        argv += ["--state", state]
    cmd = command(argv, heap, runtime)
    if runtime == IMAGE:
        os.makedirs(state, exist_ok=True)
        flash_build(state, build, force=factory)
    port = None
    if pty_path:
        import servicepty

        port = servicepty.ServicePty(pty_path)
    try:
        while True:
            if runtime == IMAGE:  # the bootloader: run what the slot holds
                try:
                    cmd[0] = boot_slot(state, keys)
                except _bootloader().BootError as e:  # as a device that stays dark
                    print("[sim] %s (--factory flashes the build again)" % e, file=sys.stderr)
                    return 1
            rc = subprocess.call(cmd, env=env(runtime))
            if rc == SERVICE and port:
                print("[sim] service mode: REPL on " + pty_path, file=sys.stderr)
                repl = [cmd[0], "-X", "heapsize=" + (heap or default_heap(runtime)), "-i",
                        servicepty.SCRIPT, str(service_s)] + argv
                port.serve(repl, env(runtime), service_s)
            elif rc not in (REBOOT, SERVICE):  # service mode without a port: nobody comes
                if not (runtime == IMAGE and rc and pending(state)):
                    return rc
                # A new image crashed before confirming itself: on the device
                # a crash is a reset, and the bootloader goes back.
                print("[sim] unconfirmed firmware crashed (exit %d): reset" % rc, file=sys.stderr)
            print("[sim] firmware reset: restarting", file=sys.stderr)
    finally:
        if port:
            port.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
