"""What the firmware says about its own update state, and the simulator's
update command.

At start-up (check()): if the bootloader rolled back, i.e. the other app
slot's newest otadata entry is ABORTED (started, never confirmed) or
INVALID, the firmware reports it: the display's status line and status()
(the control socket's `state` and `ota` commands; MQTT status later), and
an audit record `ota rollback` once per rollback: the aborted entry's
otadata seq is kept in the state store, so later starts do not audit it
again.

While an update is written, its progress in percent is on the status line
(`UPDATING 42%`) and in `ota`.

The self-test of a new image (meter/selftest.py) is started here too.

The simulator's control command `ota-install PATH` streams a file from the
host's file system into the firmware's own updater (meter/ota.py) in 1 KiB
chunks, with the loop running between chunks, then restarts like any
update.

Every update, whoever starts it (the Web Admin's upload, the automatic
check, the cloud's "check now", this command), runs as a Job: its progress
is what the display's update screen, `ota`, the Web Admin and the cloud
show; its end is either failed(why), which the display says for 10 s
(NOT UPDATED and why) and the status line for 10 minutes, or
installed(version), which restarts the device. The last update's result is
kept in the runtime state (`ota.last`), so the pages and the cloud can say
after the restart what happened: installed, then confirmed by the new
image's self-test, or rolled back.
"""

import asyncio
import time

from micropython import const

from meter import VERSION, log

_CHUNK = const(1024)  # one read and one feed() at a time: constant memory
_RESTART_MS = const(200)  # lets the control reply go out before the reset
_ABORTED = const(4)  # meter/otadata.py
_INVALID = const(3)


def _other_entry(ota):
    """(seq, state) of the newest good otadata entry that boots the slot we
    are not running from, or None."""
    best = None
    other = ota.running().get_next_update()
    idx = other.info()[1] & 1  # subtype ota_0 / ota_1
    od = ota.otadata
    if od is None:  # no otadata partition: nothing was ever rolled back
        return None
    for seq, state, ok in od.entries():
        if ok and seq != 0xFFFFFFFF and (seq - 1) % 2 == idx:
            if best is None or seq > best[0]:
                best = (seq, state)
    return best


def slot_version(slot):
    """Version text of the image in a slot (its record, meter/ota.py), or
    None when the slot holds none."""
    from meter import otafmt

    buf = bytearray(otafmt.RECORD_LEN)
    try:
        slot.readblocks(slot.ioctl(4, None) - 1, buf, 0)
        return otafmt.version_text(otafmt.parse_header(buf)[1])
    except Exception:  # an erased or half-written slot: no version to tell
        return None


def check(app):
    """At start-up: note and report a rollback (once), start the self-test
    if this image waits for it. Never raises: a fault here must not stop
    metering."""
    try:
        ota = app.board.ota()
        e = _other_entry(ota)
        if e is not None and e[1] in (_ABORTED, _INVALID):
            v = slot_version(ota.next_update()) or "?"
            app.ota_rollback = v
            if app.state_.get("ota.rollback_seq") != e[0]:
                app.state_.set("ota.rollback_seq", e[0])
                app.audit.append("system", "ota rollback", "failed",
                                 "%s did not confirm itself; running %s" % (v, VERSION))
        last = app.state_.get("ota.last")
        if ota.running_state() == "pending-verify":
            app.ota_trial = True
            # One-shot, not under the supervisor (which restarts tasks that end).
            asyncio.create_task(_trial(app))
        elif isinstance(last, dict) and last.get("result") == "installed":
            # Decided since: this version confirmed itself (the record was
            # cut off by a power cut), or the bootloader went back.
            if last.get("to") == VERSION:
                _record(app, dict(last, result="confirmed"))
            else:
                _record(app, dict(last, result="rolled back",
                                  why="%s did not start; running %s" % (last.get("to"), VERSION)))
    except Exception as e:
        log.exc("ota: start-up check failed", e)


async def _trial(app):
    """The new image's self-test, then its result in `ota.last`."""
    from meter import selftest

    why = await selftest.run(app)
    app.ota_trial = False
    last = app.state_.get("ota.last")
    if why is None and isinstance(last, dict) and last.get("to") == VERSION:
        _record(app, dict(last, result="confirmed"))
        app.ota_confirmed = time.ticks_ms()


def _record(app, last):
    try:
        app.state_.set("ota.last", last)
    except Exception as e:  # a full or failing store must not stop the update's end
        log.exc("ota: cannot store the result", e)


def last(app):
    """The last update's result, or None: {"from", "to", "source",
    "result": installed | confirmed | failed | rolled back, "why"}."""
    v = app.state_.get("ota.last")
    return v if isinstance(v, dict) else None


