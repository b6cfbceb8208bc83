"""The Web Admin's HTML helpers, which every route module imports: escaping,
the page layout, forms and their CSRF field, notes, cookies, redirects,
times; the one edge that turns a refused change into the page's message
(attempt); the header's window countdown; the static files' routes.

Values shown are escaped; messages in URLs are fixed codes (MESSAGES),
never reflected text. A page is sent part by part (the server gathers the
parts into its connection buffer): never one multi-KB string on the heap.

The countdown is rendered with the seconds left and counted down in the
browser by /static/clock.js (the CSP allows no inline script); a minute
before the window closes a warning appears, since the window cannot be
extended from the browser (it is opened at the device). The colours are
in assets.CSS and meet WCAG AA on the header (tests/test_web_polish.py
checks the computed colours).

A route finds the controller in req.g.ctl (the gate, meter.web.site, sets
it), so route modules hold no per-window closures.
"""

from microdot import Response
from micropython import const

from meter import log
from meter.errors import UserError, message
from meter.settings import Locked

_COROUTINE = type((lambda: (yield))())  # what a coroutine function returns (a generator)

WARN_S = const(60)  # the warning shows from this many seconds before the close

# /favicon.ico: a 16x16 two-colour PNG in an ICO (130 bytes, a yellow bolt on
# the header's navy), so browsers stop logging a 404 on every page.
ICON = b'\x00\x00\x01\x00\x01\x00\x10\x10\x00\x00\x01\x00 \x00l\x00\x00\x00\x16\x00\x00\x00\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x01\x03\x00\x00\x00%=m"\x00\x00\x00\x06PLTE\x1d5W\xff\xd1f\xa7^\xac\xb9\x00\x00\x00!IDATx\xdac`\x80\x80\x04\x06\x86\x03\x0c\x8c\r\x0c\xcc\x0c\x0c\xec\x0f\x10l6\x06\x06\x1e\x06d\x00\x00t\xdf\x03\xe2\xa5\xe2\x94\xf7\x00\x00\x00\x00IEND\xaeB`\x82'

JS = b"""'use strict';
(function () {
  var el = document.getElementById('closes');
  var warn = document.getElementById('closing');
  if (!el) { return; }
  var end = Date.now() + 1000 * parseInt(el.getAttribute('data-s') || '0', 10);
  function mmss(s) { return Math.floor(s / 60) + ':' + ('0' + (s % 60)).slice(-2); }
  function tick() {
    var s = Math.max(0, Math.round((end - Date.now()) / 1000));
    el.textContent = s ? 'Web Admin closes in ' + mmss(s) : 'Web Admin closed';
    el.setAttribute('data-s', String(s));
    if (s <= 60) { el.className = 'soon'; if (warn) { warn.hidden = false; } }
    if (s) { window.setTimeout(tick, 1000); }
  }
  tick();
})();
"""


NAV = (("/", "Dashboard"), ("/energy", "Energy"), ("/network", "Network"),
       ("/wifi", "Wi-Fi setup"), ("/services", "Services"), ("/tokens", "Tokens"),
       ("/security", "Security"), ("/firmware", "Firmware"), ("/device", "Device"))

