"""Display task: measurement pages, the PIN-protected Settings menu and the
start-up PIN reset.

The UI is a stack of screens. Each screen draws itself on the 16x8 text grid
(which the host board reads back from the pixels) and takes button events
(meter.buttons). The bottom of the stack is always the measurement pages,
which are public; the menu sits above them once the PIN was entered. The
menu session ends when the user leaves to the pages, or after IDLE_MS
without a button press.

Buttons in the menu: UP/DOWN move, OK selects, a long OK goes back. In PIN
entry UP/DOWN change the selected digit and OK moves to the next one. Every
screen says so in the same words at the bottom: "UP/DN", "OK:<what>", and
"hold OK: back" / "hold OK: cancel" where holding OK does something. Every
message is wrapped on word boundaries (meter.text) and scrolls with UP/DOWN
when it is longer than the screen, so nothing is cut.
"""

import asyncio
import time

from meter import VERSION, buttons as btn
from meter.board import BTN_DOWN, BTN_OK, BTN_UP
from meter.screens import Confirm, Info, Menu, Message, PinEntry  # noqa: F401 (menu.py's)

COLS = 16
REFRESH_MS = 250
IDLE_MS = 60000
SPLASH_MS = 3000
RESET_HOLD_MS = 5000


class Screen:
    """Text-grid drawing on a framebuffer."""

    def __init__(self, display):
        self.d = display
        self.fb = display.fb

    def clear(self):
        self.fb.fill(0)

    def line(self, row, text, inverse=False):
        fb = self.fb
        y = row * 8
        fb.fill_rect(0, y, 128, 8, 1 if inverse else 0)
        fb.text(text[:COLS], 0, y, 0 if inverse else 1)

    def show(self):
        self.d.show()


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


def status_text(app):
    """The most important problem, else a compact status."""
    p = getattr(app, "ota_progress", None)
    if p is not None:  # an update is being written (meter/otastatus.py)
        return "UPDATING %d%%" % p
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
    rb = getattr(app, "ota_rollback", None)
    if rb:  # meter/otastatus.py: the new image never confirmed itself
        return ("ROLLBACK " + rb)[:16]
    web = getattr(app, "web", None)
    if web is not None and web.active():  # the Web Admin window's countdown
        return ("SETUP AP " if web.ap else "WEB ADMIN ") + web.remaining_text()
    w = app.board.wifi().status()
    up = getattr(app, "uplink", None)
    if w == "connected" and up is not None and app.settings.get("mqtt.enabled"):
        return "WiFi+Cloud ok" if up.connected else ("Cloud " + up.status)[:16]
    return _WIFI.get(w, "WiFi " + w)


_WIFI = {"connected": "WiFi ok", "not configured": "WiFi not set"}


class Pages:
    def __init__(self, ui):
        self.ui = ui
        self.page = 0

    def render(self, s):
        web = getattr(self.ui.app, "web", None)
        setup = web.setup_lines() if web is not None else None
        if setup:  # Wi-Fi setup: the access point and its password
            for i, text in enumerate(setup[:6]):
                s.line(i, text, i == 0)
            s.line(6, "        OK:menu")
        else:
            PAGES[self.page](s, self.ui.app)
            s.line(6, "%d/%d     OK:menu" % (self.page + 1, len(PAGES)))
        s.line(7, status_text(self.ui.app), True)

    def event(self, ev):
        if ev == btn.DOWN:
            self.page = (self.page + 1) % len(PAGES)
        elif ev == btn.UP:
            self.page = (self.page - 1) % len(PAGES)
        elif ev == btn.OK:
            self.ui.enter_settings()


class Lockout:
    """Shown while wrong PINs lock entry; goes on to PIN entry when over."""

    def __init__(self, ui, then):
        self.ui = ui
        self.then = then

    def render(self, s):
        wait = self.ui.pin.wait_s()
        if not wait:
            self.ui.pop()
            self.then()
            return
        s.line(0, "PIN LOCKED", True)
        s.line(2, "Too many wrong")
        s.line(3, "PINs. Try again")
        s.line(4, "in %d s" % wait)
        s.line(7, "OK: back", True)

    def event(self, ev):
        if ev in (btn.OK, btn.OK_LONG):
            self.ui.home()


