#!/usr/bin/env python3
"""Benchmark of the cloud uplink: loop stalls, TLS handshake, throughput, heap.

    .venv/bin/python tools/bench_mqtt.py [--seconds N] [--json]

Needs what the tests need (mosquitto, openssl, paho-mqtt, pyotp: `python3
tools/dev.py test` installs them). Everything runs on this machine, against
a mosquitto on 127.0.0.1 with the test PKI (tests/pki.py, tests/mqttlab.py).

Loop stall = how late a task that sleeps 5 ms wakes up (worst case), i.e. the
longest time anything kept the asyncio loop from running other tasks. It is
measured in the simulator (the whole firmware: metering, display, control
socket, uplink; tests/mqtt_main.py --stall-probe) during:

  normal      connected, telemetry + counters every second, HA discovery on,
              cloud commands arriving
  outage      the broker killed: failed connection attempts with back-off
  reconnect   the broker back: TCP + TLS handshake + CONNECT + the burst of
              retained state, backlog and discovery
  tarpit      a "broker" that accepts TCP but never answers TLS (a slow or
              broken network): the uplink waits, bounded by its timeout

and, separately, in a bare MicroPython process:

  handshake   TLS 1.2 ECDHE/ECDSA P-256 mutual handshake + CONNECT/CONNACK
              (umqtt.robust's connect(), the CONNACK awaited in asyncio),
              repeated: its duration and the worst stall inside it
  throughput  QoS 0 publishes of a telemetry-sized message, as fast as the
              link takes them (umqtt.robust's publish() into meter.mqtt's
              pipe, then one drained write each): publishes per second and
              the worst stall
  heap        GC heap used by the whole firmware with the uplink off, and
              with its TLS session up (gc.mem_alloc after a collection; the
              unix port is 64-bit, so objects are about twice their ESP32
              size; mbedTLS allocates outside the GC heap on both ports: on
              the ESP32 from the IDF heap, about 20-40 KB per session,
              shared/notes/micropython-esp32.md section 5)

Figures are for the unix port on this machine: the ESP32 is far slower at
the handshake's big-number arithmetic (measure there before relying on them).
"""

import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import pki as pkimod  # noqa: E402
import upy  # noqa: E402
from mqttlab import SECRET, SERIAL, Cloud, Mosquitto, MqttSim, provision  # noqa: E402

BARE = r"""
import asyncio, gc, json, time
from meter import mqtt, mqtttls
d = %(dir)r + "/"
def rd(n):
    with open(d + n, "rb") as f:
        return f.read()
stall = [0]
async def probe():
    last = time.ticks_ms()
    while True:
        await asyncio.sleep_ms(5)
        now = time.ticks_ms()
        stall[0] = max(stall[0], time.ticks_diff(now, last) - 5)
        last = now
async def main():
    p = asyncio.create_task(probe())
    await asyncio.sleep_ms(20)
    ctx = mqtttls.tls_context(rd("server-ca.crt"), rd("device.crt"), rd("device.key"))
    hs = []
    hs_stall = 0
    for i in range(%(n)d):
        stall[0] = 0
        t0 = time.ticks_us()
        c = await mqtt.open_session("127.0.0.1", %(port)d, "broker.test", ctx, "bench-%%d" %% i,
                                    60, None, b"")
        hs.append(time.ticks_diff(time.ticks_us(), t0) / 1000)
        hs_stall = max(hs_stall, stall[0])
        await c.close()
    c = await mqtt.open_session("127.0.0.1", %(port)d, "broker.test", ctx, %(serial)r, 60, None, b"")
    msg = json.dumps({"t": 1795000000, "v": [230.01, 229.5, 231.2], "i": [4.348, 10.87, 6.522],
                      "p": [1000.0, 2000.0, -1500.0, 1500.0], "q": [0.0, 1500.0, 0.0, 1500.0],
                      "s": [1000.0, 2500.0, 1500.0, 5000.0], "pf": [1.0, 0.8, -1.0, 0.3],
                      "f": 50.0})
    stall[0] = 0
    n = 0
    t0 = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < %(ms)d:
        await c.publish("meters/%(serial)s/telemetry", msg)
        n += 1
    dt = time.ticks_diff(time.ticks_ms(), t0)
    pub_stall = stall[0]
    await c.close()
    p.cancel()
    hs.sort()
    print("RESULT " + json.dumps({"handshake_ms_median": hs[len(hs) // 2], "handshake_ms_max": hs[-1],
          "handshake_stall_ms": hs_stall, "handshakes": len(hs), "publish_per_s": n * 1000 // dt,
          "publish_bytes": len(msg), "publish_stall_ms": pub_stall}))
asyncio.run(main())
"""


def bare(pki, port, seconds):
    out = upy.exec_code(BARE % {"dir": pki.dir, "port": port, "n": 20, "ms": seconds * 1000,
                                "serial": SERIAL}, timeout=120)
    line = [l for l in out.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[7:])


