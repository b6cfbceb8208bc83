"""The settings store: the one place configuration is read and written.

Every interface (menu, Web Admin, MQTT) changes configuration through
`Settings.update()`, the single choke point: it validates the whole change
against SCHEMA, refuses it while the module lock is on, then writes one
LogStore record holding all explicitly set values, so a change is either
fully stored or not at all.

Only values someone set are stored; defaults live in the code. A store that
cannot be read (no valid record although the flash is neither blank nor
set up by a first write that was cut) runs on defaults in RAM and reports "corrupt": nothing is written back on its own,
so the damaged data stays for inspection until someone changes a setting.

A stored change is announced once: `seq` moves and every task waiting in
`changed()` wakes, after the record is on flash and audited. Consumers
(the services that open and close their ports) wait there instead of
polling the values; the store is also the one audit point of a change,
whatever the interface.

The module lock (docs/security.md, "Module lock") lives here too: while
`lock.on` is set, update() refuses every change with Locked, and the
changes that are not settings (counter reset, token confirmation,
revocation and deletion; firmware updates, meter/ota.py) ask
require_unlocked() first. Only meter/lock.py changes the lock
itself, through set_lock(), after checking the lock password. A torn write
leaves the previous record, so it never unlocks; a copy of the lock flag in
the runtime state keeps a locked device locked even if this store is
damaged beyond reading (fail closed).
"""

import asyncio
import json

from micropython import const

from meter import log
from meter.errors import UserError

KIND = const(2)  # the LogStore record kind of a settings record

# key: (default, type, check). check is (min, max) for ints, a list of
# allowed values, the longest length for str, or None. Later features add their keys here.
SCHEMA = {
    "meter.line_freq": (50, int, [50, 60]),
    "meter.tick_ms": (1000, int, (100, 2000)),
    # Service setting: the shortest time between counter snapshots. Lower
    # means less energy lost per power cut and more flash wear
    # (docs/energy.md); tests lower it to cut power inside writes often.
    "energy.save_min_ms": (30000, int, (0, 600000)),
    "display.contrast": (200, int, (0, 255)),
    # salt$sha256 of the display PIN (meter/pin.py), "" = not set yet
    "ui.pin": ("", str, 96),
    # Wi-Fi station credentials, "" = not configured
    "wifi.ssid": ("", str, 32),
    "wifi.key": ("", str, 64),
    # Web Admin (meter/web, docs/web.md). web.pass: the admin password as
    # "pbkdf2-sha256$iterations$salt$hash", "" = the factory default "admin"
    # (a login with it must set a new one). web.allowed: the service may be
    # switched on from the menu (Services); off closes its port.
    "web.pass": ("", str, 160),
    "web.allowed": (True, bool, None),
    # Test-only: shortens the Web Admin window; the product default is the
    # 10 minutes, and it cannot be made longer.
    "test.web_window_s": (600, int, (5, 600)),
    # Local API for apps (meter/api.py, docs/api.md): off by default; off
    # closes its port. test.token_pending_s: test-only, shortens how long a
    # pairing request waits for confirmation (never lengthens it).
    "api.enabled": (False, bool, None),
    "test.token_pending_s": (300, int, (5, 300)),
    # Cloud uplink (meter/uplink.py, docs/mqtt.md). TLS only, whatever the
    # port. host: the name the broker's certificate must carry; ip: dialled
    # instead of resolving host (no blocking DNS look-up), "" = resolve.
    "mqtt.enabled": (False, bool, None),
    "mqtt.host": ("", str, 64),
    "mqtt.ip": ("", str, 15),
    "mqtt.port": (8883, int, (1, 65535)),
    "mqtt.interval_s": (60, int, (1, 3600)),
    "mqtt.keepalive_s": (60, int, (5, 1200)),
    "mqtt.ha_discovery": (False, bool, None),
    # Set by the service centre (tools/flash.py provision): the name people
    # know the meter by, and the update server (its CA is
    # files/update-ca.crt).
    "device.name": ("", str, 32),
    "update.server": ("", str, 128),
    # Automatic updates (meter/otaauto.py, docs/ota.md): the periodic check
    # (a service, off by default), hours between checks, and the server's
    # IP dialled instead of resolving its name ("" = resolve).
    "update.enabled": (False, bool, None),
    "update.interval_h": (24, int, (1, 168)),
    "update.ip": ("", str, 15),
    # Test-only: brings the first periodic update check (and the first
    # retry) forward; the product's 10-20 minutes cannot be made longer.
    "test.update_first_s": (600, int, (1, 600)),
    # Module lock (meter/lock.py): the lock password as passwd.py stores it
    # ("" = none set), and whether configuration is read-only. Changed only
    # through set_lock().
    "lock.hash": ("", str, 160),
    "lock.on": (False, bool, None),
}

LOCK_KEYS = ("lock.hash", "lock.on")
# Access credentials that may be *set* while locked when none is set (after
# the start-up PIN reset, or the Web Admin's first use), so that someone can
# reach the menu or the Security page to unlock. Changing a set one, or
# resetting it, stays refused; only the start-up PIN reset may clear the PIN.
FIRST_SET = ("ui.pin", "web.pass")
LOCKED = "module locked"


class SettingsError(UserError):
    """A change was refused; the message says why, for the user."""


class Locked(SettingsError):
    """Refused because the module lock is on (HTTP 423, MQTT "module locked")."""

    def __init__(self):
        super().__init__(LOCKED)


