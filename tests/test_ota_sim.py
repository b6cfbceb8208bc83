"""OTA in the simulator: the firmware's updater installs N+1 into the other
app slot, the launcher's bootloader (tools/sim.py, tools/bootloader.py)
starts it from there, and a broken N+1 rolls back to N.

The images are test builds of the device image (tools/image.py build
--out): N = 1.0.0 and N+1 = 1.1.0, both trusting a throwaway key made here;
a broken 1.1.0 that crashes on start and one whose self-test fails. The
update file goes in through the control socket's `ota-install PATH`, which
streams it into meter/ota.py in 1 KiB chunks while the firmware runs.
"""

import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time

import pytest

import upy
from simctl import Sim, configure, probe, simtool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import image as imagetool  # noqa: E402
import sign  # noqa: E402

N, N1 = "1.0.0", "1.1.0"


class Images:
    pass


@pytest.fixture(scope="module")
def imgs(tmp_path_factory):
    d = tmp_path_factory.mktemp("ota")
    i = Images()
    i.k1, i.k2 = str(d / "k1.pem"), str(d / "k2.pem")  # throwaway, deleted with d
    sign.keygen(i.k1)
    sign.keygen(i.k2)
    for name, version, broken in (("n", N, None), ("n1", N1, None),
                                  ("crash", N1, "crash"), ("selftest", N1, "selftest")):
        setattr(i, name, imagetool.variant(str(d / name), version, trust=[i.k1],
                                           broken=broken)[0])
    i.d = d
    i.update = signed(i, i.n1, "good.bin")
    return i


def signed(imgs, img, name, key=None, version=N1):
    out = str(imgs.d / name)
    sign.sign(key or imgs.k1, img, out, version, "host")
    return out


def start_n(tmp_path, imgs, *args):
    """A simulator factory-flashed with N; the bootloader checks signatures
    with the test key. Counters are saved at every Wh (power cuts land in
    counter writes too)."""
    state = str(tmp_path / "dev")
    os.makedirs(state, exist_ok=True)
    configure(state, **{"energy.save_min_ms": 0})
    return Sim(state, *args, image=imgs.n, boot_keys=[imgs.k1], profile="full")


class Watch(threading.Thread):
    """`ota` and `screen` on a second control connection, over and over,
    while the first one streams an update in: what a person (and the web
    page, later) sees meanwhile."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.rfile = self.sock.makefile("rb")
        self.progress = []
        self.status_lines = set()
        self.screens = []
        self.stop = threading.Event()

    def _cmd(self, c):
        self.sock.sendall(c + b"\n")
        return json.loads(self.rfile.readline())

    def run(self):
        try:
            while not self.stop.is_set():
                self.progress.append(self._cmd(b"ota")["progress"])
                lines = self._cmd(b"screen")["lines"]
                self.status_lines.add(lines[-1].strip())
                self.screens.append([x.strip() for x in lines])
        except (OSError, ValueError):
            pass  # the firmware reset after the update
        finally:
            self.sock.close()


def install(sim, path):
    """The file through the firmware's updater; the firmware then resets."""
    r = sim.cmd("ota-install", path)
    assert r.get("ok"), "update refused: %r\n%s" % (r, sim.output())
    assert sim.wait_exit(30) == 3, "the firmware did not reset after the update"
    return r["version"]


def core(o):
    """What `ota` says of the slots and the running update (it says more:
    the last result, the other slot, whether an update may start)."""
    return {k: o.get(k) for k in ("version", "rollback", "slot", "state", "progress")}


def flash_files(state):
    return {n: hashlib.sha256(open(os.path.join(state, n + ".bin"), "rb").read()).hexdigest()
            for n in ("otadata", "ota_0", "ota_1")}


