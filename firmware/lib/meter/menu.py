"""The Settings menu tree (the paths of the product's Security and Access
page). Each entry does its real job; an entry whose feature has not landed
yet is not shown (features add themselves through `app.menu_entries`)."""

from meter import VERSION
from meter.energy import RESET_CONFIRM
from meter.text import UNSUPPORTED, short, state
from meter.ui import Confirm, Info, Menu, Message, PinEntry


def root(ui):
    app = ui.app

    def items():
        it = [("Security", lambda: ui.push(Menu(ui, "SECURITY", lambda: security(ui)))),
              ("Communication", lambda: ui.push(Menu(ui, "COMMUNICATION", lambda: comm(ui)))),
              ("Measurement", lambda: ui.push(Menu(ui, "MEASUREMENT", lambda: measurement(ui))))]
        svc = services(ui)
        if svc:
            it.append(("Services", lambda: ui.push(Menu(ui, "SERVICES", lambda: services(ui)))))
        it.append(("Firmware", lambda: ui.push(Info(ui, "FIRMWARE", lambda: firmware(app)))))
        it.append(("Device info", lambda: ui.push(Info(ui, "DEVICE INFO", lambda: device(app)))))
        return it

    return Menu(ui, "SETTINGS", items)


def _extra(ui, where):
    return [(label, (lambda f=fn: f(ui))) for w, label, fn in getattr(ui.app, "menu_entries", ())
            if w == where]


def security(ui):
    return ([("Change PIN", lambda: change_pin(ui)),
             ("Module lock", lambda: ui.push(Info(ui, "MODULE LOCK", lambda: lock_lines(ui.app))))]
            + _extra(ui, "security"))


def lock_lines(app):
    """The lock's state; it is switched in the Web Admin or by the cloud."""
    st = app.settings.lock_state()
    if st == "locked":
        return ["State: LOCKED", "Config is read-only. Unlock: Web Admin/cloud.",
                "Forgot it? Only service wipe."]
    if st == "unlocked":
        return ["State: unlocked", "Lock it in Web Admin Security or by the cloud."]
    return ["State: no lock password set.", "Set it in Web Admin Security."]


def comm(ui):
    return ([("Network", lambda: ui.push(Menu(ui, "NETWORK", lambda: network(ui))))]
            + _extra(ui, "communication"))


def network(ui):
    return [("Wi-Fi", lambda: ui.push(Menu(ui, "WI-FI", lambda: wifi(ui))))]


def wifi(ui):
    app = ui.app

    def status():
        w = app.board.wifi()
        return ["Network:", app.settings.get("wifi.ssid") or "-",
                "State: " + w.status(), "IP: " + (w.ip() or "-")]

    return ([("Status", lambda: ui.push(Info(ui, "WI-FI STATUS", status)))]
            + _extra(ui, "wifi")
            + [("Reset Wi-Fi", lambda: ui.push(Confirm(
                ui, ["RESET WI-FI?", "Back to 'not configured'. Run Wi-Fi setup again after."],
                lambda: reset_wifi(ui), "Yes, reset")))])


def reset_wifi(ui):
    app = ui.app
    try:
        app.settings.update({"wifi.ssid": "", "wifi.key": ""}, "menu")
    except Exception as e:
        ui.push(Message(ui, ["NOT RESET", str(e)]))
        return
    app.board.wifi().disconnect()
    app.audit.append("menu", "wifi-reset", "ok")
    ui.push(Message(ui, ["WI-FI RESET", "Not configured."], then=lambda: _offer_setup(ui)))


def _offer_setup(ui):
    """After Reset Wi-Fi: offer the Wi-Fi setup procedure (No preselected)."""
    web = getattr(ui.app, "web", None)
    if web is not None and web.wifi_capable():
        ui.push(Confirm(ui, ["WI-FI SETUP?", "Open the setup access point now?"],
                        lambda: _wifi_setup(web, ui), "Yes, start"))


def _wifi_setup(web, ui):
    from meter.web import menu as web_menu

    web_menu.menu_wifi_setup(web, ui)


def measurement(ui):
    # "Reset energy counters" does not fit a menu row: the question says it.
    return [("Reset counters", lambda: ui.push(Confirm(
        ui, ["RESET ENERGY COUNTERS?", "IRREVERSIBLE: all totals and per-phase values are "
             "deleted."], lambda: reset_counters(ui), "Yes, reset all")))]


def reset_counters(ui):
    try:
        ui.app.counters.reset(RESET_CONFIRM, "menu")
    except Exception as e:
        ui.push(Message(ui, ["NOT RESET", str(e)]))
        return
    ui.push(Message(ui, ["COUNTERS RESET", "All energy counters are 0."]))


def services(ui):
    """One on/off entry per network service that exists (features register
    (label, settings key) in app.services)."""
    app = ui.app
    out = []
    for label, key in getattr(app, "services", ()):
        on = app.settings.get(key)
        out.append(("%s: %s" % (short(label), state(bool(on))),
                    (lambda k=key, v=on: _toggle(ui, k, not v))))
    return out


def _toggle(ui, key, value):
    try:
        ui.app.settings.update({key: value}, "menu")
    except Exception as e:
        ui.push(Message(ui, ["NOT CHANGED", str(e)]))


def change_pin(ui):
    pin = ui.pin
    if ui.app.settings.locked:  # say so before asking for three PINs
        ui.push(Message(ui, ["NOT CHANGED", "module locked"]))
        return

    def got_current(p):
        if not pin.check(p):
            if pin.wait_s():
                ui.home()  # locked out: leave the menu altogether
                ui.enter_settings()
            else:
                ui.top().note = "Wrong PIN"
            return
        ui.stack.pop()
        ui.push(PinEntry(ui, "CHANGE PIN", "New PIN:", got_new))

    def got_new(p):
        def repeat(p2):
            ui.stack.pop()
            if p2 != p:
                ui.push(PinEntry(ui, "CHANGE PIN", "New PIN:", got_new, "PINs differ"))
                return
            if ui._store_pin(p2):
                ui.push(Message(ui, ["PIN CHANGED"]))

        ui.stack.pop()
        ui.push(PinEntry(ui, "CHANGE PIN", "Repeat new PIN:", repeat))

    ui.push(PinEntry(ui, "CHANGE PIN", "Current PIN:", got_current))


def firmware(app):
    return ["Version " + VERSION, "Board " + app.board.name]


def device(app):
    """Label and state on rows of their own ("Flash encryption" fills one),
    so that the six rows hold it all (a serial is 12 characters)."""
    sec = app.board.security_state()
    return ["S/N " + app.board.serial(), "Firmware " + VERSION,
            "Secure boot", "  " + state(sec.get("secure_boot", UNSUPPORTED)),
            "Flash encryption", "  " + state(sec.get("flash_encryption", UNSUPPORTED))]
