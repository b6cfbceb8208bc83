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
hour. The count is stored (runtime state) before the answer is given, so
a power cut neither resets it nor shortens the wait: after a restart the
wait of the stored count runs again in full (same rule as the PIN). There is
no way around a forgotten password on the device: recovery is the service
centre's factory wipe over USB, which erases all configuration.
"""

import time

MIN_LEN = 4
MAX_LEN = 64
WAIT_MAX_S = 3600
WIPE = "Forgotten? Only a service-centre factory wipe over USB recovers."


class LockError(ValueError):
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
        f = state.get("lock_fails", 0)
        self.fails = f if isinstance(f, int) and f >= 0 else 0
        self._until = None
        self._busy = False
        if self.fails:  # a restart does not shorten the wait
            self._until = time.ticks_add(time.ticks_ms(), wait_after(self.fails) * 1000)

    def status(self):
        return self.settings.lock_state()

    def wait_s(self):
        """Seconds until a password may be tried again (0: now)."""
        if self._until is None:
            return 0
        left = time.ticks_diff(self._until, time.ticks_ms())
        if left <= 0:
            self._until = None
            return 0
        return (left + 999) // 1000

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
            raise LockError("Wrong password. Try again in %d s." % wait)
        ok = (isinstance(password, str) and len(password) <= MAX_LEN
              and await passwd.verify(self.settings.get("lock.hash"), password))
        if ok:
            if self.fails:
                self._save(0)
            return
        self._save(self.fails + 1)
        wait = wait_after(self.fails)
        self._until = time.ticks_add(time.ticks_ms(), wait * 1000)
        self.audit.append(source, event, "fail", "attempt %d, wait %d s" % (self.fails, wait))
        raise LockError("Wrong password. Try again in %d s." % wait)

    def _save(self, fails):
        self.state.set("lock_fails", fails)
        self.fails = fails
