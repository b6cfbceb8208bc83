"""tools/flash.py end to end: service mode entered on the simulator's
buttons, status / provision / wipe over mpremote on the simulator's USB
pty (tools/sim.py --service-pty), flashing against esp32-mock-bootloader
(the ROM serial bootloader over socket://), the security plan against
espefuse's virtual eFuses. The cloud side of provisioning is the real
mosquitto with the test PKI (tests/peers.py) and pyotp."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

import simctl
import upy
from simctl import Sim

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import esptable  # noqa: E402
import flash  # noqa: E402

SERVICE_S = 120


def run_flash(capsys, *args):
    """tools/flash.py in this process: (exit code, everything it printed)."""
    rc = flash.main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out + out.err


def service_sim(tmp_path, service_s=SERVICE_S, serial=None):
    state = tmp_path / "dev"
    if serial:
        state.mkdir(exist_ok=True)
        (state / "serial").write_text(serial)
    return Sim(state, service_pty=tmp_path / "usb", service_s=service_s)


def enter_service(sim):
    """As a person would: hold OK+DOWN through the start-up screen's count,
    release, choose "Yes" and confirm; then the REPL comes up on the pty."""
    sim.cmd("press", "ok")
    sim.cmd("press", "down")
    lines = sim.wait_screen("OK+DOWN:", timeout=5)
    assert lines[0].strip() == "SERVICE MODE", lines
    sim.wait_screen("Release the", timeout=15)
    sim.cmd("release", "ok")
    sim.cmd("release", "down")
    question = sim.wait_screen("SERVICE MODE?")
    sim.tap("down")  # No -> Yes
    try:
        sim.tap("ok")
    except (OSError, RuntimeError):  # the app stops at once: the reply may not come
        pass
    sim.wait_for(lambda: "[sim] service mode: REPL on" in sim.output(), 15, "the service REPL")
    sim._close()
    return "\n".join(question)


def restarted(sim, since):
    """Wait until the launcher restarted the firmware after service mode, reconnect."""
    sim.log = open(sim.log_path, "ab")
    sim.wait_for(lambda: sim.output().count("[sim] firmware reset: restarting") > since, 20,
                 "the firmware's restart")
    sim.connect()


def status(capsys, port):
    rc, out = run_flash(capsys, "status", "--port", port, "--json")
    assert rc == 0, out
    return json.loads(out[out.index("{"):])


# -- service mode, status ----------------------------------------------------------


def test_status_field_by_field_in_service_mode(tmp_path, capsys):
    with service_sim(tmp_path) as sim:
        enter_service(sim)  # at start-up; metering ran through the 5 s hold
        port = str(tmp_path / "usb")
        st = status(capsys, port)
        saved = simctl.probe(sim.state)  # the counters the app saved when it stopped
        assert st["version"] == flash_version()
        assert st["board"] == "host" and st["serial"].startswith("SIM-")
        assert st["build"] == "production" and st["repl"] == "service mode only"
        assert st["slots"] == {"running": "host", "next": None, "otadata": None, "ota_seq": None}
        assert st["security"] == {"secure_boot": None, "flash_encryption": None}
        assert st["lock"] == "none" and st["settings_status"] == "new"
        assert st["pin_set"] is False and st["web_password_set"] is False
        assert [st["counters_uwh"][k] for k in ("imp_a", "imp_b", "imp_c", "imp_t", "exp_a",
                                                 "exp_b", "exp_c", "exp_t")] == saved["uwh"]
        assert st["counters_uwh"]["imp_t"] > 0 and st["counters_status"] == "ok"
        assert st["app_tokens"] == 0 and st["provisioned"]["files"] == []
        assert any("display service-mode ok entered" in e for e in st["audit_tail"]), st
        assert 0 < st["service_left_s"] <= SERVICE_S and st["heap_free"] > 80 * 1024  # services stopped: room for the REPL
        # the human form names the same things
        rc, out = run_flash(capsys, "status", "--port", port)
        assert rc == 0, out
        for text in ("production build", "running host", "module lock:", "none",
                     "flash encryption:", "unknown"):
            assert text in out, out


def flash_version():
    import re

    with open(os.path.join(ROOT, "firmware", "lib", "meter", "__init__.py")) as f:
        return re.search(r'VERSION = "([^"]+)"', f.read()).group(1)


def test_service_mode_ends_by_itself_and_pin_reset_still_works(tmp_path, capsys):
    with service_sim(tmp_path, service_s=4) as sim:
        # OK+DOWN released early: aborted, nothing happens
        sim.cmd("press", "ok")
        sim.cmd("press", "down")
        sim.wait_screen("OK+DOWN: 4 s")  # held past a long press
        sim.cmd("release", "down")
        sim.wait_screen("Aborted.")
        sim.cmd("release", "ok")
        # OK to continue (pressed again if the first press came while the
        # release was still being debounced, as a person would)
        sim.wait_for(lambda: sim.tap("ok") or any("OK:menu" in x for x in sim.screen()), 5,
                     "the pages")  # the start-up screen is over: no service mode now
        sim.quit()
        sim.start()
        enter_service(sim)
        restarts = sim.output().count("[sim] firmware reset: restarting")
        restarted(sim, restarts)  # the 4 s period ran out: the firmware runs again
        rc, out = run_flash(capsys, "status", "--port", tmp_path / "usb", "--timeout", 3)
        assert rc == 1 and "service mode" in out, out
        # UP+DOWN at start-up is still the PIN reset (restart to see the screen)
        sim.quit()
    with Sim(tmp_path / "dev") as sim:
        sim.cmd("press", "up")
        sim.cmd("press", "down")
        sim.wait_screen("PIN RESET")
        sim.cmd("release", "up")
        sim.cmd("release", "down")


def test_every_subcommand_refuses_outside_service_mode(tmp_path, capsys):
    port = str(tmp_path / "usb")
    with service_sim(tmp_path) as sim:
        sim.wait_screen("1/4")  # metering: the port exists, nobody answers on it
        assert os.path.exists(port)
        for args in (["status"], ["wipe", "--yes"], ["provision", "--wifi-ssid", "x"]):
            t0 = time.monotonic()
            rc, out = run_flash(capsys, *args, "--port", port, "--timeout", 3)
            assert rc == 1 and "service mode" in out and "Hold OK+DOWN" in out, (args, out)
            assert time.monotonic() - t0 < 10
        assert sim.state_()["config_seq"] == 0  # nothing changed
    # a REPL without service mode (a development image): the firmware refuses
    for name in ("status", "wipe", "provision"):
        out = upy.exec_code("from meter import service\nservice.call(%r)" % name)
        assert '@@{"error": "not in service mode' in out, out


def test_no_device_and_wrong_port(tmp_path, capsys):
    rc, out = run_flash(capsys, "status", "--port", tmp_path / "nothing")
    assert rc == 1 and "no device at" in out, out
    rc, out = run_flash(capsys, "wipe", "--yes", "--port", "/dev/null", "--timeout", 3)
    assert rc == 1 and "error" in out, out


def test_a_repl_slow_to_come_up_is_asked_again_and_nothing_runs_twice(tmp_path, monkeypatch):
    """mpremote gives up entering the raw REPL after 10 s; a REPL that has
    only just started (a locked meter wipes first) gets two more tries. Any
    other failure, or the last try's, is reported at once."""
    import meterrepl

    port = tmp_path / "usb"
    port.write_text("")
    raw = "mpremote.transport.TransportError: could not enter raw repl\n"
    answers = []
    calls = []

    def run(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, *answers.pop(0))

    monkeypatch.setattr(meterrepl.subprocess, "run", run)
    monkeypatch.setattr(meterrepl, "RAW_RETRY_S", 0)
    answers[:] = [(1, "", raw), (1, "", raw), (0, '@@{"ok": 5}\n', "")]
    assert meterrepl.call(str(port), "status") == 5 and len(calls) == 3
    calls.clear()
    answers[:] = [(1, "", raw)] * 3
    with pytest.raises(meterrepl.DeviceError, match="is the meter in service mode"):
        meterrepl.call(str(port), "status")
    assert len(calls) == 3
    calls.clear()
    answers[:] = [(1, "", "Traceback\nOSError: [Errno 5] EIO\n")]
    with pytest.raises(meterrepl.DeviceError, match="EIO"):
        meterrepl.call(str(port), "status")
    assert len(calls) == 1, "a command that may have run is never sent again"


