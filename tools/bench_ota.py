"""OTA benchmark (tools/bench.py --only ota): the firmware's updater in the
simulator, which runs the device image at the device budget.

- heap while an update runs, for a ~100 KB and a ~1.4 MB file: sampled over
  a second control connection (`state`: after a collection) while the first
  one streams the file in (`ota-install`); it must not depend on the size;
- write throughput on the host: the file's bytes over the time from its
  first byte to set_boot (`ota-install` replies it);
- the signature check's time on the 32-bit device image (RSA-3072, pow());
- metering tick lateness while an update runs, at a 100 ms tick.

Keys are throwaway, made in a temporary directory; the images are test
builds (tools/image.py build --out) trusting them.
"""

import os
import shutil
import socket
import json
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from simctl import Sim, configure, simtool  # noqa: E402
import image as imagetool  # noqa: E402
import sign  # noqa: E402

SIZES = (100 * 1024, 1400 * 1024)
TICK_MS = 100

SIG_BENCH = r"""
import time
from meter import otafmt
h = open(%r, "rb").read(448)
n = %r
ts = []
for _ in range(%d):
    t = time.ticks_us()
    ok = otafmt.signature_ok(h[:64], h[64:], n)
    ts.append(time.ticks_diff(time.ticks_us(), t))
ts.sort()
print(ok, ts[len(ts) // 2], ts[0], ts[-1])
"""


class Poller(threading.Thread):
    """A control command (`state`: after a collection; tools/bench_otaweb.py
    asks `mem`) every 50 ms on its own control connection until stopped."""

    def __init__(self, port, command=b"state"):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.rfile = self.sock.makefile("rb")
        self.line = command + b"\n"
        self.samples = []
        self.stop = threading.Event()

    def run(self):
        try:
            while not self.stop.is_set():
                self.sock.sendall(self.line)
                line = self.rfile.readline()
                if not line:
                    return
                self.samples.append(json.loads(line))
                time.sleep(0.05)
        except (OSError, ValueError):
            return  # the firmware reset after the update


def _one(d, imgs, key, size):
    payload = os.urandom(size)
    raw = os.path.join(d, "payload-%d" % size)
    with open(raw, "wb") as f:
        f.write(payload)
    upd = raw + ".bin"
    sign.sign(key, raw, upd, "1.1.0", "host")
    state = os.path.join(d, "dev-%d" % size)
    os.makedirs(state)
    configure(state, **{"meter.tick_ms": TICK_MS})
    with Sim(state, image=imgs, boot_keys=[key], profile="house") as sim:
        sim.wait_screen("POWER W", timeout=20)
        base = [sim.state_()["heap_used"] for _ in range(5)]
        sim.cmd("lateness-reset")
        p = Poller(sim.port)
        p.start()
        time.sleep(0.3)
        r = sim.cmd("ota-install", upd)
        p.stop.set()
        p.join(5)
        if not r.get("ok"):
            raise RuntimeError("update refused: %r" % r)
        during = [s["heap_used"] for s in p.samples]
        last = p.samples[-1]
        sim.wait_exit(30)
    file_bytes = os.path.getsize(upd)
    return {"file_bytes": file_bytes, "ms": r["ms"],
            "kb_per_s": round(file_bytes / 1024 / (r["ms"] / 1000), 1),
            "heap_used_before": min(base), "heap_used_max_during": max(during),
            "held_during_update": max(during) - min(base), "samples": len(during),
            "lateness_ms": last["lateness_ms"]}


def bench_ota(quick):
    d = tempfile.mkdtemp(prefix="bench-ota-")
    try:
        key = os.path.join(d, "k.pem")
        sign.keygen(key)
        img = imagetool.variant(os.path.join(d, "n"), "1.0.0", trust=[key])[0]
        out = {"sizes": {}}
        for size in SIZES:
            out["sizes"][str(size)] = _one(d, img, key, size)
        upd = os.path.join(d, "payload-%d.bin" % SIZES[0])
        code = SIG_BENCH % (upd, sign.modulus(key), 20 if quick else 100)
        r = subprocess.run(simtool.command([], runtime=simtool.IMAGE)[:3] + ["-c", code],
                           env=simtool.env(), capture_output=True, text=True, timeout=120)
        ok, med, lo, hi = r.stdout.split()
        assert ok == "True", r.stdout + r.stderr
        out["signature_us"] = {"median": int(med), "min": int(lo), "max": int(hi),
                               "image": "32-bit device image"}
        return out
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(bench_ota("--quick" in sys.argv), indent=1))
