"""Memory benchmarks (tools/bench.py heap, soak): the lowest heap each
scenario runs in, for the three forms of the firmware, and a long soak with
every service open at the device budget.

A scenario "runs" at a heap when, for its whole duration, the simulator
meters, no task restarts, no MemoryError is logged, the firmware neither
refused nor failed anything for want of memory (meter.memory counters),
and every page, stream and publish the clients ask for is served.

Forms: the device image (32-bit, firmware frozen in), the same 32-bit
runtime loading the .mpy deploy tree, and the 64-bit PyPI port loading
that tree (what the simulator ran before the image existed).
"""

import os
import shutil
import tempfile
import time

import loadrig
import mqttlab
import pki as pkimod
from loadrig import AllServices, Loop, WebClient, pair_token, wait_port
from simctl import Sim, free_port, simtool

FORMS = (("frozen-32", {}), ("mpy-32", {"mpy": True}), ("mpy-64", {"mpy": True, "dev": True}))
STEP_K = 4


class _Run:
    """One scenario at one heap: start() it, then ok() at the end."""

    def __init__(self, d, heap, form):
        self.d, self.heap, self.form = d, heap, form
        self.sim, self.loops, self.extra = None, [], []

    def boot(self, *args):
        self.sim = Sim(os.path.join(self.d, "dev"), *args, heap=self.heap, profile="house",
                       bench_heap=True, **self.form)
        self.sim.wait_screen("POWER W", timeout=20)
        return self.sim

    def ok(self):
        st = self.sim.state_()
        m = self.sim.cmd("mem")
        good = (st["counters_uwh"]["imp_t"] > 0 and not any(st["restarts"].values())
                and m["errors"] == 0 and m["refused"] == 0
                and all(t.errors == 0 and t.runs + t.is_alive() > 0 for t in self.loops))
        return good, m

    def stop(self):
        for t in self.loops:
            t.stopping.set()
        for t in self.loops:
            if t.ident is not None:
                t.join(10)
        if self.sim is not None and self.sim.proc.poll() is None:
            self.sim.kill()
        for x in self.extra:
            x.close()


def _idle(r):
    sim = r.boot()
    sim.cmd("tap", "down")
    sim.wait_screen("VOLTAGE")


def _web(r):
    port = free_port()
    sim = r.boot("--web-port", str(port))
    assert sim.cmd("web", "on") == {"error": None}
    wait_port(port)
    web = WebClient(port).login(first=True, sim=sim)

    def pages():
        for path in loadrig.PAGES + ("/api/live",):
            res, _ = web.call("GET", path)
            if res.status != 200:
                raise AssertionError("%s: %d" % (path, res.status))

    r.loops = [Loop("pages", pages, 0.3)]
    r.loops[0].start()


def _api(r):
    wp, ap = free_port(), free_port()
    sim = r.boot("--web-port", str(wp), "--api-port", str(ap))
    assert sim.cmd("api", "on") == {"error": None}
    assert sim.cmd("web", "on") == {"error": None}
    wait_port(wp)
    wait_port(ap)
    token = pair_token(WebClient(wp).login(first=True, sim=sim), ap)
    sim.cmd("web", "off")
    r.loops = [Loop("stream", lambda: _stream(ap, token, r.loops[0]))]
    r.loops[0].start()


def _stream(port, token, me):
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/api/v1/live/stream", headers={"Host": "127.0.0.1:%d" % port,
                                                         "Authorization": "Bearer " + token})
        res = c.getresponse()
        if res.status != 200:
            raise AssertionError("stream: %d" % res.status)
        while not me.stopping.is_set() and res.fp.readline():
            pass
    finally:
        c.close()


def _mqtt(r):
    p = pkimod.make(os.path.join(r.d, "pki"), mqttlab.SERIAL)
    broker = mqttlab.Mosquitto(p, os.path.join(r.d, "broker"))
    r.extra.append(broker)
    mqttlab.provision(os.path.join(r.d, "dev"), p, broker.port)
    sim = r.boot()
    sim.wait_for(lambda: sim.state_()["mqtt"]["connected"], 30, "uplink connected")


class _All:
    def __init__(self, rig):
        self.rig = rig

    def close(self):
        self.rig.stop()


def _all(r):
    rig = AllServices(r.d, heap=r.heap, bench_heap=True, page_pause=0.3, **r.form)
    r.extra.append(_All(rig))
    rig.start()
    r.sim, r.loops = rig.sim, rig.loops


SCENARIOS = (("idle", _idle), ("web", _web), ("api", _api), ("mqtt", _mqtt), ("all", _all))


