"""Test rig for the cloud uplink: a real mosquitto, a paho "cloud", and the
simulator with the uplink (tests/mqtt_main.py). Used by tests/test_mqtt.py
and tools/bench_mqtt.py.

Mosquitto runs with TLS only, `require_certificate true` and
`use_identity_as_username true` (the user name is the client
certificate's CN), an ACL that confines a device to its own topics, no
persistence, bound to 127.0.0.1. Started as root, mosquitto would drop to
user `mosquitto`, which cannot read the PKI in the test's private temporary
directory; the config then says `user root` (a test broker on loopback).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import simctl
from simctl import Sim, free_port

HERE = os.path.dirname(os.path.abspath(__file__))
WRAPPER = os.path.join(HERE, "mqtt_main.py")
SERIAL = "SIM-0001"
# A per-test secret (base32, 160 bits), written into the device's files like
# the factory does; never part of the firmware.
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"

ACL = """\
# devices: their own topics only (user name = certificate CN)
pattern read meters/%u/cmd
pattern write meters/%u/status
pattern write meters/%u/info
pattern write meters/%u/energy
pattern write meters/%u/telemetry
pattern write meters/%u/backlog
pattern write meters/%u/reply
pattern write meters/%u/event
pattern write homeassistant/sensor/%u/#
user cloud
topic readwrite meters/#
topic read homeassistant/#
"""


def have_mosquitto():
    return bool(shutil.which("mosquitto") or os.path.exists("/usr/sbin/mosquitto"))


def mosquitto_bin():
    return shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Mosquitto:
    """The broker: `port` (good certificate), `expired_port` (an expired one)."""

    def __init__(self, pki, workdir):
        self.pki = pki
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.port = free_port()
        self.expired_port = free_port()
        self.conf = os.path.join(workdir, "mosquitto.conf")
        self.log_path = os.path.join(workdir, "mosquitto.log")
        acl = os.path.join(workdir, "acl")
        with open(acl, "w") as f:
            f.write(ACL)
        p = pki.path
        # log_dest file: flushed per line (stdout into a file is block-buffered)
        lines = ["per_listener_settings true", "persistence false",
                 "log_dest file " + self.log_path, "log_type all", "connection_messages true"]
        if os.geteuid() == 0:
            lines.append("user root")
        for port, cert in ((self.port, "broker"), (self.expired_port, "expired")):
            lines += ["listener %d 127.0.0.1" % port,
                      "cafile " + p("client-ca.crt"),
                      "certfile " + p(cert + ".crt"), "keyfile " + p(cert + ".key"),
                      "require_certificate true", "use_identity_as_username true",
                      "allow_anonymous false", "acl_file " + acl]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None
        self.start()

    def start(self):
        self._log = open(os.path.join(self.dir, "stdout.log"), "ab")
        self.proc = subprocess.Popen([mosquitto_bin(), "-c", self.conf], stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        end = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.time() > end:
                    with open(os.path.join(self.dir, "stdout.log"), "rb") as f:
                        out = f.read().decode(errors="replace")
                    raise RuntimeError("mosquitto did not start:\n" + out + self.log())
                time.sleep(0.05)

    def kill(self):
        """The broker dies (SIGKILL: no clean disconnects)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._log.close()

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def close(self):
        self.kill()


