"""The module lock at the settings choke point (runs under MicroPython).

Driven from the settings SCHEMA itself: a setting added later is covered
without touching this file. The per-interface tests (tests/test_lock.py)
prove that the menu, the Web Admin and MQTT hit this choke point."""

import asyncio

from upytest import raises, tmpdir

from meter.audit import AuditLog
from meter.board.flashfile import FilePartition
from meter.energy import RESET_CONFIRM, EnergyCounters
from meter.lock import LockError, ModuleLock, wait_after
from meter.logstore import LogStore
from meter.settings import FIRST_SET, LOCK_KEYS, SCHEMA, Locked, Settings, SettingsError
from meter.state import State
from test_store import Clock, Cut, CuttingPartition

HEAP = "256k"
PW = "s3cret-lock"


class Dev:
    """The stores of one device in directory d (a restart: a new Dev(d))."""

    def __init__(self, d, config=None):
        self.d = d
        self.audit = AuditLog(LogStore(FilePartition(d + "/audit", 16384)), Clock())
        self.state = State(LogStore(FilePartition(d + "/state", 16384)))
        self.cfg = config or FilePartition(d + "/config", 16384)
        self.settings = Settings(LogStore(self.cfg), self.audit, self.state)
        self.lock = ModuleLock(self.settings, self.state, self.audit)
        self.counters = EnergyCounters(LogStore(FilePartition(d + "/counters", 65536)), Clock(),
                                       self.audit, 3125, 0, self.settings.require_unlocked)

    def close(self):
        for p in (self.cfg,):
            p.close()


def run(coro):
    return asyncio.run(coro)


def other(key):
    """A valid value for key that differs from its default."""
    default, typ, check = SCHEMA[key]
    if typ is bool:
        return not default
    if typ is int:
        if isinstance(check, list):
            return [v for v in check if v != default][0]
        return check[0] if default != check[0] else check[1]
    return "x" if default != "x" else "y"


def locked_dev():
    dev = Dev(tmpdir())
    run(dev.lock.set_password(PW, "web"))
    assert dev.lock.status() == "unlocked"
    # give the first-set credentials a value, so that changing them is a change
    dev.settings.update({"ui.pin": "ab$cd", "web.pass": "p"}, "menu")
    run(dev.lock.lock(PW, "web"))
    assert dev.lock.status() == "locked" and dev.settings.locked
    return dev


def test_every_setting_is_refused_while_locked_and_works_after_unlock():
    dev = locked_dev()
    keys = [k for k in SCHEMA if k not in LOCK_KEYS]
    assert len(keys) >= 15
    for k in keys:
        before = dev.settings.get(k)
        e = raises(Locked, dev.settings.update, {k: other(k)}, "web")
        assert str(e) == "module locked"
        assert dev.settings.get(k) == before, k
    # all at once, and a mix with an allowed-looking key, too
    raises(Locked, dev.settings.update, {k: other(k) for k in keys}, "mqtt")
    refused = [e for e in dev.audit.events() if e[3] == "locked"]
    assert len(refused) == len(keys) + 1 and refused[0][4] == "refused"
    # a restart keeps it locked
    dev2 = Dev(dev.d)
    assert dev2.lock.status() == "locked"
    raises(Locked, dev2.settings.update, {keys[0]: other(keys[0])}, "menu")
    run(dev2.lock.unlock(PW, "web"))
    for k in keys:
        dev2.settings.update({k: other(k)}, "web")
        assert dev2.settings.get(k) == other(k), k


def test_resets_and_other_actions_ask_the_lock():
    dev = locked_dev()
    dev.counters.add([64] * 8)
    before = dev.counters.uwh
    raises(Locked, dev.counters.reset, RESET_CONFIRM, "menu")
    assert dev.counters.uwh == before and dev.counters.generation == 0
    raises(Locked, dev.settings.require_unlocked, "web", "token-confirm")
    raises(Locked, dev.settings.update, {"wifi.ssid": "", "wifi.key": ""}, "web")  # no-op values too
    run(dev.lock.unlock(PW, "web"))
    dev.settings.require_unlocked("web", "token-confirm")
    dev.counters.reset(RESET_CONFIRM, "menu")
    assert dev.counters.uwh == [0] * 8


