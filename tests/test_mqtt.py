"""The cloud uplink end to end: the simulator (firmware + Uplink, through
tests/mqtt_main.py) against a real mosquitto from Debian with mutual TLS,
paho-mqtt as the cloud and pyotp as the independent TOTP oracle. The test
PKI is made with openssl at test time (tests/pki.py)."""

import json
import os
import re
import socket
import ssl
import time

import pytest

import upy
from mqttlab import SECRET, SERIAL, Cloud, Mosquitto, MqttSim, provision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEV = "meters/" + SERIAL
UWH_PER_LSB = 3125


def _version():
    with open(os.path.join(ROOT, "firmware", "lib", "meter", "__init__.py")) as f:
        return re.search(r'VERSION = "([^"]+)"', f.read()).group(1)


@pytest.fixture
def cloud(pki, broker):
    c = Cloud(pki, broker.port)
    yield c
    c.close()


def totp_at(t):
    import pyotp

    return pyotp.TOTP(SECRET).at(t)  # RFC 6238: SHA1, 6 digits, 30 s


def jpayload(cloud, topic, since=0, pred=lambda d: True, timeout=15):
    _, _, p, _ = cloud.wait(lambda t, p, r: t == topic and p and pred(json.loads(p)), since,
                            timeout, topic)
    return json.loads(p)


AUDIT = """
import json
from meter.board.host import HostBoard
from meter.logstore import LogStore
from meter.audit import AuditLog
b = HostBoard(["x", "--state", %r, "--headless"])
print(json.dumps(AuditLog(LogStore(b.partition("audit")), b).events()))
"""


def audit_events(state):
    out = upy.exec_code(AUDIT % str(state)).strip().splitlines()[-1]
    return [tuple(e[2:]) for e in json.loads(out)]


# ------------------------------------------------------------------------------ telemetry


def test_telemetry_retained_state_keepalive_discovery_and_last_will(pki, broker, cloud, tmp_path):
    state = tmp_path / "dev"
    provision(state, pki, broker.port, mqtt__ha_discovery=True, mqtt__keepalive_s=5)
    with MqttSim(state) as sim:
        since = 0
        assert cloud.wait(lambda t, p, r: t == DEV + "/status" and p == b"online", since)
        info = jpayload(cloud, DEV + "/info")
        assert info["fw"] == _version() and info["serial"] == SERIAL and info["interval_s"] == 1
        e = jpayload(cloud, DEV + "/energy")
        assert set(e) >= {"imp_a", "imp_b", "imp_c", "imp_t", "exp_a", "exp_b", "exp_c", "exp_t",
                          "gen", "t"}
        assert all(isinstance(e[k], int) for k in e if k[:3] in ("imp", "exp"))
        # const profile: L1 +1000 W, L2 +2000 W, L3 -1500 W; every interval (1 s)
        tele = jpayload(cloud, DEV + "/telemetry", pred=lambda d: "p" in d)
        assert tele["p"] == [1000.0, 2000.0, -1500.0, 1500.0], tele
        assert len(tele["v"]) == 3 and 45 < tele["f"] < 65 and abs(tele["t"] - time.time()) < 5
        i1 = cloud.wait_topic(DEV + "/telemetry")[0]
        i2 = cloud.wait_topic(DEV + "/telemetry", i1 + 1)[0]
        assert 0.5 < cloud.msgs[i2][0] - cloud.msgs[i1][0] < 2.0
        e2 = jpayload(cloud, DEV + "/energy", i2, pred=lambda d: d["imp_a"] > e["imp_a"])
        assert e2["imp_a"] > e["imp_a"] and e2["exp_c"] > 0 and e2["exp_a"] == 0
        # Home Assistant discovery: energy sensors per phase and total
        disc = {}
        for _ in range(12):
            i, t, p, r = cloud.wait(lambda t, p, r: t.startswith("homeassistant/") and t not in disc)
            disc[t] = json.loads(p)
        energy = [c for c in disc.values() if c["device_class"] == "energy"]
        assert len(energy) == 8
        assert all(c["state_class"] == "total_increasing" and c["unit_of_measurement"] == "kWh"
                   and c["state_topic"] == DEV + "/energy" for c in energy)
        assert {c["name"] for c in energy} == {"Import L1", "Import L2", "Import L3", "Import total",
                                              "Export L1", "Export L2", "Export L3", "Export total"}
        # what a late subscriber gets: retained online status, counters, discovery
        late = Cloud(pki, broker.port, "cloud-late")
        try:
            got = late.wait(lambda t, p, r: t == DEV + "/status" and r)
            assert got[2] == b"online"
            assert late.wait(lambda t, p, r: t == DEV + "/energy" and r)
            assert late.wait(lambda t, p, r: t.startswith("homeassistant/sensor/" + SERIAL) and r)
        finally:
            late.close()
        # keepalive: the broker only hears from the device, so it pings
        sim.wait_status(lambda s: s["pings"] >= 1, timeout=10, what="a PINGREQ")
        sim.wait_for(lambda: "Sending PINGRESP to %s" % SERIAL in broker.log(), what="PINGRESP")
        assert "New client connected from 127.0.0.1" in broker.log()
        assert " u'%s'" % SERIAL in broker.log()  # user name = certificate CN
        mark = cloud.mark()
        sim.kill()  # power cut: no DISCONNECT, so the broker sends the last will
    assert cloud.wait(lambda t, p, r: t == DEV + "/status" and p == b"offline", mark)
    late = Cloud(pki, broker.port, "cloud-late2")
    try:
        assert late.wait(lambda t, p, r: t == DEV + "/status" and r)[2] == b"offline"
    finally:
        late.close()


