"""The Web Admin's Network page (state, Wi-Fi reset) and the Wi-Fi setup
page (scan, join), over the window's meter.wifisetup.WifiSetup
(meter.web.site mounts app())."""

import asyncio

from micropython import const

from microdot import Microdot

from meter.web import chrome


_JOIN_FIRST_MS = const(300)  # a quick join's answer shows on the first page


def app():
    a = Microdot()
    a.get("/network")(network)
    a.get("/network/reset")(network_reset_get)
    a.post("/network/reset")(network_reset_post)
    a.get("/wifi")(wifi)
    a.post("/wifi/scan")(wifi_scan)
    a.post("/wifi/join")(wifi_join)
    return a


def network_info(ctl):
    fw = ctl.app
    w = fw.board.wifi()
    rows = [("Network (SSID)", fw.settings.get("wifi.ssid") or "not configured"),
            ("State", w.status()), ("IP address", w.ip() or "-")]
    ap = ctl.wifi.ap
    rows.append(("Setup access point", ("on: %s" % ap[0]) if ap else "off"))
    return ["<table>", ["<tr><th class=\"l\">%s</th><td class=\"l\" id=\"net%d\">%s</td></tr>"
                        % (k, i, chrome.esc(v)) for i, (k, v) in enumerate(rows)], "</table>"]


async def network(req):
    return chrome.page(req, "Network", [
        network_info(req.g.ctl), "<p><a href=\"/wifi\">Wi-Fi setup</a> &middot; <a "
        "href=\"/network/reset\" id=\"wifi-reset\">Reset Wi-Fi&hellip;</a></p>"])


async def network_reset_get(req):
    return chrome.page(req, "Reset Wi-Fi?", [
        chrome.note("warn", "The Wi-Fi settings go back to 'not configured' and the device "
                    "leaves its network. If you are connected through it, this page will stop "
                    "answering.", "leaving"),
        "<form method=\"post\" action=\"/network/reset\">", chrome.csrf_field(req),
        "<label><input type=\"checkbox\" name=\"setup\" value=\"1\" checked> Then open the "
        "setup access point (its password is shown on the device's display)</label><button "
        "class=\"danger\" id=\"do-wifi-reset\">Reset Wi-Fi</button> <a href=\"/network\">"
        "Cancel</a></form>"])


async def network_reset_post(req):
    ctl = req.g.ctl
    err = await chrome.attempt(ctl.wifi.reset, "web", chrome.form(req).get("setup") == "1")
    if err:
        return chrome.page(req, "Network", [chrome.note("err", "Not reset: %s" % err),
                                            network_info(ctl)], 500)
    return chrome.page(req, "Network", [chrome.note("ok", "Wi-Fi reset: not configured."),
                                        network_info(ctl)])


def wifi_page(req, msg=""):
    ws = req.g.ctl.wifi
    nets = ws.networks or []
    opts = []
    for n in nets:
        opts.append("<option value=\"%s\">%s (%s, %d dBm)</option>" % (
            chrome.esc(n["ssid"]), chrome.esc(n["ssid"]), chrome.esc(n["auth"]), n["rssi"]))
    js = ws.join_state
    status = ""
    if js:
        kind = {"joined": "ok", "failed": "err"}.get(js[0], "warn")
        status = chrome.note(kind, js[1])
    ap = ws.ap
    apline = ("The setup access point <strong>%s</strong> is on; it closes when the device "
              "has joined a network." % chrome.esc(ap[0])) if ap else \
        "The setup access point is off."
    out = [msg, status, "<p>", apline, "</p><h2>Networks in range</h2>"]
    if nets:
        out.append("<table id=\"nets\"><tr><th class=\"l\">Network</th><th>Security</th>"
                   "<th>Signal</th></tr>")
        out.append(["<tr><td class=\"l\">%s</td><td>%s</td><td>%d dBm</td></tr>"
                    % (chrome.esc(n["ssid"]), chrome.esc(n["auth"]), n["rssi"]) for n in nets])
        out.append("</table>")
    else:
        out.append("<p>No networks found.</p>")
    out += ["<form method=\"post\" action=\"/wifi/scan\">", chrome.csrf_field(req),
            "<button id=\"rescan\">Scan again</button></form>"
            "<h2>Join a network</h2><form method=\"post\" action=\"/wifi/join\">",
            chrome.csrf_field(req), "<label>Network <select name=\"ssid\" id=\"ssid\">", opts,
            "</select></label><label>Wi-Fi password <input type=\"password\" name=\"key\" "
            "id=\"key\" autocomplete=\"off\"></label><button id=\"join\">Join</button></form>"]
    return out


def _wifi_answer(req):
    r = chrome.page(req, "Wi-Fi setup", wifi_page(req))
    if req.g.ctl.wifi.joining():
        r.headers["Refresh"] = "2"
    return r


async def wifi(req):
    ws = req.g.ctl.wifi
    if ws.networks is None:
        ws.scan()
    return _wifi_answer(req)


async def wifi_scan(req):
    req.g.ctl.wifi.scan()
    return chrome.page(req, "Wi-Fi setup", wifi_page(req))


async def wifi_join(req):
    f = chrome.form(req)
    err = req.g.ctl.wifi.join(f.get("ssid", ""), f.get("key", ""))  # Locked: the 423 page
    if err:
        return chrome.page(req, "Wi-Fi setup", wifi_page(req, chrome.note("err", err)), 400)
    await asyncio.sleep_ms(_JOIN_FIRST_MS)
    return _wifi_answer(req)
