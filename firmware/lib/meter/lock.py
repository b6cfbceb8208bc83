"""The module lock: a password that makes all configuration read-only.

States (docs/security.md, "Module lock"):

    none      no lock password yet; set_password() sets the first one
    unlocked  configuration can change; lock() or change() with the password
    locked    configuration is read-only; unlock() with the password

The lock itself is enforced in the settings store's choke point
(Settings.update / require_unlocked), so no interface can get around it;
this module only checks passwords and switches the state through
Settings.set_lock(). The password is stored as PBKDF2 (meter/passwd.py),
checked as a coroutine so the loop keeps running.

Wrong passwords: each one blocks the next try for 1, 2, 4 ... s, up to an
hour; the count is stored before the answer is given and survives power
cuts (meter/backoff.py, the same rule as the PIN). A try during the wait is
refused unchecked with "Too many attempts: wait N s." (never "wrong
password": it may be the right one). There is
no way around a forgotten password on the device: recovery is the service
centre's factory wipe over USB, which erases all configuration.

Loaded on first use (meter/lockfeature.py is the feature's handle): the
lock itself is enforced by the settings store, which needs none of this.
"""

from micropython import const

from meter.backoff import Backoff
from meter.errors import UserError

MIN_LEN = const(4)
MAX_LEN = const(64)
WAIT_MAX_S = const(3600)
WIPE = "Forgotten? Only a service-centre factory wipe over USB recovers."


def show(ui, settings):
    """Security > Module lock (meter/lockfeature.py): the lock's state."""
    from meter.screens import Info

    ui.push(Info(ui, "MODULE LOCK", lambda: lines(settings)))


def lines(settings):
    """The lock's state on the display; it is switched in the Web Admin or
    by the cloud."""
    st = settings.lock_state()
    if st == "locked":
        return ["State: LOCKED", "Config is read-only. Unlock: Web Admin/cloud.",
                "Forgot it? Only service wipe."]
    if st == "unlocked":
        return ["State: unlocked", "Lock it in Web Admin Security or by the cloud."]
    return ["State: no lock password set.", "Set it in Web Admin Security."]


class LockError(UserError):
    """Refused; str() says why, for the user."""


def wait_after(fails):
    """Seconds a new try must wait after `fails` consecutive wrong passwords."""
    if fails <= 0:
        return 0
    return min(1 << min(fails - 1, 12), WAIT_MAX_S)


def policy(new):
    """None if `new` may become the lock password, else the reason."""
    if not isinstance(new, str) or len(new) < MIN_LEN:
        return "The lock password needs at least %d characters." % MIN_LEN
    if len(new) > MAX_LEN:
        return "The lock password may have at most %d characters." % MAX_LEN
    for c in new:
        if ord(c) < 32 or ord(c) == 127:
            return "The lock password contains control characters."
    return None


class ModuleLock:
    def __init__(self, settings, state, audit):
        self.settings = settings
        self.state = state
        self.audit = audit
        self.backoff = Backoff(state, "lock_fails", wait_after)
        self._busy = False

    def status(self):
        return self.settings.lock_state()

    @property
    def fails(self):
        return self.backoff.fails

    def wait_s(self):
        """Seconds until a password may be tried again (0: now)."""
        return self.backoff.wait_s()

    async def set_password(self, new, source):
        """First lock password (state none -> unlocked)."""
        await self._one(self._set_password(new, source))

    async def change(self, current, new, source):
        """New password, with the current one (only while unlocked)."""
        await self._one(self._change(current, new, source))

    async def lock(self, password, source):
        await self._one(self._lock(password, source))

    async def unlock(self, password, source):
        await self._one(self._unlock(password, source))

    async def _one(self, op):
        """One operation at a time, from its state check to its write: the
        password hashing yields to the loop, and no other interface may
        change the state in between."""
        if self._busy:
            raise LockError("Busy with another lock operation; try again.")
        self._busy = True
        try:
            await op
        finally:
            self._busy = False

    async def _set_password(self, new, source):
        if self.status() != "none":
            raise LockError("A lock password is already set.")
        await self._store(new, source, "lock-set")

    async def _change(self, current, new, source):
        if self.status() != "unlocked":
            raise LockError("Unlock first." if self.status() == "locked"
                            else "No lock password is set.")
        why = policy(new)
        if why:
            raise LockError(why)
        await self._check(current, source, "lock-change")
        await self._store(new, source, "lock-change")

    async def _lock(self, password, source):
        if self.status() != "unlocked":
            raise LockError("Already locked." if self.status() == "locked"
                            else "Set a lock password first.")
        await self._check(password, source, "lock")
        self.settings.set_lock({"lock.on": True}, source, "lock")

    async def _unlock(self, password, source):
        if self.status() != "locked":
            raise LockError("Not locked.")
        if not self.settings.get("lock.hash"):
            # fail-closed after a damaged store: no password left to check
            raise LockError("The lock password is lost (damaged configuration). " + WIPE)
        await self._check(password, source, "unlock")
        self.settings.set_lock({"lock.on": False}, source, "unlock")

    async def _store(self, new, source, event):
        from meter import passwd

        why = policy(new)
        if why:
            raise LockError(why)
        self.settings.set_lock({"lock.hash": await passwd.make(new)}, source, event)

    async def _check(self, password, source, event):
        """Returns if `password` is right; else raises LockError (audited,
        counted, and the wait stored before the answer)."""
        from meter import passwd

        wait = self.wait_s()
        if wait:
            # Refused unchecked: the password may well be right, so the
            # answer says that the device waits, not that it was wrong.
            raise LockError("Too many attempts: wait %d s." % wait)
        ok = (isinstance(password, str) and len(password) <= MAX_LEN
              and await passwd.verify(self.settings.get("lock.hash"), password))
        if ok:
            self.backoff.clear()
            return
        wait = self.backoff.fail()  # stored before the answer
        self.audit.append(source, event, "fail", "attempt %d, wait %d s" % (self.fails, wait))
        raise LockError("Wrong password. Try again in %d s." % wait)