# ------------------------------------------------------------------------------ commands


class Device:
    """Commands with codes from pyotp at the device's (test-shifted) clock."""

    def __init__(self, sim, cloud):
        self.sim = sim
        self.cloud = cloud
        self.offset = 0
        self.n = 0

    def now(self):
        return self.sim.cmd("clock")["time"]

    def next_step(self):
        """Move the device clock to the next 30 s step (the tests' NTP)."""
        self.offset += 30
        return self.sim.cmd("clock", self.offset)["time"]

    def send(self, cmd, code=None, **fields):
        self.n += 1
        msg = {"id": "c%d" % self.n, "code": code or totp_at(self.now()), "cmd": cmd}
        msg.update(fields)
        return self.cloud.command(SERIAL, msg)


def test_commands_with_totp_once_only_and_malformed(pki, broker, cloud, tmp_path):
    state = tmp_path / "dev"
    provision(state, pki, broker.port)
    with MqttSim(state) as sim:
        sim.wait_status("online")
        sim.wait_for(lambda: sim.state_()["counters_uwh"]["imp_a"] > 0, what="energy")
        dev = Device(sim, cloud)
        # the pairing code is the device's current TOTP code (pyotp agrees)
        p = sim.cmd("pairing")
        assert p["code"] == totp_at(p["time"]) and 1 <= p["left"] <= 30
        assert p["lines"][1].replace(" ", "") == p["code"]

        code = totp_at(dev.now())
        r = dev.send("status", code)
        assert r["ok"] and r["id"] == "c1", r
        res = r["result"]
        assert res["fw"] == _version() and res["uplink"] == "online" and res["interval_s"] == 1
        assert res["counters_uwh"]["imp_a"] > 0 and res["generation"] == 0
        # the same code again: refused, however the message looks
        r = dev.send("status", code)
        assert r == {"id": "c2", "ok": False, "error": "code already used"}, r
        time.sleep(1.1)  # a refused code blocks the next ones for 1 s
        # a code from 3 steps ago
        r = dev.send("status", totp_at(dev.now() - 90))
        assert r == {"id": "c3", "ok": False, "error": "wrong code"}, r
        r = dev.send("status")
        assert r["ok"] is False and r["error"].startswith("too many wrong codes: retry in"), r
        time.sleep(2.1)

        # malformed: error replies, nothing changed, the (valid) code not used up
        dev.next_step()
        good = totp_at(dev.now())
        before = sim.state_()
        bad = [
            (b"{not json", None, "not JSON"),
            (b"x" * 1200, None, "payload too large (max 1024 bytes)"),
            (b"x" * 5000, None, "payload too large (max 1024 bytes)"),
            (b"[]", None, "expected a JSON object"),
            ({"id": 5, "code": good, "cmd": "status"}, None, "id: text of 1..64 characters required"),
            ({"id": "m1", "code": good, "cmd": "reboot"}, "m1", "unknown command reboot"),
            ({"id": "m2", "code": good, "cmd": "set_interval", "seconds": "5"}, "m2",
             "seconds: expected a whole number"),
            ({"id": "m3", "code": good, "cmd": "service", "name": "uplink", "on": 1}, "m3",
             "on: expected true/false"),
            ({"id": "m4", "code": good, "cmd": "reset_counters"}, "m4", "confirm: missing"),
            ({"id": "m5", "code": int(good), "cmd": "status"}, "m5",
             "code: 6 digits (text) required"),
            ({"id": "m6", "code": good, "cmd": "status", "extra": True}, "m6",
             "unexpected field extra"),
        ]
        for msg, cid, err in bad:
            r = cloud.command(SERIAL, msg)
            assert r == {"id": cid, "ok": False, "error": err}, (msg if len(msg) < 100 else len(msg), r)
        after = sim.state_()
        assert after["generation"] == before["generation"] == 0
        assert sim.mqtt()["connected"] and sim.mqtt()["totp_refused"] == 3
        # ... and the code is still good for a proper command
        r = dev.send("set_interval", good, seconds=2)
        assert r == {"id": "c%d" % dev.n, "ok": True, "result": {"interval_s": 2}}, r
        # out of range: refused by the settings store (the code is used up)
        dev.next_step()
        r = dev.send("set_interval", seconds=0)
        assert r == {"id": "c%d" % dev.n, "ok": False, "error": "mqtt.interval_s: must be 1..3600"}, r

        # no commands while the clock is unknown
        dev.next_step()
        sim.cmd("clock_valid", "0")
        r = dev.send("status")
        assert r["error"] == "clock not set: commands refused", r
        sim.cmd("clock_valid", "1")

        # counter reset: confirmation required
        r = dev.send("reset_counters", confirm="yes")
        assert r == {"id": "c%d" % dev.n, "ok": False, "error": "reset not confirmed"}, r
        assert sim.state_()["generation"] == 0
        dev.next_step()
        r = dev.send("reset_counters", confirm="RESET")
        assert r == {"id": "c%d" % dev.n, "ok": True, "result": {"generation": 1}}, r
        st = sim.state_()
        assert st["generation"] == 1 and st["counters_uwh"]["imp_a"] < before["counters_uwh"]["imp_a"]

        # services: Home Assistant discovery on, then off (entities removed)
        dev.next_step()
        mark = cloud.mark()
        r = dev.send("service", name="ha_discovery", on=True)
        assert r["ok"] and r["result"] == {"ha_discovery": True}, r
        cloud.wait(lambda t, p, r: t.startswith("homeassistant/sensor/") and p, mark)
        dev.next_step()
        mark = cloud.mark()
        assert dev.send("service", name="ha_discovery", on=False)["ok"]
        cloud.wait(lambda t, p, r: t.startswith("homeassistant/sensor/") and p == b"", mark)

        # the uplink itself off: offline published, no further connection attempts
        dev.next_step()
        mark = cloud.mark()
        r = dev.send("service", name="uplink", on=False)
        assert r["ok"] and r["result"] == {"uplink": False}, r
        assert cloud.wait(lambda t, p, r: t == DEV + "/status" and p == b"offline", mark)
        sim.wait_status("off")
        connects = broker.log().count("as %s (" % SERIAL)
        time.sleep(2.5)
        assert broker.log().count("as %s (" % SERIAL) == connects
        assert sim.mqtt()["connects"] == 1
        assert sim.quit() == 0
    ev = audit_events(state)
    mqtt_ev = [(e[1], e[2], e[3]) for e in ev if e[0] == "mqtt"]
    assert ("totp", "refused", "code already used, id c2") in mqtt_ev, mqtt_ev
    assert ("totp", "refused", "wrong code, id c3") in mqtt_ev, mqtt_ev
    assert ("settings", "ok", "mqtt.interval_s") in mqtt_ev
    assert ("counter-reset", "ok", "generation 1") in mqtt_ev
    assert ("settings", "ok", "mqtt.enabled") in mqtt_ev
    with open(state / "totp.last") as f:  # the newest used step, persisted
        assert int(f.read()) >= (int(time.time()) + 6 * 30) // 30 - 1


