"""The Web Admin's Firmware page end to end: Debian's Chromium (Playwright,
executable_path; never `playwright install`) against the simulator running
the device image N = 1.0.0 (a test build trusting a throwaway key), and an
update file N+1 = 1.1.0 signed with that key (tools/image.py build --out,
tools/sign.py). The upload streams into the firmware's updater
(meter/web/route_firmware.py, meter/otaupload.py); the display is read
through the control socket while it runs.

Each test starts its own simulator (the tests pass alone and in any
order); a failed one reports the simulator's log tail, the screens seen,
and the page's text and screenshot (tests/conftest.py)."""

import hashlib
import http.client
import json
import os
import re
import socket
import threading
import time

import pytest

from peers import new_page
import upy
from simctl import configure
from test_ota_sim import N, N1, Images, Watch, imagetool, sign
from test_web import NEW_PASS, Client, boot, pbkdf2, web_on


@pytest.fixture(scope="module")
def imgs(tmp_path_factory):
    """N and N+1 trusting k1 (throwaway keys, deleted with the directory),
    and the files to upload: N+1 signed with k1, the same signed with the
    untrusted k2 (a bad signature), an older version, not an update file."""
    d = tmp_path_factory.mktemp("otaweb")
    i = Images()
    i.k1, i.k2 = str(d / "k1.pem"), str(d / "k2.pem")
    sign.keygen(i.k1)
    sign.keygen(i.k2)
    i.n = imagetool.variant(str(d / "n"), N, trust=[i.k1])[0]
    n1 = imagetool.variant(str(d / "n1"), N1, trust=[i.k1])[0]
    i.good = str(d / "meter-1.1.0.bin")
    sign.sign(i.k1, n1, i.good, N1, "host")
    i.badsig = str(d / "badsig.bin")
    sign.sign(i.k2, n1, i.badsig, N1, "host")
    i.older = str(d / "meter-0.9.0.bin")
    sign.sign(i.k1, i.n, i.older, "0.9.0", "host")
    i.text = str(d / "notes.bin")
    with open(i.text, "wb") as f:
        f.write(b"not a firmware file\n" * 200)
    return i


def start(tmp_path, imgs, *args, window=None, name="dev"):
    """A meter running N with its admin password set and the window open."""
    state = tmp_path / name
    os.makedirs(state, exist_ok=True)
    configure(state, **{"web.pass": pbkdf2(NEW_PASS)})
    sim = boot(state, *args, window=window, image=imgs.n, boot_keys=[imgs.k1], profile="full")
    web_on(sim)
    return sim


@pytest.fixture
def sim(tmp_path, imgs):
    s = start(tmp_path, imgs)
    yield s
    if s.proc.poll() is None:
        s.kill()


@pytest.fixture
def slow(tmp_path, imgs):
    """Flash that takes 200 us per 16 bytes programmed: a 1 MB update takes
    about 15 s, as on a device, so that its progress can be watched and an
    upload cancelled halfway."""
    s = start(tmp_path, imgs, "--flash-delay-us", "200")
    yield s
    if s.proc.poll() is None:
        s.kill()


class Screens(Watch):
    """test_ota_sim's Watch, keeping every screen seen (not only the status
    line), and started at once: the display and `ota` read over and over
    on a control connection of its own while the test drives the browser."""

    def __init__(self, port):
        super().__init__(port)
        self.screens = []
        self.start()

    def run(self):
        try:
            while not self.stop.is_set():
                lines = [x.strip() for x in self._cmd(b"screen")["lines"]]
                if not self.screens or self.screens[-1] != lines:
                    self.screens.append(lines)
                self.progress.append(self._cmd(b"ota").get("progress"))
        except (OSError, ValueError):
            pass  # the firmware restarted
        finally:
            self.sock.close()

    def end(self):
        self.stop.set()
        self.join(10)
        return self

    def seen(self, text):
        return [s for s in self.screens if any(text in x for x in s)]


def login(page, password=NEW_PASS):
    page.goto(page.base + "/login")
    page.fill("input[name=password]", password)
    page.click("#login")
    page.wait_for_load_state()


