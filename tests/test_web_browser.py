"""The Web Admin end to end in a real browser (issue 4): Debian's Chromium,
driven by Playwright (PyPI) through executable_path, against the
simulator, which is driven through its buttons for the menu parts.

Each test has a simulator and a page of its own: a new meter for the first
login, else one whose admin has set the password (NEW_PASS) and is logged
in (the `admin` fixture). They pass alone and in any order."""

import http.server
import re
import threading
import time

import pytest

from simctl import configure
from test_web import (NEW_PASS, Client, boot, closed, menu_web_enable, open_settings, pbkdf2,
                      port_refuses, presence_code, to_pages, web_on)

from peers import new_page
from playwright import sync_api as playwright


def fresh(state, password=False, start=boot):
    """A meter started by `start` (test_web.boot, or test_api.boot_api),
    with the admin's password set beforehand (NEW_PASS) if `password`."""
    if password:
        configure(state, **{"web.pass": pbkdf2(NEW_PASS)})
    s = start(state)
    s.wait_screen("POWER W")
    return s


@pytest.fixture
def sim(tmp_path):
    """A new meter: Web Admin off, no password set yet."""
    s = fresh(tmp_path / "dev")
    yield s
    if s.proc.poll() is None:
        s.kill()


@pytest.fixture
def ready(tmp_path):
    """A meter whose admin has set the password (NEW_PASS); window open."""
    s = fresh(tmp_path / "dev", password=True)
    web_on(s)
    yield s
    if s.proc.poll() is None:
        s.kill()


@pytest.fixture
def page(browser, ready):
    """A page of `ready`'s Web Admin, logged in, on the dashboard."""
    pg = new_page(browser, "http://127.0.0.1:%d" % ready.web_port)
    login(pg, NEW_PASS)
    assert pg.url == pg.base + "/", (pg.url, pg.inner_text("main"))
    yield pg
    pg.context.close()


def login(page, password, sim=None):
    """Log in; with sim, the factory password and the code the page then
    asks for, read from the device's display."""
    page.goto(page.base + "/login")
    page.fill("input[name=password]", password)
    page.click("#login")
    page.wait_for_load_state()
    if sim is not None:
        assert page.query_selector("#need-code") is not None, page.inner_text("main")
        page.fill("input[name=password]", password)
        page.fill("input[name=code]", presence_code(sim))
        page.click("#login")
        page.wait_for_load_state()


def wait_live(page, n, timeout=10):
    """Until the dashboard's script has shown n updates (polled from here:
    the page's CSP forbids the eval Playwright's wait_for_function uses)."""
    end = time.time() + timeout
    while int(page.get_attribute("#live", "data-n") or 0) < n:
        assert time.time() < end, "the dashboard does not update"
        time.sleep(0.1)


def msg(page):
    return page.inner_text("#msg")


def csp_violations(page):
    return [p for p in page.problems if "Content Security Policy" in p]


# -- the tests ---------------------------------------------------------

def test_enable_from_the_menu_and_the_forced_password_change(sim, browser):
    page = new_page(browser, "http://127.0.0.1:%d" % sim.web_port)
    assert port_refuses(sim.web_port)  # off by default
    lines = menu_web_enable(sim)
    assert re.search(r"On, (10:00|9:5\d) left", lines[1]), lines
    assert "127.0.0.1:%d" % sim.web_port in lines[2], lines  # the address to open
    page.goto(page.base + "/")
    assert page.url.endswith("/login")
    assert "not encrypted" in page.inner_text("main")  # plain HTTP: the page says so
    login(page, "admin", sim)
    assert page.url.endswith("/password")
    assert "default password" in page.inner_text("main")
    page.goto(page.base + "/energy")  # nothing else is reachable yet
    assert page.url.endswith("/password")
    page.fill("input[name=new]", NEW_PASS)
    page.fill("input[name=repeat]", NEW_PASS + "x")
    page.click("#change")
    assert "differ" in msg(page)
    page.fill("input[name=new]", NEW_PASS)
    page.fill("input[name=repeat]", NEW_PASS)
    page.click("#change")
    page.wait_for_url("**/login?m=changed")
    assert "Password changed" in msg(page)
    login(page, NEW_PASS)
    assert page.url == page.base + "/"
    # the dashboard refreshes by itself (served script, event stream)
    wait_live(page, 3)
    assert page.inner_text("#p0") == "1000" and page.inner_text("#p2") == "-1500"
    assert page.inner_text("#updated") not in ("-", "offline")
    assert not csp_violations(page), page.problems
    cookies = {c["name"]: c for c in page.context.cookies()}
    sid = cookies["sid"]
    assert sid["httpOnly"] and sid["sameSite"] == "Strict" and sid["path"] == "/"
    to_pages(sim)
    assert re.search(r"WEB ADMIN \d+:\d\d", sim.screen()[7])  # the countdown
    page.context.close()


