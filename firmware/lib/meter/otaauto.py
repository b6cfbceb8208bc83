"""Automatic firmware updates as a feature (install(app), meter/app.py):
the service "Auto update" (settings key update.enabled, off by default;
the Services page and menu switch it), the task that runs the periodic
check while it is on, the menu's Firmware > Check update, the
simulator's `ota-check` command, and the cloud's "check for update now"
(meter/cloudcmd.py calls start()).

This module is what stays loaded: the switch, the schedule and "check
now". A check itself (meter/otacheck.py, with meter/otafetch.py, docs/
ota.md "Automatic updates") loads when it is due or asked for and goes
back (meter/memory.py unload) once it has ended, so the service costs
almost no heap between checks (the fetcher with its modules and the slots
hold about 6 KB). The schedule: the first check 10-20 min after start,
then every update.interval_h hours, each wait spread by up to a quarter;
after a failure the fetcher's back-off (1 min doubling to 6 h, with
jitter; failures stored before a restart wait in full); a user in the
Settings menu or an update running: again a minute later. Every check
that starts a download is an update Job (meter/otastatus.py): the display
shows the update screen, its progress and the restart, or NOT UPDATED and
why. Each check's result is audited (`ota check`) and reported to the
cloud as an event when the uplink is installed.
"""

import asyncio
import time

from micropython import const

from meter import log

SERVICE_KEY = "update.enabled"
_HOUR_MS = const(3600000)  # update.interval_h is in hours


def install(app):
    a = app.autoupdate = AutoUpdate(app)
    app.add_service("Auto update", SERVICE_KEY)
    app.add_menu("firmware", "Check update", a.menu_check)
    app.add_command("ota-check", lambda args: a.start("control"))
    app.add_state("autoupdate", a.snapshot)
    app.spawn("update", a.run)


class AutoUpdate:
    def __init__(self, app):
        self.app = app
        self.checker = None  # meter.otacheck.Checker while a check is loaded
        self.periodic = None  # the periodic check's task while the service is on
        self.check = None  # a check on demand, while it runs
        self.asking = None  # who asked for the check on demand that starts now
        self.last = None  # (source, outcome, detail) of the last check
        self.busy_retry_ms = 60000  # a user in the Settings menu: look again in 1 min
        self.retry_at = None  # ticks_ms before which the periodic check backs off

    def busy(self):
        """Why no check may start now, or None."""
        from meter import otastatus

        ui = self.app.ui
        if ui is not None and ui.session and self.asking != "menu":  # (the menu's own
            return "the Settings menu is in use: try again later"  # is asked for)
        return otastatus.busy(self.app)

    def _checker(self):
        if self.checker is None:
            from meter.otacheck import Checker

            self.checker = Checker(self)
        return self.checker

    def _release(self):
        """Give a check's modules back once nothing of it is in use."""
        c = self.checker
        if c is not None and self.check is None and c.idle():
            self.checker = None
            c.unload()

    # -- the service -----------------------------------------------------------

    async def run(self):
        """Supervised: the periodic check runs while the service is on."""
        s = self.app.settings
        while True:
            if s.get(SERVICE_KEY) and self.periodic is None:
                self.periodic = asyncio.create_task(self._periodic())
            elif not s.get(SERVICE_KEY) and self.periodic is not None:
                self.periodic.cancel()  # a download under way is cancelled: nothing installed
                self.periodic = None
                await asyncio.sleep_ms(0)  # its clean-up runs
                self._release()
            await s.changed()  # announced by the store, not polled

    async def _periodic(self):
        """The periodic check while the service is on (the schedule: see the
        module's docstring). Ends once an update is installed."""
        from meter.backoff import jitter, spread

        s = self.app.settings
        # 10-20 min after start (test.update_first_s: test-only, never later)
        wait = jitter(2000 * s.get("test.update_first_s"))
        while True:
            await asyncio.sleep_ms(wait)
            wait = spread(s.get("update.interval_h") * _HOUR_MS)
            if self.check is not None:  # a check on demand runs: it counts
                continue
            if self.busy() is not None:
                wait = self.busy_retry_ms
                continue
            try:
                if self.retry_at is None and self.app.state_.get("ota_fails"):
                    # failures stored before this start: their wait runs in full
                    self.retry_at = time.ticks_add(time.ticks_ms(), self._checker().retry_wait_ms())
                if self.retry_at is not None:
                    left = time.ticks_diff(self.retry_at, time.ticks_ms())
                    if left > 0:
                        wait = left
                        continue
                    self.retry_at = None
                if await self._checker().fetcher.check_now("auto"):
                    return  # installed: the restart follows
            except Exception as e:  # refused or failed (audited, reported): retry later
                if not isinstance(e, ValueError):  # (a UserError says why itself)
                    log.exc("update: periodic check failed", e)
                wait = self._checker().retry_wait_ms()
                self.retry_at = time.ticks_add(time.ticks_ms(), wait)
            finally:
                self._release()

    # -- on demand -------------------------------------------------------------

    def start(self, source):
        """Start one check now (the cloud, the menu, the control socket).
        Returns {"outcome": "started"} or {"error": why}; the result is
        audited, on the display once a download starts, and sent to the
        cloud as an event."""
        self.asking = source
        why = self.busy()
        c = self.checker
        if why is None and (self.check is not None or (c is not None and c.fetcher.checking)):
            why = "an update check is already running"
        if why is not None:
            self.asking = None
            return {"error": why}
        self.check = asyncio.create_task(self._once(source))
        return {"outcome": "started"}

    async def _once(self, source):
        try:
            self.asking = source
            await self._checker().fetcher.check_now(source)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # UpdateError: audited and reported by the checker
            if not isinstance(e, ValueError):
                log.exc("update: check failed", e)
        finally:
            self.check = None
            self.asking = None
            self._release()

    def menu_check(self, ui):
        from meter.screens import Message

        r = self.start("menu")
        ui.push(Message(ui, ["NOT STARTED", r["error"]] if "error" in r else
                        ["UPDATE CHECK", "Started. The screen shows an update if one is found."]))

    def snapshot(self):
        c = self.checker
        return {"loaded": c is not None, "checking": bool(c and c.fetcher.checking),
                "periodic": self.periodic is not None,
                "last": list(self.last) if self.last else None}
