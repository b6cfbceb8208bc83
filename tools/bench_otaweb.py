"""Firmware upload from the Web Admin (tools/bench.py --only otaweb; issue
13): the Firmware page's upload against a plain microdot streaming upload
of the same file on the same image binary and heap, in one run.

- Firmware: a simulator on a fresh state per repetition (the update
  installs and the device restarts) running a test build N = 1.0.0 of the
  device image that trusts a throwaway key, at the 128 KiB device heap,
  flash without delay (the default), a 100 ms metering tick. The admin logs
  in as a person does (default password, the code off the display, a new
  password), asks for the ticket (POST /firmware/ticket), then POSTs the
  signed N+1 file to /firmware/upload?t=... in 16 KiB pieces (http.client).
  Timed from the head's first byte to the whole answer.
- Plain: tools/bench_otaweb_plain.py on the same binary and heap, a
  microdot app that streams the body 1 KiB at a time and drops it
  (`discard`) or hashes it (`sha256`); same client, same file.
- The updater alone, for where the time goes: the same file through the
  control socket's `ota-install` on a fresh meter (the same updater and
  flash, no HTTP), its own first byte to set_boot.
- Heap (repetitions of their own: `mem` collects, which slows the upload):
  `mem` before the window opens, with it open (logged in, Firmware page
  shown), and every 50 ms on a second control connection during the upload.
- Metering lateness (`lateness-reset`, then `state`): while uploading, and
  over a quiet stretch of the same open window just before.

Repetitions interleave the plain, Firmware page and updater uploads so
that the shared machine's noise falls on all three; the figures are
medians.
The N+1 file is a test build 1.1.0 signed with the key; it never boots
here, so it trusts no key and stays cached between runs (only N is built
per run, for the new key). Keys and images live in a temporary directory.
"""

import contextlib
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from simctl import configure, free_port  # noqa: E402
from bench_ota import Poller  # noqa: E402
from test_web import NEW_PASS, boot, set_first_password, web_on  # noqa: E402
import image as imagetool  # noqa: E402
import sign  # noqa: E402

N, N1 = "1.0.0", "1.1.0"
HEAP = "128k"  # the device budget, for both sides
TICK_MS = 100
SEND = 16 * 1024  # the client's pieces
QUIET_S = 1.5  # the window without an upload, for the lateness baseline
PLAIN = os.path.join(ROOT, "tools", "bench_otaweb_plain.py")


