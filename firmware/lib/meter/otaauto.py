"""Automatic firmware updates as a feature (install(app), meter/app.py):
the service "Auto update" (settings key update.enabled, off by default;
the Services page and menu switch it), the task that runs the periodic
check while it is on, the menu's Firmware > Check update, the
simulator's `ota-check` command, and the cloud's "check for update now"
(meter/cloudcmd.py calls start()).

The check itself is meter.otafetch (docs/ota.md, "Automatic updates"): it
loads for a check and goes back (meter/memory.py unload) once the check
has ended, so that the service costs almost no heap between checks (the
fetcher with its modules and the slots held about 6 KB). The schedule is
here: the first check 10-20 min after start (or after the stored
back-off), then every update.interval_h hours, each wait spread by up to
a quarter; after a failure the fetcher's back-off (1 min doubling to 6 h,
with jitter); a user in the Settings menu or an update running: again a
minute later. Every check that starts a download is an update Job
(meter/otastatus.py): the display shows the update screen, its progress
and the restart, or NOT UPDATED and why. Each check's result is audited
(`ota check`) and reported to the cloud as an event when the uplink is
installed.
"""

import asyncio
import time

from micropython import const

from meter import log
from meter.backoff import jitter, spread
from meter.errors import UserError

SERVICE_KEY = "update.enabled"
_RESTART_MS = const(1500)  # lets the result reach the cloud before the reset
_HOUR_MS = const(3600000)  # update.interval_h is in hours
# What a check loads; given back when the service is off and nothing runs.
_MODULES = ("meter.otafetch", "meter.httpget", "meter.backoff", "meter.ota", "meter.otafmt",
            "meter.otakeys", "meter.board.otahost", "meter.board.esp32ota", "meter.otadata")


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
        self.fetcher = None  # meter.otafetch.Fetcher while loaded
        self.periodic = None  # the periodic check's task while the service is on
        self.check = None  # a check on demand, while it runs
        self.job = None  # its update Job, once a download has started
        self.last = None  # (source, outcome, detail) of the last check
        self.asking = None  # who asked for the check on demand that starts now
        self.busy_retry_ms = 60000  # a user in the Settings menu: look again in 1 min
        self.retry_at = None  # ticks_ms before which the periodic check backs off

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
                self._drop()
            await s.changed()  # announced by the store, not polled

    async def _periodic(self):
        """The periodic check while the service is on (the schedule: see the
        module's docstring). Ends once an update is installed."""
        s = self.app.settings
        # 10-20 min after start (test.update_first_s: test-only, never later);
        # nothing is loaded until a check is due
        wait = jitter(2000 * s.get("test.update_first_s"))
        while True:
            await asyncio.sleep_ms(wait)
            wait = spread(s.get("update.interval_h") * _HOUR_MS)
            if self.check is not None:  # a check on demand runs: it counts
                continue
            if self._busy() is not None:
                wait = self.busy_retry_ms
                continue
            try:
                if self.retry_at is None and self.app.state_.get("ota_fails"):
                    # failures stored before this start: their wait runs in full
                    self.retry_at = self._retry_at()
                if self.retry_at is not None:
                    left = time.ticks_diff(self.retry_at, time.ticks_ms())
                    if left > 0:
                        wait = left
                        continue
                    self.retry_at = None
                if await self._fetcher().check_now("auto"):
                    return  # installed: the restart follows
            except Exception as e:  # refused or failed (audited, reported): retry later
                if not isinstance(e, UserError):
                    log.exc("update: periodic check failed", e)
                self.retry_at = self._retry_at()
                wait = max(0, time.ticks_diff(self.retry_at, time.ticks_ms()))
            finally:
                self._drop()

    def _retry_at(self):
        """ticks_ms of the next try after the failures stored so far (the
        fetcher's back-off: 1 min doubling to 6 h, with jitter)."""
        return time.ticks_add(time.ticks_ms(), self._fetcher().backoff.wait_s() * 1000)

    def _fetcher(self):
        if self.fetcher is None:
            from meter import otafetch

            app = self.app
            # test.update_first_s (test-only) brings the first retry forward too
            first = min(60, app.settings.get("test.update_first_s"))
            self.fetcher = otafetch.Fetcher(
                otafetch.SettingsConfig(app.settings, app.board.files), app.board.ota(),
                app.board.name, audit=app.audit, state=app.state_, settings=app.settings,
                progress=self._progress, busy=self._busy, on_installed=self._installed,
                on_result=self._result, retry_min_s=first)
        return self.fetcher

    def _drop(self):
        """Give the check's modules back when no check runs."""
        from meter import otastatus

        f = self.fetcher
        if (self.check is None and self.job is None and not (f is not None and f.checking)
                and otastatus.busy(self.app) is None):  # an upload uses meter.ota
            from meter.memory import unload

            self.fetcher = None
            self.app.board.forget_ota()
            unload(_MODULES)

    # -- on demand -------------------------------------------------------------

    def start(self, source):
        """Start one check now (the cloud, the menu, the control socket).
        Returns {"outcome": "started"} or {"error": why}; the result is
        audited, on the display once a download starts, and sent to the
        cloud as an event."""
        self.asking = source
        why = self._busy()
        if why is None and (self.check is not None or (self.fetcher and self.fetcher.checking)):
            why = "an update check is already running"
        if why is not None:
            return {"error": why}
        self.check = asyncio.create_task(self._once(source))
        return {"outcome": "started"}

    async def _once(self, source):
        try:
            self.asking = source
            await self._fetcher().check_now(source)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # UpdateError: audited and reported by _result
            if not isinstance(e, ValueError):
                log.exc("update: check failed", e)
        finally:
            self.check = None
            self.asking = None
            self._drop()

    def menu_check(self, ui):
        from meter.screens import Message

        r = self.start("menu")
        ui.push(Message(ui, ["NOT STARTED", r["error"]] if "error" in r else
                        ["UPDATE CHECK", "Started. The screen shows an update if one is found."]))

    # -- the fetcher's callbacks -------------------------------------------------

    def _busy(self):
        """Why no check may start now, or None."""
        from meter import otastatus

        ui = self.app.ui
        if ui is not None and ui.session and self.asking != "menu":  # (the menu's own is asked for)
            return "the Settings menu is in use: try again later"
        return otastatus.busy(self.app)

    def _progress(self, got, total):
        if self.job is None:  # the first bytes of a download: the screen announces it
            from meter.otastatus import Job

            self.job = Job(self.app, self.fetcher.source)
        self.job.progress(got, total)

    def _installed(self, version):
        job, self.job = self.job, None
        if job is None:
            from meter.otastatus import Job

            job = Job(self.app, self.fetcher.source)
        job.installed(version, _RESTART_MS)

    def _result(self, source, outcome, detail):
        """Every check's end (after its audit record)."""
        self.last = (source, outcome, detail)
        if outcome != "ok":  # (an installation's job goes on to _installed)
            job, self.job = self.job, None
            if job is not None:
                job.failed("the update was cancelled" if outcome == "cancelled"
                           else detail.split(": ", 1)[-1])
        up = self.app.uplink
        if up is not None:
            up.event({"event": "update", "source": source, "outcome": outcome,
                      "detail": detail})

    def snapshot(self):
        f = self.fetcher
        return {"loaded": f is not None, "checking": bool(f and f.checking),
                "periodic": self.periodic is not None,
                "last": list(self.last) if self.last else None}