def busy(app):
    """None, or why no update can start now."""
    j = app.ota_job
    if j is None:
        return None
    return "the device is restarting into %s" % j.to if j.done else "another update is in progress"


class Job:
    """One update attempt, as the display, the pages and the cloud see it.
    Pass job.progress to the Updater; end it with failed(why) or
    installed(version). A Job made while another runs (its Updater will
    refuse) shows nothing and records nothing over the running one."""

    def __init__(self, app, source, to=None):
        self.app = app
        self.source = source
        self.to = to  # the version offered, once known
        self.done = False
        self.mine = app.ota_job is None
        if self.mine:
            app.ota_job = self
            app.ota_failed = None

    def progress(self, got, total):
        app = self.app
        if not self.mine:
            return
        if self.to is None:  # the header is checked: the signed version
            u = _updater()
            code = u.offered() if u is not None else None
            if code is not None:
                from meter import otafmt

                self.to = otafmt.version_text(code)
        p = got * 100 // total if total else 0
        if p != app.ota_progress:  # stored 101 times, not once per KiB
            app.ota_progress = p

    def failed(self, why):
        """Ended without installing: the running firmware goes on."""
        app = self.app
        if not self.mine:
            return
        self.mine = False
        app.ota_job = None
        app.ota_progress = None
        app.ota_failed = (str(why), time.ticks_ms())
        _record(app, {"from": VERSION, "to": self.to, "source": self.source,
                      "result": "failed", "why": str(why)})

    def installed(self, version, ms=_RESTART_MS):
        """The boot slot is switched: record it, show it, restart."""
        app = self.app
        self.to = version
        self.done = True
        app.ota_progress = None
        _record(app, {"from": VERSION, "to": version, "source": self.source,
                      "result": "installed", "why": None})
        asyncio.create_task(_restart(app, version, ms))


def _updater():
    import sys

    ota = sys.modules.get("meter.ota")
    return ota.current() if ota is not None else None


def status(app, args=None):
    """The update state for the control socket, the Web Admin and MQTT."""
    j = app.ota_job
    out = {"version": VERSION, "rollback": app.ota_rollback, "progress": app.ota_progress,
           "trial": app.ota_trial, "busy": busy(app), "source": j.source if j else None,
           "to": j.to if j else None, "last": last(app)}
    try:
        ota = app.board.ota()
        out["slot"] = ota.running().info()[4]
        out["state"] = ota.running_state()
        other = ota.running().get_next_update()
        e = _other_entry(ota)
        out["other"] = {"slot": other.info()[4], "version": slot_version(other),
                        "state": _STATES.get(e[1]) if e else None}
    except Exception as e:
        out["error"] = repr(e)
    return out


# otadata states (meter/otadata.py) as the pages name them
_STATES = {0: "new", 1: "pending-verify", 2: "valid", 3: "invalid", 4: "aborted"}


async def install_file(app, args):
    """Control command `ota-install PATH`: the file through the updater,
    then the restart. Replies {"ok", "version", "ms"} (the time from the
    first byte to set_boot) or {"error": why}."""
    from meter import ota

    if not args:
        return {"error": "usage: ota-install PATH"}
    try:
        f = open(args[0], "rb")
    except OSError as e:
        return {"error": "cannot open %s: %r" % (args[0], e)}
    buf = bytearray(_CHUNK)
    mv = memoryview(buf)
    t0 = time.ticks_ms()
    job = Job(app, "control")
    try:
        u = ota.Updater(app.board.ota(), app.board.name, audit=app.audit,
                        settings=app.settings, source="control", progress=job.progress)
        try:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                u.feed(mv[:n])
                await asyncio.sleep_ms(0)  # metering and the display run between chunks
        except ota.UpdateError:
            raise
        except Exception as e:
            u.cancel("source failed: %r" % e)
            raise ota.UpdateError("the transfer broke off: %r" % e)
        v = u.finish()
    except ota.UpdateError as e:
        job.failed(e)
        return {"error": str(e)}
    except BaseException as e:  # a MemoryError, a cancelled task: no progress left on show
        job.failed("internal error: %r" % e)
        raise
    finally:
        f.close()
    job.installed(v)
    return {"ok": True, "version": v, "ms": time.ticks_diff(time.ticks_ms(), t0)}


async def _restart(app, v, ms):
    from meter import ota

    try:
        await asyncio.sleep_ms(ms)
    finally:  # even cancelled: the boot slot is switched, the device must restart
        ota.restart(app, v)
