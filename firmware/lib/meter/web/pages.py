"""The Web Admin's pages: a microdot app built per window (build(ctl)).

Every page except /login and /static needs a session; while the session
was opened with the default password only /password and /logout answer.
Every POST needs an Origin equal to this server's own origin, a form body,
and the session's CSRF token (the login form: a token bound to a
pre-session cookie). GET never changes anything. Values shown are escaped;
messages in URLs are fixed codes, never reflected text. docs/web.md.
"""

import asyncio
import json
import time

from microdot import Microdot, Response

from meter import VERSION
from meter import passwd
from meter.lock import MIN_LEN as LOCK_MIN_LEN
from meter.lock import WIPE, LockError
from meter.settings import Locked
from meter.text import UNSUPPORTED, state
from meter.web import auth, chrome
from meter.web.server import STREAM, WRITE_MS, host_ok, request_refusal  # noqa: F401 (host_ok: tests)

SSE_EVENTS = 60  # events per stream (1 s apart); the browser then reconnects
MAX_STREAMS = 2
AUDIT_SHOWN = 40

NAV = (("/", "Dashboard"), ("/energy", "Energy"), ("/network", "Network"), ("/wifi", "Wi-Fi setup"),
       ("/services", "Services"), ("/tokens", "Tokens"), ("/security", "Security"),
       ("/device", "Device"))

MESSAGES = {
    "out": ("ok", "You are logged out."),
    "ended": ("warn", "Your session has ended. Please log in again."),
    "changed": ("ok", "Password changed. All sessions were ended: log in with the new password."),
    "form": ("err", "The form had expired. Please try again."),
    "lock-set": ("ok", "Lock password set. The module is unlocked; lock it below."),
    "locked": ("ok", "The module is locked: all configuration is read-only."),
    "unlocked": ("ok", "The module is unlocked."),
    "lock-changed": ("ok", "Lock password changed."),
}
LOCKED_TEXT = ("Module locked: all configuration is read-only. Unlock it on the Security "
               "page.")


def esc(s):
    s = str(s)
    for a, b in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("'", "&#39;")):
        if a in s:
            s = s.replace(a, b)
    return s


