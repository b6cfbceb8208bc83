"""Web Admin: the local web interface, on demand for a 10-minute window
(docs/web.md). Off by default: between windows only this small handle is
loaded. The controller (meter.web.admin), the HTTP layer, the pages and
microdot are imported when a window opens and unloaded when it ends.

install(app) registers the menu entries (Communication > Web Admin,
Security > Reset Web Pass[word], Network > Wi-Fi > Wi-Fi Setup), the Web
Admin as a network service (settings key web.allowed) and, on the
simulator, the `web` control command.
"""

import asyncio
import gc
import sys

SERVICE_KEY = "web.allowed"
# Loaded per window, dropped after it.
MODULES = ("meter.web.admin", "meter.web.server", "meter.web.pages", "meter.web.assets",
           "meter.web.auth", "meter.passwd", "microdot", "microdot.microdot",
           "microdot.helpers", "meter.web.tokens")
# Modules of the list that the local API (meter/api.py) uses while it is on:
# kept, so that the next window does not load a second copy.
KEEP = set()


def install(app):
    """Attach the Web Admin to the firmware (App.__init__ calls this)."""
    w = Web(app)
    app.web = w
    app.menu_entries.append(("communication", "Web Admin", w.menu_web))
    app.menu_entries.append(("security", "Reset Web Pass", w.menu_reset_password))
    app.menu_entries.append(("wifi", "Wi-Fi Setup", w.menu_wifi_setup))
    app.services.append(("Web Admin", SERVICE_KEY))
    if hasattr(app.board, "add_command"):
        app.board.add_command("web", w.command)
    return w


def _noop():
    pass


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

    # -- what the display asks all the time (cheap while off) -------------------

    def active(self):
        return self.ctl is not None and self.ctl.on

    @property
    def ap(self):
        return self.ctl.ap if self.ctl is not None else None

    def remaining_text(self):
        return self.ctl.remaining_text() if self.ctl is not None else "0:00"

    def setup_lines(self):
        return self.ctl.setup_lines() if self.ctl is not None else None

    def wifi_capable(self):
        return hasattr(self.app.board.wifi(), "ap_start")

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

    def enable(self, source):
        return self._open(lambda c, s: c.enable(s), source)

    def setup_start(self, source):
        return self._open(lambda c, s: c.setup_start(s), source)

    def disable(self, reason):
        if self.active():
            self.ctl.disable(reason)

    def closed(self, error=None):
        """The controller has closed its window: drop it and its modules,
        then measure the heap from a fresh task."""
        self.ctl = None
        if error:
            self.error = error
        _unload()
        asyncio.create_task(self._measure())

    async def _measure(self):
        await asyncio.sleep_ms(100)  # the closing frames and tasks are gone
        gc.collect()
        self.heap_after = gc.mem_alloc()
        self.closing = False

    # -- the display menu -------------------------------------------------------

    def menu_web(self, ui):
        from meter.ui import Menu

        ui.push(Menu(ui, "WEB ADMIN", lambda: self._menu_items(ui)))

    def _menu_items(self, ui):
        if self.active():
            c = self.ctl
            return [("On, %s left" % c.remaining_text(), _noop),
                    (c.address() or "no network", _noop),
                    ("Disable", lambda: self.disable("menu"))]
        items = [("Status: off", _noop)]
        if self.error:
            items.append((self.error[:15], _noop))
        items.append(("Enable", lambda: self._menu_open(ui, self.enable, "NOT ENABLED")))
        return items

    def _menu_open(self, ui, fn, title):
        from meter.ui import Message

        err = fn("menu")
        if err:
            ui.push(Message(ui, [title, err[:16], err[16:32]]))
        return err

    def menu_reset_password(self, ui):
        from meter.ui import Confirm, Message

        def yes():
            try:
                self.reset_password("menu")
            except Exception as e:
                ui.push(Message(ui, ["NOT RESET", str(e)[:16], str(e)[16:32]]))
                return
            ui.push(Message(ui, ["WEB PASS RESET", "Password is now", "'admin'. Set a",
                                 "new one at the", "next web login."]))

        ui.push(Confirm(ui, ["RESET WEB PASS?", "Back to 'admin';", "web sessions", "end."], yes,
                        "Yes, reset"))

    def reset_password(self, source):
        """Back to the default "admin" (someone at the device): every web
        session ends and the failed-login counts start from zero."""
        self.app.settings.update({"web.pass": ""}, source)
        self.app.state_.set("web_login", {})
        c = self.ctl
        if c is not None and c.sessions is not None:
            c.sessions.clear()
            c.reset_throttle()
        self.app.audit.append(source, "web-password", "reset")

    def menu_wifi_setup(self, ui):
        from meter.ui import Info

        if self._menu_open(ui, self.setup_start, "NO WI-FI SETUP"):
            return
        ui.push(Info(ui, "WI-FI SETUP", lambda: (self.setup_lines() or [
            "", "Setup ended."])[1:]))

    # -- the simulator's control socket -------------------------------------------

    def command(self, args):
        if args and args[0] == "on":
            return {"error": self.enable("control")}
        if args and args[0] == "off":
            self.disable("control")
            return {"ok": True}
        c = self.ctl
        gc.collect()
        out = {"active": self.active(), "closing": self.closing, "error": self.error,
               "windows": self.windows, "heap_before": self.heap_before,
               "heap_after": self.heap_after, "heap_used": gc.mem_alloc(),
               "modules": [m for m in MODULES if m in sys.modules],
               "listening": False, "conns": 0, "sessions": 0, "stats": None, "ap": None}
        if c is not None:
            out.update(c.status())
        return out


def _unload():
    """Drop the window's modules so that their code and data return to the
    heap (frozen modules cost nothing to load again; .mpy files little)."""
    pkg = sys.modules.get("meter.web")
    for name in MODULES:
        if name in KEEP:
            continue
        if name in sys.modules:
            del sys.modules[name]
        if pkg is not None and name.startswith("meter.web."):
            attr = name[10:]
            if attr in pkg.__dict__:
                try:
                    delattr(pkg, attr)
                except (AttributeError, TypeError):
                    pass