def firmware_page(browser, sim):
    page = new_page(browser, "http://127.0.0.1:%d" % sim.web_port)
    page.refused = []  # (status, path) of every answer >= 400: what a failure explains
    page.on("response", lambda r: page.refused.append((r.status, r.url.split("/", 3)[-1]))
            if r.status >= 400 else None)
    login(page)
    page.goto(page.base + "/firmware")
    return page


def choose(page, path, password=NEW_PASS):
    """Pick the file, type the password, press Upload."""
    page.set_input_files("#fw-file", path)
    page.fill("#fw-pass", password)
    page.click("#fw-upload")


def problems(page):
    """The page's script errors and CSP violations. Not Chromium's note on
    every answer >= 400 ("Failed to load resource"): the refusals are the
    answers the script reads and shows (the tests check their words), 401
    from /api/firmware after the restart is its sign to go to the login,
    and a poll the device turned away while short of heap (503,
    Retry-After; docs/web.md, admission) it simply repeats. They are in
    page.refused."""
    return [p for p in page.problems if not p.startswith("Failed to load resource: ")]


def wifi(page):
    """The uplink of a Wi-Fi client (400 KiB/s): on localhost the socket
    buffers would take the whole file at once, and the browser's progress
    would jump to 100 %."""
    page.context.new_cdp_session(page).send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 5, "downloadThroughput": -1,
        "uploadThroughput": 400 * 1024})


def msg(page):
    return page.inner_text("#fw-msg")


def result(page, sim, timeout=60):
    """The page's message once the upload has ended (ok or err)."""
    def done():
        cls = page.get_attribute("#fw-msg", "class") or ""
        return msg(page) if cls in ("ok", "err") and "Checking" not in msg(page) else None

    # (a failure's report has the page's text and a screenshot: conftest.py)
    return sim.wait_for(done, timeout, "the upload's result on the page")


def flash(state):
    return {n: hashlib.sha256(open(os.path.join(str(state), n + ".bin"), "rb").read()).hexdigest()
            for n in ("otadata", "ota_0")}


def counters(sim):
    return sim.state_()["counters_uwh"]["imp_t"]


# -- the tests -----------------------------------------------------------------

def test_a_signed_update_uploads_with_progress_restarts_and_the_page_says_so(slow, imgs, browser):
    sim = slow
    page = firmware_page(browser, sim)
    assert page.inner_text("#fw-version") == N and page.inner_text("#fw-slot") == "ota_0"
    assert page.inner_text("#fw-max") == "1569216 bytes", page.inner_text("main")
    size = os.path.getsize(imgs.good)
    wifi(page)
    watch = Screens(sim.port)
    choose(page, imgs.good)
    sent, dev = set(), set()

    def progressed():
        sent.add(page.inner_text("#fw-sent"))
        dev.add(page.inner_text("#fw-dev"))
        return "Installed" in msg(page) or (page.get_attribute("#fw-msg", "class") == "err")

    sim.wait_for(progressed, 90, "the upload to end")
    text = msg(page)
    assert text.startswith("Installed %s. The device restarts now (about 20 s); this page "
                           "reconnects by itself" % N1), text
    # the browser's progress and the device's, both on the page, between 0 and 100
    pcts = {int(m) for s in sent for m in re.findall(r"Sent (\d+)%", s)}
    assert any(0 < p < 100 for p in pcts), sent
    devs = {int(m) for s in dev for m in re.findall(r"device: (\d+)%", s)}
    assert any(0 < p < 100 for p in devs), dev
    # the device resets by itself; this test is its bootloader
    assert sim.wait_exit(30) == 3, "the firmware did not restart after the update"
    w = watch.end()
    bars = w.seen("FIRMWARE UPDATE")
    assert any(re.match(r"\d+%", s[3]) and 0 < int(s[3].split("%")[0]) < 100 for s in bars
               if len(s) > 3), w.screens[-8:]
    assert w.seen("Restarting"), w.screens[-5:]
    seen = [p for p in w.progress if p is not None]
    assert seen == sorted(seen) and any(0 < p < 100 for p in seen), w.progress
    sim.start()
    # the window opens again by itself for the rest of its time; the page
    # notices, sends the browser to the login, and the login lands on the
    # Firmware page
    page.wait_for_url("**/login?m=updated", timeout=60000)
    assert "restarted after the firmware update" in page.inner_text("#msg")
    left = sim.cmd("web")["remaining_s"]
    assert 500 < left <= 600, left
    page.fill("input[name=password]", NEW_PASS)
    page.click("#login")
    page.wait_for_url("**/firmware")
    assert page.inner_text("#fw-version") == N1 + " (checking itself)" or \
        page.inner_text("#fw-version") == N1, page.inner_text("main")
    assert page.inner_text("#fw-slot") == "ota_1"
    assert page.inner_text("#fw-last").startswith("Updated from %s to %s" % (N, N1)), \
        page.inner_text("#fw-last")
    assert sim.cmd("ota")["version"] == N1
    # confirmed by its self-test: the page (which polls while it checks) says so
    sim.wait_for(lambda: sim.cmd("ota")["state"] == "valid", 30, "the self-test")
    page.reload()
    assert page.inner_text("#fw-version") == N1 and "confirmed" in page.inner_text("#fw-last"), \
        page.inner_text("main")
    assert not problems(page), (page.problems, page.refused)
    print("upload of %d bytes; browser progress seen %s; device %s" % (
        size, sorted(pcts), sorted(devs)))
    page.context.close()


