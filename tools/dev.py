#!/usr/bin/env python3
"""One entry point for developers and CI: set the machine up, then act.

    python3 tools/dev.py sim [simulator options]   # run the simulator
    python3 tools/dev.py test [pytest options]     # run the whole test suite
    python3 tools/dev.py bench [bench options]     # run the benchmarks

Every subcommand first makes sure that what it needs is installed: a
virtual environment in .venv with the pinned host tools from pyproject.toml
(only the `sim` group for the simulator, every group for tests and
benchmarks), the pinned device libraries in
build/lib (tools/deps.py), the Debian packages that build the device image
(a 32-bit C compiler), the device image itself (tools/image.py: MicroPython
built 32-bit with the firmware frozen in, what the simulator runs), and for
the tests the Debian packages they drive. It is idempotent and quick when
everything is already there.
"""

import os
import subprocess
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv")
VPY = os.path.join(VENV, "bin", "python")
STAMP = os.path.join(VENV, ".dev-deps")

# Debian packages the tests use as real peers: openssl makes the test PKI,
# mosquitto is the MQTT broker, chromium the browser Playwright drives.
# tmux is the 80x24 terminal of tests/test_terminal.py.
APT_FOR_TESTS = ["openssl", "mosquitto", "chromium", "tmux"]
# The device image is MicroPython built 32-bit (tools/image.py), its
# source patched first (firmware/boards/patches).
APT_FOR_IMAGE = ["make", "gcc-multilib", "patch"]


def log(msg):
    print("[dev] " + msg, file=sys.stderr, flush=True)


# pyproject.toml's groups each command needs: the simulator starts without
# waiting for the test tools (Playwright, pytest) to install.
GROUPS = {"sim": ("sim",), "test": ("sim", "tools", "test"), "bench": ("sim", "tools", "test")}


def requirements(groups):
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        deps = tomllib.load(f)["project"]["optional-dependencies"]
    return [r for g in groups for r in deps[g]]


def ensure_venv(groups):
    reqs = requirements(groups)
    have = set(open(STAMP).read().split("\n")) if os.path.exists(STAMP) else set()
    missing = [r for r in reqs if r not in have]
    if not missing:
        return
    if not os.path.exists(VPY):
        log("creating .venv")
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    log("installing host tools (%s): %s" % ("+".join(groups), ", ".join(missing)))
    subprocess.check_call([VPY, "-m", "pip", "install", "-q", *missing])
    # what is installed now: an older pin of the same name is replaced
    names = {_name(r) for r in missing}
    keep = [r for r in have if r and _name(r) not in names]
    with open(STAMP, "w") as f:
        f.write("\n".join(sorted(keep + missing)))


def _name(req):
    return req.split("==")[0].strip().lower()


def ensure_apt(pkgs):
    def installed(p):
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p],
                           capture_output=True, text=True)
        return r.returncode == 0 and "install ok installed" in r.stdout

    missing = [p for p in pkgs if not installed(p)]
    if not missing:
        return
    log("installing Debian packages: " + " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.check_call(["apt-get", "update", "-q"], env=env)
    subprocess.check_call(["apt-get", "install", "-y", "-q", *missing], env=env)


def ensure_device_libs():
    subprocess.check_call([VPY, os.path.join(ROOT, "tools", "deps.py"), "install"])


def ensure_image():
    ensure_apt(APT_FOR_IMAGE)
    subprocess.check_call([VPY, os.path.join(ROOT, "tools", "image.py"), "build"])


def main(argv):
    if not argv or argv[0] not in ("sim", "test", "bench"):
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    ensure_venv(GROUPS[cmd])
    ensure_device_libs()
    if "--dev" not in rest:
        ensure_image()
    if cmd == "test":
        ensure_apt(APT_FOR_TESTS)
        whole = not rest  # the README's command: the whole suite, in phases
        if not any(a == "-n" or a.startswith("-n") or a.startswith("--numprocesses")
                   for a in rest):
            # Two workers, a test file each at a time: most tests wait on a
            # simulator or a browser, so two halve the suite on two cores.
            rest = ["-n", "2", "--dist", "loadfile", *rest]
        if not whole:
            return subprocess.call([VPY, "-m", "pytest", *rest], cwd=ROOT)
        # The whole suite in two phases (docs/testing.md): the tests that load
        # the machine (floods, hostile clients, power cuts) among themselves,
        # then the rest, whose timing they would otherwise disturb; the long
        # light ones (minutes of one simulator) in a lane beside both.
        lane_log = os.path.join(ROOT, "tests", ".tmp", "long-lane.log")
        os.makedirs(os.path.dirname(lane_log), exist_ok=True)
        with open(lane_log, "w") as out:
            lane = subprocess.Popen([VPY, "-m", "pytest", "-m", "long", "-p", "no:xdist",
                                     "--durations=5"], cwd=ROOT, stdout=out,
                                    stderr=subprocess.STDOUT)
        rc = 0
        for phase in ("heavy and not long", "not heavy and not long"):
            print("[dev] test phase: %s" % phase, flush=True)
            r = subprocess.call([VPY, "-m", "pytest", "-m", phase, "--durations=12", *rest],
                                cwd=ROOT)
            rc = rc or r
        print("[dev] test lane: long (waiting for it)", flush=True)
        r = lane.wait()
        with open(lane_log) as f:
            sys.stdout.write(f.read())
        return rc or r
    if cmd == "bench":
        return subprocess.call([VPY, os.path.join(ROOT, "tools", "bench.py"), *rest], cwd=ROOT)
    return subprocess.call([VPY, os.path.join(ROOT, "tools", "sim.py"), *rest], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
