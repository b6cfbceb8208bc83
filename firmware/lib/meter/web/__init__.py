"""Web Admin: the local web interface, on demand for a 10-minute window
(docs/web.md). Off by default: between windows only this small handle is
loaded. The controller (meter.web.admin), the HTTP layer, the pages and
microdot are imported when a window opens and unloaded when it ends.

install(app) registers the menu entries (Communication > Web Admin,
Security > Reset Web Pass[word], Network > Wi-Fi > Wi-Fi Setup, and the
setup offered after Reset Wi-Fi), the Web Admin as a network service
(settings key web.allowed), the window's countdown on the status line,
the setup access point's lines over the pages and, on the simulator, the
`web` control command; the menu and command code is in meter.web.menu,
loaded on first use (it imports nothing back from here). After a firmware
update uploaded from the Web Admin, the next start opens the window again
for the rest of its time (RESUME_KEY, once).
"""

import asyncio
import gc

from micropython import const

from meter.memory import unload  # noqa: F401 (meter.api uses it from here)

SERVICE_KEY = "web.allowed"
STATUS = const(40)  # on the status line: after the core faults and a rollback
# Loaded per window, dropped after it.
MODULES = ("meter.web.admin", "meter.web.server", "meter.web.site", "meter.web.assets",
           "meter.web.auth", "meter.passwd", "microdot", "microdot.microdot",
           "microdot.helpers", "meter.web.admission", "meter.web.wire",
           "meter.web.login", "meter.web.presence", "hmac", "warnings",
           "meter.web.chrome", "meter.web.live", "meter.wifisetup", "meter.web.route_auth",
           "meter.web.route_energy", "meter.web.route_network", "meter.web.route_services",
           "meter.web.route_security", "meter.web.route_device", "meter.web.route_tokens",
           "meter.web.route_firmware", "meter.otaupload")
# (hmac and warnings: micropython-lib's hmac, loaded by the window's session
# and CSRF MACs; the uplink's TOTP loads it again when it needs it. Not
# meter.lock: app.lock keeps its object, whose LockError must stay the class
# that callers catch.)
# Modules of the list that the local API (meter/api.py) uses while it is on:
# kept, so that the next window does not load a second copy.
KEEP = set()
# What the Firmware page loads besides: given back with the window unless
# an update still runs (meter.ota's state says that one runs: a second copy
# would not know) or the automatic check has them loaded (meter/otaauto.py
# gives them back itself).
OTA_MODULES = ("meter.otastatus", "meter.ota", "meter.otafmt", "meter.otakeys", "meter.otadata",
               "meter.board.otahost", "meter.board.esp32ota")
# The runtime-state record of a window to reopen at the next start (seconds
# left; set by meter.web.route_firmware before an update's restart).
RESUME_KEY = "web.resume"


def install(app):
    """Attach the Web Admin to the firmware (a feature: meter/app.py)."""
    w = Web(app)
    app.web = w
    app.add_menu("communication", "Web Admin", lambda ui: _menu().menu_web(w, ui))
    app.add_menu("security", "Reset Web Pass", lambda ui: _menu().menu_reset_password(w, ui))
    app.add_menu("wifi", "Wi-Fi Setup", lambda ui: _menu().menu_wifi_setup(w, ui))
    app.add_menu("wifi-reset", "Wi-Fi Setup", lambda ui: _menu().offer_setup(w, ui))
    app.add_service("Web Admin", SERVICE_KEY)
    app.add_command("web", lambda args: _menu().command(w, args, MODULES + OTA_MODULES))
    app.add_status(STATUS, w.status_text)
    app.add_notice(w.setup_lines)
    app.on_start(w.resume)
    return w


def _menu():
    """The menu screens and the control command (meter.web.menu) load only
    when used (heap at start-up)."""
    from meter.web import menu

    return menu


class Web:
    """What stays between windows: the controller while one is loaded, and
    the last window's figures (heap before and after, error)."""

    def __init__(self, app):
        self.app = app
        self.ctl = None
        self.heap_before = None
        self.heap_after = None
        self.error = None
        self.windows = 0
        self.closing = False
        # the login counts' flash-write bucket (meter.web.auth.Throttle),
        # kept across windows so that reopening does not refill it
        self.login_saves = None

    # -- what the display asks all the time (cheap while off) -------------------

    def active(self):
        return self.ctl is not None and self.ctl.on

    @property
    def ap(self):
        return self.ctl.wifi.ap if self.ctl is not None else None

    def remaining_text(self):
        return self.ctl.remaining_text() if self.ctl is not None else "0:00"

    def setup_lines(self):
        """What the display shows instead of the measurements: the Wi-Fi
        setup access point, or the Web Admin's one-time login code."""
        c = self.ctl
        if c is None:
            return None
        if c.presence is not None:
            lines = c.presence.lines()
            if lines:
                return lines
        return c.wifi.lines()

    def status_text(self):
        """The status line while a window is open: its countdown."""
        if not self.active():
            return None
        return ("SETUP AP " if self.ap else "WEB ADMIN ") + self.remaining_text()

    # -- opening and closing ------------------------------------------------------

    def _open(self, how, source):
        """Load the controller and open a window with how(controller, source);
        None or why not."""
        if self.active():
            return how(self.ctl, source)  # restarts the 10 minutes
        if self.closing:
            return "still closing; try again"
        if self.ctl is None:
            gc.collect()
            before = gc.mem_alloc()
            try:
                from meter.web.admin import WebAdmin
            except MemoryError:
                _unload()
                self.error = "out of memory"
                return self.error
            self.ctl = WebAdmin(self.app, self)
        else:
            before = self.heap_before
        err = how(self.ctl, source)
        if err or not self.ctl.on:
            self.ctl = None
            _unload()
            return err or "not opened"
        self.heap_before = before
        self.heap_after = None
        self.error = None
        self.windows += 1
        return None

    def enable(self, source, seconds=None):
        return self._open(lambda c, s: c.enable(s, seconds), source)

    def setup_start(self, source):
        return self._open(lambda c, s: c.wifi.start(s), source)

    def disable(self, reason):
        if self.active():
            self.ctl.disable(reason)

    def resume(self):
        """At start-up: the window an update was uploaded in opens again for
        the rest of its time, once (a missing or garbled record: nothing)."""
        st = self.app.state_
        s = st.get(RESUME_KEY)
        if s is None:
            return
        st.set(RESUME_KEY, None)  # one start only, whatever happens next
        if type(s) is int and 0 < s <= 600:
            self.enable("ota", s)

    def closed(self, error=None):
        """The controller has closed its window: drop it and its modules,
        then measure the heap from a fresh task."""
        self.ctl = None
        if error:
            self.error = error
        _unload()
        app = self.app
        if app.ota_job is None and (app.autoupdate is None or app.autoupdate.checker is None):
            app.board.forget_ota()
            unload(OTA_MODULES)
        asyncio.create_task(self._measure())

    async def _measure(self):
        await asyncio.sleep_ms(100)  # the closing frames and tasks are gone
        gc.collect()
        self.heap_after = gc.mem_alloc()
        self.closing = False


def _unload():
    """Drop the window's modules so that their code and data return to the
    heap (frozen modules cost nothing to load again; .mpy files little)."""
    unload([m for m in MODULES if m not in KEEP])


