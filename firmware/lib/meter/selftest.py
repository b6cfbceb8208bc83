"""Self-test of a new firmware image, then confirm it or roll back.

A new image boots PENDING_VERIFY (meter/otadata.py): if the device resets
before the image confirms itself, the bootloader aborts it and starts the
previous one. run() is that confirmation. Within LIMIT_MS of start-up every
check must pass at the same time:

- stores: the energy counters and the settings loaded (not "corrupt");
- metering: the IC answers (a live reading) and the metering task beat
  after the test started (the loop and the critical task run);
- display: the display task runs and has not crashed;
- services: each network service that is switched on (app.services) has
  its task running without a crash.

Then mark_app_valid_cancel_rollback() and an audit record. If the time runs
out, the reason is audited, the counters saved, and the device resets into
the previous image. Only the firmware's own functions are checked: a Wi-Fi
network or broker that is down is not the image's fault, and rolling back
for it would throw away a good update.
"""

import asyncio
import time

from micropython import const

LIMIT_MS = const(120000)
POLL_MS = const(1000)
# settings key of a network service (app.services) -> its supervisor task.
# The Web Admin and the local API open on demand, so they have none to check.
SERVICE_TASKS = {"mqtt.enabled": "mqtt"}


def checks(app):
    """[(name, fn)]: fn() -> None when fine, else why not (text)."""
    sup = app.sup
    first_beat = sup.beats.get("meter")

    def stores():
        if app.counters.status == "corrupt":
            return "energy counters unreadable"
        if app.settings.status == "corrupt":
            return "settings unreadable"

    def metering():
        if not app.sampler.live_ok:
            return "no reading from the metering IC"
        if sup.beats.get("meter") == first_beat or not sup.healthy():
            return "metering task not running"

    def task(name):
        def check():
            if name not in sup.tasks:
                return name + " task not started"
            if sup.restarts.get(name):
                return name + " task crashed"
        return check

    out = [("stores", stores), ("metering", metering), ("display", task("display"))]
    for label, key in app.services:
        name = SERVICE_TASKS.get(key)
        if name and app.settings.get(key):
            out.append((label, task(name)))
    return out


def failing(cs):
    for name, fn in cs:
        why = fn()
        if why:
            return "%s: %s" % (name, why)
    return None


async def run(app, ota=None, cs=None, limit_ms=LIMIT_MS, poll_ms=POLL_MS):
    """Confirm the running image if it waits for it; returns None when it is
    confirmed (or had nothing to confirm), else the reason it was not (the
    device is reset then)."""
    from meter import VERSION

    ota = ota or app.board.ota()
    if ota.running_state() != "pending-verify":  # confirmed, or no otadata
        return None
    cs = cs or checks(app)
    start = time.ticks_ms()
    while True:
        why = failing(cs)
        if why is None:
            ota.mark_app_valid_cancel_rollback()
            app.audit.append("system", "ota self-test", "ok", VERSION)
            return None
        if time.ticks_diff(time.ticks_ms(), start) >= limit_ms:
            app.audit.append("system", "ota self-test", "failed", why)
            app.sampler.flush()
            app.board.reset()  # the bootloader starts the previous image
            return why
        await asyncio.sleep_ms(poll_ms)
