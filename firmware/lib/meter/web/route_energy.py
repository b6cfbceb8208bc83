"""The Web Admin's Dashboard (live values, its JSON and event stream) and
the energy counters with their reset (meter.web.site mounts app())."""

from micropython import const

from microdot import Microdot, Response

from meter import passwd
from meter.text import kwh
from meter.web import chrome, live

_SSE_EVENTS = const(60)  # events per stream (1 s apart); the browser then reconnects
_MAX_STREAMS = const(2)


def app():
    a = Microdot()
    a.get("/")(dashboard)
    a.get("/api/live")(api_live)
    a.get("/api/live/stream")(api_stream)
    a.get("/energy")(energy)
    a.get("/energy/reset")(energy_reset_get)
    a.post("/energy/reset")(energy_reset_post)
    return a


async def dashboard(req):
    d = live.values(req.g.ctl.app, True)
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
               chrome.esc(d["fault"] or "none"))]
    return chrome.page(req, "Dashboard", body)


async def api_live(req):
    return Response(live.values(req.g.ctl.app, True))


async def api_stream(req):
    ctl = req.g.ctl
    fw = ctl.app
    sess = req.g.sess
    sessions = ctl.sessions
    r = live.stream(req, _MAX_STREAMS, lambda: live.values(fw, True),
                    lambda: sessions.alive(sess), _SSE_EVENTS, 2000)
    return r if r is not None else Response({"error": "too many live streams"}, 503)


def energy_table(fw):
    u = fw.counters.uwh
    names = ("L1", "L2", "L3", "Total")
    rows = ["<tr><th class=\"l\"></th><th>Imported kWh</th><th>Exported kWh</th></tr>"]
    for i in range(4):
        rows.append("<tr><th class=\"l\">%s</th><td id=\"imp%d\">%s</td><td id=\"exp%d\">%s"
                    "</td></tr>" % (names[i], i, kwh(u[i]), i, kwh(u[4 + i])))
    return ["<table>", rows, "</table><p class=\"small\">Counter generation %d (deliberate "
            "resets), store %s.</p>" % (fw.counters.generation, chrome.esc(fw.counters.status))]


async def energy(req):
    return chrome.page(req, "Energy counters", [
        energy_table(req.g.ctl.app),
        "<p><a href=\"/energy/reset\" id=\"reset\">Reset the counters&hellip;</a></p>"])


def reset_form(req, msg=""):
    return [msg, chrome.note("warn", "Resetting the energy counters is IRREVERSIBLE: all totals "
                             "and per-phase values are permanently deleted.", "irreversible"),
            energy_table(req.g.ctl.app), "<form method=\"post\" action=\"/energy/reset\">",
            chrome.csrf_field(req),
            "<label><input type=\"checkbox\" name=\"confirm\" value=\"RESET\" id=\"confirm\">"
            " I understand that this cannot be undone</label>"
            "<label>Your password <input type=\"password\" name=\"password\" "
            "autocomplete=\"current-password\"></label>"
            "<button class=\"danger\" id=\"do-reset\">Reset all counters</button> "
            "<a href=\"/energy\" id=\"cancel\">Cancel</a></form>"]


_RESET_TITLE = "Reset energy counters?"


async def energy_reset_get(req):
    return chrome.page(req, _RESET_TITLE, reset_form(req))


async def energy_reset_post(req):
    from meter.energy import RESET_CONFIRM

    ctl = req.g.ctl
    fw = ctl.app
    f = chrome.form(req)
    if f.get("confirm") != RESET_CONFIRM:
        return _refused(req, "Not reset: tick the box to confirm.", 400)
    verdict, wait = await ctl.check_login(req.g.conn.ip, passwd.USER, f.get("password", ""))
    if verdict != "ok":
        fw.audit.append("web", "counter-reset", "refused", "password")
        return _refused(req, ctl.verdict_text(verdict, wait, "Not reset: wrong password."), 403)
    err = await chrome.attempt(fw.counters.reset, RESET_CONFIRM, "web")
    if err:
        return _refused(req, "Not reset: " + err, 500)
    return chrome.page(req, "Energy counters", [
        chrome.note("ok", "All energy counters were reset to 0."), energy_table(fw)])


def _refused(req, why, status):
    return chrome.page(req, _RESET_TITLE, reset_form(req, chrome.note("err", why)), status)