# -- provisioning ------------------------------------------------------------------


def test_provision_then_the_meter_joins_the_broker_and_takes_a_totp_command(
        tmp_path, capsys, pki, broker):
    import pyotp
    from mqttlab import SERIAL, Cloud

    cloud = Cloud(pki, broker.port)
    port = str(tmp_path / "usb")
    try:
        with service_sim(tmp_path, serial=SERIAL) as sim:
            enter_service(sim)
            restarts = sim.output().count("[sim] firmware reset: restarting")
            rc, out = run_flash(
                capsys, "provision", "--port", port, "--wifi-ssid", "sim", "--name", "Shop A",
                "--mqtt-host", "broker.test", "--mqtt-ip", "127.0.0.1", "--mqtt-port",
                broker.port, "--mqtt-enable", "--mqtt-ca", pki.path("server-ca.crt"),
                "--client-cert", pki.path("device.crt"), "--client-key", pki.path("device.key"),
                "--ntp-server", "ntp.test", "--update-server", "https://updates.test/meter",
                "--update-ca", pki.path("server-ca.crt"), "--update-ip", "127.0.0.1",
                "--update-interval-h", "12", "--update-enable")
            assert rc == 0, out
            uri = [w for w in out.split() if w.startswith("otpauth://totp/")]
            assert len(uri) == 1, out  # printed once
            secret = uri[0].split("secret=")[1].split("&")[0]
            assert "issuer=Meter" in uri[0] and SERIAL in uri[0]
            restarted(sim, restarts)
            since = 0
            assert cloud.wait(lambda t, p, r: t == "meters/%s/status" % SERIAL and p == b"online",
                              since, 20)
            code = pyotp.TOTP(secret).now()
            r = cloud.command(SERIAL, {"id": "p1", "cmd": "status", "code": code})
            assert r["ok"] is True, r
            # the files sit where the uplink reads them, the settings in the store
            for name in ("mqtt-ca.crt", "mqtt-client.crt", "mqtt-client.key", "totp.secret",
                         "ntp.server", "update-ca.crt"):
                assert os.path.exists(os.path.join(sim.state, name)), name
            assert open(os.path.join(sim.state, "mqtt-client.key"), "rb").read() == \
                pki.read("device.key")
    finally:
        cloud.close()


