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
update. The Web Admin upload (a later issue) feeds the same Updater.
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
        if ota.running_state() == "pending-verify":
            from meter import selftest

            # One-shot, not under the supervisor (which restarts tasks that end).
            asyncio.create_task(selftest.run(app))
    except Exception as e:
        log.exc("ota: start-up check failed", e)


def status(app, args=None):
    """The update state for the control socket (and later MQTT)."""
    out = {"version": VERSION, "rollback": app.ota_rollback, "progress": app.ota_progress}
    try:
        ota = app.board.ota()
        out["slot"] = ota.running().info()[4]
        out["state"] = ota.running_state()
    except Exception as e:
        out["error"] = repr(e)
    return out


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

    def progress(got, total):  # the display's status line and `ota`
        p = got * 100 // total if total else 0
        if p != app.ota_progress:  # stored 101 times, not once per KiB
            app.ota_progress = p

    try:
        u = ota.Updater(app.board.ota(), app.board.name, audit=app.audit,
                        settings=app.settings, source="control", progress=progress)
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
        app.ota_progress = None
        return {"error": str(e)}
    except BaseException:  # a MemoryError, a cancelled task: no progress left on show
        app.ota_progress = None
        raise
    finally:
        f.close()
    asyncio.create_task(_restart(app, v))
    return {"ok": True, "version": v, "ms": time.ticks_diff(time.ticks_ms(), t0)}


async def _restart(app, v):
    from meter import ota

    await asyncio.sleep_ms(_RESTART_MS)
    ota.restart(app, v)
