"""The settings store: the one place configuration is read and written.

Every interface (menu, Web Admin, MQTT) changes configuration through
`Settings.update()`, the single choke point: it validates the whole change
against SCHEMA, asks every registered guard (the module lock plugs in here),
then writes one LogStore record holding all explicitly set values, so a
change is either fully stored or not at all.

Only values someone set are stored; defaults live in the code. A store that
cannot be read (no valid record although the flash is not blank) runs on
defaults in RAM and reports "corrupt": nothing is written back on its own,
so the damaged data stays for inspection until someone changes a setting.
"""

import json

from meter import log

KIND = 2

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
}


class SettingsError(ValueError):
    """A change was refused; the message says why, for the user."""


class Settings:
    def __init__(self, store, audit=None):
        self.store = store
        self.audit = audit
        self._set = {}
        self._guards = []
        self.status = "ok"
        self.load()

    def load(self):
        rec = self.store.latest()
        if rec is None:
            self.status = "new" if self.store.blank else "corrupt"
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

    def get(self, key):
        if key in self._set:
            return self._set[key]
        return SCHEMA[key][0]

    def all(self):
        return {k: self.get(k) for k in SCHEMA}

    def add_guard(self, fn):
        """fn(changes, source) raises SettingsError to refuse a change."""
        self._guards.append(fn)

    def update(self, changes, source):
        """Apply `changes` (dict) atomically, or raise SettingsError and
        change nothing."""
        if not changes:
            return
        clean = {}
        for k, v in changes.items():
            clean[k] = _check(k, v)
        for g in self._guards:
            g(clean, source)
        new = dict(self._set)
        new.update(clean)
        self._commit(new, source, "settings", ",".join(sorted(clean)))

    def _commit(self, values, source, event, detail):
        """Write a complete set of values (the store's only write path;
        private: every change goes through update() and its guards)."""
        data = json.dumps(values).encode()
        if len(data) > self.store.max_payload:
            raise SettingsError("settings too large")
        self.store.append(KIND, data)
        self._set = values
        self.status = "ok"
        if self.audit:
            self.audit.append(source, event, "ok", detail)


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