class Cloud:
    """The cloud side: a paho-mqtt client with its own client certificate,
    subscribed to everything it may read; messages are kept in order."""

    def __init__(self, pki, port, client_id="cloud"):
        import paho.mqtt.client as mqtt

        self.msgs = []
        self.cond = threading.Condition()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv311)
        c.tls_set(ca_certs=pki.path("server-ca.crt"), certfile=pki.path("cloud.crt"),
                  keyfile=pki.path("cloud.key"))
        connected = threading.Event()
        acked = set()
        subacked = threading.Condition()

        def on_subscribe(client, userdata, mid, *rest):
            with subacked:
                acked.add(mid)
                subacked.notify_all()

        c.on_connect = lambda *a: connected.set()
        c.on_message = self._on_message
        c.on_subscribe = on_subscribe
        c.connect("127.0.0.1", port, keepalive=30)
        c.loop_start()
        if not connected.wait(10):
            raise RuntimeError("cloud client could not connect")
        mids = []
        for t in ("meters/#", "homeassistant/#"):
            r = c.subscribe(t, qos=1)
            assert r[0] == 0
            mids.append(r[1])
        self.c = c
        with subacked:  # reading only once the broker has the subscriptions
            if not subacked.wait_for(lambda: acked.issuperset(mids), 10):
                raise RuntimeError("cloud client: no SUBACK for %s" % mids)

    def _on_message(self, client, userdata, m):
        with self.cond:
            self.msgs.append((time.time(), m.topic, m.payload, m.retain))
            self.cond.notify_all()

    def mark(self):
        with self.cond:
            return len(self.msgs)

    def wait(self, pred, since=0, timeout=15, what="message"):
        """First message (index >= since) with pred(topic, payload, retain)
        true: (index, topic, payload, retain)."""
        end = time.time() + timeout
        with self.cond:
            i = since
            while True:
                while i < len(self.msgs):
                    _, t, p, r = self.msgs[i]
                    if pred(t, p, r):
                        return i, t, p, r
                    i += 1
                left = end - time.time()
                if left <= 0:
                    raise AssertionError("timed out waiting for %s; got %s" % (
                        what, [(m[1], m[2][:80]) for m in self.msgs[since:]][-15:]))
                self.cond.wait(left)

    def wait_topic(self, topic, since=0, timeout=15):
        return self.wait(lambda t, p, r: t == topic, since, timeout, topic)

    def publish(self, topic, payload, qos=1):
        info = self.c.publish(topic, payload, qos=qos)
        info.wait_for_publish(5)

    def command(self, device, msg, timeout=10):
        """Send a command (dict, or raw bytes) and return the parsed reply
        whose id matches (or the first reply when msg has no usable id)."""
        since = self.mark()
        raw = msg if isinstance(msg, (bytes, str)) else json.dumps(msg)
        self.publish("meters/%s/cmd" % device, raw)
        want = msg.get("id") if isinstance(msg, dict) and isinstance(msg.get("id"), str) else None

        def match(t, p, r):
            if t != "meters/%s/reply" % device:
                return False
            return want is None or json.loads(p).get("id") == want

        return json.loads(self.wait(match, since, timeout, "reply")[2])

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


class MqttSim(Sim):
    """The simulator running tests/mqtt_main.py (firmware + uplink)."""

    def __init__(self, state, *args, probe=False, **kw):
        self.probe = probe
        kw.setdefault("script", WRAPPER)
        super().__init__(state, *args, **kw)

    def argv(self):
        return super().argv() + (["--stall-probe"] if self.probe else [])

    def mqtt(self):
        return self.cmd("mqtt")

    def wait_status(self, pred, timeout=15, what="uplink status"):
        if isinstance(pred, str):
            want = pred
            pred = lambda s: s["status"] == want  # noqa: E731
            what = "uplink status %r" % want
        last = {}

        def ok():
            last.update(self.mqtt())
            return pred(last)

        try:
            self.wait_for(ok, timeout, what)
        except AssertionError as e:
            raise AssertionError("%s; last snapshot %s\n%s" % (e, last, self.output()[-3000:]))
        return dict(last)


def provision(state, pki, broker_port, ca="server-ca.crt", client="device", host="broker.test",
              secret=SECRET, **settings):
    """Write what the factory puts into the device's files, and the uplink
    settings, into a (stopped) simulator's state directory."""
    os.makedirs(state, exist_ok=True)
    with open(os.path.join(state, "serial"), "w") as f:
        f.write(SERIAL)
    files = {"mqtt-ca.crt": pki.read(ca) if ca else None,
             "mqtt-client.crt": pki.read(client + ".crt") if client else None,
             "mqtt-client.key": pki.read(client + ".key") if client else None,
             "totp.secret": secret.encode() if secret else None}
    for name, data in files.items():
        path = os.path.join(state, name)
        if data is None:
            if os.path.exists(path):
                os.remove(path)
            continue
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o600)
    values = {"wifi.ssid": "sim", "mqtt.enabled": True, "mqtt.host": host,
              "mqtt.ip": "127.0.0.1", "mqtt.port": broker_port, "mqtt.interval_s": 1}
    values.update({k.replace("__", "."): v for k, v in settings.items()})
    simctl.configure(state, **values)
