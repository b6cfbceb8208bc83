"""The firmware update state as a feature (install(app), meter/app.py):
the update screen over the pages (version, progress bar, "Do not remove
power", the restart; then NOT UPDATED and why, or after the restart which
version runs or that it rolled back), the update's progress, a failure and
a rollback on the status line, the simulator's `ota` and `ota-install`
commands, and the start-up check of the app slots (meter/otastatus.py),
whose modules are given back once it has run.

This handle is what stays loaded; meter.otastatus loads when used.
"""

import time

from micropython import const

from meter import VERSION

STATUS_PROGRESS = const(10)  # an update being written outranks everything
STATUS_ROLLBACK = const(30)  # after the core faults (meter/home.py)
STATUS_FAILED = const(31)
_SHOW_MS = const(10000)  # NOT UPDATED / UPDATED over the pages
_FAILED_MS = const(600000)  # UPDATE FAILED on the status line
_ROLLBACK_MS = const(60000)  # after a start that rolled back, over the pages
_BAR = const(14)  # the progress bar's cells, inside [ ]

# What the start-up check of the app slots loads: about 6 KB that metering,
# the display and the services never use; an update or a self-test loads
# them again.
_MODULES = ("meter.otastatus", "meter.otadata", "meter.board.otahost", "meter.board.esp32ota")


def _status():
    from meter import otastatus

    return otastatus


def install(app):
    # the version the bootloader went back from, and an update's progress
    # in percent (set by meter.otastatus)
    app.ota_rollback = None
    app.ota_progress = None
    app.ota_job = None  # the update running or installed (meter.otastatus.Job)
    app.ota_failed = None  # (why, ticks_ms) of the last update that failed
    app.ota_trial = False  # this image runs its self-test after an update
    app.ota_confirmed = None  # ticks_ms when it passed it
    t0 = time.ticks_ms()

    def progress():
        p = app.ota_progress
        return None if p is None else "UPDATING %d%%" % p

    def rollback():
        rb = app.ota_rollback
        return ("ROLLBACK " + rb)[:16] if rb else None  # one status row

    def failed():
        f = app.ota_failed
        return "UPDATE FAILED" if f and _within(f[1], _FAILED_MS) else None

    app.add_status(STATUS_PROGRESS, progress)
    app.add_status(STATUS_ROLLBACK, rollback)
    app.add_status(STATUS_FAILED, failed)
    app.add_notice(lambda: screen(app, t0))
    app.add_command("ota", lambda a: _status().status(app))
    app.add_command("ota-install", lambda a: _status().install_file(app, a))
    app.add_state("ota_rollback", lambda: app.ota_rollback)
    app.on_start(lambda: started(app))


def started(app):
    """After the tasks run: report a rollback, start the self-test of a new
    image, then give the check's modules and slot objects back."""
    from meter.memory import unload

    _status().check(app)
    app.board.forget_ota()
    unload(_MODULES)


def _within(t, ms):
    return time.ticks_diff(time.ticks_ms(), t) < ms


def screen(app, t0):
    """The update screen's lines (over the pages), or None."""
    j = app.ota_job
    if j is not None:
        if j.done:
            return ["FIRMWARE UPDATE", "Installed " + j.to, "Restarting...", "",
                    "Do not remove", "power!"]
        p = app.ota_progress or 0
        n = p * _BAR // 100
        return ["FIRMWARE UPDATE", "%s > %s" % (VERSION, j.to or "?"),
                "[" + "#" * n + "." * (_BAR - n) + "]", "%d%%  %s" % (p, j.source[:10]),
                "Do not remove", "power!"]
    f = app.ota_failed
    if f is not None and _within(f[1], _SHOW_MS):
        from meter.text import wrap

        return ["NOT UPDATED"] + wrap(f[0])[:5]
    if app.ota_trial:
        return ["UPDATED", "Now running", VERSION, "Checking itself", "Do not remove", "power!"]
    if app.ota_confirmed is not None and _within(app.ota_confirmed, _SHOW_MS):
        return ["UPDATED", "Now running", VERSION, "Confirmed"]
    if app.ota_rollback and _within(t0, _ROLLBACK_MS):
        return ["UPDATE FAILED", app.ota_rollback + " did not", "start. Running", VERSION,
                "(rolled back)"]
    return None