def _post(port, path, data, headers):
    """POST data in SEND pieces with a Content-Length (not chunked).
    Returns (status, JSON answer, seconds from the head's first byte to the
    whole answer)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        c.putrequest("POST", path, skip_accept_encoding=True)
        for k, v in dict(headers, **{"Content-Length": str(len(data)),
                                     "Content-Type": "application/octet-stream"}).items():
            c.putheader(k, v)
        mv = memoryview(data)
        t0 = time.perf_counter()
        c.endheaders()
        for i in range(0, len(data), SEND):
            c.send(mv[i:i + SEND])
        r = c.getresponse()
        body = r.read()
        return r.status, json.loads(body), time.perf_counter() - t0
    finally:
        c.close()


def _wait_port(port, proc):
    """Until something listens on port (proc still running)."""
    end = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.time() > end:
                raise RuntimeError("the plain server did not listen (exit %s)" % proc.poll())
            time.sleep(0.02)


@contextlib.contextmanager
def _meter(d, name, img, key):
    """A fresh meter running img (100 ms tick), at its measurement pages;
    after the block it must restart into the update (exit 3)."""
    state = os.path.join(d, name)
    os.makedirs(state)
    configure(state, **{"meter.tick_ms": TICK_MS})
    sim = boot(state, image=img, boot_keys=[key], profile="house")
    try:
        sim.wait_screen("POWER W", timeout=20)
        yield sim
        if sim.wait_exit(30) != 3:
            raise RuntimeError("the device did not restart after the update")
    finally:
        if sim.proc.poll() is None:
            sim.kill()


def _firmware(d, name, img, key, data, probe):
    """One upload through the Firmware page on a fresh meter. probe: sample
    the heap during it (and skip the lateness windows)."""
    with _meter(d, name, img, key) as sim:
        out = {"mem_closed": sim.cmd("mem")}
        web_on(sim)
        c = set_first_password(sim)
        token = c.csrf("/firmware")  # the page loads the update modules
        out["mem_open"] = sim.cmd("mem")
        if not probe:
            sim.cmd("lateness-reset")
            time.sleep(QUIET_S)  # the measured stretch
            out["lateness_quiet"] = sim.state_()["lateness_ms"]
        r = c.post("/firmware/ticket", {"csrf": token, "password": NEW_PASS,
                                        "size": str(len(data))})
        if r.status != 200:
            raise RuntimeError("ticket refused: %s %s" % (r.status, r.text))
        h = {"Origin": "http://127.0.0.1:%d" % sim.web_port,
             "Cookie": "; ".join("%s=%s" % kv for kv in c.cookies.items())}
        poller = Poller(sim.port, b"mem") if probe else None
        if probe:
            poller.start()
        else:
            sim.cmd("lateness-reset")
        status, answer, out["seconds"] = _post(sim.web_port, "/firmware/upload?t=" +
                                               json.loads(r.text)["ticket"], data, h)
        if not probe:
            out["lateness_upload"] = sim.state_()["lateness_ms"]
        else:
            poller.stop.set()
            poller.join(10)
            out["mem_during"] = poller.samples
        if (status, answer.get("version")) != (200, N1):
            raise RuntimeError("upload refused: %s %r" % (status, answer))
    out["memory_error"] = "MemoryError" in sim.output()
    return out


def _updater(d, name, img, key, upd):
    """The same file into the same updater without the Web Admin: the
    control socket's `ota-install` (1 KiB pieces from the file, yielding
    after each). Returns (seconds first byte to set_boot, lateness
    meanwhile)."""
    with _meter(d, name, img, key) as sim:
        sim.cmd("lateness-reset")
        r = sim.cmd("ota-install", upd)
        late = sim.state_()["lateness_ms"]  # (the restart comes 200 ms later)
        if not r.get("ok"):
            raise RuntimeError("ota-install: %r" % r)
    return r["ms"] / 1000, late


def _plain(port, data, mode):
    status, answer, secs = _post(port, "/upload", data, {})
    if status != 200 or answer["bytes"] != len(data):
        raise RuntimeError("plain %s: %s %r" % (mode, status, answer))
    return secs


def _kib_s(size, secs):
    return round(size / 1024 / secs, 1)


def _summary(runs, size):
    """Median seconds and KiB/s of a list of upload times, and all of them."""
    med = statistics.median(runs)
    return {"median_s": round(med, 3), "kib_per_s": _kib_s(size, med),
            "runs_s": [round(s, 3) for s in runs]}


def _lateness(summaries):
    return {"ticks": sum(s["n"] for s in summaries), "runs": summaries,
            "median_of_p99_ms": statistics.median(s["p99"] for s in summaries),
            "max_ms": max(s["max"] for s in summaries)}


def bench_otaweb(quick):
    reps, heap_reps = (3, 2) if quick else (5, 3)
    d = tempfile.mkdtemp(prefix="bench-otaweb-")
    procs = {}
    try:
        key = os.path.join(d, "k.pem")
        sign.keygen(key)
        img = imagetool.variant(os.path.join(d, "n"), N, trust=[key])[0]
        n1 = imagetool.variant(os.path.join(d, "n1"), N1)[0]
        upd = os.path.join(d, "meter-%s.bin" % N1)
        sign.sign(key, n1, upd, N1, "host")
        with open(upd, "rb") as f:
            data = f.read()
        size = len(data)
        env = dict(os.environ, MICROPYPATH=".frozen")
        for mode in ("discard", "sha256"):
            port = free_port()
            procs[mode] = (port, subprocess.Popen(
                [img, "-X", "heapsize=" + HEAP, PLAIN, str(port), mode], env=env, cwd=ROOT,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            _wait_port(port, procs[mode][1])
            _plain(port, data, mode)  # warm-up
        plain = {m: [] for m in procs}
        fw, alone = [], []
        for i in range(reps):
            for mode, (port, _) in procs.items():
                plain[mode].append(_plain(port, data, mode))
            fw.append(_firmware(d, "dev-%d" % i, img, key, data, probe=False))
            alone.append(_updater(d, "alone-%d" % i, img, key, upd))
        probed = [_firmware(d, "probed-%d" % i, img, key, data, probe=True)
                  for i in range(heap_reps)]
        out = {"file_bytes": size, "heapsize": HEAP, "tick_ms": TICK_MS, "repetitions": reps,
               "firmware": _summary([r["seconds"] for r in fw], size),
               "plain_discard": _summary(plain["discard"], size),
               "plain_sha256": _summary(plain["sha256"], size),
               "updater_alone": _summary([a[0] for a in alone], size)}
        f = out["firmware"]["kib_per_s"]
        out["ratio_vs_discard"] = round(f / out["plain_discard"]["kib_per_s"], 3)
        out["ratio_vs_sha256"] = round(f / out["plain_sha256"]["kib_per_s"], 3)
        out["ratio_vs_updater_alone"] = round(f / out["updater_alone"]["kib_per_s"], 3)
        out["lateness_quiet"] = _lateness([r["lateness_quiet"] for r in fw])
        out["lateness_upload"] = _lateness([r["lateness_upload"] for r in fw])
        out["lateness_updater_alone"] = _lateness([a[1] for a in alone])
        during = [s for r in probed for s in r["mem_during"]]
        out["heap"] = {
            "repetitions": len(probed), "samples": len(during),
            "free_window_closed": statistics.median(r["mem_closed"]["free"] for r in probed),
            "free_window_open": statistics.median(r["mem_open"]["free"] for r in probed),
            "used_window_closed": statistics.median(r["mem_closed"]["used"] for r in probed),
            "used_window_open": statistics.median(r["mem_open"]["used"] for r in probed),
            "largest_free_window_closed": statistics.median(r["mem_closed"]["largest_free"]
                                                            for r in probed),
            "largest_free_window_open": statistics.median(r["mem_open"]["largest_free"]
                                                          for r in probed),
            "min_free_during": min(s["free"] for s in during),
            "min_largest_free_during": min(s["largest_free"] for s in during),
            "refused": max(s["refused"] for s in during),
            "upload_s_with_probes": _summary([r["seconds"] for r in probed], size)}
        out["memory_error_logged"] = any(r["memory_error"] for r in fw + probed)
        return out
    finally:
        for _, p in procs.values():
            p.kill()
            p.wait()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(bench_otaweb("--quick" in sys.argv), indent=1))