BAD_PEM = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"


def test_bad_input_is_refused_and_changes_nothing(tmp_path, capsys, pki):
    port = str(tmp_path / "usb")
    bad = tmp_path / "bad.crt"
    bad.write_text(BAD_PEM)
    chain = tmp_path / "chain.crt"
    chain.write_bytes(pki.read("server-ca.crt") + pki.read("client-ca.crt"))
    with service_sim(tmp_path) as sim:
        enter_service(sim)
        before = status(capsys, port)
        cases = [
            (["--mqtt-ca", bad], 2, "not a valid PEM certificate"),
            (["--mqtt-ca", chain], 2, "2 certificates in the file"),
            (["--mqtt-ca", pki.path("expired.crt")], 2, "expired on 2020-"),
            (["--client-cert", pki.path("device.crt"), "--client-key", pki.path("cloud.key")],
             2, "does not belong to the client certificate"),
            (["--client-cert", pki.path("device.crt")], 2, "together"),
            (["--client-cert", bad, "--client-key", pki.path("device.key")], 2, "not a valid"),
            (["--totp-secret", "not base32!"], 2, "not base32"),
            (["--totp-secret", "JBSWY3DP"], 2, "at least 16"),
            # the firmware's own validation: refused there, nothing stored
            (["--wifi-ssid", "x" * 40, "--mqtt-ca", pki.path("server-ca.crt")], 1,
             "wifi.ssid: at most 32 characters"),
            (["--mqtt-host", "h", "--ntp-server", "two words"], 1, "ntp.server"),
        ]
        for args, code, text in cases:
            rc, out = run_flash(capsys, "provision", "--port", port, "--stay", *args)
            assert rc == code and text in out, (args, out)
        after = status(capsys, port)
        assert after["provisioned"] == before["provisioned"]
        assert after["settings_status"] == "new"
        assert not [n for n in os.listdir(sim.state) if n.endswith((".crt", ".key", ".secret"))]


