"""LAN hardening of issue 15 against the simulator: the presence code after
Reset Web Password (item 1), the end of the window while a request is in
its handler (item 6), and the local API's Host, Origin and pairing budget
(item 4). The rules themselves are unit-tested in tests/mpy/test_login.py
and tests/mpy/test_admission.py."""

import http.client
import threading

from test_api import App, boot_api, tokens
from test_web import (Client, boot, login_default, open_settings, set_first_password, to_pages,
                      web_on)


def test_a_client_polling_the_default_password_during_a_reset_gets_no_session(tmp_path):
    s = boot(tmp_path / "dev")
    try:
        web_on(s)
        set_first_password(s)
        stop = threading.Event()
        seen = {"tries": 0, "sessions": [], "statuses": set()}

        def poll():
            # what the attacker did: admin/admin again and again,
            # each time with a fresh login form, as fast as answered
            while not stop.is_set():
                c = Client(s.web_port)
                try:
                    r = c.login("admin")
                except (OSError, http.client.HTTPException):
                    continue
                seen["tries"] += 1
                seen["statuses"].add(r.status)
                if r.status == 303 or "sid" in c.cookies:
                    seen["sessions"].append((r.status, r.headers.get("Location")))

        t = threading.Thread(target=poll, daemon=True)
        t.start()
        # the owner, at the device: Settings > Security > Reset Web Pass
        open_settings(s)
        s.select("Security")
        s.select("Reset Web Pass")
        s.wait_screen("PASSWORD?")  # RESET WEB ADMIN PASSWORD?
        s.tap("down")
        s.tap("ok")
        s.wait_screen("WEB PASS RESET")
        after = seen["tries"]
        s.wait_for(lambda: seen["tries"] >= after + 30, timeout=30,
                   what="30 more tries of the poller after the reset")
        stop.set()
        t.join(15)
        assert seen["sessions"] == [], "the poller got a session: %s" % seen
        assert 200 in seen["statuses"], seen  # "the code on the display is needed"
        # the owner reads the code on the display and sets a new password
        s.tap("ok")
        to_pages(s)
        c = Client(s.web_port)
        r = login_default(s, c)
        assert r.status == 303 and r.headers["Location"] == "/password", r.text
        assert s.cmd("web")["code_issues"] >= 1
        assert s.quit() == 0
    finally:
        if s.proc.poll() is None:
            s.kill()


def test_the_window_ending_during_a_wifi_join_still_answers_it(tmp_path):
    s = boot(tmp_path / "dev")
    try:
        web_on(s)
        c = set_first_password(s)
        token = c.csrf("/wifi")
        out = {}

        def join():
            try:
                r = c.post("/wifi/join", {"csrf": token, "ssid": "HomeNet", "key": "secret-key"},
                           timeout=15)
                out["status"], out["text"] = r.status, r.text
            except (OSError, http.client.HTTPException) as e:
                out["error"] = repr(e)

        t = threading.Thread(target=join)
        t.start()
        # the join has started in its handler (which answers 0.3 s later) ...
        s.wait_for(lambda: s.cmd("web")["join"] is not None, timeout=10, what="join started")
        s.cmd("web", "off")  # ... when the window ends
        t.join(20)
        assert out.get("status") == 200, "the join got no answer: %s" % out
        assert "HomeNet" in out["text"]
        s.wait_for(lambda: not s.cmd("web")["active"] and not s.cmd("web")["closing"],
                   what="window closed")
        # finished, not half done: the network it joined is the one stored
        assert s.quit() == 0
        assert "wifi-join ok" in s.output()
    finally:
        if s.proc.poll() is None:
            s.kill()


def _raw_pair(port, headers, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", "/api/v1/pair", body=body, headers=headers)
    r = c.getresponse()
    text = r.read().decode()
    c.close()
    return r.status, text


def test_local_api_refuses_cross_origin_and_rebinding_and_keeps_the_pairing_budget(tmp_path):
    s = boot_api(tmp_path / "dev")
    try:
        web_on(s)  # pairing is open
        port = s.api_port
        host = "127.0.0.1:%d" % port
        # a page the admin visits posts text/plain across origins (no preflight)
        st, text = _raw_pair(port, {"Host": host, "Origin": "http://evil.example",
                                    "Content-Type": "text/plain"}, '{"name": "evil"}')
        assert st == 403, (st, text)
        st, text = _raw_pair(port, {"Host": host, "Sec-Fetch-Site": "cross-site",
                                    "Content-Type": "text/plain"}, '{"name": "evil"}')
        assert st == 403, (st, text)
        # a DNS-rebinding page: its own name in Host
        r = App(port).get("/api/v1", headers={"Host": "evil.example:%d" % port})
        assert r.status == 400, (r.status, r.data)
        r = App(port).get("/api/v1", headers={"Origin": "http://evil.example"})
        assert r.status == 403, (r.status, r.data)
        assert App(port).get("/api/v1").status == 200  # an app sends neither
        assert [t for t in tokens(s) if t[2] == "pending"] == []
        # malformed pairing requests, more than the budget: none uses it up
        for body, ctype in (("{", "application/json"), ("[]", "application/json"),
                            ('{"name": ""}', "application/json"), ('{"x": 1}', "application/json"),
                            ('{"name": "a"}', "text/plain"), ("", "application/json")) * 2:
            st, text = _raw_pair(port, {"Host": host, "Content-Type": ctype}, body)
            assert st in (400, 415), (body, ctype, st, text)
        for i in range(3):  # the whole burst is still there for real apps
            r = App(port).pair("phone %d" % i)
            assert r.status == 201, (i, r.status, r.data)
        assert len([t for t in tokens(s) if t[2] == "pending"]) == 3
        assert s.quit() == 0
    finally:
        if s.proc.poll() is None:
            s.kill()
