"""The display PIN: 4 digits guarding the Settings menu.

The PIN is kept as a salted, iterated SHA-256 in the settings store (key
`ui.pin`, so every change passes the settings choke point). With only 10^4
PINs no hash resists an offline search: what protects the PIN is that the
flash is not readable (flash encryption on the device) and the lock-out
below. The hash only keeps the PIN out of plain sight.

Wrong PINs: the first FREE_TRIES cost nothing; each further one locks entry
for LOCK_BASE_S doubled per failure, up to LOCK_MAX_S. The count is stored
before the answer is shown and survives power cuts (meter/backoff.py). A
right PIN clears the count.
"""

import hashlib
import os
import time
from binascii import hexlify, unhexlify

from micropython import const

from meter.backoff import Backoff
from meter.crypto import compare_digest
from meter.errors import UserError

FREE_TRIES = const(3)
LOCK_BASE_S = const(30)
LOCK_MAX_S = const(3600)
_ROUNDS = const(200)


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
    def __init__(self, settings, state, audit, since=None):
        """since: ticks_ms of the start, when the guard is built later (on
        the first menu entry, meter/app.py): a stored lock-out runs from the
        start, as if the guard had been there all along."""
        self.settings = settings
        self.state = state
        self.audit = audit
        self.backoff = b = Backoff(state, "pin_fails", lockout_s)
        if since is not None and b.until is not None:
            b.until = time.ticks_add(since, lockout_s(b.fails) * 1000)
            b.wait_s()  # over already: None

    def is_set(self):
        return bool(self.settings.get("ui.pin"))

    @property
    def fails(self):
        return self.backoff.fails

    def wait_s(self):
        """Seconds until a PIN may be tried again (0: now)."""
        return self.backoff.wait_s()

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
            self.backoff.clear()
            self.audit.append(source, "pin", "ok")
            return True
        self.backoff.fail()  # stored before the user sees the answer
        self.audit.append(source, "pin", "fail", "attempt %d" % self.fails)
        return False

    def set(self, pin, source="menu"):
        """Store a new PIN (raises a UserError: the format, or SettingsError
        if the settings refuse)."""
        if not valid_format(pin):
            raise UserError("PIN must be 4 digits")
        salt = os.urandom(8)
        value = "%s$%s" % (hexlify(salt).decode(), hexlify(_hash(salt, pin)).decode())
        self.settings.update({"ui.pin": value}, source)
        self.audit.append(source, "pin-set", "ok")

    def clear(self, source):
        """The forgotten-PIN reset: the next menu access sets a new PIN."""
        self.settings.update({"ui.pin": ""}, source)
        self.backoff.clear()
        self.audit.append(source, "pin-reset", "ok")