# -- the service-centre wipe -------------------------------------------------------

LOCK_IT = """
import asyncio
from meter.board.host import HostBoard
from meter.logstore import LogStore
from meter.audit import AuditLog
from meter.state import State
from meter.settings import Settings
from meter.pin import PinGuard
from meter.lock import ModuleLock
from meter.tokens import TokenStore
b = HostBoard(["x", "--state", %r, "--headless"])
a = AuditLog(LogStore(b.partition("audit")), b)
st = State(LogStore(b.partition("state")))
s = Settings(LogStore(b.partition("config")), a, st)
PinGuard(s, st, a).set("4711", "menu")
s.update({"web.pass": "pbkdf2-sha256$10$0011$aabb", "wifi.ssid": "sim", "wifi.key": "k"}, "web")
tk = TokenStore(LogStore(b.partition("tokens")), s, a, b)
tok, t = tk.request("phone", "127.0.0.1")
tk.confirm(t.id, "web")
lk = ModuleLock(s, st, a)
asyncio.run(lk.set_password("forgotten password", "web"))
asyncio.run(lk.lock("forgotten password", "web"))
print(s.lock_state())
"""


def test_a_locked_meter_with_a_forgotten_password_is_wiped_in_service_mode(
        tmp_path, capsys, pki):
    port = str(tmp_path / "usb")
    with service_sim(tmp_path) as sim:
        sim.wait_for(lambda: sim.state_()["counters_uwh"]["imp_t"] > 0, 10, "energy counted")
        sim.quit()
        assert upy.exec_code(LOCK_IT % sim.state).split()[-1] == "locked"
        for name in ("mqtt-client.key", "totp.secret"):  # as a factory had provisioned it
            with open(os.path.join(sim.state, name), "w") as f:
                f.write("secret\n")
        saved = simctl.probe(sim.state)["uwh"]
        sim.start()
        assert sim.state_()["lock"] == "locked"
        # The REPL never opens on a locked configuration: the question says
        # that entering service mode erases it, and it does, before the REPL.
        question = enter_service(sim)
        assert "Module LOCKED:" in question and "are ERASED." in question, question
        st = status(capsys, port)
        assert st["lock"] == "none" and st["settings_status"] == "new", st
        assert not st["pin_set"] and not st["web_password_set"] and st["app_tokens"] == 0
        assert st["provisioned"]["files"] == [] and st["provisioned"]["wifi.ssid"] == ""
        now = simctl.probe(sim.state)["uwh"]  # as the app saved them when it stopped
        assert [st["counters_uwh"][k] for k in NAMES] == now and now[3] >= saved[3] > 0
        assert "usb wipe started module locked at service entry" in st["audit_tail"], st
        for name in ("mqtt-client.key", "totp.secret"):
            assert not os.path.exists(os.path.join(sim.state, name)), name
        # the firmware's provisioning refuses a locked meter on its own too
        out = upy.exec_code(LOCK_IT % (str(tmp_path / "other")) +
                            "from meter import servicecmd\ntry:\n"
                            "    servicecmd.provision(b, {'wifi.ssid': 'x'}, {})\n"
                            "except Exception as e:\n    print('REFUSED', e)\n")
        assert "REFUSED module locked" in out, out
        # provisioned again, then the service centre's wipe on request
        rc, out = run_flash(capsys, "provision", "--port", port, "--stay", "--wifi-ssid", "sim",
                            "--client-cert", pki.path("device.crt"),
                            "--client-key", pki.path("device.key"))
        assert rc == 0, out
        restarts = sim.output().count("[sim] firmware reset: restarting")
        monkey_input = "%s\n" % st["serial"]
        rc, out = run_flash_input(capsys, monkey_input, "wipe", "--port", port)
        assert rc == 0 and "wiped: config, tokens, state" in out, out
        assert "mqtt-client.key" in out and "totp.secret" in out, out
        restarted(sim, restarts)
        st2 = sim.state_()
        assert st2["lock"] == "none" and st2["settings_status"] == "new"
        assert st2["counters_uwh"]["imp_t"] >= saved[3]
        sim.wait_screen("OK:menu")
        sim.tap("ok")  # first-time setup: the menu asks for a new PIN
        sim.wait_screen("SET PIN")
        sim.quit()
    kinds = [e[:3] for e in audit(sim.state)]
    assert ("web", "lock", "ok") in kinds  # from before: the audit log is kept
    assert kinds.count(("usb", "wipe", "started")) == 2 and kinds.count(("usb", "wipe", "ok")) == 2
    i = kinds.index(("usb", "wipe", "started"))
    assert kinds[i + 1] == ("usb", "wipe", "ok"), kinds
    assert ("display", "service-mode", "ok") in kinds and ("usb", "service-mode", "ok") in kinds