def test_logout_and_wrong_password_back_off(ready, page):
    sim = ready
    page.goto(page.base + "/")
    page.click("header button")  # Log out
    page.wait_for_url("**/login?m=out")
    assert "logged out" in msg(page)
    page.goto(page.base + "/device")
    assert page.url.endswith("/login")  # the session is gone on the server
    login(page, "not-the-password")
    assert "Wrong user name or password" in msg(page) and "try again in 1 s" in msg(page)
    login(page, "not-the-password")
    assert re.search(r"Too many failed logins\. Try again in [12] s", msg(page))
    time.sleep(1.1)
    login(page, "still-wrong")
    assert "try again in 2 s" in msg(page)
    login(page, NEW_PASS)  # right, but too soon: refused without a check
    assert "Too many failed logins" in msg(page)
    time.sleep(2.1)
    login(page, NEW_PASS)
    assert page.url == page.base + "/"


def test_device_and_security_pages(ready, page):
    sim = ready
    Client(sim.web_port).login(NEW_PASS + "-wrong")  # a failed login, for the audit
    page.goto(page.base + "/device")
    text = page.inner_text("main")
    assert "SIM-" in text and "0.1.0" in text and "Secure boot" in text
    assert "Flash encryption" in text and "plain HTTP" in text
    page.goto(page.base + "/security")
    audit = page.inner_text("#audit")
    assert "login" in audit and "fail" in audit and "web-admin" in audit


def test_csrf_cross_site_form_and_forged_token_are_refused(ready, page):
    sim = ready
    gen = sim.state_()["generation"]
    # a page from another origin posting to the device (the browser sends
    # the session cookie along: 127.0.0.1 on another port is the same site)
    evil = ("<form id=f method=post action='%s/energy/reset'>"
            "<input name=confirm value=RESET><input name=password value='%s'></form>"
            "<script>document.getElementById('f').submit()</script>" % (page.base, NEW_PASS))
    srv = _serve_once(evil.encode())
    page.goto("http://127.0.0.1:%d/" % srv.server_port)
    page.wait_for_url(page.base + "/energy/reset")
    assert "Cross-site request refused" in page.inner_text("main")
    srv.shutdown()
    # the device's own form with a tampered token
    page.goto(page.base + "/energy/reset")
    page.evaluate("document.querySelectorAll('input[name=csrf]')"
                  ".forEach(function (e) { e.value = '0'.repeat(32); })")
    page.check("#confirm")
    page.fill("input[name=password]", NEW_PASS)
    page.click("#do-reset")
    assert "form token" in page.inner_text("main")
    assert sim.state_()["generation"] == gen  # nothing was reset


def test_counter_reset_cancelled_then_confirmed(ready, page):
    sim = ready
    gen = sim.state_()["generation"]
    page.goto(page.base + "/energy")
    page.click("#reset")
    assert "IRREVERSIBLE" in page.inner_text("main")
    page.click("#cancel")  # cancelled
    assert page.url == page.base + "/energy"
    assert sim.state_()["generation"] == gen
    page.click("#reset")
    page.fill("input[name=password]", NEW_PASS)
    page.click("#do-reset")  # not confirmed: the box is not ticked
    assert "tick the box" in msg(page) and sim.state_()["generation"] == gen
    page.check("#confirm")
    page.fill("input[name=password]", NEW_PASS)
    page.click("#do-reset")
    assert "reset to 0" in msg(page)
    st = sim.state_()
    assert st["generation"] == gen + 1
    assert st["counters_uwh"]["imp_t"] < 3125 * 2000  # zero plus a few ticks
    assert "counter-reset ok" in sim.output()


