"""The Web Admin's microdot app, built per window (build(ctl)): the gate
every request passes, the static files, and one route module per area,
each a microdot sub-app mounted here with microdot's own mount():

  route_auth      /login, /logout, /password
  route_energy    /, /api/live(/stream), /energy, /energy/reset
  route_network   /network, /network/reset, /wifi (Wi-Fi setup)
  route_services  /services
  route_security  /security, /lock/<action>
  route_device    /device
  route_tokens    /tokens (docs/api.md)
  route_firmware  /firmware, /firmware/ticket, /firmware/upload, /api/firmware
                  (loaded at the first of them: _FIRMWARE)

A route module has `app()`, which returns its sub-app; its handlers are
module-level functions that find the controller in req.g.ctl and build
their pages with meter.web.chrome. A new area is one more module and one
more entry in build()'s areas (and in meter.web.MODULES, which unloads it).

Every page except /login and /static needs a session; while the session
was opened with the default password only /password and /logout answer.
Every POST needs an Origin equal to this server's own origin, a form body,
and the session's CSRF token (the login form: a token bound to a
pre-session cookie). GET never changes anything. The firmware upload's
body is the file itself (application/octet-stream), streamed to its
handler (route_firmware.STREAMED): instead of the form's CSRF token it
carries a ticket that a POST with the token and the password obtained.
Refusals of the upload's two requests are JSON (their page's script reads
them). docs/web.md.
"""

from microdot import Microdot, Response

from meter.settings import Locked
from meter.web import auth, chrome
from meter.web.wire import request_refusal

# The Firmware page (meter.web.route_firmware): the path whose body the
# server streams to its handler, and the requests answered in JSON (the
# page's script asks them). Its module loads at the first of its requests,
# not with every window: about 3 KB that an admin who never opens the page
# does not pay for (the window gives it back when it closes).
STREAMED = ("/firmware/upload",)
_JSON = ("/firmware/ticket",) + STREAMED
_FIRMWARE = (("GET", "/firmware", "page"), ("POST", "/firmware/ticket", "ticket"),
             ("POST", "/firmware/upload", "upload"), ("GET", "/api/firmware", "api"))


def build(ctl):
    """The microdot app of one window; ctl is the WebAdmin controller."""
    web = Microdot()
    audit = ctl.app.audit
    sessions = ctl.sessions

    @web.before_request
    async def gate(req):
        """Host, Origin, session, CSRF, forced password change."""
        req.g.ctl = ctl
        req.g.sess = None
        path = req.path
        json = path in _JSON
        why = request_refusal(req, False)
        if why == "host":
            return Response("bad Host header\n", 400, {"Content-Type": "text/plain"})
        static = path.startswith("/static/")
        sess = sessions.get(req.cookies.get("sid"), touch=not (static or path.startswith("/api/")))
        req.g.sess = sess
        if why:
            audit.refused("web", "csrf", "origin %s" % req.headers.get("Origin"))
            return _refused(req, json, "Cross-site request refused (Origin check).")
        streamed = path in STREAMED
        if req.method == "POST":
            ct = req.content_type or ""
            if not ct.startswith("application/octet-stream" if streamed
                                 else "application/x-www-form-urlencoded"):
                return _refused(req, json, "The file as application/octet-stream expected."
                                if streamed else "Form data expected.", 400)
        if path == "/login" or static or path == "/favicon.ico":
            return None
        if sess is None:
            if path.startswith("/api/") or json:
                return Response({"error": "Your session has ended: log in again."}, 401)
            if req.method == "POST":
                return chrome.see_other("/login?m=ended")
            return chrome.see_other("/login")
        if req.method == "POST" and not streamed and not auth.check_csrf(
                sess, chrome.form(req).get("csrf")):
            audit.refused("web", "csrf", "token")
            return _refused(req, json, "Cross-site request refused (missing or wrong form "
                            "token). Reload the page and try again.")
        if sess.must_change and path not in ("/password", "/logout"):
            if path.startswith("/api/") or json:
                return Response({"error": "set a new password first"}, 403)
            return chrome.see_other("/password")
        return None

    chrome.add(web)  # /static/*, /favicon.ico
    # the areas (imported here: names in this module's globals would cost
    # heap for the whole window)
    from meter.web import (route_auth, route_device, route_energy, route_network,
                           route_security, route_services, route_tokens)

    for area in (route_auth, route_energy, route_network, route_services, route_security,
                 route_device, route_tokens):
        mount(web, area.app())
    for method, path, name in _FIRMWARE:
        web.route(path, methods=[method])(_firmware(name))

    @web.after_request
    async def landing(req, res):
        """A window reopened after an update's restart: a login lands on
        the Firmware page, which says how the update went."""
        if ctl.landing and req.path == "/login" and res.headers.get("Location") == "/":
            res.headers["Location"] = ctl.landing
        return res

    @web.errorhandler(Locked)
    async def locked(req, exc):
        return chrome.page(req, "Module locked", chrome.note("err", chrome.LOCKED_TEXT, "refused")
                           + "<p><a href=\"/security\">Security</a></p>", 423, editable=True)

    @web.errorhandler(404)
    async def not_found(req):
        return chrome.text("not found\n", 404)

    @web.errorhandler(405)
    async def not_allowed(req):
        return chrome.text("method not allowed\n", 405)

    return web


def _refused(req, json, why, status=403):
    return Response({"error": why}, status) if json else chrome.refused(req, why, status)


def mount(web, sub):
    """microdot's mount(), then the window keeps none of the sub-app: its
    own route table goes, and the mounted routes are owned by no sub-app
    (its before/after/error handler lists are empty, mount() moved them to
    `web`, so microdot treats such a route as one of `web`'s own). Each
    sub-app kept would cost ~0.3 KB of heap for as long as the window is
    open."""
    n = len(web.url_map)
    web.mount(sub)
    sub.url_map = []
    m = web.url_map
    for i in range(n, len(m)):
        m[i] = m[i][:4] + (None,)


def _firmware(name):
    """The handler route_firmware.<name>, its module loaded at the first call."""
    async def handler(req):
        from meter.web import route_firmware

        return await getattr(route_firmware, name)(req)
    return handler