def test_wipe_needs_the_serial_typed_back(tmp_path, capsys):
    with service_sim(tmp_path) as sim:
        enter_service(sim)
        rc, out = run_flash_input(capsys, "no\n", "wipe", "--port", tmp_path / "usb", "--stay")
        assert rc == 2 and "not confirmed; nothing changed" in out, out
        st = status(capsys, str(tmp_path / "usb"))
        assert not any("wipe" in e for e in st["audit_tail"]), st


def run_flash_input(capsys, text, *args):
    """run_flash with `text` typed at the prompt."""
    import io

    old = sys.stdin
    sys.stdin = io.StringIO(text)
    try:
        return run_flash(capsys, *args)
    finally:
        sys.stdin = old


NAMES = ("imp_a", "imp_b", "imp_c", "imp_t", "exp_a", "exp_b", "exp_c", "exp_t")


def audit(state):
    out = upy.exec_code("""
import json
from meter.board.host import HostBoard
from meter.logstore import LogStore
from meter.audit import AuditLog
b = HostBoard(["x", "--state", %r, "--headless"])
print(json.dumps(AuditLog(LogStore(b.partition("audit")), b).events()))
""" % str(state)).strip().splitlines()[-1]
    return [tuple(e[2:]) for e in json.loads(out)]


# -- flashing (esptool against the mock ROM bootloader) ----------------------------


@pytest.fixture
def mock():
    from esp32_mock_bootloader import mock_bootloader

    m = mock_bootloader(chip="esp32")
    yield m
    m.stop()


def images(tmp_path, fw_size=40000, chip="esp32"):
    boot = tmp_path / "bootloader.bin"
    boot.write_bytes(esptable.synthetic_image(6000, chip, b"boot"))
    fw = tmp_path / "firmware.bin"
    fw.write_bytes(esptable.synthetic_image(fw_size, chip, b"app"))
    return boot, fw


def read_back(url, offset, size):
    """An independent read through the ROM loader (no stub: the mock's
    stub read stream drops the connection)."""
    from esptool.cmds import detect_chip, read_flash

    esp = detect_chip(url, connect_mode="no-reset")
    try:
        return read_flash(esp, offset, size, no_progress=True)
    finally:
        esp._port.close()


def test_partition_table_binary_from_the_csv():
    rows = esptable.parse_csv(open(os.path.join(ROOT, "firmware", "boards", "METER_ESP32", "partitions.csv")).read())
    b = esptable.to_binary(rows)
    assert len(b) == 0xC00 and b[:2] == b"\xaa\x50"
    n = len(rows)
    assert [b[i * 32:i * 32 + 2] for i in range(n)] == [b"\xaa\x50"] * n
    md5 = b[n * 32:(n + 1) * 32]
    import hashlib

    assert md5[:2] == b"\xeb\xeb" and md5[2:16] == b"\xff" * 14
    assert md5[16:] == hashlib.md5(b[:n * 32]).digest()
    assert set(b[(n + 1) * 32:]) == {0xFF}
    assert esptable.from_binary(b) == rows
    ota0 = esptable.find(rows, "app", "ota_0")
    assert (ota0["offset"], ota0["size"], ota0["name"]) == (0x10000, 0x180000, "ota_0")
    assert [r["name"] for r in rows if r["flags"] & 1] == ["counters", "config", "audit",
                                                           "state", "tokens"]
    broken = bytearray(b)
    broken[40] ^= 1
    with pytest.raises(esptable.TableError, match="MD5"):
        esptable.from_binary(bytes(broken))