class Settings:
    def __init__(self, store, audit=None, mirror=None):
        """mirror: the runtime State, which keeps a copy of the lock flag
        for the case that this store cannot be read."""
        self.store = store
        self.audit = audit
        self.mirror = mirror
        self._set = {}
        self.status = "ok"
        # Announcing changes: seq counts the stored changes; _ev is set and
        # replaced by a fresh one at each, so a waiter wakes once per change.
        self.seq = 0
        self._ev = asyncio.Event()
        self.load()

    @property
    def locked(self):
        # Either copy of the flag locks. If this store is damaged, its
        # defaults say "unlocked" and a later write would store that: the
        # copy keeps such a device locked, with no password left to check
        # (only the service-centre wipe recovers, as for a forgotten one).
        return self.get("lock.on") or (self.mirror is not None
                                       and self.mirror.get("lock") is True)

    def lock_state(self):
        """"locked", "unlocked" or "none" (no lock password set)."""
        if self.locked:
            return "locked"
        return "unlocked" if self.get("lock.hash") else "none"

    def require_unlocked(self, source, what):
        """Raise Locked (audited) while the lock is on: for the changes that
        are not settings, which must ask here before they act."""
        if self.locked:
            self._refuse(source, what)

    def load(self):
        rec = self.store.latest()
        if rec is None:
            # formatted without a data record: set up, and the first write
            # was cut (docs/energy.md); nothing was ever stored, so "new"
            self.status = "new" if self.store.blank or self.store.formatted else "corrupt"
            if self.status == "corrupt":
                log.error("settings: no valid record, running on defaults")
            return
        try:
            data = json.loads(rec[2])
            if not isinstance(data, dict):
                raise ValueError
        except ValueError:
            self.status = "corrupt"
            log.error("settings: newest record unreadable, running on defaults")
            return
        for k, v in data.items():
            try:
                self._set[k] = _check(k, v)
            except SettingsError as e:
                log.warn("settings: dropped %s: %s" % (k, e))

    async def changed(self):
        """Return after the next stored change (any key, lock included):
        the value is then durable and audited. Callers read what they need
        with get() and wait again."""
        await self._ev.wait()

    def get(self, key):
        if key in self._set:
            return self._set[key]
        return SCHEMA[key][0]

    def all(self):
        return {k: self.get(k) for k in SCHEMA}

    def update(self, changes, source):
        """Apply `changes` (dict) atomically, or raise SettingsError and
        change nothing."""
        if not changes:
            return
        clean = {}
        for k, v in changes.items():
            if k in LOCK_KEYS:
                raise SettingsError(k + ": changed only through the module lock")
            clean[k] = _check(k, v)
        if self.locked and not self._allowed_while_locked(clean, source):
            self._refuse(source, ",".join(sorted(clean)))
        new = dict(self._set)
        new.update(clean)
        self._commit(new, source, "settings", ",".join(sorted(clean)))

    def _allowed_while_locked(self, clean, source):
        for k, v in clean.items():
            if k not in FIRST_SET:
                return False
            if self.get(k) and not (k == "ui.pin" and v == "" and source == "startup"):
                return False
        return True

    def _refuse(self, source, what):
        if self.audit:
            self.audit.append(source, "locked", "refused", what)
        raise Locked()

    def set_lock(self, changes, source, event):
        """The module lock's own write (meter/lock.py, after it checked the
        lock password): lock.* keys only. The runtime-state copy of the flag
        is set before a lock and cleared after an unlock, so a cut between
        the two writes leaves the old state or the new one, never "unlocked"
        while locking."""
        new = dict(self._set)
        for k, v in changes.items():
            if k not in LOCK_KEYS:
                raise SettingsError(k + ": not a lock setting")
            new[k] = _check(k, v)
        on = new.get("lock.on", False)
        if self.mirror is not None and on:
            self.mirror.set("lock", True)
        self._commit(new, source, event, "lock " + ("on" if on else "off"))
        if self.mirror is not None and not on:
            self.mirror.set("lock", False)

    def _commit(self, values, source, event, detail):
        """Write a complete set of values (the store's only write path;
        private: every change goes through update() or set_lock())."""
        try:
            self.store.append_json(KIND, values)
        except ValueError:
            raise SettingsError("settings too large")
        self._set = values
        self.status = "ok"
        if self.audit:
            self.audit.append(source, event, "ok", detail)
        self.seq += 1
        ev = self._ev
        self._ev = asyncio.Event()
        ev.set()


def _check(key, value):
    if key not in SCHEMA:
        raise SettingsError("unknown setting " + key)
    default, typ, check = SCHEMA[key]
    if typ is bool:
        if value is not True and value is not False:
            raise SettingsError(key + ": expected on/off")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(key + ": expected a whole number")
        if isinstance(check, list):
            if value not in check:
                raise SettingsError("%s: must be one of %s" % (key, check))
        elif not check[0] <= value <= check[1]:
            raise SettingsError("%s: must be %d..%d" % (key, check[0], check[1]))
        return value
    if not isinstance(value, str):
        raise SettingsError(key + ": expected text")
    if isinstance(check, int):
        if len(value) > check:
            raise SettingsError("%s: at most %d characters" % (key, check))
    elif check is not None and value not in check:
        raise SettingsError("%s: must be one of %s" % (key, check))
    return value
