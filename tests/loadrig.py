"""Clients for the Web Admin and the local API, and a rig with every
service of the simulator open at once: the uplink over mutual TLS to a real
mosquitto publishing every second, the local API with a paired token
streaming live data, and the Web Admin window with a logged-in admin
browsing its pages. Used by tests/test_memory.py and tools/bench.py."""

import http.client
import json
import os
import re
import socket
import threading
import time
import urllib.parse

import mqttlab
import pki as pkimod
from simctl import Sim, free_port

ADMIN_PASSWORD = "rig-pass-2026"
# What an admin walks through in the browser, in order, again and again.
PAGES = ("/", "/energy", "/network", "/wifi", "/services", "/security", "/device", "/tokens")


def wait_port(port, timeout=20):
    end = time.time() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.time() > end:
                raise
            time.sleep(0.05)


class WebClient:
    """An admin's browser, as far as the server can tell: a cookie jar,
    Host and Origin headers, and the CSRF token read from each form."""

    def __init__(self, port):
        self.port = port
        self.jar = {}

    def call(self, method, path, form=None, timeout=10):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = {"Host": "127.0.0.1:%d" % self.port, "Origin": "http://127.0.0.1:%d" % self.port}
        if self.jar:
            h["Cookie"] = "; ".join("%s=%s" % kv for kv in self.jar.items())
        body = urllib.parse.urlencode(form) if form else None
        if body:
            h["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            text = r.read().decode()
        finally:
            c.close()
        for v in r.headers.get_all("Set-Cookie") or ():
            k, _, rest = v.partition("=")
            self.jar[k] = rest.split(";")[0]
        return r, text

    def csrf(self, path):
        r, text = self.call("GET", path)
        m = re.search(r'name="csrf" value="([0-9a-f]+)"', text)
        if not m:
            raise AssertionError("no CSRF field on %s (HTTP %d):\n%s" % (path, r.status, text[:800]))
        return m.group(1)

    def login(self, password=ADMIN_PASSWORD, first=False, sim=None):
        """Log in. first: a new device, whose default password must be
        replaced at the first login (the forced change), then log in again;
        that login also needs the code on the display (read from `sim`)."""
        if first:
            form = {"csrf": self.csrf("/login"), "user": "admin", "password": "admin"}
            r, text = self.call("POST", "/login", form)
            if 'name="code"' in text:
                if sim is None:
                    raise AssertionError("the first login needs the code on the display: "
                                         "pass sim")
                form = dict(form, csrf=self.csrf("/login"), code=sim.login_code())
                self.call("POST", "/login", form)
            self.call("POST", "/password", {"csrf": self.csrf("/password"), "new": password,
                                            "repeat": password})
            self.jar.pop("sid", None)
        r, text = self.call("POST", "/login", {"csrf": self.csrf("/login"), "user": "admin",
                                               "password": password})
        if "sid" not in self.jar:
            raise AssertionError("login failed: HTTP %d %s" % (r.status, text[:500]))
        return self

    def cookie(self):
        return "sid=" + self.jar["sid"]


def api_call(port, method, path, token=None, body=None, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Host": "127.0.0.1:%d" % port}
    if token:
        h["Authorization"] = "Bearer " + token
    if body is not None:
        body = json.dumps(body)
        h["Content-Type"] = "application/json"
    try:
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def pair_token(web, api_port, name="rig"):
    """An app asks for a token, the logged-in admin `web` confirms it."""
    status, body = api_call(api_port, "POST", "/api/v1/pair", body={"name": name})
    if status != 201:
        raise AssertionError("pairing refused: %d %s" % (status, body[:300]))
    r = json.loads(body)
    res, text = web.call("POST", "/tokens/confirm", {"csrf": web.csrf("/tokens"), "id": r["id"]})
    if res.status != 200:
        raise AssertionError("confirm failed: %d %s" % (res.status, text[:500]))
    return r["token"]


class Loop(threading.Thread):
    """Runs fn() again and again until stopped; counts runs and errors."""

    def __init__(self, name, fn, pause=0.0):
        super().__init__(name=name, daemon=True)
        self.fn, self.pause = fn, pause
        self.runs, self.errors, self.last_error = 0, 0, None
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.is_set():
            try:
                self.fn()
                self.runs += 1
            except Exception as e:  # noqa: BLE001 -- counted and reported by the caller
                self.errors += 1
                self.last_error = "%s: %s" % (type(e).__name__, e)
            if self.pause:
                self.stopping.wait(self.pause)

    def stop(self):
        self.stopping.set()
        self.join(15)

    def report(self):
        return {"runs": self.runs, "errors": self.errors, "last_error": self.last_error}


class AllServices:
    """The simulator with the uplink, the local API and the Web Admin all
    open and in use. `workdir` holds the PKI, the broker and the state;
    `start()` returns once every service is up and its client running."""

    def __init__(self, workdir, heap=None, mpy=False, dev=False, page_pause=0.2,
                 bench_heap=False):
        self.workdir = str(workdir)
        self.heap, self.mpy, self.dev = heap, mpy, dev
        self.page_pause = page_pause
        self.bench_heap = bench_heap
        self.sim = self.broker = None
        self.loops = []
        self.bad_pages = []

    def start(self, step=None):
        """step(name), if given, is called as each service is up and in use
        (the benchmark's heap breakdown samples there)."""
        step = step or (lambda name: None)
        os.makedirs(self.workdir, exist_ok=True)
        self.pki = pkimod.make(os.path.join(self.workdir, "pki"), mqttlab.SERIAL)
        self.broker = mqttlab.Mosquitto(self.pki, os.path.join(self.workdir, "broker"))
        state = os.path.join(self.workdir, "dev")
        mqttlab.provision(state, self.pki, self.broker.port, api__enabled=True,
                          update__enabled=True)  # everything open: the update service too
        self.web_port, self.api_port = free_port(), free_port()
        self.sim = Sim(state, "--web-port", str(self.web_port), "--api-port", str(self.api_port),
                       heap=self.heap, profile="house", mpy=self.mpy, dev=self.dev,
                       bench_heap=self.bench_heap)
        self.sim.wait_for(lambda: self.sim.state_()["mqtt"]["connected"], 30, "uplink connected")
        wait_port(self.api_port)
        step("uplink+api_listening")
        if self.sim.cmd("web", "on") != {"error": None}:
            raise AssertionError("web window refused: %s" % self.sim.cmd("web"))
        wait_port(self.web_port)
        self.web = WebClient(self.web_port).login(first=True, sim=self.sim)
        self.token = pair_token(self.web, self.api_port)
        # loops[0] is the stream (its reader watches loops[0].stopping)
        self.loops = [Loop("stream", self._stream), Loop("pages", self._pages, self.page_pause)]
        self.loops[1].start()
        step("+web_client")
        self.loops[0].start()
        step("+api_stream")
        return self

    def _pages(self):
        for path in PAGES + ("/api/live",):
            r, text = self.web.call("GET", path)
            if r.status != 200:
                self.bad_pages.append((path, r.status, text[:300]))
                raise AssertionError("%s: HTTP %d" % (path, r.status))

    def _stream(self):
        """The app's live stream: read events until the server ends it."""
        c = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=10)
        try:
            c.request("GET", "/api/v1/live/stream", headers={
                "Host": "127.0.0.1:%d" % self.api_port, "Authorization": "Bearer " + self.token})
            r = c.getresponse()
            if r.status != 200:
                raise AssertionError("stream: HTTP %d %s" % (r.status, r.read()[:200]))
            while not self.loops[0].stopping.is_set():
                line = r.fp.readline()
                if not line:
                    return
        finally:
            c.close()

    def report(self):
        return {t.name: t.report() for t in self.loops}

    def stop(self):
        for t in self.loops:
            t.stopping.set()
        for t in self.loops:
            t.join(15)
        if self.sim:
            if self.sim.proc.poll() is None:
                self.sim.quit()
        if self.broker:
            self.broker.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