BAD = [
    ("text", "not an update file"),
    ("badsig", "signature check failed: damaged or not an official update"),
    ("older", "version 0.9.0 is not newer than the running 1.0.0"),
]


def test_bad_files_are_refused_with_the_reason_and_nothing_changes(sim, imgs, browser):
    before = flash(sim.state)
    page = firmware_page(browser, sim)
    page.set_viewport_size({"width": 360, "height": 800})  # a phone: no sideways scrolling
    sw, iw = page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
    assert sw <= iw, "the Firmware page at 360 px is %d px wide" % sw
    # Upload comes disabled and only fw.js enables it: pressed before the
    # script ran (a slow page), the form would post itself and show JSON
    raw = page.context.request.get(page.base + "/firmware").text()
    assert '<button id="fw-upload" disabled>' in raw, raw[:3000]
    assert page.is_enabled("#fw-upload"), "fw.js did not enable Upload"
    for name, why in BAD:
        uwh = counters(sim)
        watch = Screens(sim.port)
        choose(page, getattr(imgs, name))
        text = result(page, sim)
        assert text.startswith("Not updated. ") and why in text.lower(), (name, text)
        assert text.endswith("The running firmware is unchanged."), text
        # the display says it too (NOT UPDATED and why, for 10 s)
        sim.wait_for(lambda: watch.seen("NOT UPDATED"), 10, "NOT UPDATED on the display")
        watch.end()
        o = sim.cmd("ota")
        assert (o["version"], o["slot"], o["progress"], o["busy"]) == (N, "ota_0", None, None), o
        assert o["last"]["result"] == "failed" and why in o["last"]["why"], o["last"]
        # metering goes on
        sim.wait_for(lambda: counters(sim) > uwh, 10, "the energy counters to move")
    # too large: the page refuses before sending anything; wrong password: the device
    big = str(sim.state) + "-big.bin"
    with open(big, "wb") as f:
        f.truncate(1569217)
    choose(page, big)
    assert "too large" in msg(page) and "1569216" in msg(page), msg(page)
    choose(page, imgs.good, "wrong-password")
    text = result(page, sim)
    assert "Wrong password." in text, text
    assert flash(sim.state) == before, "the boot slot and otadata must be untouched"
    assert sim.cmd("ota")["version"] == N
    assert not problems(page), (page.problems, page.refused)
    page.context.close()


