#!/usr/bin/env python3
"""Benchmarks: memory floors and soak, metering tick lateness, flash writes
per day, Web Admin throughput and memory, local API latency and memory.

    python3 tools/dev.py bench [--quick] [--only NAME] [--form frozen-32|mpy-32|mpy-64]

All figures come from the real firmware in the simulator, which runs the
device image (MicroPython built 32-bit, firmware frozen in) at the device
budget unless a benchmark says otherwise. Results are printed as JSON, one
line per benchmark, then all together; docs/benchmarks.md holds them as
tables. NAME: heap, breakdown, soak, lateness, flash, web, api, ota, otaweb (soak runs
only when named: it takes an hour).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from simctl import Sim, simtool  # noqa: E402
from bench_memory import bench_breakdown, bench_floors, bench_soak  # noqa: E402

bench_heap = bench_floors
from bench_ota import bench_ota  # noqa: E402
from bench_otaweb import bench_otaweb  # noqa: E402

import upy  # noqa: E402


def _menu_activity(sim, seconds):
    """A user scrolling pages and walking the Settings menu, ~4 presses/s."""
    end = time.time() + seconds
    sim.tap("ok")
    sim.wait_screen("New PIN:")
    sim.enter_pin("1290")
    sim.enter_pin("1290")
    sim.wait_screen("SETTINGS")
    presses = 0
    while time.time() < end:
        for b in ("down", "down", "ok", "down", "up", "ok"):  # in and out of submenus
            sim.tap(b, ms=120)
            presses += 1
        sim.tap("ok", ms=900)  # back
        presses += 1
    return presses


def bench_lateness(quick):
    """Tick lateness at the default 1 s tick, idle and while a user walks the
    menus, measured in one run of one simulator."""
    seconds = 20 if quick else 60
    d = tempfile.mkdtemp(prefix="bench-late-")
    try:
        with Sim(os.path.join(d, "dev"), profile="house") as sim:
            sim.wait_screen("POWER W")
            sim.cmd("lateness-reset")
            time.sleep(seconds)
            idle = sim.state_()["lateness_ms"]
            sim.cmd("lateness-reset")
            presses = _menu_activity(sim, seconds)
            st = sim.state_()
            sim.quit()
        return {"seconds_each": seconds, "tick_ms": 1000, "idle": idle,
                "menu_activity": st["lateness_ms"], "button_presses": presses,
                "heap_free": st["heap_free"], "heap_used": st["heap_used"]}
    finally:
        shutil.rmtree(d, ignore_errors=True)


FLASH_DAY = r"""
import json
from meter.board.flashfile import FilePartition
from meter.board.icsim import IcSim
from meter.atm90e32 import ATM90E32, UWH_PER_LSB
from meter.logrec import record_size
from meter.logstore import LogStore
from meter.energy import EnergyCounters
class Clock:
    def time(self): return 0
    def time_valid(self): return False
now = [0]
ic = IcSim(profile=%r, clock_ms=lambda: now[0])
m = ATM90E32(ic)
m.init()
part = FilePartition(%r, 64 * 1024)
c = EnergyCounters(LogStore(part), Clock(), None, UWH_PER_LSB)
buf = [0] * 8
hours = %d
for t in range(hours * 3600):
    now[0] = t * 1000
    m.read_energy(buf)
    c.add(buf)
    if c.due(now[0]):
        c.save(now[0])
