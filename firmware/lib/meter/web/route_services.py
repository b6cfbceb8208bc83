"""The Web Admin's Services page: each network service's switch (meter.
web.site mounts app()). The change is audited once, by the settings store
(Settings.update), as from every other interface."""

from microdot import Microdot

from meter.text import state
from meter.web import chrome


def app():
    a = Microdot()
    a.get("/services")(services)
    a.post("/services")(services_post)
    return a


def services_page(req, msg=""):
    ctl = req.g.ctl
    settings = ctl.app.settings
    rows = []
    for label, key in ctl.service_list():
        on = settings.get(key)
        rows.append("<tr><td class=\"l\">%s</td><td>%s</td><td><form method=\"post\" "
                    "action=\"/services\">%s<input type=\"hidden\" name=\"key\" value=\"%s\">"
                    "<input type=\"hidden\" name=\"on\" value=\"%d\"><button id=\"svc-%s\">"
                    "Switch %s</button></form></td></tr>"
                    % (chrome.esc(label), state(bool(on)), chrome.csrf_field(req), chrome.esc(key),
                       0 if on else 1, chrome.esc(key.replace(".", "-")), "off" if on else "on"))
    return [msg, "<table><tr><th class=\"l\">Service</th><th>State</th><th></th></tr>", rows,
            "</table><p class=\"small\">A service that is off has its port closed. Switching "
            "the Web Admin off ends this window and every session now.</p>"]


async def services(req):
    return chrome.page(req, "Services", services_page(req))


async def services_post(req):
    ctl = req.g.ctl
    f = chrome.form(req)
    key = f.get("key", "")
    if key not in [k for _, k in ctl.service_list()]:
        return _answer(req, "err", "Unknown service.", 400)
    on = f.get("on") == "1"
    # (audited once, by the store; no record of the page's own)
    err = await chrome.attempt(ctl.app.settings.update, {key: on}, "web")
    if err:
        return _answer(req, "err", "Not changed: " + err, 400)
    if key == "web.allowed" and not on:
        r = chrome.page(req, "Services", chrome.note(
            "ok", "The Web Admin is switched off: its port closes now. Switch it on again in the "
            "device's menu (Settings, Services)."), nav=False)
        chrome.set_cookie(r, "sid", "", 0)
        return r  # the controller's watcher closes the window right after
    return _answer(req, "ok", "%s switched %s." % (key, "on" if on else "off"))


def _answer(req, kind, text, status=200):
    return chrome.page(req, "Services", services_page(req, chrome.note(kind, text)), status)
