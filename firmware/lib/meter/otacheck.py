"""One automatic update check as the firmware runs it (meter/otaauto.py
loads this for a check and gives it back afterwards): the fetcher
(meter/otafetch.py) with the App's settings, slots and audit, and its
callbacks: the update Job once a download
starts (meter/otastatus.py: the display's update screen, NOT UPDATED and
why, the restart), and every check's result to the cloud as an event.
"""

from micropython import const

_RESTART_MS = const(1500)  # lets the result reach the cloud before the reset
# What a check loads, this module included; given back once none runs.
_MODULES = ("meter.otacheck", "meter.otafetch", "meter.httpget", "meter.ota", "meter.otafmt",
            "meter.otakeys", "meter.board.otahost", "meter.board.esp32ota", "meter.otadata")


class Checker:
    def __init__(self, auto):
        from meter import otafetch

        self.auto = auto  # the meter.otaauto.AutoUpdate that loaded it
        app = self.app = auto.app
        self.job = None  # the update Job, once a download has started
        # test.update_first_s (test-only) brings the first retry forward too
        self.fetcher = otafetch.Fetcher(
            otafetch.SettingsConfig(app.settings, app.board.files), app.board.ota(),
            app.board.name, audit=app.audit, state=app.state_, settings=app.settings,
            progress=self._progress, busy=auto.busy, on_installed=self._installed,
            on_result=self._result, retry_min_s=min(60, app.settings.get("test.update_first_s")))

    def retry_wait_ms(self):
        """The fetcher's back-off after the failures stored so far: 1 min
        doubling to 6 h, with jitter (0: none)."""
        return self.fetcher.backoff.wait_s() * 1000

    def idle(self):
        """Nothing of this check is in use any more (an upload's updater is
        meter.ota's too)."""
        from meter import otastatus

        return not self.fetcher.checking and self.job is None and otastatus.busy(self.app) is None

    def unload(self):
        from meter.memory import unload

        self.app.board.forget_ota()
        unload(_MODULES)

    # -- the fetcher's callbacks -------------------------------------------------

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
        self.auto.last = (source, outcome, detail)
        if outcome != "ok":  # (an installation's job goes on to _installed)
            job, self.job = self.job, None
            if job is not None:
                job.failed("the update was cancelled" if outcome == "cancelled"
                           else detail.split(": ", 1)[-1])
        up = self.app.uplink
        if up is not None:
            up.event({"event": "update", "source": source, "outcome": outcome,
                      "detail": detail})