# ------------------------------------------------------------------------------ TLS refusals


@pytest.mark.parametrize("case, status", [
    ("wrong_ca", "TLS: wrong CA"),
    ("wrong_name", "TLS: wrong name"),
    ("expired", "TLS: expired"),
    ("rogue_client", "TLS: refused"),
    ("no_client_cert", "no client cert"),
])
def test_tls_refusals(pki, broker, cloud, tmp_path, case, status):
    state = tmp_path / "dev"
    kw = {"wrong_ca": {"ca": "other-ca.crt"}, "wrong_name": {"host": "wrong.test"},
          "expired": {}, "rogue_client": {"client": "rogue"},
          "no_client_cert": {"client": None}}[case]
    port = broker.expired_port if case == "expired" else broker.port
    provision(state, pki, port, **kw)
    mark = cloud.mark()
    n_conn = broker.log().count("New connection from")
    with MqttSim(state) as sim:
        s = sim.wait_status(status, timeout=15)
        if case == "no_client_cert":
            time.sleep(1)
            assert broker.log().count("New connection from") == n_conn  # not even tried
            assert "not connecting without one" in s["detail"]
        else:
            assert s["failures"] >= 1 and s["connects"] == 0, s
        if case == "rogue_client":
            sim.wait_for(lambda: "certificate verify failed" in broker.log(), what="broker refusal")
        time.sleep(0.5)
        assert not [m for m in cloud.msgs[mark:] if m[1].startswith(DEV)], cloud.msgs[mark:]
        assert sim.quit() == 0
    if case.startswith(("wrong", "expired")):  # a failed server check is audited
        assert [e for e in audit_events(state) if e[:3] == ("mqtt", "tls", "refused")]