def test_reset_web_password_from_the_menu_ends_sessions(ready, page):
    sim = ready
    open_settings(sim)
    sim.select("Security")
    sim.select("Reset Web Pass")
    sim.wait_screen("PASSWORD?")  # RESET WEB ADMIN PASSWORD?
    sim.tap("down")
    sim.tap("ok")
    sim.wait_screen("WEB PASS RESET")
    sim.tap("ok")
    to_pages(sim)
    page.goto(page.base + "/energy")
    assert page.url.endswith("/login")  # the session ended
    login(page, NEW_PASS)
    assert "Wrong user name" in msg(page)  # the old password is gone
    time.sleep(1.1)
    login(page, "admin", sim)  # the default again, with the code and the forced change
    assert page.url.endswith("/password")
    page.fill("input[name=new]", NEW_PASS)
    page.fill("input[name=repeat]", NEW_PASS)
    page.click("#change")
    page.wait_for_url("**/login?m=changed")
    login(page, NEW_PASS)
    assert page.url == page.base + "/"


def test_service_switched_off_closes_its_port(ready, page):
    sim = ready
    page.goto(page.base + "/services")
    assert "Web Admin" in page.inner_text("main")
    page.click("#svc-web-allowed")
    assert "switched off" in page.inner_text("main")
    sim.wait_for(lambda: port_refuses(sim.web_port), what="port closed")
    with pytest.raises(playwright.Error):
        page.goto(page.base + "/")  # connection refused
    # the menu says so and can switch it on again
    open_settings(sim)
    sim.select("Communication")
    sim.select("Web Admin")
    sim.select("Enable")
    sim.wait_screen("NOT ENABLED")
    sim.tap("ok")
    to_pages(sim)
    open_settings(sim)
    sim.select("Services")
    sim.select("Web Admin: off")
    sim.wait_screen("Web Admin: on")
    to_pages(sim)
    assert port_refuses(sim.web_port)  # on again means allowed, not opened


def test_window_end_closes_the_port_and_kills_the_session(browser, tmp_path):
    # The password is stored beforehand, hashed by CPython's own PBKDF2
    # (hashlib): the firmware must accept a hash it did not make itself.
    configure(tmp_path / "dev", **{"web.pass": pbkdf2(NEW_PASS), "test.web_window_s": 8})
    s = boot(tmp_path / "dev")
    try:
        s.wait_screen("POWER W")
        web_on(s)
        ctx = browser.new_context()
        pg = ctx.new_page()
        base = "http://127.0.0.1:%d" % s.web_port
        pg.goto(base + "/login")
        pg.fill("input[name=password]", NEW_PASS)
        pg.click("#login")
        pg.wait_for_url(base + "/")
        wait_live(pg, 1)
        assert s.cmd("web")["sessions"] == 1
        st = s.wait_for(lambda: closed(s), timeout=15, what="the window's end")
        assert port_refuses(s.web_port) and st["sessions"] == 0 and st["conns"] == 0
        with pytest.raises(playwright.Error):
            pg.reload()  # connection refused
        # a new window: the browser still has its cookie, the device not. A
        # fresh tab of the same context (same cookie jar): the old tab sits
        # on Chromium's error page, whose own reload races a navigation.
        web_on(s)
        assert ctx.cookies(base), "the browser lost its session cookie"
        pg2 = ctx.new_page()
        pg2.goto(base + "/energy")
        assert pg2.url == base + "/login"
        ctx.close()
        assert s.quit() == 0
    finally:
        if s.proc.poll() is None:
            s.kill()


def _serve_once(body):
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv
