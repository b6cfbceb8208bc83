"""The module lock as a feature (install(app), meter/app.py): app.lock is
meter.lock's ModuleLock for the Web Admin and the cloud, and the menu shows
the lock's state under Security > Module lock (it is switched elsewhere).

The smallest feature, and the worked example of docs/architecture.md. Its
code (meter/lock.py, with the password checks) loads on first use: the
lock itself is enforced by the settings store, which needs none of it.
"""


def _lock():
    from meter import lock

    return lock


def install(app):
    app.provide("lock", lambda: _lock().ModuleLock(app.settings, app.state_, app.audit))
    app.add_menu("security", "Module lock", lambda ui: _lock().show(ui, app.settings))