def test_flash_then_read_back(tmp_path, capsys, mock):
    boot, fw = images(tmp_path)
    url = mock.url()
    rc, out = run_flash(capsys, "flash", "--port", url, "--bootloader", boot, "--firmware", fw,
                        "--erase", "--before", "no-reset")
    assert rc == 0, out
    assert "written and verified" in out
    rows = esptable.parse_csv(open(flash.CSV).read())
    assert read_back(url, 0x1000, len(boot.read_bytes())) == boot.read_bytes()
    assert read_back(url, 0x8000, 0xC00) == esptable.to_binary(rows)
    assert read_back(url, 0xD000, 64) == b"\xff" * 64  # erased otadata: boots ota_0
    assert read_back(url, 0x10000, len(fw.read_bytes())) == fw.read_bytes()


def test_flash_refuses_wrong_images_and_tables(tmp_path, capsys):
    boot, fw = images(tmp_path)
    nowhere = "socket://127.0.0.1:%d" % simctl.free_port()  # refused before connecting
    s3 = tmp_path / "s3.bin"
    s3.write_bytes(esptable.synthetic_image(4000, "esp32s3"))
    big = tmp_path / "big.bin"
    big.write_bytes(esptable.synthetic_image(0x180000 + 16))
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x7fELF" + bytes(100))
    other_csv = tmp_path / "other.csv"
    other_csv.write_text(open(flash.CSV).read().replace("0x180000,\nota_1", "0x190000,\nota_1"))
    other = tmp_path / "other-table.bin"
    other.write_bytes(esptable.to_binary(esptable.parse_csv(
        open(flash.CSV).read().replace("phy_init, data, phy,     0xf000,   0x1000,",
                                       "phy_init, data, phy,     0xf000,   0x1000,  readonly"))))
    cases = [
        (["--firmware", s3, "--bootloader", boot], "built for esp32s3"),
        (["--firmware", fw, "--bootloader", s3], "bootloader: built for esp32s3"),
        (["--firmware", junk, "--bootloader", boot], "not an ESP image"),
        (["--firmware", big, "--bootloader", boot], "larger than the smallest app slot"),
        (["--firmware", fw, "--bootloader", boot, "--table", other], "does not match"),
        (["--firmware", fw, "--bootloader", boot, "--table", junk], "partition table"),
        (["--firmware", fw, "--bootloader", boot, "--csv", other_csv], "overlaps"),
    ]
    for args, text in cases:
        rc, out = run_flash(capsys, "flash", "--port", nowhere, *args)
        assert rc == 2 and text in out, (args, out)


class CutProxy:
    """TCP relay to the mock that, after `limit` bytes from the flasher,
    either drops the line (`cut`) or goes silent (a device that stops
    answering)."""

    def __init__(self, target_port, limit, mode):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.url = "socket://127.0.0.1:%d" % self.srv.getsockname()[1]
        self.target, self.limit, self.mode = target_port, limit, mode
        self.done = threading.Event()
        self.passed = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        c, _ = self.srv.accept()
        t = socket.create_connection(("127.0.0.1", self.target))

        def back():
            try:
                while not self.done.is_set():
                    d = t.recv(4096)
                    if not d:
                        break
                    c.sendall(d)
            except OSError:
                pass

        threading.Thread(target=back, daemon=True).start()
        try:
            while True:
                d = c.recv(4096)
                if not d:
                    break
                self.passed += len(d)
                if self.passed > self.limit:
                    self.done.set()
                    if self.mode == "cut":
                        break
                    continue  # silent: swallow everything from now on
                t.sendall(d)
        except OSError:
            pass
        c.close()
        t.close()

    def close(self):
        self.srv.close()


