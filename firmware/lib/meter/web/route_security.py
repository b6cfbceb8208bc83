"""The Web Admin's Security page: the module lock, the password, the audit
log (meter.web.site mounts app()). Its lock forms stay usable while the
module is locked (editable pages)."""

from micropython import const

from microdot import Microdot

from meter.lock import MIN_LEN as LOCK_MIN_LEN
from meter.lock import WIPE, LockError
from meter.web import chrome
from meter.web.route_auth import password_form

_AUDIT_SHOWN = const(40)
_PW = "<label>%s <input type=\"password\" name=\"%s\" autocomplete=\"off\"></label>"


def app():
    a = Microdot()
    a.get("/security")(security)
    a.post("/lock/<action>")(lock_post)
    return a


async def security(req):
    fw = req.g.ctl.app
    esc = chrome.esc
    rows = ("<tr><td>%d</td><td class=\"l\">%s</td><td class=\"l\">%s</td>"
            "<td class=\"l\">%s</td><td class=\"l\">%s</td><td class=\"l\">%s</td>"
            "</tr>" % (seq, chrome.utc(t), esc(src), esc(ev), esc(outcome), esc(detail))
            for seq, t, src, ev, outcome, detail in reversed(fw.audit.events(_AUDIT_SHOWN)))
    locked = fw.settings.locked
    body = [lock_section(req, chrome.message_code(req)), "<h2>Change password</h2>",
            chrome.note("warn", chrome.LOCKED_TEXT) if locked else password_form(req, False),
            "<h2>Audit log</h2><p class=\"small\">Newest first; the last %d events.</p>"
            "<table id=\"audit\"><tr><th>#</th><th class=\"l\">Time (UTC)</th>"
            "<th class=\"l\">Source</th><th class=\"l\">Event</th><th class=\"l\">Outcome"
            "</th><th class=\"l\">Detail</th></tr>" % _AUDIT_SHOWN, rows, "</table>"]
    return chrome.page(req, "Security", body, editable=True)


def lock_section(req, msg=""):
    st = req.g.ctl.app.settings.lock_state()
    out = ["<h2>Module lock</h2>", msg,
           "<p>State: <strong id=\"lock-state\">%s</strong></p>" % {
               "none": "no lock password set", "unlocked": "unlocked",
               "locked": "LOCKED (configuration is read-only)"}[st]]

    def fm(action, ident, fields, button):
        out.append("<form method=\"post\" action=\"/lock/%s\">%s%s<button id=\"%s\">%s"
                   "</button></form>" % (action, chrome.csrf_field(req), "".join(
                       _PW % f for f in fields), ident, button))

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
                   LOCK_MIN_LEN, chrome.esc(WIPE)))
    return out


async def lock_post(req, action):
    f = chrome.form(req)
    lk = req.g.ctl.app.lock
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
            return chrome.text("not found\n", 404)
    except LockError as e:  # the lock's own refusal, in its words, on the lock's form
        return chrome.page(req, "Security", lock_section(req, chrome.note("err", str(e))), 403,
                           editable=True)
    return chrome.see_other("/security?m=" + done)
