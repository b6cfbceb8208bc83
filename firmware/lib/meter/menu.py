"""The Settings menu tree (the paths of the product's Security and Access
page). Each entry does its real job. The features' entries come from the
registry (app.menu_entries: (where, label, fn(ui)), meter.app): this
module imports no feature; an entry whose feature is not installed is not
shown."""

from meter import VERSION, pinflow
from meter.energy import RESET_CONFIRM
from meter.errors import UserError
from meter.screens import Confirm, Info, Menu, Message, refused
from meter.text import UNSUPPORTED, short, state


def root(ui, app):
    def sub(title, fn):
        return lambda: ui.push(Menu(ui, title, lambda: fn(ui, app)))

    def items():
        it = [("Security", sub("SECURITY", security)),
              ("Communication", sub("COMMUNICATION", comm)),
              ("Measurement", sub("MEASUREMENT", measurement))]
        if app.services:
            it.append(("Services", sub("SERVICES", services)))
        it.append(("Firmware", sub("FIRMWARE", firmware_menu)))
        it.append(("Device info", lambda: ui.push(Info(ui, "DEVICE INFO", lambda: device(app)))))
        return it

    return Menu(ui, "SETTINGS", items)


def _extra(ui, app, where):
    return [(label, (lambda f=fn: f(ui))) for w, label, fn in app.menu_entries if w == where]


def security(ui, app):
    return ([("Change PIN", lambda: pinflow.change(ui, app.pin, app.settings.locked))]
            + _extra(ui, app, "security"))


def comm(ui, app):
    return ([("Network", lambda: ui.push(Menu(ui, "NETWORK", lambda: network(ui, app))))]
            + _extra(ui, app, "communication"))


def network(ui, app):
    return [("Wi-Fi", lambda: ui.push(Menu(ui, "WI-FI", lambda: wifi(ui, app))))]


def wifi(ui, app):
    def status():
        w = app.board.wifi()
        return ["Network:", app.settings.get("wifi.ssid") or "-",
                "State: " + w.status(), "IP: " + (w.ip() or "-")]

    return ([("Status", lambda: ui.push(Info(ui, "WI-FI STATUS", status)))]
            + _extra(ui, app, "wifi")
            + [("Reset Wi-Fi", lambda: ui.push(Confirm(
                ui, ["RESET WI-FI?", "Back to 'not configured'. Run Wi-Fi setup again after."],
                lambda: reset_wifi(ui, app), "Yes, reset")))])


def reset_wifi(ui, app):
    try:
        app.settings.update({"wifi.ssid": "", "wifi.key": ""}, "menu")
    except UserError as e:
        refused(ui, "NOT RESET", e)
        return
    app.board.wifi().disconnect()  # (the store audited the change)

    def offer():
        # What a feature offers after the reset (the Web Admin: Wi-Fi setup,
        # No preselected), registered under "wifi-reset".
        for w, _, fn in app.menu_entries:
            if w == "wifi-reset":
                fn(ui)
                return

    ui.push(Message(ui, ["WI-FI RESET", "Not configured."], then=offer))


def measurement(ui, app):
    # "Reset energy counters" does not fit a menu row: the question says it.
    return [("Reset counters", lambda: ui.push(Confirm(
        ui, ["RESET ENERGY COUNTERS?", "IRREVERSIBLE: all totals and per-phase values are "
             "deleted."], lambda: reset_counters(ui, app), "Yes, reset all")))]


def reset_counters(ui, app):
    try:
        app.counters.reset(RESET_CONFIRM, "menu")
    except UserError as e:
        refused(ui, "NOT RESET", e)
        return
    ui.push(Message(ui, ["COUNTERS RESET", "All energy counters are 0."]))


def services(ui, app):
    """One on/off entry per network service that exists (features register
    (label, settings key) with app.add_service)."""
    out = []
    for label, key in app.services:
        on = app.settings.get(key)
        out.append(("%s: %s" % (short(label), state(bool(on))),
                    (lambda k=key, v=on: _toggle(ui, app, k, not v))))
    return out


def _toggle(ui, app, key, value):
    try:
        app.settings.update({key: value}, "menu")
    except UserError as e:
        refused(ui, "NOT CHANGED", e)


def firmware_menu(ui, app):
    """The running version, and what the update features add ("firmware":
    Check update)."""
    return ([("Version", lambda: ui.push(Info(ui, "FIRMWARE", lambda: firmware(app))))]
            + _extra(ui, app, "firmware"))


def firmware(app):
    return ["Version " + VERSION, "Board " + app.board.name]


def device(app):
    """Label and state on rows of their own ("Flash encryption" fills one),
    so that the six rows hold it all (a serial is 12 characters)."""
    sec = app.board.security_state()
    return ["S/N " + app.board.serial(), "Firmware " + VERSION,
            "Secure boot", "  " + state(sec.get("secure_boot", UNSUPPORTED)),
            "Flash encryption", "  " + state(sec.get("flash_encryption", UNSUPPORTED))]
