"""The display PIN: 4 digits guarding the Settings menu.

The PIN is kept as a salted, iterated SHA-256 in the settings store (key
`ui.pin`, so every change passes the settings choke point). With only 10^4
PINs no hash resists an offline search: what protects the PIN is that the
flash is not readable (flash encryption on the device) and the lock-out
below. The hash only keeps the PIN out of plain sight.

Wrong PINs: the first FREE_TRIES cost nothing; each further one locks entry
for LOCK_BASE_S doubled per failure, up to LOCK_MAX_S. The failure count is
stored (state partition) before the answer is shown, so cutting the power
neither resets the count nor shortens the wait: after a restart the full
lock-out of the stored count runs again (time spent switched off cannot be
measured without a trusted clock). A right PIN clears the count.
"""

import hashlib
import os
import time
from binascii import hexlify, unhexlify

from meter.crypto import compare_digest

FREE_TRIES = 3
LOCK_BASE_S = 30
LOCK_MAX_S = 3600
_ROUNDS = 200


def _hash(salt, pin):
    h = hashlib.sha256(salt + pin.encode()).digest()
    for _ in range(_ROUNDS):
        h = hashlib.sha256(salt + h).digest()
    return h


def valid_format(pin):
    return isinstance(pin, str) and len(pin) == 4 and all("0" <= c <= "9" for c in pin)


def lockout_s(fails):
    """Seconds of lock-out after `fails` consecutive wrong PINs."""
    if fails < FREE_TRIES:
        return 0
    return min(LOCK_BASE_S << min(fails - FREE_TRIES, 16), LOCK_MAX_S)


class PinGuard:
    def __init__(self, settings, state, audit):
        self.settings = settings
        self.state = state
        self.audit = audit
        f = state.get("pin_fails", 0)
        self.fails = f if isinstance(f, int) and f >= 0 else 0
        self._locked_until = None
        if lockout_s(self.fails):  # a restart does not shorten the wait
            self._locked_until = time.ticks_add(time.ticks_ms(), lockout_s(self.fails) * 1000)

    def is_set(self):
        return bool(self.settings.get("ui.pin"))

    def wait_s(self):
        """Seconds until a PIN may be tried again (0: now)."""
        if self._locked_until is None:
            return 0
        left = time.ticks_diff(self._locked_until, time.ticks_ms())
        if left <= 0:
            self._locked_until = None
            return 0
        return (left + 999) // 1000

    def check(self, pin, source="menu"):
        """True if pin is right. Refused (False) while locked out."""
        if self.wait_s():
            return False
        stored = self.settings.get("ui.pin")
        ok = False
        if stored and valid_format(pin):
            salt, digest = stored.split("$")
            ok = compare_digest(_hash(unhexlify(salt), pin), unhexlify(digest))
        if ok:
            if self.fails:
                self._save(0)
            self.audit.append(source, "pin", "ok")
            return True
        self._save(self.fails + 1)  # stored before the user sees the answer
        wait = lockout_s(self.fails)
        if wait:
            self._locked_until = time.ticks_add(time.ticks_ms(), wait * 1000)
        self.audit.append(source, "pin", "fail", "attempt %d" % self.fails)
        return False

    def set(self, pin, source="menu"):
        """Store a new PIN (raises SettingsError if the settings refuse)."""
        if not valid_format(pin):
            raise ValueError("PIN must be 4 digits")
        salt = os.urandom(8)
        value = "%s$%s" % (hexlify(salt).decode(), hexlify(_hash(salt, pin)).decode())
        self.settings.update({"ui.pin": value}, source)
        self.audit.append(source, "pin-set", "ok")

    def clear(self, source):
        """The forgotten-PIN reset: the next menu access sets a new PIN."""
        self.settings.update({"ui.pin": ""}, source)
        self._save(0)
        self._locked_until = None
        self.audit.append(source, "pin-reset", "ok")

    def _save(self, fails):
        self.state.set("pin_fails", fails)
        self.fails = fails