class Startup:
    """Start-up screen. Holding UP+DOWN for RESET_HOLD_MS here resets a
    forgotten PIN (after a confirmation); releasing early aborts. OK+DOWN
    leads to service mode (meter/service.py)."""

    def __init__(self, ui):
        self.ui = ui
        self.t0 = time.ticks_ms()
        self.counting = False

    def render(self, s):
        if self.ui.buttons.stable == BTN_OK | BTN_DOWN:  # service mode: meter/service.py
            from meter import service

            self.ui.pop()
            self.ui.push(service.Hold(self.ui, Confirm, Message))
            return
        held = self.ui.buttons.held_ms(BTN_UP | BTN_DOWN)
        now = time.ticks_ms()
        if held:
            self.counting = True
            left = RESET_HOLD_MS - held
            if left <= 0:
                self.ui.pop()
                self.ui.push(Confirm(self.ui, ["RESET PIN?", "The PIN will be cleared; a new "
                                               "one is set at next menu entry."],
                                     self.ui.reset_pin, "Yes, clear PIN"))
                return
            s.line(0, "PIN RESET", True)
            s.line(2, "Keep holding")
            s.line(3, "UP+DOWN: %d s" % ((left + 999) // 1000))
            s.line(5, "Release = abort")
            return
        if self.counting:  # released early
            self.ui.pop()
            self.ui.push(Message(self.ui, ["PIN RESET", "Aborted."]))
            return
        if time.ticks_diff(now, self.t0) >= SPLASH_MS:
            self.ui.pop()
            return
        s.line(0, "ENERGY ANALYZER", True)
        s.line(2, "Firmware " + VERSION)
        s.line(3, "Serial")
        s.line(4, self.ui.app.board.serial())
        s.line(6, "Starting...")

    def event(self, ev):
        pass


# -- the UI task -------------------------------------------------------------


class Ui:
    def __init__(self, app):
        self.app = app
        self.pin = app.pin
        self.screen = Screen(app.board.display())
        self.buttons = btn.Buttons(app.board.buttons())
        self.pages = Pages(self)
        self.stack = [self.pages]
        self.session = False
        self.last_input = time.ticks_ms()
        self.dirty = True

    # navigation
    def push(self, scr):
        self.stack.append(scr)
        self.dirty = True

    def pop(self):
        if len(self.stack) > 1:
            self.stack.pop()
        if len(self.stack) == 1:
            self.end_session()
        self.dirty = True

    def home(self):
        del self.stack[1:]
        self.end_session()
        self.dirty = True

    def end_session(self):
        if self.session:
            self.session = False
            self.app.audit.append("menu", "session-end", "ok")

    def cancel_pin(self):
        # Back out of PIN entry: to the menu if we are in a session (change
        # PIN), else to the pages.
        if self.session:
            while not isinstance(self.stack[-1], Menu):
                self.stack.pop()
            self.dirty = True
        else:
            self.home()

    def top(self):
        return self.stack[-1]

    # the Settings entry
    def enter_settings(self):
        pin = self.pin
        if pin.wait_s():
            self.push(Lockout(self, self.enter_settings))
        elif not pin.is_set():
            self.push(PinEntry(self, "SET PIN", "New PIN:", self._first_pin))
        else:
            self.push(PinEntry(self, "SETTINGS", "Enter PIN:", self._check_pin))

    def _check_pin(self, p):
        if self.pin.check(p):
            self.stack.pop()
            self.open_menu()
            return
        wait = self.pin.wait_s()
        if wait:
            self.stack.pop()
            self.push(Lockout(self, self.enter_settings))
        else:
            self.top().note = "Wrong PIN"

    def _first_pin(self, p):
        def repeat(p2):
            self.stack.pop()
            if p2 != p:
                self.push(PinEntry(self, "SET PIN", "New PIN:", self._first_pin, "PINs differ"))
                return
            if self._store_pin(p2):
                self.open_menu()

        self.stack.pop()
        self.push(PinEntry(self, "SET PIN", "Repeat PIN:", repeat))

    def _store_pin(self, p):
        try:
            self.pin.set(p, "menu")
            return True
        except Exception as e:
            self.push(Message(self, ["PIN NOT SET", str(e)]))
            return False

    def open_menu(self):
        self.session = True
        self.app.audit.append("menu", "session-start", "ok")
        from meter import menu

        self.push(menu.root(self))

    def reset_pin(self):
        try:
            self.pin.clear("startup")
            self.push(Message(self, ["PIN RESET", "PIN cleared. Set a new one at next menu "
                                                  "entry."]))
        except Exception as e:
            self.push(Message(self, ["PIN RESET", "FAILED: %s" % e]))

    # the task
    def render(self):
        s = self.screen
        s.clear()
        self.top().render(s)
        s.show()
        self.dirty = False

    async def run(self):
        if not self.app.startup_shown:
            # Once per start: the supervisor restarts a crashed display task,
            # and the PIN reset must need a real power cycle (docs/ui.md).
            self.app.startup_shown = True
            self.stack.append(Startup(self))
        since = 0
        while True:
            ev = self.buttons.poll()
            now = time.ticks_ms()
            if ev:
                self.last_input = now
                try:
                    self.top().event(ev)
                except Exception as e:  # a bad screen must not kill the UI
                    from meter import log

                    log.exc("ui: event failed", e)
                    self.home()
                self.dirty = True
            elif len(self.stack) > 1 and time.ticks_diff(now, self.last_input) > IDLE_MS \
                    and not isinstance(self.top(), Startup):
                self.home()  # idle: leave the menu, end the session
            if self.dirty or since >= REFRESH_MS:
                self.render()
                since = 0
            await asyncio.sleep_ms(btn.POLL_MS)
            since += btn.POLL_MS