@pytest.mark.parametrize("mode", ["cut", "silent"])
def test_a_write_that_fails_midway_is_reported(tmp_path, capsys, mock, mode):
    boot, fw = images(tmp_path, fw_size=600000)
    proxy = CutProxy(mock.port(), 120000, mode)
    t0 = time.monotonic()
    try:
        rc, out = run_flash(capsys, "flash", "--port", proxy.url, "--bootloader", boot,
                            "--firmware", fw, "--before", "no-reset", "--attempts", "1")
    finally:
        proxy.close()
    assert proxy.done.is_set(), "the proxy never cut: %d bytes" % proxy.passed
    assert rc == 1 and "error:" in out and "written and verified" not in out, out
    assert time.monotonic() - t0 < 120


def test_flash_no_device(tmp_path, capsys):
    boot, fw = images(tmp_path)
    rc, out = run_flash(capsys, "flash", "--port", tmp_path / "ttyUSB9", "--bootloader", boot,
                        "--firmware", fw, "--attempts", "1")
    assert rc == 1 and "error:" in out and "ttyUSB9" in out, out


# -- the command line itself ---------------------------------------------------------


def test_cli_exit_codes_and_usage(tmp_path):
    py = os.path.join(ROOT, ".venv", "bin", "python")
    r = subprocess.run([py, os.path.join(ROOT, "tools", "flash.py"), "status", "--port",
                        str(tmp_path / "none")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "no device at" in r.stdout, r
    r = subprocess.run([py, os.path.join(ROOT, "tools", "flash.py")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "flash,provision" not in r.stderr and "usage" in r.stderr


# -- security (espefuse --virt) --------------------------------------------------------


def efuses(path):
    import secplan

    return secplan.summary([sys.executable, "-m", "espefuse", "--chip", "esp32", "--virt",
                            "--path-efuse-file", str(path)])


def test_security_plan_in_production_order_on_virtual_efuses(tmp_path, capsys, monkeypatch):
    virt, keys = tmp_path / "efuse.bin", tmp_path / "keys"
    # not confirmed: nothing burned, no keys made
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    rc, out = run_flash(capsys, "security", "--virt", virt, "--keys", keys)
    assert rc == 2 and "nothing burned" in out and not os.listdir(keys), out
    assert "UART download off" in out  # the plan was shown first
    monkeypatch.setattr("builtins.input", lambda prompt: "BURN")
    rc, out = run_flash(capsys, "security", "--virt", virt, "--keys", keys)
    assert rc == 0 and "done: flash encryption (release), Secure Boot V2" in out, out
    order = [line.split(". ", 1)[1] for line in out.splitlines()
             if line.startswith("[security] ") and line[11:12].isdigit()]
    assert order.index("key into BLOCK1 (read- and write-protected)") < \
        order.index("enable it (ABS_DONE_1)") < len(order) - 1
    assert order[-1].startswith("UART download off")
    got = efuses(virt)
    assert got["FLASH_CRYPT_CNT"] == 127 and got["ABS_DONE_1"] is True
    assert got["UART_DOWNLOAD_DIS"] is True and got["JTAG_DISABLE"] is True
    assert got["DISABLE_DL_DECRYPT"] is True and got["WR_DIS"] & 4
    assert sorted(os.listdir(keys)) == ["flash-encryption-key.bin",
                                        "secure-boot-signing-key.pem"]
    # a second run stops at the first step the chip refuses, and says so
    rc, out = run_flash(capsys, "security", "--virt", virt, "--keys", keys, "--yes")
    assert rc == 1 and "failed; stopped here" in out, out
    # a real port is never burned without the typed confirmation
    rc, out = run_flash(capsys, "security", "--port", "/dev/ttyUSB9", "--yes")
    assert rc == 2 and "only with --virt" in out


def test_security_lock_down_order_is_forced_by_the_esp32(tmp_path):
    """Why UART_DOWNLOAD_DIS goes before write-protecting FLASH_CRYPT_CNT:
    one write-protect bit covers both on the ESP32."""
    base = [sys.executable, "-m", "espefuse", "--chip", "esp32", "--virt", "--path-efuse-file",
            str(tmp_path / "e.bin"), "--do-not-confirm"]
    subprocess.run(base + ["write-protect-efuse", "FLASH_CRYPT_CNT"], check=True,
                   capture_output=True)
    r = subprocess.run(base + ["burn-efuse", "UART_DOWNLOAD_DIS", "1"], capture_output=True,
                       text=True)
    assert "UART_DOWNLOAD_DIS is write-protected" in r.stdout + r.stderr
    assert efuses(tmp_path / "e.bin")["UART_DOWNLOAD_DIS"] is False


def test_wipe_on_encrypted_flash_loads_as_new(tmp_path):
    """With flash encryption erased flash reads as noise: the wiped stores
    still load as new ones (the wipe writes their format markers)."""
    out = upy.exec_code("""
import sys
sys.argv[1:] = ["--state", %r, "--headless", "--encrypted-flash"]
from meter import service
from meter.servicecmd import Device
from meter.board.host import HostBoard
b = HostBoard(["x"] + sys.argv[1:])
d = Device(b)
d.settings.update({"wifi.ssid": "x"}, "t")
d.state.set("lock", True)
service.begin(60, b)
service.call("wipe")
d = Device(HostBoard(["x"] + sys.argv[1:]))
print("RESULT", d.settings.status, d.settings.lock_state(), repr(d.settings.get("wifi.ssid")))
""" % str(tmp_path / "dev"))
    assert "RESULT new none ''" in out, out


def test_development_and_production_builds(tmp_path):
    """The REPL policy is a build option: `tools/build.py --dev-repl` sets
    meter/buildcfg.py DEV_REPL in the image, which status reports."""
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import build

    for dev, want in ((True, "development"), (False, "production")):
        out, _ = build.build("sim", str(tmp_path / str(dev)), dev_repl=dev)
        r = subprocess.run([upy.BIN, "-c", "from meter import buildcfg\n"
                            "print('development' if buildcfg.DEV_REPL else 'production')"],
                           env=dict(os.environ, MICROPYPATH=os.path.join(out, "lib")),
                           capture_output=True, text=True, timeout=30)
        assert r.stdout.strip() == want, r


def test_otadata_state_as_the_bootloader_reads_it():
    """meter/board/esp32svc.py on the unix port: the newer entry with a
    good CRC wins; erased and torn entries do not count."""
    import binascii
    import struct

    def entry(seq, state, good=True):
        crc = binascii.crc32(struct.pack("<I", seq), 0xFFFFFFFF)
        return struct.pack("<I20sII", seq, b"\xff" * 20, state, crc if good else crc ^ 1)

    erased = b"\xff" * 32
    cases = [((erased, erased), [None, None]),
             ((entry(1, 2), erased), [1, "valid"]),
             ((entry(1, 2), entry(2, 1)), [2, "pending-verify"]),
             ((entry(3, 4), entry(2, 2)), [3, "aborted"]),
             ((entry(1, 2), entry(2, 1, good=False)), [1, "valid"])]
    for entries, want in cases:
        out = upy.exec_code("import json\nfrom meter.board.esp32svc import otadata\n"
                            "print(json.dumps(otadata(%r)))" % (entries,))
        assert json.loads(out.strip().splitlines()[-1]) == want, (entries, out)


def test_a_meter_that_stops_answering_mid_command(tmp_path, capsys):
    """A REPL that enters raw mode and then goes silent (a meter reset or
    unplugged mid-command): a clear error within the timeout, exit 1."""
    import pty
    import select
    import tty

    master, slave = pty.openpty()
    tty.setraw(slave)
    link = tmp_path / "usb"
    os.symlink(os.ttyname(slave), link)
    stop = threading.Event()

    def half_a_repl():
        while not stop.is_set():
            if select.select([master], [], [], 0.1)[0]:
                data = os.read(master, 4096)
                if b"\x01" in data:  # ctrl-A: the raw REPL's banner, then silence
                    os.write(master, b"raw REPL; CTRL-B to exit\r\n>")

    t = threading.Thread(target=half_a_repl, daemon=True)
    t.start()
    try:
        t0 = time.monotonic()
        rc, out = run_flash(capsys, "status", "--port", link, "--timeout", 4)
        assert rc == 1 and "no answer from a MicroPython REPL" in out, out
        assert time.monotonic() - t0 < 15
    finally:
        stop.set()
        t.join()
        os.close(master)
        os.close(slave)