def test_lock_keys_change_only_through_the_lock():
    dev = Dev(tmpdir())
    for k in LOCK_KEYS:
        raises(SettingsError, dev.settings.update, {k: other(k)}, "web")
    assert dev.lock.status() == "none"
    raises(SettingsError, dev.settings.set_lock, {"wifi.ssid": "x"}, "web", "lock")


def test_first_set_credentials_and_startup_pin_reset_while_locked():
    dev = Dev(tmpdir())
    run(dev.lock.set_password(PW, "web"))
    run(dev.lock.lock(PW, "web"))
    assert sorted(FIRST_SET) == ["ui.pin", "web.pass"]
    # none set: setting one is how someone reaches the unlock
    dev.settings.update({"ui.pin": "11$22"}, "menu")
    dev.settings.update({"web.pass": "pbkdf2"}, "web")
    # set ones cannot be changed or reset ...
    raises(Locked, dev.settings.update, {"ui.pin": "33$44"}, "menu")
    raises(Locked, dev.settings.update, {"web.pass": ""}, "menu")
    raises(Locked, dev.settings.update, {"ui.pin": ""}, "menu")
    # ... except by the start-up PIN reset, which changes nothing else
    dev.settings.update({"ui.pin": ""}, "startup")
    raises(Locked, dev.settings.update, {"ui.pin": "", "display.contrast": 1}, "startup")
    assert dev.settings.get("ui.pin") == "" and dev.settings.get("web.pass") == "pbkdf2"


def test_states_policy_and_wrong_passwords():
    dev = Dev(tmpdir())
    assert dev.lock.status() == "none"
    e = raises(LockError, run, dev.lock.lock(PW, "web"))
    assert "Set a lock password first" in str(e)
    e = raises(LockError, run, dev.lock.set_password("abc", "web"))
    assert "at least 4" in str(e) and dev.lock.status() == "none"
    run(dev.lock.set_password("abcd", "web"))
    raises(LockError, run, dev.lock.set_password("other-one", "web"))  # only the first time
    # change with a wrong current password: refused, counted, nothing changed
    stored = dev.settings.get("lock.hash")
    e = raises(LockError, run, dev.lock.change("wrong", "newpass", "web"))
    assert "Wrong password. Try again in 1 s" in str(e)
    assert dev.settings.get("lock.hash") == stored and dev.lock.fails == 1
    # during the wait even the right one is refused unchecked, and the
    # answer says that the device waits, not that the password is wrong
    e = raises(LockError, run, dev.lock.change("abcd", "newpass", "web"))
    assert str(e) == "Too many attempts: wait 1 s.", str(e)
    assert dev.lock.fails == 1 and dev.settings.get("lock.hash") == stored
    dev.lock.backoff.until = None  # the wait is over
    raises(LockError, run, dev.lock.change("abcd", "ab", "web"))  # new too short
    run(dev.lock.change("abcd", "newpass", "web"))
    assert dev.lock.fails == 0 and dev.settings.get("lock.hash") != stored
    run(dev.lock.lock("newpass", "web"))
    raises(LockError, run, dev.lock.change("newpass", "again1", "web"))  # locked: unlock first
    # exponential waits, stored before the answer: a restart runs them again
    for n in (1, 2, 3, 4):
        dev.lock.backoff.until = None
        e = raises(LockError, run, dev.lock.unlock("nope", "web"))
        assert "Try again in %d s" % wait_after(n) in str(e), (n, str(e))
    assert [wait_after(n) for n in range(1, 6)] == [1, 2, 4, 8, 16]
    assert wait_after(30) == 3600
    dev2 = Dev(dev.d)
    assert dev2.lock.fails == 4 and 7 <= dev2.lock.wait_s() <= 8
    raises(LockError, run, dev2.lock.unlock("newpass", "web"))
    assert dev2.lock.status() == "locked"
    dev2.lock.backoff.until = None
    run(dev2.lock.unlock("newpass", "web"))
    assert dev2.lock.status() == "unlocked" and Dev(dev.d).lock.fails == 0
    fails = [e for e in dev2.audit.events() if e[4] == "fail"]
    assert len(fails) >= 5


