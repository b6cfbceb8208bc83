"""Automatic updates in the simulator (meter/otaauto.py): the service checks
a local HTTPS update server, downloads N+1 into the other slot, the display
announces it and shows its progress, the device restarts on N+1 and it
confirms itself; a wrong CA is refused; a server that cuts the connection
midway leads to a retry later and nothing changes meanwhile; the cloud's
TOTP-authenticated "check for update now" starts a check and reports its
result as an event; no check starts while a user is in the Settings menu.

The simulator runs test builds of the device image at the device budget
(N = 1.0.0 and N+1 = 1.1.0, both trusting a throwaway key made here, the
bootloader checking signatures with it). The update server is
tests/test_otafetch.py's (Python's http.server behind TLS with the test
PKI of tests/pki.py; its certificate is for broker.test, dialled at
127.0.0.1 through update.ip).
"""

import os
import sys
import time

import pytest

from mqttlab import SECRET, SERIAL, Cloud, MqttSim, provision
from simctl import Sim, configure
from test_otafetch import lab, manifest, serve  # noqa: F401 (lab: the fixture)
from test_ota_sim import Watch, audit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import image as imagetool  # noqa: E402

N, N1 = "1.0.0", "1.1.0"


@pytest.fixture(scope="module")
def n_image(lab, tmp_path_factory):
    """N, trusting the lab's key (test_otafetch's lab: PKI, key, N+1 file,
    the HTTPS server)."""
    return imagetool.variant(str(tmp_path_factory.mktemp("n") / "n"), N, trust=[lab.key])[0]


def prepare(lab, state, url, ca="server-ca.crt", **settings):
    """A device provisioned for the update server: its CA file and
    settings (the service centre's tools/flash.py provision does this)."""
    os.makedirs(state, exist_ok=True)
    with open(os.path.join(state, "update-ca.crt"), "wb") as f:
        f.write(lab.pki.read(ca))
    values = {"update.server": url, "update.ip": "127.0.0.1"}
    values.update({k.replace("__", "."): v for k, v in settings.items()})
    configure(state, **values)


def start(lab, n_image, tmp_path, url, ca="server-ca.crt", **settings):
    state = str(tmp_path / "dev")
    prepare(lab, state, url, ca, **settings)
    return Sim(state, "--flash-delay-us", "100", image=n_image, boot_keys=[lab.key])


def checks(sim):
    return sim.state_()["autoupdate"]


def wait_result(sim, timeout=60):
    """The last check's (source, outcome, detail), once one has ended."""
    return tuple(sim.wait_for(lambda: checks(sim)["last"], timeout, "an update check to end"))


def boot_slot(sim):
    return sim.cmd("ota")["slot"]


def test_the_service_finds_n_plus_1_downloads_installs_and_restarts_on_it(lab, n_image, tmp_path):
    url = serve(lab, "auto", manifest(lab, url="/fw/auto.bin"), ("file", lab.data))
    with start(lab, n_image, tmp_path, url, update__enabled=True, test__update_first_s=2) as sim:
        assert sim.cmd("ota")["version"] == N
        w = Watch(sim.port)  # the display while it runs, on a second connection
        w.start()
        rc = sim.wait_exit(90)
        w.stop.set()
        w.join(10)
        assert rc == 3, "no restart after the automatic update (exit %s):\n%s" % (
            rc, sim.output()[-3000:])
        upd = [s for s in w.screens if s[0] == "FIRMWARE UPDATE"]
        assert any(s[1] == "%s > %s" % (N, N1) and s[2].startswith("[") for s in upd), \
            w.screens[-3:]
        assert any("Do not remove" in s for s in upd) and any(
            "Restarting..." in s for s in upd), upd[-3:]
        sim.start()
        st = sim.wait_for(lambda: (lambda o: o if o["state"] == "valid" else None)(
            sim.cmd("ota")), 30, "N+1 to confirm itself")
        assert st["version"] == N1 and st["slot"] == "ota_1", st
        assert st["last"] == {"from": N, "to": N1, "source": "auto", "result": "confirmed",
                              "why": None}, st
        assert sim.quit() == 0
    ev = audit(sim.state)
    for e in ("auto|ota start|ok|from 1.0.0", "auto|ota installed|ok|1.0.0 -> 1.1.0",
              "auto|ota check|ok|%s -> %s: installed" % (N, N1), "system|ota restart|ok|1.1.0",
              "system|ota self-test|ok|1.1.0"):
        assert e in ev, (e, ev)


