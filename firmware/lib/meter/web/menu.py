"""The Web Admin's display-menu screens and the simulator's `web` control
command (meter.web registers them; this module loads on first use, so the
handle that stays loaded between windows is small). It gets the handle
passed in and imports nothing back from meter.web."""

import gc
import sys

from meter.errors import UserError

# The screens (meter.screens) are imported where shown: the `web` control
# command loads this module too, and must not pull the display's widgets in.


def _noop():
    pass


def menu_web(w, ui):
    from meter.screens import Menu

    ui.push(Menu(ui, "WEB ADMIN", lambda: _menu_items(w, ui)))


def _menu_items(w, ui):
    if w.active():
        c = w.ctl
        return [("On, %s left" % c.remaining_text(), _noop),
                (c.address() or "no network", _noop),
                ("Disable", lambda: w.disable("menu"))]
    items = [("Status: off", _noop)]
    if w.error:
        items.append((w.error[:15], _noop))  # one menu row; in full on the Message Enable shows
    items.append(("Enable", lambda: _menu_open(w, ui, w.enable, "NOT ENABLED")))
    return items


def _menu_open(w, ui, fn, title):
    from meter.screens import Message

    err = fn("menu")
    if err:
        ui.push(Message(ui, [title, err]))
    return err


def menu_reset_password(w, ui):
    from meter.screens import Confirm, Message, refused

    def yes():
        try:
            reset_password(w, "menu")
        except UserError as e:
            refused(ui, "NOT RESET", e)
            return
        # (the login with 'admin' also asks for the code that the main
        # screen then shows: only someone here can finish it)
        ui.push(Message(ui, ["WEB PASS RESET", "Password is now 'admin'. At the next web login, "
                             "also type the code the main screen then shows, and set a new "
                             "password."]))

    # The menu's "Reset Web Pass" in full on the question.
    ui.push(Confirm(ui, ["RESET WEB ADMIN PASSWORD?", "Back to 'admin'; web sessions end."],
                    yes, "Yes, reset"))


def reset_password(w, source):
    """Back to the default "admin" (someone at the device): every web
    session ends and the failed-login counts start from zero."""
    w.app.settings.update({"web.pass": ""}, source)
    w.app.state_.set("web_login", {})
    c = w.ctl
    if c is not None and c.sessions is not None:
        c.sessions.clear()
        c.reset_throttle()
    # (audited once, by the store: "settings ok web.pass")


def offer_setup(w, ui):
    """After Reset Wi-Fi: offer the Wi-Fi setup procedure (No preselected),
    on a board whose Wi-Fi can open the setup access point."""
    from meter.screens import Confirm

    if not w.app.board.wifi().can_ap:
        return
    ui.push(Confirm(ui, ["WI-FI SETUP?", "Open the setup access point now?"],
                    lambda: menu_wifi_setup(w, ui), "Yes, start"))


def menu_wifi_setup(w, ui):
    from meter.screens import Info

    if _menu_open(w, ui, w.setup_start, "NO WI-FI SETUP"):
        return
    ui.push(Info(ui, "WI-FI SETUP", lambda: (w.setup_lines() or [
        "", "Setup ended."])[1:]))


def command(w, args, modules):
    if args and args[0] == "on":
        return {"error": w.enable("control")}
    if args and args[0] == "off":
        w.disable("control")
        return {"ok": True}
    c = w.ctl
    gc.collect()
    out = {"active": w.active(), "closing": w.closing, "error": w.error,
           "windows": w.windows, "heap_before": w.heap_before,
           "heap_after": w.heap_after, "heap_used": gc.mem_alloc(),
           "modules": [m for m in modules if m in sys.modules],
           "listening": False, "conns": 0, "sessions": 0, "stats": None, "ap": None}
    if c is not None:
        out.update(c.status())
    return out