def utc(t):
    """Unix time as 'YYYY-MM-DD HH:MM:SS' (UTC), independent of the port's epoch."""
    if not t:
        return "-"
    days, rem = divmod(int(t), 86400)
    # civil from days (H. Hinnant)
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    return "%04d-%02d-%02d %02d:%02d:%02d" % (y, m, d, rem // 3600, rem // 60 % 60, rem % 60)


def kwh(uwh):
    wh = uwh // 1000000
    return "%d.%03d" % (wh // 1000, wh % 1000)


def set_cookie(res, name, value, max_age=None, secure=False):
    c = "%s=%s; Path=/; HttpOnly; SameSite=Strict" % (name, value)
    if max_age is not None:
        c += "; Max-Age=%d" % max_age
    if secure:
        c += "; Secure"
    if "Set-Cookie" in res.headers:
        res.headers["Set-Cookie"].append(c)
    else:
        res.headers["Set-Cookie"] = [c]


def see_other(url):
    return Response("", 303, {"Location": url})


def _parts(parts):
    """A response body that hands microdot one part at a time; a part that
    is not a str is an iterable of parts made as they are sent (a table's
    rows)."""
    for p in parts:
        if isinstance(p, str):
            yield p
        else:
            yield from _parts(p)


def build(ctl):
    """The microdot app of one window; ctl is the WebAdmin controller."""
    fw = ctl.app
    web = Microdot()
    sessions = ctl.sessions

    def html(req, title, body, status=200, nav=True, editable=False):
        """A page. While the module is locked, the forms of the page (unless
        `editable`: the Security page's lock forms) are shown disabled.
        body: a str, or a list of str parts for long pages. The page is sent
        part by part (the server gathers them into its connection buffer):
        it is never one multi-KB string on the heap."""
        s = req.g.sess
        out = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
               "<meta name=\"viewport\" content=\"width=device-width\">",
               "<title>%s - Energy analyzer</title>" % esc(title),
               "<link rel=\"stylesheet\" href=\"/static/app.css\"></head><body><header>",
               "<strong>Energy analyzer</strong>"]
        if nav and s is not None:
            if not s.must_change:
                for href, label in NAV:
                    out.append("<a href=\"%s\"%s>%s</a>" % (
                        href, " class=\"on\"" if href == req.path else "", label))
            out.append(chrome.countdown(ctl.remaining_s(), ctl.remaining_text()))
            out.append("<form method=\"post\" action=\"/logout\">%s<button>Log out</button></form>"
                       % csrf_field(req))
        out.append("</header><main>")
        if nav and s is not None:
            out.append(chrome.warning(ctl.remaining_s()))
        out.append("<h1>%s</h1>" % esc(title))
        ro = s is not None and not editable and fw.settings.locked
        if ro:
            out.append(note("warn", LOCKED_TEXT, "locked"))
            out.append("<fieldset disabled class=\"ro\">")
        if isinstance(body, list):
            out.extend(body)
        else:
            out.append(body)
        if ro:
            out.append("</fieldset>")
        out.append("</main></body></html>")
        return Response(_parts(out), status, {"Content-Type": "text/html; charset=UTF-8"})

    def csrf_field(req):
        s = req.g.sess
        return "<input type=\"hidden\" name=\"csrf\" value=\"%s\">" % (s.csrf if s else "")

    def note(kind, text, ident="msg"):
        return "<p class=\"%s\" id=\"%s\">%s</p>" % (kind, ident, esc(text))

    def refused(req, text, status=403):
        return html(req, "Request refused", note("err", text)
                    + "<p><a href=\"/\">Back</a></p>", status, nav=False)

    def form(req):
        try:
            return req.form or {}
        except (ValueError, UnicodeError, IndexError):  # malformed %-escapes
            return {}

    # -- the gate: host, session, CSRF, forced password change -------------

    @web.before_request
    async def gate(req):
        req.g.sess = None
        why = request_refusal(req, False)
        if why == "host":
            return Response("bad Host header\n", 400, {"Content-Type": "text/plain"})
        path = req.path
        static = path.startswith("/static/")
        sess = sessions.get(req.cookies.get("sid"), touch=not (static or path.startswith("/api/")))
        req.g.sess = sess
        if why:
            fw.audit.refused("web", "csrf", "origin %s" % req.headers.get("Origin"))
            return refused(req, "Cross-site request refused (Origin check).")
        if req.method == "POST":
            ct = req.content_type or ""
            if not ct.startswith("application/x-www-form-urlencoded"):
                return refused(req, "Form data expected.", 400)
        if path == "/login" or static or path == "/favicon.ico":
            return None
        if sess is None:
            if path.startswith("/api/"):
                return Response({"error": "login required"}, 401)
            if req.method == "POST":
                return see_other("/login?m=ended")
            return see_other("/login")
        if req.method == "POST" and not auth.check_csrf(sess, form(req).get("csrf")):
            fw.audit.refused("web", "csrf", "token")
            return refused(req, "Cross-site request refused (missing or wrong form token). "
                           "Reload the page and try again.")
        if sess.must_change and path not in ("/password", "/logout"):
            if path.startswith("/api/"):
                return Response({"error": "set a new password first"}, 403)
            return see_other("/password")
        return None

    # -- static files --------------------------------------------------------

    @web.get("/static/app.js")
    async def app_js(req):
        from meter.web import assets

        return Response(assets.JS, 200, {"Content-Type": "application/javascript; charset=UTF-8"})

    chrome.add(web, Response)  # /static/clock.js, /favicon.ico

    @web.get("/static/app.css")
    async def app_css(req):
        from meter.web import assets

        return Response(assets.CSS, 200, {"Content-Type": "text/css; charset=UTF-8"})

    # -- login / logout ------------------------------------------------------

    def login_page(req, msg="", status=200, pre=None, retry=0, code=False):
        """code: ask for the code on the device's display (also whenever
        one is showing there)."""
        pre = pre or req.cookies.get("pre")
        new_pre = None
        if not pre or len(pre) != 32:
            pre = new_pre = auth.new_id()
        body = []
        if req.scheme != "https":
            body.append(note("warn", "This connection is not encrypted (plain HTTP): the password "
                             "crosses the network readable by anyone on it. Log in only from a "
                             "network you trust.", "plain-http"))
        code = req.args.get("m") if req.args else None
        if not msg and code in MESSAGES:
            body.append(note(*MESSAGES[code]))
        if msg:
            body.append(msg)
        body.append("<form method=\"post\" action=\"/login\">"
                    "<input type=\"hidden\" name=\"csrf\" value=\"%s\">"
                    "<label>User <input type=\"text\" name=\"user\" value=\"admin\" "
                    "autocomplete=\"username\"></label>"
                    "<label>Password <input type=\"password\" name=\"password\" "
                    "autocomplete=\"current-password\" autofocus></label>" % ctl.tokens.token(pre))
        if code or (ctl.presence is not None and ctl.presence.valid()):
            body.append("<label>Code shown on the device's display <input type=\"text\" "
                        "name=\"code\" id=\"code\" inputmode=\"numeric\" "
                        "autocomplete=\"one-time-code\" maxlength=\"12\"></label>")
        body.append("<button id=\"login\">Log in</button></form>")
        r = html(req, "Log in", body, status, nav=False)
        if new_pre:
            set_cookie(r, "pre", new_pre, secure=req.scheme == "https")
        if retry:
            r.headers["Retry-After"] = str(retry)
        return r

    @web.get("/login")
    async def login_get(req):
        s = req.g.sess
        if s is not None:
            return see_other("/password" if s.must_change else "/")
        return login_page(req)

    @web.post("/login")
    async def login_post(req):
        f = form(req)
        pre = req.cookies.get("pre")
        if not ctl.tokens.check(pre, f.get("csrf")):
            fw.audit.refused("web", "csrf", "login token")
            return login_page(req, note("err", "The login form had expired or did not come from "
                                        "this device. Please try again."), 403)
        ip = req.g.conn.ip
        verdict, wait = await ctl.check_login(ip, f.get("user", ""), f.get("password", ""),
                                              f.get("code"))
        if verdict in ("wait", "codewait"):
            return login_page(req, note("err", "Too many failed logins. Try again in %d s." % wait),
                              429, retry=wait)
        if verdict == "hold":
            return login_page(req, note("err", "Too many failed logins on this device. Try again "
                                        "in %d s, or type the code now shown on the device's "
                                        "display with your password." % wait), 429, retry=wait,
                              code=True)
        if verdict == "code":
            return login_page(req, note("warn", "The password is the factory default: to prove "
                                        "that you are at the device, also type the code now "
                                        "shown on its display.", "need-code"), code=True)
        if verdict == "badcode":
            return login_page(req, note("err", "Wrong code. You can try again in %d s." % wait),
                              401, retry=wait, code=True)
        if verdict == "busy":
            return login_page(req, note("err", "Another login is being checked. Try again in a "
                                        "moment."), 503, retry=1)
        if verdict == "fail":
            return login_page(req, note("err", "Wrong user name or password. You can try again in "
                                        "%d s." % wait), 401, retry=wait)
        sessions.end(req.cookies.get("sid"))  # never keep a session id across a login
        default = passwd.is_default(fw.settings.get("web.pass"))
        sid, _ = sessions.create(ip, must_change=default)
        fw.audit.append("web", "login", "ok", ip)
        r = see_other("/password" if default else "/")
        set_cookie(r, "sid", sid, secure=req.scheme == "https")
        set_cookie(r, "pre", "", 0)
        return r

    @web.post("/logout")
    async def logout(req):
        sessions.end(req.cookies.get("sid"))
        fw.audit.append("web", "logout", "ok", req.g.conn.ip)
        r = see_other("/login?m=out")
        set_cookie(r, "sid", "", 0)
        return r

    # -- password ------------------------------------------------------------

    def password_form(req, forced, msg=""):
        body = [msg]
        if forced:
            body.append(note("warn", "You logged in with the default password. Set your own "
                             "password before anything else.", "forced"))
        body.append("<form method=\"post\" action=\"/password\">" + csrf_field(req))
        if not forced:
            body.append("<label>Current password <input type=\"password\" name=\"current\" "
                        "autocomplete=\"current-password\"></label>")
        body.append("<label>New password <input type=\"password\" name=\"new\" "
                    "autocomplete=\"new-password\"></label>"
                    "<label>Repeat new password <input type=\"password\" name=\"repeat\" "
                    "autocomplete=\"new-password\"></label>"
                    "<p class=\"small\">At least %d characters. Changing it ends every session."
                    "</p><button id=\"change\">Change password</button></form>" % passwd.MIN_LEN)
        return body

    @web.get("/password")
    async def password_get(req):
        s = req.g.sess
        return html(req, "Set a new password" if s.must_change else "Change password",
                    password_form(req, s.must_change))

    @web.post("/password")
    async def password_post(req):
        s = req.g.sess
        f = form(req)
        title = "Set a new password" if s.must_change else "Change password"
        if not s.must_change:
            verdict, wait = await ctl.check_login(req.g.conn.ip, passwd.USER, f.get("current", ""))
            if verdict != "ok":
                return html(req, title, password_form(req, False, note("err", ctl.verdict_text(
                    verdict, wait, "The current password is wrong."))), 403)
        err = passwd.policy(f.get("new", ""), f.get("repeat", ""))
        if err:
            return html(req, title, password_form(req, s.must_change, note("err", err)), 400)
        err = await ctl.set_password(f.get("new"), "web")
        if err:
            return html(req, title, password_form(req, s.must_change, note("err", err)), 503)
        r = see_other("/login?m=changed")
        set_cookie(r, "sid", "", 0)
        return r

    # -- dashboard -----------------------------------------------------------

    def live():
        lv = fw.sampler.live
        u = fw.counters.uwh
        return {"v": lv.v, "i": lv.i, "p": lv.p, "pf": lv.pf, "freq": lv.freq,
                "imp_kwh": kwh(u[3]), "exp_kwh": kwh(u[7]), "fault": fw.sampler.fault}

    @web.get("/")
    async def dashboard(req):
        d = live()
        rows = []
        for i, name in enumerate(("L1", "L2", "L3")):
            rows.append("<tr><th class=\"l\">%s</th><td id=\"v%d\">%.1f</td><td id=\"i%d\">%.2f</td>"
                        "<td id=\"p%d\">%.0f</td><td id=\"pf%d\">%.2f</td></tr>"
                        % (name, i, d["v"][i], i, d["i"][i], i, d["p"][i], i, d["pf"][i]))
        body = ["<div id=\"live\" data-n=\"0\"><table><tr><th class=\"l\">Phase</th><th>"
                "Voltage V</th><th>Current A</th><th>Power W</th><th>PF</th></tr>", rows,
                "<tr><th class=\"l\">Total</th><td></td><td></td><td id=\"p3\">%.0f</td>"
                "<td id=\"pf3\">%.2f</td></tr></table>"
                "<p>Frequency <span id=\"freq\">%.2f</span> Hz &middot; Imported "
                "<span id=\"imp\">%s</span> kWh &middot; Exported <span id=\"exp\">%s</span> kWh"
                " &middot; IC fault: <span id=\"fault\">%s</span></p>"
                "<p class=\"small\">Updated <span id=\"updated\">-</span> (live, every second)</p>"
                "</div><script src=\"/static/app.js\" defer></script>"
                % (d["p"][3], d["pf"][3], d["freq"], d["imp_kwh"], d["exp_kwh"],
                   esc(d["fault"] or "none"))]
        return html(req, "Dashboard", body)

    @web.get("/api/live")
    async def api_live(req):
        return Response(live())

    @web.get("/api/live/stream")
    async def api_stream(req):
        srv = req.g.server
        if sum(1 for c in srv.conns if c.phase == STREAM) >= MAX_STREAMS:
            return Response({"error": "too many live streams"}, 503)
        req.g.conn.set(STREAM, WRITE_MS)
        return Response(LiveStream(req.g.conn, req.g.sess, sessions, live), 200,
                        {"Content-Type": "text/event-stream; charset=UTF-8"})

    # -- energy --------------------------------------------------------------

    def energy_table():
        u = fw.counters.uwh
        names = ("L1", "L2", "L3", "Total")
        rows = ["<tr><th class=\"l\"></th><th>Imported kWh</th><th>Exported kWh</th></tr>"]
        for i in range(4):
            rows.append("<tr><th class=\"l\">%s</th><td id=\"imp%d\">%s</td><td id=\"exp%d\">%s"
                        "</td></tr>" % (names[i], i, kwh(u[i]), i, kwh(u[4 + i])))
        return ["<table>", rows, "</table><p class=\"small\">Counter generation %d (deliberate "
                "resets), store %s.</p>" % (fw.counters.generation, esc(fw.counters.status))]

    @web.get("/energy")
    async def energy(req):
        return html(req, "Energy counters", [energy_table(), "<p><a href=\"/energy/reset\" "
                                             "id=\"reset\">Reset the counters&hellip;</a></p>"])

    def reset_form(req, msg=""):
        return [msg, note("warn", "Resetting the energy counters is IRREVERSIBLE: all totals and "
                          "per-phase values are permanently deleted.", "irreversible"),
                energy_table(), "<form method=\"post\" action=\"/energy/reset\">", csrf_field(req),
                "<label><input type=\"checkbox\" name=\"confirm\" value=\"RESET\" id=\"confirm\">"
                  " I understand that this cannot be undone</label>"
                  "<label>Your password <input type=\"password\" name=\"password\" "
                  "autocomplete=\"current-password\"></label>"
                  "<button class=\"danger\" id=\"do-reset\">Reset all counters</button> "
                "<a href=\"/energy\" id=\"cancel\">Cancel</a></form>"]

    @web.get("/energy/reset")
    async def energy_reset_get(req):
        return html(req, "Reset energy counters?", reset_form(req))

    @web.post("/energy/reset")
    async def energy_reset_post(req):
        from meter.energy import RESET_CONFIRM

        f = form(req)
        title = "Reset energy counters?"
        if f.get("confirm") != RESET_CONFIRM:
            return html(req, title, reset_form(req, note("err", "Not reset: tick the box to "
                                                         "confirm.")), 400)
        verdict, wait = await ctl.check_login(req.g.conn.ip, passwd.USER, f.get("password", ""))
        if verdict != "ok":
            fw.audit.append("web", "counter-reset", "refused", "password")
            return html(req, title, reset_form(req, note("err", ctl.verdict_text(
                verdict, wait, "Not reset: wrong password."))), 403)
        try:
            fw.counters.reset(RESET_CONFIRM, "web")
        except Locked:
            raise
        except Exception as e:
            return html(req, title, reset_form(req, note("err", "Not reset: %s" % e)), 500)
        return html(req, "Energy counters", [note("ok", "All energy counters were reset to 0."),
                                             energy_table()])

    # -- network and Wi-Fi ---------------------------------------------------

    def network_info():
        w = fw.board.wifi()
        rows = [("Network (SSID)", fw.settings.get("wifi.ssid") or "not configured"),
                ("State", w.status()), ("IP address", w.ip() or "-")]
        ap = ctl.ap
        rows.append(("Setup access point", ("on: %s" % ap[0]) if ap else "off"))
        return ["<table>", ["<tr><th class=\"l\">%s</th><td class=\"l\" id=\"net%d\">%s</td></tr>"
                            % (k, i, esc(v)) for i, (k, v) in enumerate(rows)], "</table>"]

    @web.get("/network")
    async def network(req):
        return html(req, "Network", [network_info(), "<p><a href=\"/wifi\">Wi-Fi setup</a> "
                                     "&middot; <a href=\"/network/reset\" id=\"wifi-reset\">Reset "
                                     "Wi-Fi&hellip;</a></p>"])

    @web.get("/network/reset")
    async def network_reset_get(req):
        return html(req, "Reset Wi-Fi?", note("warn", "The Wi-Fi settings go back to 'not "
                                               "configured' and the device leaves its network. "
                                               "If you are connected through it, this page will "
                                               "stop answering.", "leaving")
                    + "<form method=\"post\" action=\"/network/reset\">" + csrf_field(req)
                    + "<label><input type=\"checkbox\" name=\"setup\" value=\"1\" checked> Then "
                      "open the setup access point (its password is shown on the device's "
                      "display)</label><button class=\"danger\" id=\"do-wifi-reset\">Reset Wi-Fi"
                      "</button> <a href=\"/network\">Cancel</a></form>")

    @web.post("/network/reset")
    async def network_reset_post(req):
        err = ctl.reset_wifi("web", form(req).get("setup") == "1")
        if err:
            return html(req, "Network", [note("err", "Not reset: %s" % err), network_info()], 500)
        return html(req, "Network", [note("ok", "Wi-Fi reset: not configured."), network_info()])

    def wifi_page(req, msg=""):
        nets = ctl.networks or []
        opts = []
        for n in nets:
            opts.append("<option value=\"%s\">%s (%s, %d dBm)</option>" % (
                esc(n["ssid"]), esc(n["ssid"]), esc(n["auth"]), n["rssi"]))
        js = ctl.join_state
        status = ""
        if js:
            kind = {"joined": "ok", "failed": "err"}.get(js[0], "warn")
            status = note(kind, js[1])
        ap = ctl.ap
        apline = ("The setup access point <strong>%s</strong> is on; it closes when the device "
                  "has joined a network." % esc(ap[0])) if ap else "The setup access point is off."
        out = [msg, status, "<p>", apline, "</p><h2>Networks in range</h2>"]
        if nets:
            out.append("<table id=\"nets\"><tr><th class=\"l\">Network</th><th>Security</th>"
                       "<th>Signal</th></tr>")
            out.append(["<tr><td class=\"l\">%s</td><td>%s</td><td>%d dBm</td></tr>"
                        % (esc(n["ssid"]), esc(n["auth"]), n["rssi"]) for n in nets])
            out.append("</table>")
        else:
            out.append("<p>No networks found.</p>")
        out += ["<form method=\"post\" action=\"/wifi/scan\">", csrf_field(req),
                "<button id=\"rescan\">Scan again</button></form>"
                "<h2>Join a network</h2><form method=\"post\" action=\"/wifi/join\">",
                csrf_field(req), "<label>Network <select name=\"ssid\" id=\"ssid\">", opts,
                "</select></label><label>Wi-Fi password <input type=\"password\" name=\"key\" "
                "id=\"key\" autocomplete=\"off\"></label><button id=\"join\">Join</button></form>"]
        return out

    @web.get("/wifi")
    async def wifi(req):
        if ctl.networks is None:
            ctl.scan()
        r = html(req, "Wi-Fi setup", wifi_page(req))
        if ctl.join_state and ctl.join_state[0] == "joining":
            r.headers["Refresh"] = "2"
        return r

    @web.post("/wifi/scan")
    async def wifi_scan(req):
        ctl.scan()
        return html(req, "Wi-Fi setup", wifi_page(req))

    @web.post("/wifi/join")
    async def wifi_join(req):
        f = form(req)
        err = ctl.join(f.get("ssid", ""), f.get("key", ""))
        if err:
            return html(req, "Wi-Fi setup", wifi_page(req, note("err", err)), 400)
        await asyncio.sleep_ms(300)  # a quick answer shows at once
        r = html(req, "Wi-Fi setup", wifi_page(req))
        if ctl.join_state and ctl.join_state[0] == "joining":
            r.headers["Refresh"] = "2"
        return r

    # -- services ------------------------------------------------------------

    def services_page(req, msg=""):
        rows = []
        for label, key in ctl.service_list():
            on = fw.settings.get(key)
            rows.append("<tr><td class=\"l\">%s</td><td>%s</td><td><form method=\"post\" "
                        "action=\"/services\">%s<input type=\"hidden\" name=\"key\" value=\"%s\">"
                        "<input type=\"hidden\" name=\"on\" value=\"%d\"><button id=\"svc-%s\">"
                        "Switch %s</button></form></td></tr>"
                        % (esc(label), state(bool(on)), csrf_field(req), esc(key),
                           0 if on else 1, esc(key.replace(".", "-")), "off" if on else "on"))
        return [msg, "<table><tr><th class=\"l\">Service</th><th>State</th><th></th></tr>", rows,
                "</table><p class=\"small\">A service that is off has its port closed. Switching "
                "the Web Admin off ends this window and every session now.</p>"]

    @web.get("/services")
    async def services(req):
        return html(req, "Services", services_page(req))

    @web.post("/services")
    async def services_post(req):
        f = form(req)
        key = f.get("key", "")
        if key not in [k for _, k in ctl.service_list()]:
            return html(req, "Services", services_page(req, note("err", "Unknown service.")), 400)
        on = f.get("on") == "1"
        try:
            fw.settings.update({key: on}, "web")
        except Locked:
            raise
        except Exception as e:
            return html(req, "Services", services_page(req, note("err", "Not changed: %s" % e)), 400)
        fw.audit.append("web", "service", "on" if on else "off", key)
        if key == "web.allowed" and not on:
            r = html(req, "Services", note("ok", "The Web Admin is switched off: its port closes "
                                            "now. Switch it on again in the device's menu "
                                            "(Settings, Services)."), nav=False)
            set_cookie(r, "sid", "", 0)
            return r  # the controller's watcher closes the window right after
        return html(req, "Services", services_page(req, note("ok", "%s switched %s." % (
            key, "on" if on else "off"))))

    # -- security ------------------------------------------------------------

    @web.get("/security")
    async def security(req):
        rows = ("<tr><td>%d</td><td class=\"l\">%s</td><td class=\"l\">%s</td>"
                "<td class=\"l\">%s</td><td class=\"l\">%s</td><td class=\"l\">%s</td>"
                "</tr>" % (seq, utc(t), esc(src), esc(ev), esc(outcome), esc(detail))
                for seq, t, src, ev, outcome, detail in reversed(fw.audit.events(AUDIT_SHOWN)))
        code = req.args.get("m") if req.args else None
        msg = note(*MESSAGES[code]) if code in MESSAGES else ""
        body = [lock_section(req, msg), "<h2>Change password</h2>",
                note("warn", LOCKED_TEXT) if fw.settings.locked else password_form(req, False),
                "<h2>Audit log</h2><p class=\"small\">Newest first; the last %d events.</p>"
                "<table id=\"audit\"><tr><th>#</th><th class=\"l\">Time (UTC)</th>"
                "<th class=\"l\">Source</th><th class=\"l\">Event</th><th class=\"l\">Outcome"
                "</th><th class=\"l\">Detail</th></tr>" % AUDIT_SHOWN]
        body.append(rows)
        body.append("</table>")
        return html(req, "Security", body, editable=True)

    def lock_section(req, msg=""):
        st = fw.settings.lock_state()
        pw = ("<label>%s <input type=\"password\" name=\"%s\" autocomplete=\"off\"></label>")
        out = ["<h2>Module lock</h2>", msg,
               "<p>State: <strong id=\"lock-state\">%s</strong></p>" % {
                   "none": "no lock password set", "unlocked": "unlocked",
                   "locked": "LOCKED (configuration is read-only)"}[st]]

        def fm(action, ident, fields, button):
            out.append("<form method=\"post\" action=\"/lock/%s\">%s%s<button id=\"%s\">%s"
                       "</button></form>" % (action, csrf_field(req), "".join(
                           pw % f for f in fields), ident, button))

        if st == "none":
            fm("set", "lock-set", (("New lock password", "new"), ("Repeat", "repeat")),
               "Set lock password")
        elif st == "unlocked":
            fm("lock", "lock", (("Lock password", "password"),), "Lock the module")
            out.append("<h3>Change lock password</h3>")
            fm("change", "lock-change", (("Current lock password", "current"),
                                         ("New lock password", "new"), ("Repeat", "repeat")),
               "Change lock password")
        else:
            fm("unlock", "unlock", (("Lock password", "password"),), "Unlock")
        out.append("<p class=\"small\">At least %d characters. While locked, every "
                   "configuration change is refused on every interface. %s</p>" % (
                       LOCK_MIN_LEN, esc(WIPE)))
        return out

    @web.post("/lock/<action>")
    async def lock_post(req, action):
        f = form(req)
        lk = fw.lock
        try:
            if f.get("new") is not None and f.get("new") != f.get("repeat"):
                raise LockError("The two new lock passwords differ.")
            if action == "set":
                await lk.set_password(f.get("new", ""), "web")
                done = "lock-set"
            elif action == "lock":
                await lk.lock(f.get("password", ""), "web")
                done = "locked"
            elif action == "unlock":
                await lk.unlock(f.get("password", ""), "web")
                done = "unlocked"
            elif action == "change":
                await lk.change(f.get("current", ""), f.get("new", ""), "web")
                done = "lock-changed"
            else:
                return Response("not found\n", 404, {"Content-Type": "text/plain; charset=UTF-8"})
        except LockError as e:
            return html(req, "Security", lock_section(req, note("err", str(e))), 403,
                        editable=True)
        return see_other("/security?m=" + done)

    # -- device --------------------------------------------------------------

    @web.get("/device")
    async def device(req):
        b = fw.board
        sec = b.security_state()

        rows = (("Serial number", b.serial()), ("Firmware", VERSION), ("Board", b.name),
                ("Secure boot", state(sec.get("secure_boot", UNSUPPORTED))),
                ("Flash encryption", state(sec.get("flash_encryption", UNSUPPORTED))),
                ("Connection", "HTTPS" if req.scheme == "https" else "plain HTTP (not encrypted)"))
        return html(req, "Device", ["<table>", [
            "<tr><th class=\"l\">%s</th><td class=\"l\" id=\"dev%d\">%s</td></tr>"
            % (k, i, esc(v)) for i, (k, v) in enumerate(rows)], "</table>"])

    @web.errorhandler(Locked)
    async def locked(req, exc):
        return html(req, "Module locked", note("err", LOCKED_TEXT, "refused")
                    + "<p><a href=\"/security\">Security</a></p>", 423, editable=True)

    from meter.web import tokens as tokens_pages  # the Tokens page (docs/api.md)

    tokens_pages.add(web, ctl, html, csrf_field, note, form, esc)

    @web.errorhandler(404)
    async def not_found(req):
        return Response("not found\n", 404, {"Content-Type": "text/plain; charset=UTF-8"})

    @web.errorhandler(405)
    async def not_allowed(req):
        return Response("method not allowed\n", 405, {"Content-Type": "text/plain; charset=UTF-8"})

    return web


class LiveStream:
    """The Dashboard's event stream (an async iterator microdot writes out):
    one event per second while the session lives, SSE_EVENTS at most. It
    runs inside its connection's task, so closing the window cancels it."""

    def __init__(self, conn, sess, sessions, live):
        self.conn = conn
        self.sess = sess
        self.sessions = sessions
        self.live = live
        self.n = 0

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.n:
            if self.n >= SSE_EVENTS:
                raise StopAsyncIteration
            await asyncio.sleep_ms(1000)
        if not self.sessions.alive(self.sess):
            raise StopAsyncIteration
        self.conn.deadline = time.ticks_add(time.ticks_ms(), WRITE_MS)
        self.n += 1
        data = b"data: " + json.dumps(self.live()).encode() + b"\n\n"
        return (b"retry: 2000\n" + data) if self.n == 1 else data

    async def aclose(self):
        pass