def test_a_cut_during_lock_unlock_change_never_unlocks_by_accident():
    # Count the flash operations of each step, then cut at every one: after
    # the restart the state is the old or the new one.
    def steps(dev):
        yield "unlocked", lambda: run(dev.lock.lock(PW, "web")), "locked"
        yield "locked", lambda: run(dev.lock.unlock(PW, "web")), "unlocked"
        yield "unlocked", lambda: run(dev.lock.change(PW, PW + "2", "web")), "unlocked2"
        yield "unlocked2", lambda: run(dev.lock.lock(PW + "2", "web")), "locked2"

    def observe(dev):
        from meter import passwd

        second = run(passwd.verify(dev.settings.get("lock.hash"), PW + "2"))
        return dev.lock.status() + ("2" if second else "")

    cuts = 0
    for step in range(4):
        k = 0
        while True:
            d = tmpdir()
            setup = Dev(d)
            run(setup.lock.set_password(PW, "web"))
            for i, (_, fn, _) in enumerate(steps(setup)):
                if i == step:
                    break
                fn()
            setup.close()
            dev = Dev(d, CuttingPartition(FilePartition(d + "/config", 16384), k, 16))
            old, fn, new = list(steps(dev))[step]
            done = False
            try:
                fn()
                done = True
            except Cut:
                cuts += 1
            dev.cfg.p.close()
            got = observe(Dev(d))
            assert got in (old, new), (step, k, old, new, got)
            if done:
                assert got == new
                break
            k += 1
    assert cuts >= 4


def wipe(path):
    """Every record unreadable: zeros over the whole partition file."""
    z = bytes(1024)
    with open(path, "r+b") as f:
        for _ in range(16):
            f.write(z)


def test_damaged_store_keeps_a_locked_device_locked():
    dev = locked_dev()
    dev.close()
    # the config partition becomes unreadable (all records damaged)
    wipe(dev.d + "/config")
    dev2 = Dev(dev.d)
    assert dev2.settings.status == "corrupt" and dev2.lock.status() == "locked"
    raises(Locked, dev2.settings.update, {"display.contrast": 3}, "menu")
    e = raises(LockError, run, dev2.lock.unlock(PW, "web"))
    assert "factory wipe" in str(e)
    # a credential set for the first time (allowed) stores a valid record
    # without the flag: the device must stay locked after the next restart
    dev2.settings.update({"ui.pin": "11$22"}, "menu")
    dev2.close()
    again = Dev(dev.d)
    assert again.settings.status == "ok" and again.lock.status() == "locked"
    raises(Locked, again.settings.update, {"display.contrast": 3}, "menu")
    # a never-locked device with a damaged store is not locked
    d = tmpdir()
    dev3 = Dev(d)
    dev3.settings.update({"display.contrast": 9}, "menu")
    dev3.close()
    wipe(d + "/config")
    dev4 = Dev(d)
    assert dev4.settings.status == "corrupt" and dev4.lock.status() == "none"
    dev4.settings.update({"display.contrast": 3}, "menu")


def test_one_lock_operation_at_a_time():
    # Two interfaces at once (say the Web Admin and a cloud command): the
    # second is refused while the first hashes its password, so no state
    # check can go stale before its write.
    dev = Dev(tmpdir())

    async def both():
        first = asyncio.create_task(dev.lock.set_password(PW, "web"))
        await asyncio.sleep_ms(0)  # the first is now inside its hashing
        try:
            await dev.lock.set_password("other-pass", "mqtt")
            second = "stored"
        except LockError as e:
            second = str(e)
        await first
        return second

    second = run(both())
    assert second.startswith("Busy with another lock operation"), second
    assert dev.lock.status() == "unlocked"
    run(dev.lock.lock(PW, "web"))  # the first password is the one stored
    assert dev.lock.status() == "locked"