def test_cancel_a_client_gone_and_the_window_closed_under_an_upload_install_nothing(slow, imgs, browser):
    sim = slow
    before = flash(sim.state)
    page = firmware_page(browser, sim)
    wifi(page)
    choose(page, imgs.good)

    def halfway():
        m = re.search(r"Sent (\d+)%", page.inner_text("#fw-sent"))
        return m and 10 <= int(m.group(1)) < 80

    sim.wait_for(halfway, 60, "the upload to be under way")
    watch = Screens(sim.port)
    page.click("#fw-cancel")
    text = result(page, sim)
    assert re.search(r"Not updated\. The upload broke off at \d+ of %d bytes" % os.path.getsize(
        imgs.good), text), text
    sim.wait_for(lambda: watch.seen("NOT UPDATED"), 10, "NOT UPDATED on the display")
    watch.end()
    o = sim.cmd("ota")
    assert (o["version"], o["busy"], o["progress"]) == (N, None, None), o
    assert flash(sim.state) == before
    # a client that disconnects halfway (its socket closed under the body)
    c, t = _ticket(sim, imgs.good)
    with open(imgs.good, "rb") as f:
        data = f.read()
    s = socket.create_connection(("127.0.0.1", sim.web_port), timeout=10)
    s.sendall(("POST /firmware/upload?t=%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nOrigin: "
               "http://127.0.0.1:%d\r\nContent-Type: application/octet-stream\r\n"
               "Content-Length: %d\r\nCookie: sid=%s\r\n\r\n" % (
                   t, sim.web_port, sim.web_port, len(data), c.cookies["sid"])).encode())
    s.sendall(data[:300000])
    try:
        sim.wait_for(lambda: (sim.cmd("ota")["progress"] or 0) > 5, 30, "the device to write")
    except AssertionError as e:  # what the updater and the server say
        raise AssertionError("%s\nota: %r\nweb: %r" % (e, sim.cmd("ota"), sim.cmd("web")))
    s.close()
    o = sim.wait_for(lambda: (lambda o: o if o["busy"] is None and "broke off" in (
        o["last"] or {}).get("why", "") else None)(sim.cmd("ota")), 30, "the update to end")
    assert o["version"] == N and o["progress"] is None, o
    assert flash(sim.state) == before
    # again, and the Web Admin service is switched off halfway (Services,
    # from another session): the upload is cancelled with the window; the
    # display and `ota` say why
    admin = Client(sim.web_port)
    admin.login_ok()
    choose(page, imgs.good)
    sim.wait_for(halfway, 60, "the third upload to be under way")
    r = admin.post("/services", {"csrf": admin.csrf("/services"), "key": "web.allowed", "on": "0"})
    assert r.status in (200, 303), (r.status, r.text[:300])
    sim.wait_for(lambda: not sim.cmd("web")["listening"], 10, "the window to close")
    o = sim.wait_for(lambda: (lambda o: o if o["last"] and o["busy"] is None else None)(
        sim.cmd("ota")), 10, "the update to end")
    assert o["version"] == N and "the Web Admin was closed during the upload" in \
        o["last"]["why"], o
    text = result(page, sim, 30)
    assert text.startswith("Not updated.") and "does not answer" in text, text
    assert flash(sim.state) == before
    page.context.close()


def _ticket(sim, path, password=NEW_PASS):
    """A logged-in client and an upload ticket for the file at path."""
    c = Client(sim.web_port)
    c.login_ok()
    token = c.csrf("/firmware")
    size = os.path.getsize(path)
    r = c.post("/firmware/ticket", {"csrf": token, "password": password, "size": str(size)})
    assert r.status == 200, (r.status, r.text)
    return c, json.loads(r.text)["ticket"]


def _upload(sim, path, password=NEW_PASS):
    """The page's two requests from a plain HTTP client: (status, answer, seconds)."""
    c, t = _ticket(sim, path, password)
    h = {"Host": "127.0.0.1:%d" % sim.web_port, "Origin": "http://127.0.0.1:%d" % sim.web_port,
         "Content-Type": "application/octet-stream",
         "Cookie": "; ".join("%s=%s" % kv for kv in c.cookies.items())}
    hc = http.client.HTTPConnection("127.0.0.1", sim.web_port, timeout=120)
    with open(path, "rb") as f:
        data = f.read()  # (a file object would be sent chunked: 501)
    t0 = time.time()
    hc.request("POST", "/firmware/upload?t=" + t, body=data, headers=h)
    r = hc.getresponse()
    out = (r.status, json.loads(r.read()), time.time() - t0)
    hc.close()
    return out


def test_the_window_waits_for_an_upload_then_opens_again_after_the_restart(tmp_path, imgs):
    # a 10 s window and an upload that takes longer (slow flash)
    sim = start(tmp_path, imgs, "--flash-delay-us", "2000", window=10)
    try:
        out = []
        th = threading.Thread(target=lambda: out.append(_upload(sim, imgs.good)), daemon=True)
        th.start()
        # the window's time runs out while the file is being written: it stays open
        w = sim.wait_for(lambda: (lambda w, o: (w, o) if w["remaining_s"] == 0 and w["listening"]
                           and o["progress"] is not None else None)(sim.cmd("web"),
                                                                     sim.cmd("ota")),
                  30, "the window's end during the upload")
        th.join(120)
        status, answer, secs = out[0]
        assert (status, answer) == (200, {"version": N1, "restart_s": 20}), (status, answer, w)
        assert sim.wait_exit(30) == 3
        sim.start()
        w = sim.wait_for(lambda: (lambda w: w if w["listening"] else None)(sim.cmd("web")), 20,
                  "the window to open again")
        assert 0 < w["remaining_s"] <= 10, w  # (test.web_window_s caps it)
        assert "audit ota web-admin on" in sim.output(), sim.output()[-2000:]
        sim.quit()
        sim.start()  # the record is used once
        assert not sim.cmd("web")["listening"]
    finally:
        if sim.proc.poll() is None:
            sim.kill()


RESUME = """
from meter.board.host import HostBoard
from meter.logstore import LogStore
from meter.state import State
b = HostBoard(["x", "--state", %r, "--headless"])
State(LogStore(b.partition("state"))).set("web.resume", %r)
"""


def test_a_missing_or_garbled_resume_record_opens_no_window(tmp_path, imgs):
    state = tmp_path / "dev"
    os.makedirs(state, exist_ok=True)
    for value in ("600", 0, 601, True, [1]):
        upy.exec_code(RESUME % (str(state), value))
        sim = boot(state, image=imgs.n, boot_keys=[imgs.k1])
        try:
            sim.wait_screen("POWER W")
            w = sim.cmd("web")
            assert not w["active"] and w["windows"] == 0, (value, w)
        finally:
            sim.quit()
    # a good one opens it, once (the record is cleared first)
    upy.exec_code(RESUME % (str(state), 300))
    sim = boot(state, image=imgs.n, boot_keys=[imgs.k1])
    try:
        w = sim.wait_for(lambda: (lambda w: w if w["listening"] else None)(sim.cmd("web")), 20,
                         "the window to open")
        assert 290 <= w["remaining_s"] <= 300, w
    finally:
        sim.quit()
    sim = boot(state, image=imgs.n, boot_keys=[imgs.k1])
    try:
        sim.wait_screen("POWER W")
        assert sim.cmd("web")["windows"] == 0
    finally:
        sim.quit()


def test_refusals_before_the_upload_are_json_with_their_reason(sim, imgs):
    c = Client(sim.web_port)
    h = {"Content-Type": "application/octet-stream"}
    r = c.request("POST", "/firmware/upload?t=x", headers=h)
    assert (r.status, json.loads(r.text)) == (401, {"error": "Your session has ended: log in "
                                                             "again."}), r.text
    c.login_ok()
    r = c.request("POST", "/firmware/upload?t=" + "0" * 32, headers=h)
    assert r.status == 403 and "not authorised" in json.loads(r.text)["error"], r.text
    token = c.csrf("/firmware")
    r = c.post("/firmware/ticket", {"csrf": token, "password": NEW_PASS, "size": "1569217"})
    assert r.status == 413 and "too large" in json.loads(r.text)["error"], r.text
    r = c.post("/firmware/ticket", {"csrf": "0" * 32, "password": NEW_PASS, "size": "5000"})
    assert r.status == 403 and "Cross-site" in json.loads(r.text)["error"], r.text
    # a ticket is good once
    t = json.loads(c.post("/firmware/ticket", {"csrf": token, "password": NEW_PASS,
                                               "size": "5000"}).text)["ticket"]
    r = c.request("POST", "/firmware/upload?t=" + t, headers={"Content-Type": "text/plain"})
    assert r.status == 400 and "octet-stream" in json.loads(r.text)["error"], r.text
    r = c.request("POST", "/firmware/upload?t=" + t, headers=dict(h, Origin="http://evil"))
    assert r.status == 403 and "Origin" in json.loads(r.text)["error"], r.text
    assert sim.cmd("ota")["last"] is None  # nothing was attempted


def test_the_module_lock_refuses_an_upload_with_its_words(sim, imgs):
    """Locked: the page says so, a ticket is refused (423), and so is an
    upload whose ticket was given before the lock; audited, nothing
    written."""
    before = flash(sim.state)
    c, t = _ticket(sim, imgs.good)  # given while unlocked
    lock_pass = "lock-2026"
    for action, form in (("set", {"new": lock_pass, "repeat": lock_pass}),
                         ("lock", {"password": lock_pass})):
        r = c.post("/lock/" + action, dict(form, csrf=c.csrf("/security")))
        assert r.status == 303, (action, r.status, r.text[:300])
    r = c.get("/firmware")
    assert "The module is locked: unlock it on the Security page" in r.text, r.text[-1500:]
    r = c.post("/firmware/ticket", {"csrf": c.csrf("/firmware"), "password": NEW_PASS,
                                    "size": str(os.path.getsize(imgs.good))})
    assert r.status == 423 and "module is locked" in json.loads(r.text)["error"], r.text
    with open(imgs.good, "rb") as f:
        data = f.read()
    r = c.request("POST", "/firmware/upload?t=" + t, headers={
        "Content-Type": "application/octet-stream", "Content-Length": str(len(data))})
    assert r.status == 423 and "module is locked" in json.loads(r.text)["error"], r.text
    assert sim.cmd("ota")["version"] == N and flash(sim.state) == before
    assert sim.output().count("locked refused firmware update") >= 2, sim.output()[-2000:]


def test_an_update_already_running_is_said_on_the_page_and_refuses_a_ticket(slow, imgs):
    """Another update (here the control socket's ota-install, as the
    automatic check would be): the page says so, a ticket is refused with
    409 and its words; that update goes on and installs."""
    sim = slow
    c = Client(sim.web_port)
    c.login_ok()
    ctl = socket.create_connection(("127.0.0.1", sim.port), timeout=60)
    out = []

    def install():  # on a control connection of its own: it answers at the end
        ctl.sendall(("ota-install %s\n" % imgs.good).encode())
        out.append(json.loads(ctl.makefile("rb").readline()))

    th = threading.Thread(target=install, daemon=True)
    th.start()
    sim.wait_for(lambda: (sim.cmd("ota")["progress"] or 0) > 0, 30, "the other update to run")
    r = c.get("/firmware")
    assert "Not now: another update is in progress." in r.text, r.text[-1500:]
    r = c.post("/firmware/ticket", {"csrf": c.csrf("/firmware"), "password": NEW_PASS,
                                    "size": str(os.path.getsize(imgs.good))})
    assert (r.status, json.loads(r.text)) == (409, {"error": "Not now: another update is in "
                                                             "progress."}), r.text
    th.join(60)
    ctl.close()
    assert out and out[0].get("version") == N1, out  # the other update was not disturbed
    assert sim.wait_exit(30) == 3