def test_a_server_certificate_from_a_wrong_ca_is_refused(lab, n_image, tmp_path):
    url = serve(lab, "wrongca", manifest(lab, url="/fw/wrongca.bin"), ("file", lab.data))
    with start(lab, n_image, tmp_path, url, ca="other-ca.crt") as sim:
        assert sim.cmd("ota-check") == {"outcome": "started"}
        src, outcome, detail = wait_result(sim)
        assert (src, outcome) == ("control", "failed"), (src, outcome, detail)
        assert "not from the configured CA" in detail, detail
        assert lab.hits.get("/wrongca/host.json") is None, "a request passed an unverified TLS"
        assert sim.cmd("ota")["version"] == N and boot_slot(sim) == "ota_0"
        assert not checks(sim)["loaded"], "the service is off: the check's modules go back"
        assert sim.quit() == 0


def test_a_download_cut_midway_changes_nothing_and_is_retried_later(lab, n_image, tmp_path):
    url = serve(lab, "cut", manifest(lab, url="/fw/cut.bin"), ("drop-once", lab.data))
    with start(lab, n_image, tmp_path, url, update__enabled=True, test__update_first_s=2) as sim:
        first = wait_result(sim)
        assert first[:2] == ("auto", "failed") and (
            "cut the connection" in first[2] or "broke off" in first[2]), first
        # the running firmware goes on, from its slot; the display said why
        assert sim.cmd("ota")["version"] == N and boot_slot(sim) == "ota_0"
        assert sim.cmd("ota")["last"]["result"] == "failed"
        # then the retry after the back-off (test.update_first_s: 2 s with
        # jitter) downloads the whole file and installs it
        rc = sim.wait_exit(90)
        assert rc == 3, "no retry and restart (exit %s):\n%s" % (rc, sim.output()[-3000:])
        assert lab.hits["/fw/cut.bin"] == 2
        sim.start()
        assert sim.cmd("ota")["version"] == N1
        assert sim.quit() == 0
    ev = audit(sim.state)
    cut = [e for e in ev if e.startswith("auto|ota check|failed|")]
    assert len(cut) == 1 and "auto|ota update|cancelled|" in "\n".join(ev), ev


def test_no_check_starts_while_a_user_is_in_the_settings_menu(lab, n_image, tmp_path):
    url = serve(lab, "menu", manifest(lab, version=N, url="/fw/menu.bin"), ("file", lab.data))
    with start(lab, n_image, tmp_path, url) as sim:
        sim.wait_screen("POWER W")
        sim.tap("ok")  # first access: the PIN, set twice
        sim.wait_screen("New PIN:")
        sim.enter_pin("1290")
        sim.wait_screen("Repeat PIN:")
        sim.enter_pin("1290")
        sim.wait_screen("SETTINGS")
        assert sim.cmd("ota-check") == {"error": "the Settings menu is in use: try again later"}
        assert lab.hits.get("/menu/host.json") is None
        # the menu's own "Check update" is what the user asked for
        sim.select("Firmware")
        sim.select("Check update")
        sim.wait_screen("UPDATE CHECK")
        src, outcome, detail = wait_result(sim)
        assert (src, outcome, detail) == ("menu", "ok", "%s: up to date (server offers %s)"
                                          % (N, N)), detail
        assert sim.quit() == 0


def test_the_cloud_command_starts_a_check_and_reports_its_result(lab, n_image, pki, broker, tmp_path):
    import json

    import pyotp

    url = serve(lab, "cloud", manifest(lab, version=N, url="/fw/cloud.bin"), ("file", lab.data))
    state = str(tmp_path / "dev")
    provision(state, pki, broker.port)
    prepare(lab, state, url)
    cloud = Cloud(pki, broker.port)
    sim = MqttSim(state, image=n_image, boot_keys=[lab.key])
    try:
        cloud.wait(lambda t, p, r: t == "meters/%s/status" % SERIAL and p == b"online",
                   what="online")
        step = int(time.time()) // 30 + 1
        sim.cmd("clock", step * 30 + 5 - int(time.time()))
        code = pyotp.TOTP(SECRET).at(step * 30 + 5)
        mark = cloud.mark()
        r = cloud.command(SERIAL, {"id": "u1", "cmd": "update_check", "code": code})
        assert r == {"id": "u1", "ok": True, "result": {"outcome": "started"}}, r
        _, _, payload, _ = cloud.wait_topic("meters/%s/event" % SERIAL, mark, 60)
        ev = json.loads(payload)
        assert ev == {"event": "update", "source": "cloud", "outcome": "ok",
                      "detail": "%s: up to date (server offers %s)" % (N, N)}, ev
        assert lab.hits.get("/cloud/host.json") == 1
        assert sim.quit() == 0
    finally:
        cloud.close()
        if sim.proc.poll() is None:
            sim.kill()