def test_update_installs_n_plus_1_which_boots_from_its_slot_and_confirms(tmp_path, imgs):
    # Slow flash (200 µs a program): the update takes seconds, as on a device,
    # so that its progress can be watched.
    with start_n(tmp_path, imgs, "--flash-delay-us", "200") as sim:
        assert core(sim.cmd("ota")) == {"version": N, "rollback": None, "slot": "ota_0", "state": None,
                                  "progress": None}
        sim.wait_for(lambda: sim.state_()["counters_uwh"]["imp_t"] > 0, 15, "energy")
        before = sim.state_()["counters_uwh"]
        w = Watch(sim.port)
        w.start()
        assert install(sim, imgs.update) == N1
        w.stop.set()
        w.join(10)
        seen = [p for p in w.progress if p is not None]
        assert seen == sorted(seen) and any(0 < p < 100 for p in seen), w.progress
        assert any(line.startswith("UPDATING ") and line.endswith("%")
                   for line in w.status_lines), w.status_lines
        # the update screen over the pages: versions, a progress bar, the warning
        upd = [x for x in w.screens if x[0] == "FIRMWARE UPDATE"]
        assert any(x[1] == "%s > %s" % (N, N1) and x[2].startswith("[") and "Do not remove" in x
                   for x in upd), w.screens[-3:]
        sim.start()
        sim.wait_screen("Firmware " + N1)  # (the start-up screen)
        st = sim.wait_for(lambda: (lambda o: o if o["state"] == "valid" else None)(sim.cmd("ota")),
                          20, "the self-test to confirm N+1")
        assert core(st) == {"version": N1, "rollback": None, "slot": "ota_1", "state": "valid",
                            "progress": None}
        # the result, kept across the restart: installed, then confirmed
        assert st["last"] == {"from": N, "to": N1, "source": "control", "result": "confirmed",
                              "why": None}, st
        assert st["trial"] is False and st["other"]["version"] == N, st
        after = sim.state_()
        assert after["version"] == N1
        assert all(after["counters_uwh"][k] >= v for k, v in before.items()), (before, after)
        assert sim.quit() == 0
        ev = audit(sim.state)
        for e in ("control|ota start|ok|from 1.0.0", "control|ota installed|ok|1.0.0 -> 1.1.0",
                  "system|ota restart|ok|1.1.0", "system|boot|ok|1.1.0",
                  "system|ota self-test|ok|1.1.0"):
            assert e in ev, (e, ev)
        assert not any("rollback" in e for e in ev), ev
        sim.start()  # confirmed: it stays
        assert core(sim.cmd("ota")) == core(st)


AUDIT = """
from meter.board.host import HostBoard
from meter.logstore import LogStore
from meter.audit import AuditLog
b = HostBoard(["x", "--state", %r, "--headless"])
for e in AuditLog(LogStore(b.partition("audit")), b).events():
    print("|".join(str(x) for x in e[2:]))
"""


def audit(state):
    """The audit log of a stopped simulator, read by the firmware's code."""
    return upy.exec_code(AUDIT % state).strip().splitlines()


ROLLBACK = "system|ota rollback|failed|1.1.0 did not confirm itself; running 1.0.0"


def _rolls_back(sim, imgs, why):
    o = sim.cmd("ota")
    assert core(o) == {"version": N, "rollback": N1, "slot": "ota_0", "state": None, "progress": None}, o
    sim.wait_screen("ROLLBACK " + N1, timeout=15)
    assert sim.quit() == 0
    ev = audit(sim.state)
    assert ev.count(ROLLBACK) == 1 and why(ev), ev
    sim.start()  # reported once per rollback, shown until an update replaces it
    assert sim.cmd("ota")["rollback"] == N1
    assert sim.quit() == 0
    assert audit(sim.state).count(ROLLBACK) == 1
    sim.start()
    # A good N+1 still installs after the rollback.
    assert install(sim, imgs.update) == N1
    sim.start()
    assert sim.cmd("ota")["version"] == N1


def test_n_plus_1_failing_its_self_test_rolls_back_to_n(tmp_path, imgs):
    with start_n(tmp_path, imgs) as sim:
        install(sim, signed(imgs, imgs.selftest, "selftest.bin"))
        sim.start()
        assert core(sim.cmd("ota")) == {"version": N1, "rollback": None, "slot": "ota_1",
                                  "state": "pending-verify", "progress": None}
        # The broken self-test gives up after 4 s and resets.
        assert sim.wait_exit(30) == 3, "the failed self-test did not reset the device"
        sim.start()
        _rolls_back(sim, imgs, lambda ev: "system|ota self-test|failed|broken: test image "
                    "built to fail its self-test" in ev)


def test_n_plus_1_crashing_on_start_rolls_back_to_n(tmp_path, imgs):
    with start_n(tmp_path, imgs) as sim:
        install(sim, signed(imgs, imgs.crash, "crash.bin"))
        sim.start(wait=False)
        rc = sim.wait_exit(30)
        assert rc not in (0, 3) and "broken test image" in sim.output(), (rc, sim.output())
        assert simtool.pending(sim.state), "the crashed image should still be unconfirmed"
        sim.start()  # the device resets after a crash: the bootloader goes back
        _rolls_back(sim, imgs, lambda ev: not any("self-test" in e for e in ev))


REFUSALS = [
    ("bad-signature", "k2", N1, "signature check failed: damaged or not an official update"),
    ("older", "k1", "0.9.0", "version 0.9.0 is not newer than the running 1.0.0"),
    ("same", "k1", N, "version 1.0.0 is not newer than the running 1.0.0"),
]


def test_refused_updates_leave_everything_untouched(tmp_path, imgs):
    with start_n(tmp_path, imgs) as sim:
        flash = flash_files(sim.state)
        for what, key, version, why in REFUSALS:
            path = signed(imgs, imgs.n1, what + ".bin", getattr(imgs, key), version)
            assert sim.cmd("ota-install", path) == {"error": why}, what
            assert flash_files(sim.state) == flash, what + ": a refused update changed the flash"
            # the display says so (and why) over the pages, then the status line
            assert sim.wait_screen("NOT UPDATED")[0].strip() == "NOT UPDATED", what
            assert sim.cmd("ota")["last"]["why"] == why, what
            assert core(sim.cmd("ota")) == {"version": N, "rollback": None, "slot": "ota_0",
                                      "state": None, "progress": None}, what
        assert sim.quit() == 0
        ev = audit(sim.state)
        for _, _, _, why in REFUSALS:
            assert "control|ota update|failed|" + why in ev, (why, ev)
        sim.start()
        assert sim.cmd("ota")["version"] == N
        # and the good file still installs: nothing was left half-done
        assert install(sim, imgs.update) == N1


def test_launcher_restarts_into_the_previous_image_after_a_crash(tmp_path, imgs):
    """tools/sim.py itself: the reset after the update, the crash of the
    unconfirmed image, the bootloader's way back, without the test's help."""
    with Sim(str(tmp_path / "dev"), image=imgs.n, boot_keys=[imgs.k1], launcher=True) as sim:
        r = sim.cmd("ota-install", signed(imgs, imgs.crash, "crash.bin"))
        assert r.get("ok"), r
        sim.sock.close()
        end = time.time() + 30
        while "[sim] unconfirmed firmware crashed" not in sim.output():
            assert time.time() < end and sim.proc.poll() is None, \
                "the launcher did not restart after the crash:\n" + sim.output()
            time.sleep(0.1)
        sim.connect(30)
        o = sim.cmd("ota")
        assert core(o) == {"version": N, "rollback": N1, "slot": "ota_0", "state": None, "progress": None}, o
        out = sim.output()
        assert "ota_1: firmware 1.1.0 (pending-verify)" in out, out
        assert out.count("ota_0: firmware 1.0.0") == 2, out  # the factory record: the image's version


def _fake_update(state, payload):
    """Slot 1 as the updater leaves it: the payload and a record with key
    id 1 (the signature is not checked here: no boot keys)."""
    import bootloader

    head = bootloader.otafmt.pack_header(1, 0x010100, 0, len(payload), "host",
                                          hashlib.sha256(payload).digest())
    with open(os.path.join(state, "ota_1.bin"), "r+b") as f:
        f.write(payload)
        f.seek(bootloader.SLOT_SIZE - bootloader.BLOCK)
        f.write(head + b"\x00" * 384)


