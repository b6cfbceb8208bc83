"""The firmware update state as a feature (install(app), meter/app.py):
the update's progress and a rollback on the status line, the simulator's
`ota` and `ota-install` commands, and the start-up check of the app slots
(meter/otastatus.py), whose modules are given back once it has run.

This handle is what stays loaded; meter.otastatus loads when used.
"""

from micropython import const

STATUS_PROGRESS = const(10)  # an update being written outranks everything
STATUS_ROLLBACK = const(30)  # after the core faults (meter/home.py)

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

    def progress():
        p = app.ota_progress
        return None if p is None else "UPDATING %d%%" % p

    def rollback():
        rb = app.ota_rollback
        return ("ROLLBACK " + rb)[:16] if rb else None  # one status row

    app.add_status(STATUS_PROGRESS, progress)
    app.add_status(STATUS_ROLLBACK, rollback)
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
