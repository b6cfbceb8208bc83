"""App pairing end to end (issue 5): a separate app client (plain Python
HTTP) asks for a token, an admin confirms it in real Chromium (Debian's,
driven by Playwright through executable_path), the app reads live data and
holds a live stream open, the admin revokes the token in the browser, and
the app is refused, on the open stream too. Each test has a simulator and a
page of its own and makes the token it needs (test_api's helpers)."""

import re
import time

import pytest

from test_api import (App, CONST_P, admin_login, boot_api, confirmed_app, read_events,
                      stream_closed)
from test_web import NEW_PASS, menu_web_enable, port_refuses, to_pages
from test_web_browser import csp_violations, fresh, login

from peers import new_page


def _boot(state, password=False):
    return fresh(state, password, boot_api)


@pytest.fixture
def sim(tmp_path):
    """A new meter: no Web Admin password yet."""
    s = _boot(tmp_path / "dev")
    yield s
    if s.proc.poll() is None:
        s.kill()


@pytest.fixture
def ready(tmp_path):
    """A meter whose admin has set the password (NEW_PASS)."""
    s = _boot(tmp_path / "dev", password=True)
    yield s
    if s.proc.poll() is None:
        s.kill()


def _page(browser, sim):
    return new_page(browser, "http://127.0.0.1:%d" % sim.web_port)


@pytest.fixture
def app(sim):
    return App(sim.api_port)


def test_pairing_needs_the_window_open(sim, app):
    assert port_refuses(sim.web_port)
    r = app.pair("Anna's phone")
    assert r.status == 403 and "Web Admin" in r.data["error"]


def test_request_refused_while_pending_then_confirmed_in_the_browser(sim, browser, app):
    page = _page(browser, sim)
    menu_web_enable(sim)  # someone at the device opens the Web Admin
    to_pages(sim)
    r = app.pair("Anna's phone <b>")
    assert r.status == 201 and r.data["state"] == "pending"
    r = app.get("/api/v1/live")
    assert r.status == 401 and r.data == {"error": "token not confirmed yet"}
    # the admin logs in (setting the first password) and opens Tokens
    login(page, "admin", sim)
    page.fill("input[name=new]", NEW_PASS)
    page.fill("input[name=repeat]", NEW_PASS)
    page.click("#change")
    page.wait_for_url("**/login?m=changed")
    login(page, NEW_PASS)
    page.click("header a[href='/tokens']")
    page.wait_for_url("**/tokens")
    row = page.inner_text("#tok-" + app.id)
    assert "Anna's phone <b>" in row and "pending" in row and "127.0.0.1" in row
    assert re.search(r"20\d\d-\d\d-\d\d \d\d:\d\d:\d\d", row)  # when it was asked for
    # confirming is an explicit second step that shows what is allowed
    page.click("#confirm-" + app.id)
    page.wait_for_url("**/tokens/confirm?id=" + app.id)
    assert page.inner_text("#c-name") == "Anna's phone <b>"
    assert "read live values" in page.inner_text("#allow")
    page.click("#do-confirm")
    page.wait_for_load_state()
    assert "Confirmed" in page.inner_text("#msg")
    assert "active" in page.inner_text("#tok-" + app.id)
    assert not csp_violations(page), page.problems


def test_live_data_read_with_the_token(ready):
    app = confirmed_app(ready, "Anna's phone")
    r = app.get("/api/v1/live")
    assert r.status == 200 and [round(p) for p in r.data["p"]] == CONST_P, r.data
    assert r.data["freq"] == 50.0 and r.data["fault"] is None
    assert app.get("/api/v1/energy").status == 200
    assert app.get("/api/v1/device").data["firmware"]
    stream = app.stream()
    evs = read_events(stream, 2)
    assert [e[0] for e in evs] == ["message", "message"]
    assert [round(p) for p in evs[1][1]["p"]] == CONST_P


def test_revoked_in_the_browser_refused_at_once_also_on_the_open_stream(ready, browser):
    sim = ready
    app = confirmed_app(sim, "Anna's phone")
    app.open_stream = app.stream()
    assert read_events(app.open_stream, 1), "the stream sends nothing"
    page = _page(browser, sim)
    login(page, NEW_PASS)
    page.goto(page.base + "/tokens")
    page.click("#revoke-" + app.id)
    page.wait_for_load_state()
    t0 = time.time()
    assert "Revoked" in page.inner_text("#msg")
    r = app.get("/api/v1/live")  # the very next request
    assert r.status == 401 and r.data == {"error": "token revoked"}
    # the stream that was already open: a last "revoked" event, then closed
    evs = read_events(app.open_stream, 5, timeout=5)
    assert evs and evs[-1] == ("revoked", {"error": "token revoked"}), evs
    assert stream_closed(app.open_stream)
    assert time.time() - t0 < 3
    s = App(sim.api_port, app.token).get("/api/v1/live/stream")
    assert s.status == 401
    # the admin deletes it; it is gone from the list and stays refused
    page.click("#delete-" + app.id)
    page.wait_for_load_state()
    assert "Deleted" in page.inner_text("#msg")
    assert page.locator("#tok-" + app.id).count() == 0
    assert app.get("/api/v1/live").data == {"error": "unknown token"}
    # every step is in the audit log
    page.goto(page.base + "/security")
    audit = page.inner_text("#audit")
    for ev in ("token-request", "token-confirm", "token-revoke", "token-delete"):
        assert ev in audit, ev
    assert re.search(r"token\s+refused", audit)
    assert not csp_violations(page), page.problems


def test_tokens_page_shows_the_service_state_and_limits(ready, browser):
    admin_login(ready)  # the window open
    page = _page(browser, ready)
    login(page, NEW_PASS)
    page.goto(page.base + "/tokens")
    assert page.inner_text("#api-state") == "on"
    assert "At most 12 tokens" in page.inner_text("main")
    assert page.locator("#no-tokens").count() == 1