class Tarpit:
    """Accepts TCP connections and never says a word."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(8)
        self.port = self.ls.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                self.conns.append(self.ls.accept()[0])
            except OSError:
                return

    def close(self):
        self.ls.close()
        for c in self.conns:
            c.close()


def in_sim(pki, work, seconds):
    import pyotp

    from simctl import configure

    res = {}
    b = Mosquitto(pki, os.path.join(work, "broker"))
    state = os.path.join(work, "dev")
    # baseline: the same firmware with the uplink switched off
    provision(state, pki, b.port, mqtt__ha_discovery=True, mqtt__enabled=False)
    sim = MqttSim(state, probe=True)
    sim.wait_status("off")
    time.sleep(2)
    sim.cmd("stall")
    time.sleep(seconds)
    res["baseline"] = sim.cmd("stall")["max"]
    res["heap_off"] = sim.state_()["heap_used"]
    sim.quit()
    configure(state, **{"mqtt.enabled": True})
    cloud = Cloud(pki, b.port)
    sim = MqttSim(state, probe=True)
    try:
        sim.wait_status("online", timeout=20)
        time.sleep(2)
        sim.cmd("stall")
        # normal operation, with a command every few seconds
        totp = pyotp.TOTP(SECRET)
        end = time.time() + seconds
        off = 0
        n = 0
        while time.time() < end:
            off += 30
            t = sim.cmd("clock", off)["time"]
            n += 1
            r = cloud.command(SERIAL, {"id": "b%d" % n, "code": totp.at(t), "cmd": "status"})
            assert r["ok"], r
            time.sleep(2)
        res["normal"] = sim.cmd("stall")["max"]
        res["normal_commands"] = n
        res["published"] = sim.mqtt()["published"]
        res["heap_on"] = sim.state_()["heap_used"]
        # outage: broker killed
        cloud.close()
        b.kill()
        sim.cmd("stall")
        time.sleep(seconds)
        s = sim.mqtt()
        res["outage"] = sim.cmd("stall")["max"]
        res["outage_attempts"] = s["failures"]
        # back: reconnect (handshake + announce burst)
        b.start()
        sim.wait_status(lambda s: s["connected"], timeout=30)
        time.sleep(1.5)
        res["reconnect"] = sim.cmd("stall")["max"]
        res["reconnect_handshake_ms"] = sim.mqtt()["handshake_ms"]
        res["lateness_ms"] = sim.state_()["lateness_ms"]
        # tarpit: TCP accepted, TLS never answered
        pit = Tarpit()
        sim.quit()
        configure(state, **{"mqtt.port": pit.port})
        sim = MqttSim(state, probe=True)
        sim.wait_status(lambda s: s["status"] == "connecting", timeout=10)
        time.sleep(1)
        sim.cmd("stall")
        time.sleep(seconds)
        res["tarpit"] = sim.cmd("stall")["max"]
        res["tarpit_status"] = sim.mqtt()["status"]
        pit.close()
    finally:
        if sim.proc.poll() is None:
            sim.kill()
        b.close()
    return res


def main(argv):
    seconds = 10
    if "--seconds" in argv:
        seconds = int(argv[argv.index("--seconds") + 1])
    work = tempfile.mkdtemp(prefix="bench-mqtt-")
    try:
        pki = pkimod.make(os.path.join(work, "pki"), SERIAL)
        b = Mosquitto(pki, os.path.join(work, "bare-broker"))
        try:
            res = bare(pki, b.port, seconds)
        finally:
            b.close()
        res.update(in_sim(pki, work, seconds))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if "--json" in argv:
        print(json.dumps(res, indent=1))
        return 0
    print("| measurement | result |\n|---|---|")
    rows = [
        ("worst loop stall, uplink off (baseline: metering, display, control socket)",
         "%d ms" % res["baseline"]),
        ("worst loop stall, normal operation (telemetry 1/s, HA on, %d commands)"
         % res["normal_commands"], "%d ms" % res["normal"]),
        ("worst loop stall, broker down (%d failed attempts)" % res["outage_attempts"],
         "%d ms" % res["outage"]),
        ("worst loop stall, reconnect (handshake + announce burst)", "%d ms" % res["reconnect"]),
        ("worst loop stall, TLS never answered (status %r)" % res["tarpit_status"],
         "%d ms" % res["tarpit"]),
        ("TLS handshake + CONNACK, median / max of %d" % res["handshakes"],
         "%.0f / %.0f ms" % (res["handshake_ms_median"], res["handshake_ms_max"])),
        ("worst loop stall inside the handshakes", "%d ms" % res["handshake_stall_ms"]),
        ("QoS 0 publishes sustained (%d-byte telemetry)" % res["publish_bytes"],
         "%d /s" % res["publish_per_s"]),
        ("worst loop stall while publishing flat out", "%d ms" % res["publish_stall_ms"]),
        ("GC heap used by the firmware: uplink off / session up (64-bit unix port)",
         "%d / %d bytes (+%d)" % (res["heap_off"], res["heap_on"], res["heap_on"] - res["heap_off"])),
        ("metering tick lateness through normal, outage and reconnect (ms)",
         json.dumps(res["lateness_ms"], sort_keys=True)),
    ]
    for k, v in rows:
        print("| %s | %s |" % (k, v))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
