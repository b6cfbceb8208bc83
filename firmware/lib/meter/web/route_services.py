"""The Web Admin's Services page: each network service's switch (meter.
web.site mounts app()). The change is audited once, by the settings store
(Settings.update), as from every other interface."""

from microdot import Microdot

from meter.text import state
from meter.web.chrome import attempt, csrf_field, esc, form, note, page, set_cookie


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
                    % (esc(label), state(bool(on)), csrf_field(req), esc(key),
                       0 if on else 1, esc(key.replace(".", "-")), "off" if on else "on"))
    return [msg, "<table><tr><th class=\"l\">Service</th><th>State</th><th></th></tr>", rows,
            "</table><p class=\"small\">A service that is off has its port closed. Switching "
            "the Web Admin off ends this window and every session now.</p>"]


async def services(req):
    return page(req, "Services", services_page(req))


async def services_post(req):
    ctl = req.g.ctl
    f = form(req)
    key = f.get("key", "")
    if key not in [k for _, k in ctl.service_list()]:
        return page(req, "Services", services_page(req, note("err", "Unknown service.")), 400)
    on = f.get("on") == "1"
    err = await attempt(ctl.app.settings.update, {key: on}, "web")
    if err:
        return page(req, "Services", services_page(req, note("err", "Not changed: " + err)), 400)
    if key == "web.allowed" and not on:
        r = page(req, "Services", note("ok", "The Web Admin is switched off: its port closes "
                                        "now. Switch it on again in the device's menu "
                                        "(Settings, Services)."), nav=False)
        set_cookie(r, "sid", "", 0)
        return r  # the controller's watcher closes the window right after
    return page(req, "Services", services_page(req, note("ok", "%s switched %s." % (
        key, "on" if on else "off"))))