MESSAGES = {
    "out": ("ok", "You are logged out."),
    "ended": ("warn", "Your session has ended. Please log in again."),
    "changed": ("ok", "Password changed. All sessions were ended: log in with the new password."),
    "form": ("err", "The form had expired. Please try again."),
    "lock-set": ("ok", "Lock password set. The module is unlocked; lock it below."),
    "locked": ("ok", "The module is locked: all configuration is read-only."),
    "unlocked": ("ok", "The module is unlocked."),
    "lock-changed": ("ok", "Lock password changed."),
    "updated": ("ok", "The device has restarted after the firmware update. Log in again to see "
                "how it went."),
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


def note(kind, text, ident="msg"):
    return "<p class=\"%s\" id=\"%s\">%s</p>" % (kind, ident, esc(text))


def csrf_field(req):
    s = req.g.sess
    return "<input type=\"hidden\" name=\"csrf\" value=\"%s\">" % (s.csrf if s else "")


def form(req):
    try:
        return req.form or {}
    except (ValueError, UnicodeError, IndexError):  # malformed %-escapes
        return {}


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


def text(body, status):
    return Response(body, status, {"Content-Type": "text/plain; charset=UTF-8"})


def message_code(req):
    """The note for a fixed message code in ?m= (never reflected text)."""
    code = req.args.get("m") if req.args else None
    return note(*MESSAGES[code]) if code in MESSAGES else ""


def _parts(parts):
    """A response body that hands microdot one part at a time; a part that
    is not a str is an iterable of parts made as they are sent (a table's
    rows)."""
    for p in parts:
        if isinstance(p, str):
            yield p
        else:
            yield from _parts(p)


def page(req, title, body, status=200, nav=True, editable=False):
    """A page. While the module is locked, the forms of the page (unless
    `editable`: the Security page's lock forms) are shown disabled.
    body: a str, or a list of str parts (and iterables of parts) for long
    pages."""
    ctl = req.g.ctl
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
        out.append(countdown(ctl.remaining_s(), ctl.remaining_text()))
        out.append("<form method=\"post\" action=\"/logout\">%s<button>Log out</button></form>"
                   % csrf_field(req))
    out.append("</header><main>")
    if nav and s is not None:
        out.append(warning(ctl.remaining_s()))
    out.append("<h1>%s</h1>" % esc(title))
    ro = s is not None and not editable and ctl.app.settings.locked
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


def refused(req, why, status=403):
    return page(req, "Request refused", note("err", why) + "<p><a href=\"/\">Back</a></p>",
                status, nav=False)


async def attempt(fn, *args):
    """Run a change a page asked for (fn may be a coroutine function, and
    returns None or why not): None when it is done, else the user's text
    for why not; a raised error becomes meter.errors.message (a UserError's
    own words; anything else is a fault, logged, and the page says
    "internal error"). Locked is not caught: the app's handler answers it
    with the 423 page."""
    try:
        r = fn(*args)
        if isinstance(r, _COROUTINE):
            r = await r
    except Locked:
        raise
    except Exception as e:  # the web edge: nothing but a message reaches the page
        if not isinstance(e, UserError):
            log.exc("web: change failed", e)
        return message(e)
    return r


def countdown(left_s, text):
    """The header's countdown and the (hidden until the last minute) warning."""
    soon = left_s <= WARN_S
    return ("<span id=\"closes\" data-s=\"%d\"%s>Web Admin closes in %s</span>"
            "<script src=\"/static/clock.js\" defer></script>" % (
                left_s, " class=\"soon\"" if soon else "", text))


def warning(left_s):
    return ("<p id=\"closing\" class=\"warn\" role=\"alert\"%s>The Web Admin closes in "
            "less than a minute: save what you are doing. To keep working, open it again in "
            "the device's menu (Settings, Communication, Web Admin).</p>"
            % ("" if left_s <= WARN_S else " hidden"))


def add(web):
    """The static files' routes (public, no session; the gate lets them
    through)."""

    @web.get("/static/app.js")
    async def app_js(req):
        from meter.web import assets

        return Response(assets.JS, 200, {"Content-Type": "application/javascript; charset=UTF-8"})

    @web.get("/static/app.css")
    async def app_css(req):
        from meter.web import assets

        return Response(assets.CSS, 200, {"Content-Type": "text/css; charset=UTF-8"})

    @web.get("/static/fw.js")
    async def fw_js(req):
        from meter.web import assets

        return Response(assets.FW_JS, 200,
                        {"Content-Type": "application/javascript; charset=UTF-8"})

    @web.get("/static/clock.js")
    async def clock_js(req):
        return Response(JS, 200, {"Content-Type": "application/javascript; charset=UTF-8"})

    @web.get("/favicon.ico")
    async def favicon(req):
        return Response(ICON, 200, {"Content-Type": "image/x-icon"})
