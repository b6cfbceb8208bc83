"""The Web Admin's controller, loaded for a window (meter.web loads it and
drops it again afterwards; docs/web.md).

- enable(source): opens the window: the server task "web" runs under the
  supervisor in the firmware's loop. The window ends after WINDOW_S (the
  test-only setting test.web_window_s may shorten it; while a firmware
  upload runs, the end waits for it), from the menu, when the service is
  switched off (an upload is then cancelled), or when the firmware stops: the listening
  socket is closed, every connection and streaming response is cancelled,
  every session ends and the setup access point closes; then meter.web
  unloads the modules and measures the heap.
- The login checks, password changes and throttling the pages use.
- The window's Wi-Fi setup (self.wifi: meter.wifisetup.WifiSetup), whose
  access point closes with the window.
"""

import asyncio
import time

from micropython import const

from meter import log
from meter.errors import UserError
from meter.wifisetup import WifiSetup

# meter.web.SERVICE_KEY, not imported from there: meter.web loads this module
# (no import circle; tests/mpy/test_web.py checks that the two agree)
SERVICE_KEY = "web.allowed"

WINDOW_S = const(600)
WATCH_MS = const(250)


class WebAdmin:
    def __init__(self, app, web):
        self.app = app
        self.web = web  # the meter.web handle that outlives this object
        self.on = False
        self.until = 0
        self.server = None
        self.sessions = None
        self.tokens = None
        self.throttle = None
        self.presence = None  # the one-time login code (meter.web.presence)
        self.verifying = False
        self.error = None
        self.port = None  # the port of the open window (443 with TLS on the device)
        # the Firmware page's upload state (meter.web.route_firmware.Firmware)
        self.firmware = None
        self.landing = None  # where a login goes instead of "/" (after an update's restart)
        self.wifi = WifiSetup(app, self)  # the setup access point, scan and join

    # -- the window ----------------------------------------------------------

    def bind(self):
        """(host, port) the server listens on: the board says (device: all
        interfaces, port 80; simulator: 127.0.0.1 and --web-port)."""
        return self.app.board.http_bind

    def window_s(self):
        return min(self.app.settings.get("test.web_window_s"), WINDOW_S)

    def active(self):
        return self.on

    def allowed(self):
        """The Web Admin service is switched on (Services)."""
        return self.app.settings.get(SERVICE_KEY)

    def remaining_s(self):
        if not self.on:
            return 0
        return max(0, (time.ticks_diff(self.until, time.ticks_ms()) + 999) // 1000)

    def remaining_text(self):
        r = self.remaining_s()
        return "%d:%02d" % (r // 60, r % 60)

    def address(self):
        """What to type in the browser (without scheme): IP[:port], or None."""
        host, port = self.bind()
        port = self.port or port
        ip = host if host != "0.0.0.0" else None
        if ip is None:
            w = self.app.board.wifi()
            ip = w.ip()
            if ip is None and self.wifi.ap and w.can_ap:
                ip = w.ap_ip()
        if ip is None:
            return None
        return ip if port == 80 else "%s:%d" % (ip, port)

    def enable(self, source, seconds=None):
        """Open the window (or restart its 10 minutes; seconds: a shorter
        one). Returns None, or why not."""
        app = self.app
        if not self.allowed():
            return "switched off in Services"
        if self.web.closing:
            return "still closing; try again"
        s = min(seconds or WINDOW_S, self.window_s())
        self.until = time.ticks_add(time.ticks_ms(), s * 1000)
        if self.on:
            return None
        self.on = True
        self.error = None
        if source == "ota":  # reopened after an update's restart: the result first
            self.landing = "/firmware"
        app.audit.append(source, "web-admin", "on", "%d s" % s)
        app.sup.spawn("web", self._run)
        return None

    def disable(self, reason):
        """Close the window from synchronous code (menu, settings watcher)."""
        if self.on and not self.web.closing:
            self.web.closing = True
            asyncio.create_task(self.stop(reason))

    async def _run(self):
        """The supervised task: starts the server, then watches the window.
        (No local variable may hold the server: a finished task keeps its
        frame, and the window's memory must be free once it is closed.)"""
        if self.server is None:
            await self._start()
        settings = self.app.settings
        seen = -1  # the store's change count last looked at
        while True:
            await asyncio.sleep_ms(WATCH_MS)
            if self.throttle is not None:
                self.throttle.flush()  # failed-login counts deferred to spare the flash
            if time.ticks_diff(time.ticks_ms(), self.until) >= 0:
                if not self.uploading():  # (an upload ends within its own limits)
                    self.disable("window")
            elif settings.seq != seen:  # a stored change (announced by the store)
                seen = settings.seq
                if not self.allowed():
                    self.disable("service off")

    def uploading(self):
        """A firmware file is being received."""
        f = self.firmware
        return f is not None and f.up is not None

    async def _start(self):
        try:
            from meter.web import auth, server, site
        except MemoryError as e:  # the heap is too fragmented or too small now
            log.exc("web: cannot load the Web Admin", e)
            self.error = "out of memory"
            self.disable("error")
            while True:
                await asyncio.sleep(60)  # stop() cancels this task

        if self.sessions is None:
            self.sessions = auth.Sessions()
            self.tokens = auth.LoginTokens()
            self.reset_throttle()
        host, port = self.bind()
        ctx = self._ssl()
        if ctx is not None and port == 80:
            port = 443
        self.port = port
        srv = server.Server(site.build(self), host, port, ssl=ctx, streamed=site.STREAMED)
        ctx = None
        try:
            await srv.start()
        except OSError as e:
            log.exc("web: cannot listen on %s:%d" % (host, port), e)
            self.error = "port %d busy" % port
            self.disable("error")
            while True:
                await asyncio.sleep(60)  # stop() cancels this task
        self.server = srv
        log.info("web: listening on %s:%d for %d s" % (host, port, self.remaining_s()))

    def _ssl(self):
        """A TLS context when the device has a certificate (DER files
        web.crt/web.key in board.files; provisioned by a later issue)."""
        base = getattr(self.app.board, "files", None)
        if not base:
            return None
        try:
            with open(base + "/web.crt", "rb") as f:
                cert = f.read()
            with open(base + "/web.key", "rb") as f:
                key = f.read()
        except OSError:
            return None
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        return ctx

    async def stop(self, reason):
        """End the window: close the port, cancel every connection and
        streaming response, end every session, close the setup access
        point; meter.web then unloads the modules and measures the heap."""
        if not self.on:
            self.web.closing = False
            return
        self.on = False
        try:
            # The supervisor keeps its tasks by name; a finished task keeps its
            # coroutine's frames, and MicroPython's GC scans them whole (dead
            # slots too), which could pin the whole window: forget it.
            t = self.app.sup.tasks.pop("web", None)
            if t is not None and t is not asyncio.current_task():
                t.cancel()
            t = None
            if self.uploading():  # cancelled with its connection below: says why
                self.firmware.closing = "the Web Admin was closed during the upload (%s)" % reason
            srv = self.server
            self.server = None
            if srv is not None:
                await srv.close()
            srv = None
            self.wifi.close()
        except Exception as e:  # the window's end must complete: logged
            log.exc("web: closing failed", e)
        if self.throttle is not None:
            try:
                self.throttle.flush(True)  # the last deferred counts
            except Exception as e:
                log.exc("web: storing the login counts failed", e)
        self.sessions = None
        self.tokens = None
        self.throttle = None
        self.presence = None
        self.verifying = False
        self.firmware = None
        self.app.audit.append(reason if reason in ("menu", "web", "control") else "system",
                              "web-admin", "off", reason)
        log.info("web: closed (%s)" % reason)
        self.web.closed(self.error)

    # -- passwords (the pages and the menu call these) ------------------------

    async def check_login(self, client, user, password, code=None):
        """(verdict, seconds): meter.web.login.check."""
        from meter.web import login

        return await login.check(self, client, user, password, code)

    def reset_throttle(self):
        from meter.web import auth, presence

        w = self.web
        if w is not None and getattr(w, "login_saves", None) is None:
            w.login_saves = [auth.SAVE_BURST, time.ticks_ms()]
        self.throttle = auth.Throttle(self.app.state_, saves=w.login_saves if w else None)
        self.presence = presence.Presence()

    @staticmethod
    def verdict_text(verdict, wait, wrong):
        from meter.web import login

        return login.verdict_text(verdict, wait, wrong)

    async def set_password(self, new, source):
        """Hash and store a new password; ends every session. Raises a
        UserError when not stored (the page's edge, chrome.attempt, says why)."""
        from meter import passwd

        if self.verifying:
            raise UserError("Another password is being checked. Try again in a moment.")
        self.verifying = True
        t0 = time.ticks_ms()
        try:
            stored = await passwd.make(new)
        finally:
            self.verifying = False
        # the figure docs/security.md asks to check on the device
        log.info("web: password hashed, %d iterations in %d ms" % (
            passwd.ITERATIONS, time.ticks_diff(time.ticks_ms(), t0)))
        self.app.settings.update({"web.pass": stored}, source)
        if self.sessions is not None:
            self.sessions.clear()
        # (audited once, by the store: "settings ok web.pass")

    # -- services ------------------------------------------------------------

    def service_list(self):
        out = []
        for label, key in self.app.services:
            if (label, key) not in out:
                out.append((label, key))
        return out

    # -- for the simulator's `web` command -------------------------------------------

    def status(self):
        srv = self.server
        return {"remaining_s": self.remaining_s(), "address": self.address(),
                "bind": list(self.bind()), "conns": len(srv.conns) if srv else 0,
                "stats": srv.stats if srv else None, "listening": srv is not None,
                "sessions": len(self.sessions) if self.sessions is not None else 0,
                "ap": list(self.wifi.ap) if self.wifi.ap else None,
                "join": list(self.wifi.join_state) if self.wifi.join_state else None,
                "login_failures": self.throttle.failures if self.throttle else None,
                "login_writes": self.throttle.writes if self.throttle else None,
                "code_issues": self.presence.issues if self.presence else None}
