"""What a new admin sees in the Web Admin (issue 18), in Debian's Chromium
through Playwright: the header's countdown readable (WCAG AA, from the
computed colours), moving, and warning a minute before the window closes;
the site icon; full names and the display's state words; every page at a
phone width and a desktop width without sideways scrolling.

One simulator and one logged-in page for the module (a speed-up: each test
passes alone and in any order); the last-minute warning has a simulator of
its own with a short window (WARN_WINDOW_S)."""

import time
import urllib.request

import pytest

from test_web import NEW_PASS, boot, web_on

from peers import new_page

WARN_WINDOW_S = 80  # the warning shows from 60 s left: 20 s to log in first
PAGES = ("/", "/energy", "/network", "/wifi", "/services", "/tokens", "/security", "/device")

# The colour of the element's text and of the first ancestor with a
# background: what the reader sees (no ancestor is translucent here).
COLOURS = """e => {
  const fg = getComputedStyle(e).color;
  let n = e, bg = 'rgba(0, 0, 0, 0)';
  while (n && (bg === 'rgba(0, 0, 0, 0)' || bg === 'transparent')) {
    bg = getComputedStyle(n).backgroundColor; n = n.parentElement;
  }
  return [fg, bg];
}"""


def started(state, window=None):
    s = boot(state, window=window)
    s.wait_screen("POWER W")
    web_on(s)
    return s


def logged_in(browser, sim):
    """A page past the first login's forced password change, on /."""
    pg = new_page(browser, "http://127.0.0.1:%d" % sim.web_port)
    pg.goto(pg.base + "/login")
    pg.fill("input[name=password]", "admin")
    pg.click("#login")
    pg.wait_for_selector("#need-code")  # the default password: the code on the display too
    pg.fill("input[name=password]", "admin")
    pg.fill("input[name=code]", sim.login_code())
    pg.click("#login")
    pg.wait_for_url("**/password")
    pg.fill("input[name=new]", NEW_PASS)
    pg.fill("input[name=repeat]", NEW_PASS)
    pg.click("#change")
    pg.wait_for_url("**/login?m=changed")
    pg.fill("input[name=password]", NEW_PASS)
    pg.click("#login")
    pg.wait_for_url(pg.base + "/")
    return pg


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = started(tmp_path_factory.mktemp("webpolish") / "dev")
    yield s
    if s.proc.poll() is None:
        s.kill()


@pytest.fixture(scope="module")
def shared_page(browser, sim):
    pg = logged_in(browser, sim)
    yield pg
    pg.context.close()


@pytest.fixture
def page(shared_page, sim):
    """The module's logged-in page; its console problems are each test's
    own, and none may be a refusal (a 503 "busy" or short of memory: the
    server's counters are in the message)."""
    shared_page.problems.clear()
    yield shared_page
    busy = [p for p in shared_page.problems if "503" in p]
    assert not busy, (busy, sim.cmd("web")["stats"], sim.cmd("mem"))


def _rgb(css):
    parts = css[css.index("(") + 1:css.index(")")].split(",")
    return [int(float(p)) for p in parts[:3]]


def contrast(fg, bg):
    """WCAG 2 contrast ratio of two computed CSS colours."""
    def lum(c):
        ch = []
        for v in _rgb(c):
            v /= 255
            ch.append(v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4)
        return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2]
    hi, lo = sorted((lum(fg), lum(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def left_s(page):
    return int(page.get_attribute("#closes", "data-s"))


def test_countdown_is_readable_and_counts_down(page):
    page.goto(page.base + "/")
    fg, bg = page.locator("#closes").evaluate(COLOURS)
    ratio = contrast(fg, bg)
    assert ratio >= 4.5, "header countdown %s on %s: contrast %.2f < 4.5 (WCAG AA)" % (fg, bg, ratio)
    first, text = left_s(page), page.inner_text("#closes")
    assert text.startswith("Web Admin closes in "), text
    end = time.time() + 5
    while left_s(page) >= first:  # the page is not reloaded: the script counts
        assert time.time() < end, "the countdown does not move: %r" % page.inner_text("#closes")
        time.sleep(0.2)
    assert page.inner_text("#closes") != text
    assert page.is_hidden("#closing"), "the warning shows with %d s left" % left_s(page)
    assert not page.problems, page.problems


def test_favicon_is_served_small_and_without_a_session(page, sim):
    with urllib.request.urlopen("http://127.0.0.1:%d/favicon.ico" % sim.web_port,
                                timeout=10) as r:
        body = r.read()
        assert r.status == 200 and r.headers["Content-Type"] == "image/x-icon"
    assert body[:4] == b"\x00\x00\x01\x00" and len(body) < 512, (len(body), body[:8])
    page.goto(page.base + "/energy")
    assert not any("404" in p for p in page.problems), page.problems


def test_services_use_full_names_and_the_state_words(page):
    page.goto(page.base + "/services")
    main = page.inner_text("main")
    assert "Home Assistant discovery" in main and "HA discov." not in main, main
    page.goto(page.base + "/device")
    assert page.inner_text("#dev3") == "unknown", page.inner_text("main")  # secure boot
    assert page.inner_text("#dev4") == "unknown", page.inner_text("main")  # flash encryption


@pytest.mark.parametrize("width", [360, 1280])
def test_every_page_fits_the_width(page, width):
    page.set_viewport_size({"width": width, "height": 800})
    try:
        for path in PAGES:
            page.goto(page.base + path)
            sw, iw = page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
            assert sw <= iw, "%s at %d px scrolls sideways (%d px wide)" % (path, width, sw)
            fg, bg = page.locator("#closes").evaluate(COLOURS)
            assert contrast(fg, bg) >= 4.5, (path, width, fg, bg)
    finally:
        page.set_viewport_size({"width": 1280, "height": 800})


def test_warning_a_minute_before_the_window_closes(browser, tmp_path):
    with started(tmp_path / "dev", window=WARN_WINDOW_S) as sim:
        page = logged_in(browser, sim)
        try:
            page.goto(page.base + "/energy")
            wait = left_s(page) - 60
            assert wait > 0, "logging in took the window's first %d s" % (WARN_WINDOW_S - 60)
            assert page.is_hidden("#closing")
            end = time.time() + wait + 5
            while not page.is_visible("#closing"):  # without a reload
                assert time.time() < end, "no warning with %d s left" % left_s(page)
                time.sleep(0.3)
            assert left_s(page) <= 60
            assert "closes in less than a minute" in page.inner_text("#closing")
            fg, bg = page.locator("#closes").evaluate(COLOURS)
            assert contrast(fg, bg) >= 4.5, "the warning countdown %s on %s" % (fg, bg)
            page.goto(page.base + "/device")  # loaded in the last minute: warns at once
            assert page.is_visible("#closing")
        finally:
            page.context.close()
        assert sim.quit() == 0
