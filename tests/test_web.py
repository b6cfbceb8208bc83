"""Web Admin over HTTP against the simulator (issue 4): the window, login,
sessions, CSRF, throttling, limits, services, Wi-Fi setup. The browser
tests (test_web_browser.py) and the attack tests (test_web_attack.py) use
the helpers here."""

import hashlib
import http.client
import os
import re
import socket
import time
import urllib.parse

import pytest

from simctl import Sim, configure, free_port

NEW_PASS = "meter-pass-2026"


# -- helpers -----------------------------------------------------------------

def boot(state, *args, window=None, **kw):
    """A simulator with its Web Admin port; window: test.web_window_s."""
    if window:
        configure(state, **{"test.web_window_s": window})
    port = free_port()
    sim = Sim(state, "--web-port", str(port), *args, **kw)
    sim.web_port = port
    return sim


def closed(sim):
    st = sim.cmd("web")
    return st if not st["active"] and not st["closing"] else None


def web_on(sim):
    assert sim.cmd("web", "on") == {"error": None}
    sim.wait_for(lambda: sim.cmd("web")["listening"], what="web listening")


class Client:
    """A cookie-keeping HTTP client that sends what a browser sends."""

    def __init__(self, port, origin=True):
        self.port = port
        self.cookies = {}
        self.origin = origin

    def request(self, method, path, form=None, headers=None, timeout=10):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = {"Host": "127.0.0.1:%d" % self.port}
        if self.cookies:
            h["Cookie"] = "; ".join("%s=%s" % kv for kv in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            h["Content-Type"] = "application/x-www-form-urlencoded"
        if method == "POST" and self.origin:
            h["Origin"] = "http://127.0.0.1:%d" % self.port
        h.update(headers or {})
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        r.text = r.read().decode()
        c.close()
        for v in r.headers.get_all("Set-Cookie") or ():
            name, _, rest = v.partition("=")
            value = rest.split(";")[0]
            if "Max-Age=0" in v:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return r

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, form, **kw):
        return self.request("POST", path, form=form, **kw)

    def csrf(self, path="/"):
        r = self.get(path)
        m = re.search(r'name="csrf" value="([0-9a-f]*)"', r.text)
        return m.group(1) if m else None

    def login(self, password, user="admin", code=None):
        token = self.csrf("/login")
        form = {"csrf": token, "user": user, "password": password}
        if code is not None:
            form["code"] = code
        return self.post("/login", form)

    def login_ok(self, password=NEW_PASS):
        r = self.login(password)
        assert r.status == 303, (r.status, r.text)
        return r


def presence_code(sim):
    """The one-time login code the device's display shows (the measurement
    pages show it while one is valid)."""
    to_pages(sim)
    return sim.login_code()


def login_default(sim, c):
    """A login with the factory password: asks for the code on the display,
    then succeeds with it (someone at the device)."""
    r = c.login("admin")
    # (200: the form again, with one more field; no session, no failure)
    assert r.status == 200 and 'id="need-code"' in r.text and 'name="code"' in r.text, r.text
    assert "sid" not in c.cookies
    return c.login("admin", code=presence_code(sim))


def pbkdf2(password=NEW_PASS):
    """A stored Web Admin password, hashed by CPython (passwd.py's format):
    for tests that start with the password already set."""
    salt = os.urandom(16)
    d = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 6000)
    return "pbkdf2-sha256$6000$%s$%s" % (salt.hex(), d.hex())


def set_first_password(sim, password=NEW_PASS):
    """Log in with the default password (and the code on the display), set a
    new one, log in with it."""
    c = Client(sim.web_port)
    r = login_default(sim, c)
    assert r.status == 303 and r.headers["Location"] == "/password"
    token = c.csrf("/password")
    r = c.post("/password", {"csrf": token, "new": password, "repeat": password})
    assert r.status == 303 and r.headers["Location"] == "/login?m=changed", r.text
    c = Client(sim.web_port)
    c.login_ok(password)
    return c


def port_refuses(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True


def raw(port, data, timeout=5, read=True):
    """Send raw bytes; the response's bytes (b"" if closed without one)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        if not read:
            return b""
        out = b""
        while True:
            try:
                d = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not d:
                break
            out += d
        return out
    finally:
        s.close()


PIN = "1290"


def open_settings(sim):
    """From the measurement pages into the Settings menu: sets the PIN the
    first time, asks it afterwards."""
    sim.wait_screen("OK:menu")
    sim.tap("ok")
    lines = sim.wait_for(lambda: (lambda l: l if any("PIN:" in x for x in l) else None)(
        sim.screen()), what="PIN entry")
    if any("New PIN:" in x for x in lines):
        sim.enter_pin(PIN)
        sim.wait_screen("Repeat PIN:")
    sim.enter_pin(PIN)
    sim.wait_screen("SETTINGS")


def to_pages(sim):
    for _ in range(8):
        if "OK:menu" in sim.screen()[6]:
            return
        sim.tap("ok", ms=1000)  # long OK: back
    raise AssertionError("\n".join(sim.screen()))


def menu_web_enable(sim):
    """Settings > Communication > Web Admin > Enable; returns the screen."""
    open_settings(sim)
    sim.select("Communication")
    sim.select("Web Admin")
    sim.select("Enable")
    return sim.wait_screen("left")


def status_of(resp):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", resp)
    return int(m.group(1)) if m else None


@pytest.fixture
def sim(tmp_path):
    s = boot(tmp_path / "dev")
    yield s
    if s.proc.poll() is None:
        s.kill()


# -- tests ---------------------------------------------------------------------

def test_off_by_default_on_for_a_window_then_everything_closed(tmp_path):
    s = boot(tmp_path / "dev", window=6)
    try:
        s.wait_screen("POWER W")
        assert s.cmd("web")["active"] is False and port_refuses(s.web_port)
        web_on(s)
        lines = s.wait_screen("WEB ADMIN")
        assert re.search(r"WEB ADMIN 0:0[56]", lines[7]), lines
        c = set_first_password(s)
        assert c.get("/").status == 200
        # an open event stream and an upload still arriving when the window ends
        stream = socket.create_connection(("127.0.0.1", s.web_port))
        stream.sendall(("GET /api/live/stream HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nCookie: sid=%s"
                        "\r\n\r\n" % (s.web_port, c.cookies["sid"])).encode())
        assert b"text/event-stream" in stream.recv(4096)
        upload = socket.create_connection(("127.0.0.1", s.web_port))
        upload.sendall(b"POST /wifi/join HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
        s.wait_for(lambda: s.cmd("web")["conns"] == 2, what="2 connections")
        assert s.cmd("web")["sessions"] == 1
        st = s.wait_for(lambda: closed(s), timeout=10, what="window end")
        assert port_refuses(s.web_port)
        assert st["conns"] == 0 and st["sessions"] == 0 and st["modules"] == []
        for sock in (stream, upload):  # both were closed by the device
            sock.settimeout(3)
            data = b""
            try:
                while True:
                    d = sock.recv(65536)
                    if not d:
                        break
                    data += d
            except ConnectionResetError:
                pass
            sock.close()
        # memory back, except what the first window leaves for good: the
        # names its modules interned (about 20 KB from source) and the
        # first-use state of asyncio's stream module (about 9 KB together
        # with the rest, docs/benchmarks.md); the second window below must
        # return everything. The status line back to Wi-Fi.
        assert st["heap_after"] - st["heap_before"] < 32 * 1024, st
        s.wait_for(lambda: "WiFi" in s.screen()[7], what="status line")
        # a second window: the old session is dead, memory returns fully
        web_on(s)
        c2 = Client(s.web_port)
        c2.cookies = dict(c.cookies)
        r = c2.get("/")
        assert r.status == 303 and r.headers["Location"] == "/login"
        assert s.cmd("web", "off") == {"ok": True}
        st2 = s.wait_for(lambda: closed(s), what="closed")
        assert st2["heap_after"] - st2["heap_before"] < 2048, st2
        assert s.quit() == 0
    finally:
        if s.proc.poll() is None:
            s.kill()


def test_security_headers_cookies_and_plain_http_warning(sim):
    web_on(sim)
    c = Client(sim.web_port)
    r = c.get("/login")
    assert r.status == 200
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "<script>" not in r.text
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "not encrypted" in r.text
    r = login_default(sim, c)
    cookie = [v for v in r.headers.get_all("Set-Cookie") if v.startswith("sid=")][0]
    sid = cookie.split(";")[0][4:]
    assert re.fullmatch(r"[0-9a-f]{32}", sid)  # 128 bits
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/"):
        assert flag in cookie
    # everything else needs a session
    for path in ("/", "/energy", "/security", "/device", "/services", "/wifi"):
        r = Client(sim.web_port).get(path)
        assert r.status == 303 and r.headers["Location"] == "/login", path
    assert Client(sim.web_port).get("/api/live").status == 401
    js = Client(sim.web_port).get("/static/app.js")
    assert js.status == 200 and "EventSource" in js.text


def test_default_password_forces_a_new_one_first(sim):
    web_on(sim)
    c = Client(sim.web_port)
    assert login_default(sim, c).status == 303
    for path in ("/", "/energy", "/security", "/device"):
        r = c.get(path)
        assert r.status == 303 and r.headers["Location"] == "/password", path
    assert c.get("/api/live").status == 403
    r = c.get("/password")
    assert "default password" in r.text and 'name="current"' not in r.text
    token = c.csrf("/password")
    for new, rep, why in (("short", "short", "at least 8"), ("admin", "admin", "at least 8"),
                          ("Admin12345", "Admin12345x", "differ")):
        r = c.post("/password", {"csrf": token, "new": new, "repeat": rep})
        assert r.status == 400 and why in r.text
    r = c.post("/password", {"csrf": token, "new": NEW_PASS, "repeat": NEW_PASS})
    assert r.status == 303
    assert c.get("/").status == 303  # the change ended the session
    assert Client(sim.web_port).login("admin").status == 401  # default gone
    time.sleep(1.1)  # that failure's back-off
    c = Client(sim.web_port)
    r = c.login_ok()
    assert r.headers["Location"] == "/"
    assert c.get("/").status == 200
    # stored as PBKDF2 with its iteration count, never in clear
    sim.quit()
    flash = open(os.path.join(sim.state, "config.bin"), "rb").read()
    assert re.search(rb"pbkdf2-sha256\$\d+\$[0-9a-f]{32}\$[0-9a-f]{64}", flash)
    assert NEW_PASS.encode() not in flash


def test_sessions_new_id_at_login_logout_and_password_change(sim):
    web_on(sim)
    c = set_first_password(sim)
    first = c.cookies["sid"]
    # an id the browser brings (fixation) is never adopted: a new one at login
    f = Client(sim.web_port)
    f.cookies["sid"] = "ab" * 16
    f.login_ok()
    assert f.cookies["sid"] != "ab" * 16 and re.fullmatch(r"[0-9a-f]{32}", f.cookies["sid"])
    other = Client(sim.web_port)
    other.login_ok()
    r = c.post("/logout", {"csrf": c.csrf("/")})
    assert r.status == 303 and "sid" not in c.cookies
    replay = Client(sim.web_port)
    replay.cookies = {"sid": first}
    assert replay.get("/").status == 303  # logged out on the server, not only in the browser
    c.login_ok()  # logging in again: another new id
    assert c.cookies["sid"] != first and other.get("/").status == 200
    # a password change ends every session (the other browser too)
    token = c.csrf("/security")
    r = c.post("/password", {"csrf": token, "current": "wrong-one!", "new": "another-pass-1",
                             "repeat": "another-pass-1"})
    assert r.status == 403 and "current password is wrong" in r.text
    time.sleep(1.1)  # the failure's back-off
    r = c.post("/password", {"csrf": token, "current": NEW_PASS, "new": "another-pass-1",
                             "repeat": "another-pass-1"})
    assert r.status == 303
    assert other.get("/").status == 303 and c.get("/").status == 303


def test_csrf_origin_and_token_required_and_get_changes_nothing(sim):
    web_on(sim)
    c = set_first_password(sim)
    token = c.csrf("/")
    gen = sim.state_()["generation"]
    form = {"csrf": token, "confirm": "RESET", "password": NEW_PASS}
    for headers, why in (({"Origin": "http://evil.example"}, "Origin"),
                         ({"Origin": "null"}, "Origin")):
        r = c.post("/energy/reset", form, headers=headers)
        assert r.status == 403 and why in r.text
    no_origin = Client(sim.web_port, origin=False)
    no_origin.cookies = c.cookies
    assert no_origin.post("/energy/reset", form).status == 403
    r = c.post("/energy/reset", dict(form, csrf="0" * 32))
    assert r.status == 403 and "form token" in r.text
    r = c.post("/energy/reset", {"confirm": "RESET", "password": NEW_PASS})
    assert r.status == 403
    # a foreign Host (DNS rebinding) is refused outright
    r = c.get("/", headers={"Host": "evil.example:%d" % sim.web_port})
    assert r.status == 400
    # GET never changes state; other methods are refused
    assert c.get("/energy/reset").status == 200 and c.get("/logout").status == 405
    assert c.request("PUT", "/energy/reset").status == 405
    assert c.request("OPTIONS", "/").status == 405
    assert sim.state_()["generation"] == gen
    # the login form needs its token too
    fresh = Client(sim.web_port)
    fresh.get("/login")
    r = fresh.post("/login", {"csrf": "f" * 64, "user": "admin", "password": NEW_PASS})
    assert r.status == 403 and "sid" not in fresh.cookies
    assert "csrf refused" in sim.output()


def test_wrong_passwords_back_off_and_the_count_survives_a_power_cut(tmp_path):
    s = boot(tmp_path / "dev")
    try:
        web_on(s)
        c = Client(s.web_port)
        waits = []
        for _ in range(3):
            r = c.login("wrong-password")
            assert r.status == 401
            w = int(re.search(r"try again in (\d+) s", r.text).group(1))
            waits.append(w)
            r = c.login("admin")  # at once, even the right one: refused unchecked
            assert r.status == 429 and "Try again in" in r.text
            assert 1 <= int(r.headers["Retry-After"]) <= w
            if len(waits) < 3:
                time.sleep(w)
        assert waits == [1, 2, 4]
        s.kill()  # power cut
        s = boot(tmp_path / "dev")
        web_on(s)
        c = Client(s.web_port)
        r = c.login("admin")
        assert r.status == 429  # the stored count restarted the full wait
        assert 3 <= int(r.headers["Retry-After"]) <= 4
        time.sleep(int(r.headers["Retry-After"]))
        assert login_default(s, c).status == 303  # a right password clears the count
        assert s.quit() == 0
        assert "login fail" in s.output()
    finally:
        if s.proc.poll() is None:
            s.kill()


def test_request_limits(sim):
    web_on(sim)
    p = sim.web_port
    big_header = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 5000 + b"\r\n\r\n"
    assert status_of(raw(p, big_header)) == 431
    many = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(40)) + b"\r\n"
    assert status_of(raw(p, many)) == 431
    body = b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n"
    assert status_of(raw(p, body)) == 413
    assert status_of(raw(p, b"POST /login HTTP/1.1\r\nHost: x\r\n\r\n")) == 411
    assert status_of(raw(p, b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                           b"\r\n\r\n")) == 501
    for line, code in ((b"GARBAGE\r\n\r\n", 400), (b"GET /\r\n\r\n", 400),
                       (b"GET / HTTP/2.0\r\n\r\n", 505), (b"GET / FOO/1.1\r\n\r\n", 400),
                       (b"DELETE / HTTP/1.1\r\n\r\n", 405), (b"get / HTTP/1.1\r\n\r\n", 400),
                       (b"GET http://x/ HTTP/1.1\r\n\r\n", 400),
                       (b"GET /" + b"a" * 600 + b" HTTP/1.1\r\n\r\n", 414),
                       (b"GET /\x01 HTTP/1.1\r\n\r\n", 400),
                       (b"\xff\xfe\r\n\r\n", 400),
                       (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400),
                       (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
                       (b"POST /login HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
                       (b"GET /login?m=%zz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400),
                       (b"GET /login?m=%ff HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400)):
        assert status_of(raw(p, line)) == code, line
    # a form with broken escapes is refused like a forged one, not a crash
    c = Client(p)
    token = c.csrf("/login")
    r = c.request("POST", "/login", headers={"Content-Type": "application/x-www-form-urlencoded"},
                  form=None)
    assert r.status in (403, 411)
    h = {"Host": "127.0.0.1:%d" % p, "Origin": "http://127.0.0.1:%d" % p,
         "Content-Type": "application/x-www-form-urlencoded",
         "Cookie": "pre=" + c.cookies["pre"]}
    body = ("csrf=%s&user=admin&password=%%zz%%ff" % token).encode()
    req = ("POST /login HTTP/1.1\r\n%s\r\nContent-Length: %d\r\n\r\n" % (
        "\r\n".join("%s: %s" % kv for kv in h.items()), len(body))).encode() + body
    assert status_of(raw(p, req)) == 403
    # a client that sends half a head and stops is closed by the device
    t0 = time.time()
    assert raw(p, b"GET / HTTP/1.1\r\n", timeout=10) == b""
    assert time.time() - t0 < 8
    st = sim.cmd("web")
    assert st["stats"]["timeouts"] >= 1 and st["conns"] == 0
    assert not any(sim.state_()["restarts"].values())


def test_services_switch_off_closes_the_port_and_the_menu_refuses_to_enable(sim):
    web_on(sim)
    c = set_first_password(sim)
    r = c.get("/services")
    assert "Web Admin" in r.text
    r = c.post("/services", {"csrf": c.csrf("/services"), "key": "web.allowed", "on": "0"})
    assert r.status == 200 and "switched off" in r.text
    sim.wait_for(lambda: port_refuses(sim.web_port), what="port closed")
    sim.wait_for(lambda: closed(sim), what="window closed")
    assert sim.cmd("web", "on") == {"error": "switched off in Services"}
    assert port_refuses(sim.web_port)
    st = sim.cmd("web")
    assert st["active"] is False and st["modules"] == []  # nothing stays loaded


def test_changes_from_the_web_are_audited_once(sim):
    # The settings store is the one audit point (issue 17): the Services
    # page adds no record of its own, as the menu adds none.
    web_on(sim)
    c = set_first_password(sim)
    r = c.post("/services", {"csrf": c.csrf("/services"), "key": "api.enabled", "on": "1"})
    assert r.status == 200 and "api.enabled switched on" in r.text, r.text
    rows = re.findall(r"<tr><td>\d+</td>(.*?)</tr>", c.get("/security").text)
    about = [row for row in rows if "api.enabled" in row]
    assert len(about) == 1, "one change from the web, %d audit records: %s" % (len(about), about)
    assert ">web<" in about[0] and ">settings<" in about[0], about[0]
    # the password set at the first login, and a Wi-Fi reset: one record each
    about = [row for row in rows if "web.pass" in row or "web-password" in row]
    assert len(about) == 1, "one password change, %d audit records: %s" % (len(about), about)
    r = c.post("/network/reset", {"csrf": c.csrf("/network/reset")})
    assert r.status == 200 and "Wi-Fi reset" in r.text, r.text
    rows = re.findall(r"<tr><td>\d+</td>(.*?)</tr>", c.get("/security").text)
    about = [row for row in rows if "wifi" in row]
    assert len(about) == 1, "one Wi-Fi reset, %d audit records: %s" % (len(about), about)


def test_wifi_setup_access_point_scan_join(tmp_path):
    s = boot(tmp_path / "dev")
    try:
        # from the menu: Settings > Communication > Network > Wi-Fi > Wi-Fi Setup
        open_settings(s)
        s.select("Communication")
        s.select("Network")
        s.select("Wi-Fi")
        s.select("Wi-Fi Setup")
        lines = s.wait_screen("Password:")
        st = s.cmd("web")
        ssid, key = st["ap"]
        assert "Join " + ssid in [l.strip() for l in lines]  # the display shows the network
        assert key in [l.strip() for l in lines]  # and its WPA2 password
        assert re.fullmatch(r"[a-z2-9]{12}", key) and st["active"]
        c = set_first_password(s)
        r = c.get("/wifi")
        for name in ("HomeNet", "Neighbour-5G", "CafeGuest"):
            assert name in r.text
        token = c.csrf("/wifi")
        r = c.post("/wifi/join", {"csrf": token, "ssid": "HomeNet", "key": "wrong-key-1"})
        assert "Could not join HomeNet" in r.text
        assert s.cmd("web")["ap"] is not None  # the AP stays for another try
        r = c.post("/wifi/join", {"csrf": token, "ssid": "HomeNet", "key": "secret-key"})
        assert "Joined HomeNet" in r.text
        st = s.cmd("web")
        assert st["ap"] is None and st["active"]  # AP closed, window goes on
        to_pages(s)
        assert "WEB ADMIN" in s.screen()[7]
        r = c.get("/network")
        assert "HomeNet" in r.text and "connected" in r.text
        # Reset Wi-Fi from the web page, the setup access point opening again
        r = c.post("/network/reset", {"csrf": c.csrf("/network/reset"), "setup": "1"})
        assert "not configured" in r.text
        st = s.cmd("web")
        assert st["ap"] is not None and st["ap"][1] != key  # a fresh WPA2 password
        lines = s.wait_screen("WI-FI SETUP")  # the pages show it
        assert st["ap"][1] in [l.strip() for l in lines]
        # and the menu closes the window early: port, sessions, access point
        open_settings(s)
        s.select("Communication")
        s.select("Web Admin")
        s.select("Disable")
        st = s.wait_for(lambda: closed(s), what="closed from the menu")
        assert port_refuses(s.web_port) and st["ap"] is None and st["sessions"] == 0
        s.wait_screen("Status: off")
        assert s.quit() == 0
        assert "wifi-join ok" in s.output() and "web-admin off menu" in s.output()
    finally:
        if s.proc.poll() is None:
            s.kill()


def test_https_when_a_device_certificate_is_provisioned(tmp_path):
    """Optional TLS (a later issue provisions the certificate): with DER
    files web.crt / web.key in the device's files the window serves HTTPS,
    the login page drops its plain-HTTP warning and cookies are Secure."""
    import shutil
    import ssl
    import subprocess

    if not shutil.which("openssl"):
        pytest.skip("openssl missing")
    state = tmp_path / "dev"
    state.mkdir()
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-keyout", str(key), "-out", str(crt),
                    "-days", "2", "-nodes", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-in", str(crt), "-outform", "DER", "-out",
                    str(state / "web.crt")], check=True)
    subprocess.run(["openssl", "ec", "-in", str(key), "-outform", "DER", "-out",
                    str(state / "web.key")], check=True, capture_output=True)
    s = boot(state)
    try:
        web_on(s)
        ctx = ssl.create_default_context(cafile=str(crt))
        c = http.client.HTTPSConnection("127.0.0.1", s.web_port, context=ctx, timeout=10)
        c.request("GET", "/login", headers={"Host": "127.0.0.1:%d" % s.web_port})
        r = c.getresponse()
        text = r.read().decode()
        assert r.status == 200 and "not encrypted" not in text
        cookie = r.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert status_of(raw(s.web_port, b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")) is None
        assert s.quit() == 0
    finally:
        if s.proc.poll() is None:
            s.kill()