def test_connects_by_name_when_no_ip_is_set(pki, broker, tmp_path):
    """Without mqtt.ip the host name is resolved (the one blocking call:
    docs/mqtt.md) and still checked against the certificate."""
    state = tmp_path / "dev"
    provision(state, pki, broker.port, host="localhost", mqtt__ip="")
    with MqttSim(state) as sim:
        s = sim.wait_status("online")
        assert s["detail"] == "connected to localhost:%d" % broker.port
        assert sim.quit() == 0


def test_broker_refuses_client_without_certificate(pki, broker):
    """The broker side of 'no client certificate': a TLS client that trusts
    the broker but has no certificate never gets a CONNACK."""
    ctx = ssl.create_default_context(cafile=pki.path("server-ca.crt"))
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname="broker.test") as s:
                s.sendall(b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04anon")
                got = s.recv(4)
        except (ssl.SSLError, ConnectionError):
            got = b""
    assert got == b""
    # mosquitto writes the reason after it has dropped the connection: the
    # client can be done first (it failed once in 5 runs of the suite)
    end = time.time() + 10
    while "peer did not return a certificate" not in broker.log():
        assert time.time() < end, "the broker logged no refusal:\n" + broker.log()[-2000:]
        time.sleep(0.05)


# ------------------------------------------------------------------------------ outage


def test_broker_killed_and_restarted_while_buttons_pressed(pki, tmp_path):
    b = Mosquitto(pki, str(tmp_path / "broker"))
    cloud = Cloud(pki, b.port)
    state = tmp_path / "dev"
    provision(state, pki, b.port)
    try:
        with MqttSim(state, "--truth") as sim:
            sim.wait_status("online")
            sim.wait_screen("POWER W", timeout=15)  # the measurement pages, after the splash
            e0 = jpayload(cloud, DEV + "/energy", pred=lambda d: d["imp_a"] > 0)
            cloud.close()
            b.kill()
            sim.wait_status(lambda s: not s["connected"] and s["failures"] >= 1, what="outage seen")
            # the user keeps using the device: every press answers at once
            worst = 0
            for _ in range(6):
                before = sim.screen()
                t0 = time.time()
                sim.cmd("tap", "down")
                after = sim.screen()
                worst = max(worst, time.time() - t0)
                assert after != before, after
            assert worst < 1.0, worst  # tap itself holds the button 2 x 120 ms
            # restart right after a failed attempt, so the cloud is subscribed first
            s = sim.wait_status(lambda s: s["failures"] >= 3 and (s["retry_in_ms"] or 0) > 1000,
                                timeout=20, what="back-off of >1 s")
            assert s["backlog"] >= 2, s
            b.start()
            cloud = Cloud(pki, b.port)
            mark = 0
            assert cloud.wait(lambda t, p, r: t == DEV + "/status" and p == b"online", mark,
                              timeout=15)
            e1 = jpayload(cloud, DEV + "/energy")  # current counters, first after connect
            st = sim.state_()
            for k in ("imp_a", "imp_b", "exp_c", "imp_t"):
                assert e0[k] < e1[k] <= st["counters_uwh"][k], (k, e0, e1, st)
            # the counters published on reconnect trail the live ones by at
            # most a few ticks (const profile: 1000/2000/1500 W)
            assert st["counters_uwh"]["imp_a"] - e1["imp_a"] <= 1000 * 3 * 1000000 // 3600
            back = jpayload(cloud, DEV + "/backlog")
            assert back["fields"] == ["t", "p_w", "imp_t_wh", "exp_t_wh"]
            rows = back["rows"]
            assert len(rows) >= 2 and all(r[1] == 1500 for r in rows), rows
            assert [r[0] for r in rows] == sorted(r[0] for r in rows)
            snap = sim.mqtt()
            assert snap["connected"] and snap["connects"] == 2 and snap["backlog"] == 0, snap
            assert st["lateness_ms"]["max"] < 500, st["lateness_ms"]  # metering kept its pace
            assert sim.quit() == 0
        # nothing measured was lost or counted twice through the outage
        from simctl import probe

        p = probe(state)  # everything read out of the IC counted (simctl.probe)
        assert p["uwh"] == [t * UWH_PER_LSB for t in p["read"]], p
    finally:
        cloud.close()
        b.close()


# ------------------------------------------------------------------------------ menu


def test_pairing_code_and_switch_in_the_menu(pki, broker, cloud, tmp_path):
    """Through the buttons, as the installer does: Settings (PIN) >
    Communication > Pairing code shows pyotp's current code; Services >
    Cloud MQTT switches the uplink off."""
    state = tmp_path / "dev"
    provision(state, pki, broker.port)
    with MqttSim(state) as sim:
        sim.wait_status("online")
        sim.wait_screen("POWER W", timeout=15)
        sim.tap("ok")
        sim.wait_screen("New PIN:")
        sim.enter_pin("1290")
        sim.wait_screen("Repeat PIN:")
        sim.enter_pin("1290")
        sim.wait_screen("SETTINGS")
        sim.select("Communication")
        sim.select("Cloud status")
        lines = sim.wait_screen("CLOUD MQTT")
        rows = [l.strip() for l in lines]
        assert rows[rows.index("State:") + 1] == "online", lines
        assert rows[rows.index("Broker:") + 1] == "broker.test", lines
        sim.tap("ok")
        sim.select("Pairing code")
        lines = sim.wait_screen("PAIRING CODE")
        t = sim.cmd("clock")["time"]
        shown = lines[2].replace(" ", "")
        assert shown in (totp_at(t), totp_at(t - 30)), (lines, t)
        left = int(lines[3].split()[1])
        assert 0 < left <= 30
        sim.tap("ok")
        sim.wait_screen("COMMUNICATION")
        sim.select("< Back")
        sim.wait_screen("SETTINGS")
        sim.select("Services")
        sim.select("Cloud MQTT: on")
        sim.wait_screen("Cloud MQTT: off")
        sim.wait_status("off")
        assert sim.quit() == 0
    ev = audit_events(state)
    assert ("menu", "pairing-code", "shown", "") in ev
    assert ("menu", "settings", "ok", "mqtt.enabled") in ev
