"""The application's screens under the menu: the public measurement pages
with the status line, the start-up screen, and the display task's wiring
(run(app) builds meter.ui's Ui with them and the root menu).

The status line shows the most important of: the features' status texts
(app.status, by priority: meter.app), the core faults (metering, counters,
settings) at STATUS_FAULTS, and the Wi-Fi state last. A feature's notice
(app.notices, e.g. the Wi-Fi setup access point) replaces the pages.
"""

import time

from micropython import const

from meter import VERSION, buttons as btn
from meter.board.base import BTN_DOWN, BTN_OK, BTN_UP  # the leaf: meter.board loads the boards

STATUS_FAULTS = const(20)  # where the core faults rank among the features' texts
SPLASH_MS = 3000  # (not const: tests shorten them)
RESET_HOLD_MS = 5000


def _kwh(uwh):
    # 3 decimals, integer arithmetic: no float rounding on billing values.
    wh = uwh // 1000000
    return "%d.%03d" % (wh // 1000, wh % 1000)


def _w(x):
    return "%6d" % round(x) if abs(x) < 999999 else "%6s" % "OVR"


# -- measurement pages (public) ---------------------------------------------


def page_power(s, app):
    lv = app.sampler.live
    s.line(0, "POWER W       PF", True)  # PF over the power factor column
    for i, name in enumerate(("L1", "L2", "L3")):
        s.line(1 + i, "%s %s  %5.2f" % (name, _w(lv.p[i]), lv.pf[i]))
    s.line(4, "TOT%s  %5.2f" % (_w(lv.p[3]), lv.pf[3]))
    s.line(5, "%.2f Hz" % lv.freq)


def page_vi(s, app):
    lv = app.sampler.live
    s.line(0, "VOLTAGE CURRENT", True)
    for i, name in enumerate(("L1", "L2", "L3")):
        s.line(1 + i, "%s%6.1fV%6.2fA" % (name, lv.v[i], lv.i[i]))
    s.line(4, "PF %5.2f" % lv.pf[3])
    s.line(5, "Q%7dvar" % round(lv.q[3]))


def _energy(s, app, title, base):
    u = app.counters.uwh
    s.line(0, title, True)
    for i, name in enumerate(("L1", "L2", "L3")):
        s.line(1 + i, "%s%14s" % (name, _kwh(u[base + i])))
    s.line(4, "TOT%13s" % _kwh(u[base + 3]))


def page_import(s, app):
    _energy(s, app, "IMPORT kWh", 0)


def page_export(s, app):
    _energy(s, app, "EXPORT kWh", 4)


PAGES = (page_power, page_vi, page_import, page_export)


def faults(app):
    """The core's problems, most important first, or None."""
    if app.sampler.fault:
        return app.sampler.fault
    if app.counters.status == "corrupt":
        return "COUNTERS CORRUPT"
    if app.counters.status == "missing":
        return "COUNTERS MISSING"
    if app.counters.save_failed:
        return "COUNTER SAVE FAIL"
    if app.settings.status == "corrupt":
        return "SETTINGS CORRUPT"
    return None


def status_text(app):
    """The most important problem, else a compact status."""
    done = False
    for prio, fn in app.status:
        if not done and prio > STATUS_FAULTS:
            done = True
            t = faults(app)
            if t:
                return t
        t = fn()
        if t:
            return t
    if not done:
        t = faults(app)
        if t:
            return t
    w = app.board.wifi().status()
    return _WIFI.get(w, "WiFi " + w)


_WIFI = {"connected": "WiFi ok", "not configured": "WiFi not set"}


class Pages:
    def __init__(self, ui, app):
        self.ui = ui
        self.app = app
        self.page = 0

    def render(self, s):
        lines = None
        for fn in self.app.notices:
            lines = fn()
            if lines:
                break
        if lines:  # e.g. Wi-Fi setup: the access point and its password
            for i, text in enumerate(lines[:6]):
                s.line(i, text, i == 0)
            s.line(6, "        OK:menu")
        else:
            PAGES[self.page](s, self.app)
            s.line(6, "%d/%d     OK:menu" % (self.page + 1, len(PAGES)))
        s.line(7, status_text(self.app), True)

    def event(self, ev):
        if ev == btn.DOWN:
            self.page = (self.page + 1) % len(PAGES)
        elif ev == btn.UP:
            self.page = (self.page - 1) % len(PAGES)
        elif ev == btn.OK:
            self.ui.enter_settings()


class Startup:
    """Start-up screen. Holding UP+DOWN for RESET_HOLD_MS here resets a
    forgotten PIN (after a confirmation); releasing early aborts. OK+DOWN
    leads to service mode (meter/service.py)."""

    def __init__(self, ui, app):
        self.ui = ui
        self.app = app
        self.t0 = time.ticks_ms()
        self.counting = False

    def render(self, s):
        ui = self.ui
        if ui.buttons.stable == BTN_OK | BTN_DOWN:  # service mode: meter/service.py
            from meter import service
            from meter.screens import Confirm, Message

            ui.pop()
            ui.push(service.Hold(ui, self.app, Confirm, Message))
            return
        held = ui.buttons.held_ms(BTN_UP | BTN_DOWN)
        now = time.ticks_ms()
        if held:
            self.counting = True
            left = RESET_HOLD_MS - held
            if left <= 0:
                from meter.screens import Confirm

                ui.pop()
                ui.push(Confirm(ui, ["RESET PIN?", "The PIN will be cleared; a new "
                                               "one is set at next menu entry."],
                                lambda: _reset_pin(ui), "Yes, clear PIN"))
                return
            s.line(0, "PIN RESET", True)
            s.line(2, "Keep holding")
            s.line(3, "UP+DOWN: %d s" % ((left + 999) // 1000))
            s.line(5, "Release = abort")
            return
        if self.counting:  # released early
            from meter.screens import Message

            ui.pop()
            ui.push(Message(ui, ["PIN RESET", "Aborted."]))
            return
        if time.ticks_diff(now, self.t0) >= SPLASH_MS:
            ui.pop()
            return
        s.line(0, "ENERGY ANALYZER", True)
        s.line(2, "Firmware " + VERSION)
        s.line(3, "Serial")
        s.line(4, self.app.board.serial())
        s.line(6, "Starting...")

    def event(self, ev):
        pass


def _reset_pin(ui):
    from meter import pinflow

    pinflow.reset(ui, ui.pin)


def _menu(ui, app):
    from meter import menu  # loaded at the first menu entry, not at start-up

    return menu.root(ui, app)


def run(app):
    """The display task (supervised): built inside the task, so that a
    missing panel never stops metering. The start-up screen (and its
    forgotten-PIN reset) comes once per start of the firmware, not again
    when the supervisor restarts this task (docs/ui.md)."""
    from meter.ui import Ui

    first = None
    if not app.startup_shown:
        app.startup_shown = True
        first = lambda ui: Startup(ui, app)  # noqa: E731
    ui = Ui(app.board.display(), btn.Buttons(app.board.buttons()),
            lambda ui: Pages(ui, app), lambda ui: _menu(ui, app), lambda: app.pin, app.audit,
            first)
    app.ui = ui  # whether a user is in the Settings menu (automatic updates wait)
    return ui.run()