def runs_at(scenario, heap_k, form, seconds):
    d = tempfile.mkdtemp(prefix="bench-mem-")
    r = _Run(d, "%dk" % heap_k, form)
    try:
        try:
            dict(SCENARIOS)[scenario](r)
            time.sleep(seconds)
            good, m = r.ok()
        except Exception:  # it did not start or did not run: too small
            return False
        return good and "MemoryError" not in r.sim.output()
    finally:
        r.stop()
        shutil.rmtree(d, ignore_errors=True)


def floor(scenario, form, seconds, lo, hi):
    """Lowest heap (KiB, in STEP_K steps) at which the scenario runs,
    confirmed by a second run; None if it does not run at hi."""
    if not runs_at(scenario, hi, form, seconds):
        return None
    while hi - lo > STEP_K:
        mid = (lo + hi) // 2 // STEP_K * STEP_K
        if runs_at(scenario, mid, form, seconds):
            hi = mid
        else:
            lo = mid
    while not runs_at(scenario, hi, form, seconds):
        hi += STEP_K
    return hi


def bench_floors(quick, forms=None):
    """forms: the names of FORMS to measure (None: all three)."""
    seconds = 5 if quick else 10
    tree = tempfile.mkdtemp(prefix="bench-tree-")
    simtool.build_mpy_tree(tree)
    out = {"seconds_each": seconds, "step_kib": STEP_K}
    try:
        for name, form in FORMS:
            if forms and name not in forms:
                continue
            form = dict(form, mpy=tree) if form.get("mpy") else form
            # (KiB) fails at lo, runs at hi: from the figures measured so far
            lo, hi = {"frozen-32": (32, 160), "mpy-32": (64, 320), "mpy-64": (128, 640)}[name]
            out[name] = {s: floor(s, form, seconds, lo, hi) for s, _ in SCENARIOS}
            print("heap %s: %s" % (name, out[name]), flush=True)
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    return out


def bench_soak(quick):
    """Everything open at the device budget for an hour (quick: 2 min):
    heap and largest free block at the start and the end, and the extremes."""
    seconds = 120 if quick else 3600
    d = tempfile.mkdtemp(prefix="bench-soak-")
    rig = AllServices(d, page_pause=0.5)
    samples = []
    try:
        rig.start()
        t0 = time.time()
        while time.time() - t0 < seconds:
            # The admin keeps the Web Admin open all along: each `web on`
            # restarts the window's 10 minutes (without it the window closes
            # after 10 minutes and the page client soaks nothing).
            rig.sim.cmd("web", "on")
            m = rig.sim.cmd("mem")
            samples.append((round(time.time() - t0), m["used"], m["largest_free"], m["errors"],
                            m["refused"]))
            time.sleep(10)
        st = rig.sim.state_()
        return {"seconds": seconds, "heap": simtool.DEVICE_HEAP,
                "start": samples[0], "end": samples[-1],
                "used_max": max(s[1] for s in samples), "largest_free_min": min(s[2] for s in samples),
                "memory_errors": samples[-1][3], "refused": samples[-1][4],
                "restarts": st["restarts"], "published": st["mqtt"]["published"],
                "clients": rig.report(), "bad_pages": rig.bad_pages[:3],
                "memory_error_logged": "MemoryError" in rig.sim.output()}
    finally:
        rig.stop()
        shutil.rmtree(d, ignore_errors=True)


def _live(sim, n):
    """Live heap (used after a collection) over n samples a second apart:
    (min, max) in bytes, and the largest free block at the min."""
    ms = []
    for _ in range(n):
        ms.append(sim.cmd("mem"))
        time.sleep(1)
    lo = min(ms, key=lambda m: m["used"])
    return {"used_min": lo["used"], "used_max": max(m["used"] for m in ms),
            "largest_free": lo["largest_free"], "modules": len(sim.cmd("mem", "mods"))}


def bench_breakdown(quick):
    """Where the heap goes with everything open, on the device image at the
    device budget: the live heap (used after a collection, sampled while
    the clients run) as the services open one after another. Each step's
    difference is that service's cost, the figures the path to 96 KiB in
    docs/benchmarks.md is made of."""
    n = 5 if quick else 15
    out = {"heap": simtool.DEVICE_HEAP, "samples": n}
    d = tempfile.mkdtemp(prefix="bench-breakdown-")
    try:
        r = _Run(d, simtool.DEVICE_HEAP, {})
        try:
            _idle(r)
            out["idle"] = _live(r.sim, n)
        finally:
            r.stop()
        rig = AllServices(os.path.join(d, "all"), page_pause=0.3)
        try:
            rig.start(step=lambda name: out.__setitem__(name, _live(rig.sim, n)))
            out["clients"] = rig.report()
        finally:
            rig.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return out