print(json.dumps({"hours": hours, "saves": c.saves, "erases": part.erases,
                  "record_bytes": record_size(72), "blocks": 16,
                  "imp_t_wh": c.uwh[3] // 1000000}))
"""


def bench_flash(quick):
    hours = 2 if quick else 24
    out = {}
    for profile in ("house", "full"):
        d = tempfile.mkdtemp(prefix="bench-flash-")
        try:
            r = json.loads(upy.exec_code(FLASH_DAY % (profile, d + "/c.bin", hours),
                                         timeout=3600).strip().splitlines()[-1])
        finally:
            shutil.rmtree(d, ignore_errors=True)
        per_day = r["saves"] * 24 / hours
        erases_day = r["erases"] * 24 / hours
        per_block_day = erases_day / r["blocks"]
        r.update({"writes_per_day": round(per_day), "erases_per_day": round(erases_day, 1),
                  "lifetime_years_100k": round(100000 / per_block_day / 365, 1)
                  if per_block_day else None})
        out[profile] = r
    return out


HELLO = r"""
import asyncio
from microdot import Microdot
app = Microdot()

@app.route("/")
async def index(request):
    return "Hello, world!"

asyncio.run(app.start_server(host="127.0.0.1", port=%d))
"""


def _sampling(probe, fn):
    """Run fn() while a thread records probe() every 100 ms; returns
    (fn's result, the samples)."""
    samples = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            samples.append(probe())
            time.sleep(0.1)

    t = threading.Thread(target=sample)
    t.start()
    try:
        return fn(), samples
    finally:
        done.set()
        t.join()


def _load(port, path, seconds, clients, cookie=None, header=None):
    """`clients` threads, each requesting `path` over a new connection as
    fast as it is answered, for `seconds`. Returns requests/s, latency
    percentiles (ms) and the failures (refused, reset, non-200)."""
    import socket

    req = "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % (path, port)
    if cookie:
        req += "Cookie: %s\r\n" % cookie
    if header:
        req += header + "\r\n"
    req = (req + "\r\n").encode()
    lat, fails = [], {}
    lock = threading.Lock()
    end = time.time() + seconds

    def client():
        while time.time() < end:
            t0 = time.perf_counter()
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.sendall(req)
                data = b""
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    data += d
                s.close()
                ok = data.startswith(b"HTTP/1.0 200")
                why = None if ok else data[9:12].decode(errors="replace") or "empty"
            except OSError as e:
                why = type(e).__name__
            dt = time.perf_counter() - t0
            with lock:
                if why is None:
                    lat.append(dt)
                else:
                    fails[why] = fails.get(why, 0) + 1

    ts = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.time() - t0
    lat.sort()
    pct = (lambda p: round(lat[min(len(lat) - 1, int(len(lat) * p))] * 1000, 2)) if lat else None
    return {"requests": len(lat), "rps": round(len(lat) / wall, 1),
            "p50_ms": pct(0.50) if lat else None, "p95_ms": pct(0.95) if lat else None,
            "failures": fails}


def _wait_port(port, timeout=20):
    import socket

    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on %d" % port)


PBKDF2 = r"""
import json, time, hashlib
from meter import passwd
def ms(f):
    t = time.ticks_us(); f(); return time.ticks_diff(time.ticks_us(), t) / 1000
n = passwd.ITERATIONS
full = min(ms(lambda: passwd.pbkdf2_sha256(b"correct horse battery", b"0123456789abcdef", n))
           for _ in range(5))
pad, u = b"6" * 64, b"u" * 32
def sha_only():
    sha = hashlib.sha256
    for _ in range(n):
        h = sha(pad); h.update(u); h.digest()
        h = sha(pad); h.update(u); h.digest()
def loop():
    x = 0
    for i in range(1000000):
        x += i
print(json.dumps({"iterations": n, "ms": full, "us_per_iteration": full * 1000 / n,
                  "sha_part_us": min(ms(sha_only) for _ in range(5)) * 1000 / n,
                  "loop_1m_ms": min(ms(loop) for _ in range(3))}))
"""


def bench_web(quick):
    """Web Admin (docs/web.md): the Dashboard's data endpoint /api/live under
    4 concurrent clients against a bare microdot hello-world in the same run,
    same port, same unix port and heap; the heap with 8 concurrent clients;
    the heap before and after a window."""

    from simctl import free_port

    seconds = 5 if quick else 15
    heap = simtool.DEVICE_HEAP
    port = free_port()
    out = {"seconds_each": seconds, "heap": heap, "clients": 4}
    # 0. PBKDF2 at the stored iteration count (docs/security.md)
    out["pbkdf2"] = json.loads(upy.exec_code(PBKDF2).strip().splitlines()[-1])
    # 1. bare microdot hello-world
    proc = subprocess.Popen(upy.cmd(["-c", HELLO % port], heap=heap), env=upy.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port)
        _load(port, "/", 1, 4)  # warm-up
        out["hello"] = _load(port, "/", seconds, 4)
    finally:
        proc.kill()
        proc.wait()
    time.sleep(0.5)  # the port is free again
    # 2. the firmware's Web Admin, logged in, same port
    d = tempfile.mkdtemp(prefix="bench-web-")
    try:
        with Sim(os.path.join(d, "dev"), "--web-port", str(port), heap=heap,
                 profile="house") as sim:
            sim.wait_screen("POWER W")
            assert sim.cmd("web", "on") == {"error": None}
            _wait_port(port)
            cookie = _web_login(port, sim)
            _load(port, "/api/live", 1, 4, cookie)  # warm-up
            sim.cmd("lateness-reset")
            out["api_live"] = _load(port, "/api/live", seconds, 4, cookie)
            out["lateness_during_load"] = sim.state_()["lateness_ms"]
            # 3. heap with 8 concurrent clients, sampled while they run
            eight, samples = _sampling(lambda: sim.cmd("web")["heap_used"],
                                       lambda: _load(port, "/api/live", max(3, seconds // 3),
                                                     8, cookie))
            w = sim.cmd("web")
            out["eight_clients"] = {"heap_used_max": max(samples), "samples": len(samples),
                                    "load": eight}
            # 4. heap before and after windows (the first one interns names)
            windows = []
            for _ in range(2):
                sim.cmd("web", "off")
                st = sim.wait_for(lambda: (lambda s: s if not s["active"] and not s["closing"]
                                           else None)(sim.cmd("web")), what="closed")
                windows.append({"before": st["heap_before"], "after": st["heap_after"],
                                "delta": st["heap_after"] - st["heap_before"]})
                sim.cmd("web", "on")
                _wait_port(port)
                during = sim.cmd("web")["heap_used"]
                windows[-1]["during_idle_window"] = during
            out["windows"] = windows
            out["server_stats"] = w["stats"]
            sim.quit()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    # 5. the same windows from the .mpy deploy tree, as the device loads them
    simtool.build_mpy_tree()
    d = tempfile.mkdtemp(prefix="bench-web-mpy-")
    try:
        with Sim(os.path.join(d, "dev"), "--web-port", str(port), heap=heap, profile="house",
                 mpy=True) as sim:
            sim.wait_screen("POWER W")
            windows = []
            for _ in range(2):
                sim.cmd("web", "on")
                _wait_port(port)
                cookie = _web_login(port, sim) if not windows else cookie
                _load(port, "/api/live", 1, 4, cookie)
                during = sim.cmd("web")["heap_used"]
                sim.cmd("web", "off")
                st = sim.wait_for(lambda: (lambda s: s if not s["active"] and not s["closing"]
                                           else None)(sim.cmd("web")), what="closed")
                windows.append({"before": st["heap_before"], "during": during,
                                "after": st["heap_after"],
                                "delta": st["heap_after"] - st["heap_before"]})
            out["windows_mpy"] = windows
            sim.quit()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    h, a = out["hello"], out["api_live"]
    out["ratio_rps"] = round(a["rps"] / h["rps"], 3) if h["rps"] else None
    out["ratio_p95"] = round(a["p95_ms"] / h["p95_ms"], 2) if h["p95_ms"] else None
    return out


def bench_api(quick):
    """Local API (docs/api.md), from the .mpy deploy tree as the device loads
    it: latency of a token-authenticated GET /api/v1/live against the
    unauthenticated bare GET /api/v1 of the same server in the same run (4
    concurrent clients), tick lateness during it, and the heap with the API
    off, on (idle, window closed) and under load."""

    from simctl import free_port

    seconds = 5 if quick else 15
    heap = simtool.DEVICE_HEAP
    web_port, api_port = free_port(), free_port()
    out = {"seconds_each": seconds, "heap": heap, "clients": 4, "firmware": ".mpy tree"}
    simtool.build_mpy_tree()
    d = tempfile.mkdtemp(prefix="bench-api-")
    try:
        with Sim(os.path.join(d, "dev"), "--web-port", str(web_port), "--api-port",
                 str(api_port), heap=heap, profile="house", mpy=True) as sim:
            sim.wait_screen("POWER W")
            time.sleep(1)
            out["heap_api_off"] = sim.cmd("api")["heap_used"]
            assert sim.cmd("api", "on") == {"error": None}
            sim.wait_for(lambda: sim.cmd("api")["listening"], what="api on")
            time.sleep(0.5)
            out["heap_api_on_idle"] = sim.cmd("api")["heap_used"]
            # pair: the Web Admin window open, the app asks, the admin confirms
            sim.cmd("web", "on")
            _wait_port(web_port)
            token = _api_pair(web_port, api_port, sim)
            sim.cmd("web", "off")
            sim.wait_for(lambda: not sim.cmd("web")["active"] and not sim.cmd("web")["closing"],
                         what="window closed")
            time.sleep(0.5)
            out["heap_api_on_with_token_store"] = sim.cmd("api")["heap_used"]
            auth = "Authorization: Bearer " + token
            _load(api_port, "/api/v1", 1, 4)  # warm-up
            _load(api_port, "/api/v1/live", 1, 4, header=auth)
            out["bare"] = _load(api_port, "/api/v1", seconds, 4)
            sim.cmd("lateness-reset")
            out["token_live"], samples = _sampling(
                lambda: sim.cmd("api")["heap_used"],
                lambda: _load(api_port, "/api/v1/live", seconds, 4, header=auth))
            out["lateness_during_token_load"] = sim.state_()["lateness_ms"]
            out["heap_used_max_under_load"] = max(samples)
            out["server_stats"] = sim.cmd("api")["stats"]
            sim.quit()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    b, a = out["bare"], out["token_live"]
    out["ratio_p50"] = round(a["p50_ms"] / b["p50_ms"], 2) if b["p50_ms"] else None
    out["ratio_p95"] = round(a["p95_ms"] / b["p95_ms"], 2) if b["p95_ms"] else None
    out["ratio_rps"] = round(a["rps"] / b["rps"], 3) if b["rps"] else None
    return out


def _api_pair(web_port, api_port, sim):
    """Pair an app token and confirm it as the admin would; returns it."""
    import http.client
    import re
    import urllib.parse

    c = http.client.HTTPConnection("127.0.0.1", api_port, timeout=10)
    c.request("POST", "/api/v1/pair", body=json.dumps({"name": "bench"}),
              headers={"Content-Type": "application/json"})
    r = json.loads(c.getresponse().read())
    c.close()
    cookie = _web_login(web_port, sim)
    h = {"Host": "127.0.0.1:%d" % web_port, "Cookie": cookie,
         "Origin": "http://127.0.0.1:%d" % web_port}
    c = http.client.HTTPConnection("127.0.0.1", web_port, timeout=10)
    c.request("GET", "/tokens", headers=h)
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', c.getresponse().read().decode()).group(1)
    c.close()
    h["Content-Type"] = "application/x-www-form-urlencoded"
    c = http.client.HTTPConnection("127.0.0.1", web_port, timeout=10)
    c.request("POST", "/tokens/confirm", body=urllib.parse.urlencode({"csrf": csrf, "id": r["id"]}),
              headers=h)
    assert c.getresponse().status == 200
    c.close()
    return r["token"]


def _web_login(port, sim, password="bench-pass-2026"):
    """Log in (setting the first password, with the code the display then
    shows); returns the session cookie."""
    import http.client
    import re
    import urllib.parse

    jar = {}

    def call(method, path, form=None):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        h = {"Host": "127.0.0.1:%d" % port, "Origin": "http://127.0.0.1:%d" % port}
        if jar:
            h["Cookie"] = "; ".join("%s=%s" % kv for kv in jar.items())
        body = urllib.parse.urlencode(form) if form else None
        if body:
            h["Content-Type"] = "application/x-www-form-urlencoded"
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        text = r.read().decode()
        for v in r.headers.get_all("Set-Cookie") or ():
            k, _, rest = v.partition("=")
            jar[k] = rest.split(";")[0]
        return r, text

    def token(path):
        return re.search(r'name="csrf" value="([0-9a-f]+)"', call("GET", path)[1]).group(1)

    call("POST", "/login", {"csrf": token("/login"), "user": "admin", "password": "admin"})
    call("POST", "/login", {"csrf": token("/login"), "user": "admin", "password": "admin",
                            "code": sim.login_code()})
    call("POST", "/password", {"csrf": token("/password"), "new": password, "repeat": password})
    jar.pop("sid", None)
    call("POST", "/login", {"csrf": token("/login"), "user": "admin", "password": password})
    return "sid=" + jar["sid"]


def main(argv):
    quick = "--quick" in argv
    only = argv[argv.index("--only") + 1] if "--only" in argv else None
    if "--form" in argv:  # heap: one form only, e.g. --form frozen-32
        form = argv[argv.index("--form") + 1]
        globals()["bench_heap"] = lambda q: bench_floors(q, (form,))
    results = {}
    for name, fn in (("heap", bench_heap), ("lateness", bench_lateness), ("flash", bench_flash),
                     ("web", bench_web), ("api", bench_api), ("ota", bench_ota),
                     ("otaweb", bench_otaweb),
                     ("breakdown", bench_breakdown), ("soak", bench_soak)):
        if only and name != only or not only and name == "soak":
            continue
        t = time.time()
        results[name] = fn(quick)
        results[name]["bench_seconds"] = round(time.time() - t, 1)
        print("%s: %s" % (name, json.dumps(results[name])), flush=True)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