def test_launcher_flashes_the_build_once_then_on_change_and_keeps_an_installed_update(tmp_path):
    import bootloader

    state = str(tmp_path / "dev")
    os.makedirs(state)
    builds = []
    for i in range(4):
        b = tmp_path / ("b%d" % i)
        b.write_text("#!/bin/sh\necho build %d\n" % i)
        builds.append(str(b))

    def slot0():
        return bootloader.check_slot(state, 0)[1]

    assert simtool.flash_build(state, builds[0], "1.0.0") is True  # the factory flash
    assert simtool.flash_build(state, builds[0], "1.0.0") is False
    assert simtool.flash_build(state, builds[1], "1.0.0") is True  # rebuilt: flashed again
    assert slot0() == open(builds[1], "rb").read()
    _fake_update(state, b"#!/bin/sh\necho update\n")
    assert simtool.flash_build(state, builds[2], "1.0.0") is False  # the update stays
    assert slot0() == open(builds[1], "rb").read()
    assert simtool.flash_build(state, builds[3], "1.0.0", force=True) is True  # --factory
    assert slot0() == open(builds[3], "rb").read()
    exe = simtool.boot_slot(state, log=lambda m: None)  # otadata blanked: slot 0
    assert open(exe, "rb").read() == open(builds[3], "rb").read()


def test_image_tool_refuses_an_unknown_broken_mode(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "image.py"), "build",
                        "--out", str(tmp_path / "x"), "--broken", "sometimes"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "--broken must be one of crash, selftest" in r.stderr, r.stderr


# -- power cuts through the whole simulator ------------------------------------------
# Most cuts are made cheaply at the updater level (tests/mpy/test_ota_cuts.py);
# these SIGKILL the real simulator at random moments of each phase.

SIM_CUTS = int(os.environ.get("OTA_SIM_CUTS", "12"))
PHASES = ("writing", "installed", "first-boot", "self-test")


def test_power_cuts_through_the_simulator_boot_old_or_new(tmp_path, imgs):
    seed = int(os.environ.get("OTA_SIM_SEED") or random.randrange(1 << 30))
    print("OTA_SIM_SEED=%d OTA_SIM_CUTS=%d" % (seed, SIM_CUTS))
    rng = random.Random(seed)
    fresh = 0
    seen = {}
    sim = start_n(tmp_path / "s0", imgs)
    prev = [0] * 8
    try:
        for cut in range(SIM_CUTS):
            phase = PHASES[cut % len(PHASES)]
            where = "seed %d cut %d (%s)" % (seed, cut, phase)
            if phase == "writing":
                sim.sock.sendall(("ota-install %s\n" % imgs.update).encode())
                time.sleep(rng.uniform(0.0, 0.7))  # an install takes about 0.8 s
            elif phase == "installed":  # set_boot done, the reset 200 ms away
                r = sim.cmd("ota-install", imgs.update)
                assert r.get("ok"), (where, r)
            else:
                t0 = time.time()
                install(sim, imgs.update)
                print("install and reset: %.2f s" % (time.time() - t0))
                sim.start(wait=phase == "self-test")
                time.sleep(rng.uniform(0.0, 0.6 if phase == "first-boot" else 1.5))
            sim.kill()
            p = probe(sim.state)  # the counters on the flash, by the firmware's loader
            assert p["status"] in ("ok", "new"), (where, p)
            assert all(a >= b for a, b in zip(p["uwh"], prev)), (where, "went backwards", prev, p)
            prev = p["uwh"]
            sim.start()
            o = sim.cmd("ota")
            assert o["version"] in (N, N1), (where, o)
            seen[phase, o["version"]] = seen.get((phase, o["version"]), 0) + 1
            if o["version"] == N1:  # it must confirm itself; then a fresh N for the next cut
                sim.wait_for(lambda: sim.cmd("ota")["state"] == "valid", 20, where + ": confirm")
                sim.kill()
                fresh += 1
                sim = start_n(tmp_path / ("s%d" % fresh), imgs)
                prev = [0] * 8
        print("after the cut, by phase:", seen)
        # The cut update, run again, installs.
        assert install(sim, imgs.update) == N1
        sim.start()
        sim.wait_for(lambda: sim.cmd("ota")["state"] == "valid", 20, "the rerun to confirm")
    finally:
        if sim.proc and sim.proc.poll() is None:
            sim.kill()