def test_upload_throughput_and_heap_on_the_device_image(tmp_path, imgs):
    """Figures for the docs (printed): an upload through the Web Admin into
    the file-backed slots at the 128 KiB budget; first without probes (the
    time, from the firmware's log), then on a second meter with the heap
    probed (`mem`: a collection, then free and the largest free block)
    every 50 ms meanwhile."""
    size = os.path.getsize(imgs.good)
    sim = start(tmp_path, imgs)
    try:
        status, answer, secs = _upload(sim, imgs.good)
        assert status == 200, answer
        log = sim.output()
        t = {k: int(re.search(r"(\d+) I audit web:admin ota %s" % k, log).group(1))
             for k in ("start", "installed")}
        dev_s = (t["installed"] - t["start"]) / 1000
        assert sim.wait_exit(30) == 3
    finally:
        if sim.proc.poll() is None:
            sim.kill()
    sim = start(tmp_path, imgs, name="probed")
    try:
        base = sim.cmd("mem")
        probes = []
        stop = threading.Event()

        def probe():
            s = socket.create_connection(("127.0.0.1", sim.port), timeout=10)
            f = s.makefile("rb")
            try:
                while not stop.is_set():
                    s.sendall(b"mem\n")
                    probes.append(json.loads(f.readline()))
                    time.sleep(0.05)  # (a sampling rate, not a synchronisation)
            except (OSError, ValueError):
                pass  # the restart
            finally:
                s.close()

        th = threading.Thread(target=probe, daemon=True)
        th.start()
        status, answer, _ = _upload(sim, imgs.good)
        stop.set()
        th.join(10)
        assert status == 200, answer
        low = min(p["free"] for p in probes)
        block = min(p["largest_free"] for p in probes)
        assert sim.wait_exit(30) == 3
    finally:
        if sim.proc.poll() is None:
            sim.kill()
    print("upload of %d bytes: %.2f s at the client, %.2f s on the device (%.0f KiB/s); "
          "heap free %d before, %d at the lowest of %d probes (largest free block >= %d)" % (
              size, secs, dev_s, size / 1024 / dev_s, base["free"], low, len(probes), block))
    assert size / 1024 / dev_s > 100, "far too slow"
    # the pages still answer meanwhile (a newcomer needs 12 KB: memory.room)
    assert low > 12 * 1024, "the upload leaves too little heap"


def test_windows_with_the_firmware_page_give_their_memory_back(tmp_path, imgs):
    """The Firmware page loads the update status modules, an upload the
    updater (7 KB with both); a window that
    showed it, or refused an upload, gives them back with the rest
    (meter.web OTA_MODULES): the first window keeps only what the firmware
    shares afterwards, the later ones nothing to speak of
    (tests/test_memory.py's bounds)."""
    from test_memory import FIRST_KEEPS, LATER_MAX

    sim = start(tmp_path, imgs)
    try:
        kept = []
        for i in range(5):
            if i:
                web_on(sim)
            c = Client(sim.web_port)
            c.login_ok()
            for path in ("/firmware", "/api/firmware", "/static/fw.js"):
                r = c.get(path)
                assert r.status == 200, (path, r.status, r.text[:300])
            if i == 2:  # a refused upload (not an update file) in this one
                status, answer, _ = _upload(sim, imgs.text)
                assert status == 400 and "not an update file" in answer["error"], answer
            mods = sim.cmd("web")["modules"]
            assert "meter.otastatus" in mods, mods  # (loaded by the page)
            # the updater itself only for an upload, not to show the page
            assert ("meter.ota" in mods) == (i == 2), mods
            sim.cmd("web", "off")
            w = sim.wait_for(lambda: (lambda s: s if not s["active"] and not s["closing"]
                                      and s["heap_after"] is not None else None)(sim.cmd("web")),
                             what="window closed and measured")
            assert w["modules"] == [], w["modules"]  # the update modules too
            kept.append(w["heap_after"] - w["heap_before"])
        print("kept per window", kept)
        assert kept[0] <= FIRST_KEEPS and max(kept[1:]) <= LATER_MAX, kept
        assert "MemoryError" not in sim.output()
    finally:
        if sim.proc.poll() is None:
            sim.kill()
