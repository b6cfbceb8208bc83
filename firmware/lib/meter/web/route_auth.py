"""The Web Admin's login, logout and password pages (meter.web.site mounts
app()). The login form carries a token bound to a pre-session cookie; a
login with the factory password also asks for the code the device's
display shows, then forces a new password (docs/web.md, docs/security.md).
"""

from microdot import Microdot

from meter import passwd
from meter.web import auth, chrome


def app():
    a = Microdot()
    a.get("/login")(login_get)
    a.post("/login")(login_post)
    a.post("/logout")(logout)
    a.get("/password")(password_get)
    a.post("/password")(password_post)
    return a


def login_page(req, msg="", status=200, pre=None, retry=0, code=False):
    """code: ask for the code on the device's display (also whenever one is
    showing there)."""
    ctl = req.g.ctl
    pre = pre or req.cookies.get("pre")
    new_pre = None
    if not pre or len(pre) != 32:
        pre = new_pre = auth.new_id()
    body = []
    if req.scheme != "https":
        body.append(chrome.note("warn", "This connection is not encrypted (plain HTTP): the "
                                "password crosses the network readable by anyone on it. Log "
                                "in only from a network you trust.", "plain-http"))
    m = req.args.get("m") if req.args else None
    if not msg and m in chrome.MESSAGES:
        body.append(chrome.note(*chrome.MESSAGES[m]))
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
    r = chrome.page(req, "Log in", body, status, nav=False)
    if new_pre:
        chrome.set_cookie(r, "pre", new_pre, secure=req.scheme == "https")
    if retry:
        r.headers["Retry-After"] = str(retry)
    return r


async def login_get(req):
    s = req.g.sess
    if s is not None:
        return chrome.see_other("/password" if s.must_change else "/")
    return login_page(req)


async def login_post(req):
    ctl = req.g.ctl
    fw = ctl.app
    f = chrome.form(req)
    pre = req.cookies.get("pre")
    if not ctl.tokens.check(pre, f.get("csrf")):
        fw.audit.refused("web", "csrf", "login token")
        return login_page(req, chrome.note("err", "The login form had expired or did not come "
                                           "from this device. Please try again."), 403)
    ip = req.g.conn.ip
    verdict, wait = await ctl.check_login(ip, f.get("user", ""), f.get("password", ""),
                                          f.get("code"))
    # verdict -> (status, kind, text with the seconds to wait, ask for the code)
    refusal = {
        "wait": (429, "err", "Too many failed logins. Try again in %d s.", False),
        "codewait": (429, "err", "Too many failed logins. Try again in %d s.", False),
        "hold": (429, "err", "Too many failed logins on this device. Try again in %d s, or "
                 "type the code now shown on the device's display with your password.", True),
        "badcode": (401, "err", "Wrong code. You can try again in %d s.", True),
        "fail": (401, "err", "Wrong user name or password. You can try again in %d s.", False),
    }.get(verdict)
    if refusal:
        status, kind, text, code = refusal
        return login_page(req, chrome.note(kind, text % wait), status, retry=wait, code=code)
    if verdict == "code":
        return login_page(req, chrome.note("warn", "The password is the factory default: to prove "
                                           "that you are at the device, also type the code now "
                                           "shown on its display.", "need-code"), code=True)
    if verdict == "busy":
        return login_page(req, chrome.note("err", "Another login is being checked. Try again in a "
                                           "moment."), 503, retry=1)
    sessions = ctl.sessions
    sessions.end(req.cookies.get("sid"))  # never keep a session id across a login
    default = passwd.is_default(fw.settings.get("web.pass"))
    sid, _ = sessions.create(ip, must_change=default)
    fw.audit.append("web", "login", "ok", ip)
    r = chrome.see_other("/password" if default else "/")
    chrome.set_cookie(r, "sid", sid, secure=req.scheme == "https")
    chrome.set_cookie(r, "pre", "", 0)
    return r


async def logout(req):
    ctl = req.g.ctl
    ctl.sessions.end(req.cookies.get("sid"))
    ctl.app.audit.append("web", "logout", "ok", req.g.conn.ip)
    r = chrome.see_other("/login?m=out")
    chrome.set_cookie(r, "sid", "", 0)
    return r


def password_form(req, forced, msg=""):
    """The password form's parts (also on the Security page)."""
    body = [msg]
    if forced:
        body.append(chrome.note("warn", "You logged in with the default password. Set your own "
                                "password before anything else.", "forced"))
    body.append("<form method=\"post\" action=\"/password\">" + chrome.csrf_field(req))
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


def _title(s):
    return "Set a new password" if s.must_change else "Change password"


async def password_get(req):
    s = req.g.sess
    return chrome.page(req, _title(s), password_form(req, s.must_change))


async def password_post(req):
    ctl = req.g.ctl
    s = req.g.sess
    f = chrome.form(req)
    title = _title(s)
    if not s.must_change:
        verdict, wait = await ctl.check_login(req.g.conn.ip, passwd.USER, f.get("current", ""))
        if verdict != "ok":
            why = ctl.verdict_text(verdict, wait, "The current password is wrong.")
            return chrome.page(req, title, password_form(req, False, chrome.note("err", why)), 403)
    err = passwd.policy(f.get("new", ""), f.get("repeat", ""))
    status = 400
    if not err:
        err = await chrome.attempt(ctl.set_password, f.get("new"), "web")
        status = 503
    if err:
        return chrome.page(req, title, password_form(req, s.must_change, chrome.note("err", err)),
                           status)
    r = chrome.see_other("/login?m=changed")
    chrome.set_cookie(r, "sid", "", 0)
    return r
