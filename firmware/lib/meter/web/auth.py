"""Web Admin sessions, login throttling and CSRF tokens (no I/O, no microdot).

Sessions live on the server only. The browser holds a 128-bit random id
(os.urandom) in a cookie; the server keeps SHA-256(id) as the key, so a
lookup compares hashes of attacker input, never the secret itself, and a
memory dump shows no usable id. Each session has its own 128-bit CSRF token.
Sessions end on logout, after IDLE_MS without a page request, when the
password changes, when the Web Admin window ends (clear()), and a new id is
issued at every login.

Login throttle (docs/security.md): after a failed login,
- the same client waits CLIENT_BASE_S * 2**(its failures - 1) s (1, 2, 4 ...
  up to MAX_WAIT_S) before its next try;
- everybody waits GLOBAL_BASE_S * 2**(n - GLOBAL_FREE) s once the overall
  count of consecutive failures n reaches GLOBAL_FREE;
- and a token bucket (BUCKET burst, refilled one per REFILL_S) refuses
  tries beyond it, so that no more than BUCKET + 3600 / REFILL_S = 100
  failures fit in any hour, whatever the number of clients.
The overall wait and the bucket hold everybody, the owner too: the Web
Admin's login lets a client that brings the presence code from the device's
display (meter.web.presence) past them (waits() tells the two apart); its
own per-client wait still holds.
The counts are stored (app.state_, key "web_login"), coalesced to spare the
flash (docs/security.md, "wear"): the first SAVE_BURST changes are written
before the answer goes out, then at most one write per SAVE_S (flush(), from
the window's watch loop, and a last one when the window ends), so a power cut
loses at most the failures of the last SAVE_S. After a restart the stored
waits run again in full, since time spent switched off cannot be measured
without a trusted clock. A right password clears the client's and the
overall count (not the bucket).
"""

import hashlib
import os
import time
from binascii import hexlify

from micropython import const

from meter.crypto import compare_digest, hmac_digest

IDLE_MS = 300000
MAX_SESSIONS = 4

CLIENT_BASE_S = 1
GLOBAL_FREE = 10
GLOBAL_BASE_S = 1
MAX_WAIT_S = 900
BUCKET = 10
REFILL_S = 40
MAX_CLIENTS = 8  # failure counts kept per client; the oldest is dropped
STATE_KEY = "web_login"
# Flash writes of the counts: a burst of SAVE_BURST, then one per SAVE_S
# (a write bucket; 12 an hour under a sustained attack instead of 100).
SAVE_BURST = const(4)
SAVE_S = const(300)


def new_id():
    """A 128-bit random id as 32 hex digits."""
    return hexlify(os.urandom(16)).decode()


def _key(sid):
    return hashlib.sha256(sid.encode()).digest()


class Session:
    def __init__(self, client, must_change, now):
        self.csrf = new_id()
        self.client = client
        self.must_change = must_change
        self.created = now
        self.seen = now


class Sessions:
    def __init__(self, clock=time.ticks_ms, idle_ms=IDLE_MS, limit=MAX_SESSIONS):
        self._by_key = {}
        self.clock = clock
        self.idle_ms = idle_ms
        self.limit = limit

    def __len__(self):
        return len(self._by_key)

    def create(self, client, must_change=False):
        """A new session; returns (sid for the cookie, Session). The oldest
        session goes if the table is full."""
        now = self.clock()
        self._expire(now)
        while len(self._by_key) >= self.limit:
            oldest = None
            for k, s in self._by_key.items():
                if oldest is None or time.ticks_diff(s.seen, self._by_key[oldest].seen) < 0:
                    oldest = k
            del self._by_key[oldest]
        sid = new_id()
        s = Session(client, must_change, now)
        self._by_key[_key(sid)] = s
        return sid, s

    def get(self, sid, touch=True):
        """The live Session of a cookie value, or None."""
        if not sid or len(sid) != 32:
            return None
        k = _key(sid)
        s = self._by_key.get(k)
        if s is None:
            return None
        now = self.clock()
        if time.ticks_diff(now, s.seen) > self.idle_ms:
            del self._by_key[k]
            return None
        if touch:
            s.seen = now
        return s

    def alive(self, session):
        """Whether `session` (an object from get/create) still exists."""
        for s in self._by_key.values():
            if s is session:
                return time.ticks_diff(self.clock(), s.seen) <= self.idle_ms
        return False

    def end(self, sid):
        if sid and len(sid) == 32:
            self._by_key.pop(_key(sid), None)

    def clear(self):
        self._by_key.clear()

    def _expire(self, now):
        for k in [k for k, s in self._by_key.items() if time.ticks_diff(now, s.seen) > self.idle_ms]:
            del self._by_key[k]


def check_csrf(session, token):
    """The form's CSRF token matches the session's (constant time)."""
    return (session is not None and isinstance(token, str)
            and compare_digest(token.encode(), session.csrf.encode()))


class LoginTokens:
    """CSRF for the login form, before any session exists: GET /login sets a
    random pre-session cookie and the form carries HMAC(key, cookie); a
    cross-site page can neither read the cookie nor compute the HMAC. The key
    is random per Web Admin window."""

    def __init__(self):
        self._k = os.urandom(32)

    def token(self, pre):
        return hexlify(hmac_digest(self._k, pre.encode())).decode()

    def check(self, pre, token):
        if not pre or len(pre) != 32 or not isinstance(token, str) or len(token) != 64:
            return False
        return compare_digest(self.token(pre).encode(), token.encode())


def _wait(base, n):
    if n <= 0:
        return 0
    return min(base << min(n - 1, 20), MAX_WAIT_S)


class Throttle:
    """Failed-login slow-down, per client and overall, stored in `state`
    (an object with get(key, default) and set(key, value): app.state_)."""

    def __init__(self, state, clock=time.ticks_ms, saves=None):
        """saves: the write bucket, [writes allowed now, ticks_ms], kept by
        the caller across Web Admin windows (meter.web.Web) so that opening
        windows again and again does not refill it."""
        self.state = state
        self.clock = clock
        d = state.get(STATE_KEY, None)
        if not isinstance(d, dict):
            d = {}
        g = d.get("g", 0)
        self.g = g if isinstance(g, int) and g >= 0 else 0
        c = d.get("c", [])
        # [[client, failures], ...], oldest first (MicroPython dicts keep no
        # order, so a list): at most MAX_CLIENTS
        self.clients = []
        if isinstance(c, list):
            for e in c[-MAX_CLIENTS:]:
                if (isinstance(e, list) and len(e) == 2 and isinstance(e[0], str)
                        and isinstance(e[1], int) and e[1] > 0):
                    self.clients.append([e[0], e[1]])
        b = d.get("b", 0)
        # bucket debt in tries (0 = full bucket); stored without time, so a
        # restart refills nothing until REFILL_S passes again
        self.debt = b if isinstance(b, int) and 0 <= b <= BUCKET else 0
        now = clock()
        self._debt_at = now
        # after a restart the stored waits start again in full
        self._client_until = {ip: time.ticks_add(now, _wait(CLIENT_BASE_S, n) * 1000)
                              for ip, n in self.clients}
        gw = self.global_wait_full()
        self._global_until = time.ticks_add(now, gw * 1000) if gw else None
        self.failures = 0  # since start, for the benchmark and tests
        self.writes = 0  # flash writes of the counts since start (wear figures)
        self._saves = saves if saves is not None else [SAVE_BURST, now]
        self.dirty = False

    def global_wait_full(self):
        return _wait(GLOBAL_BASE_S, self.g - GLOBAL_FREE + 1) if self.g >= GLOBAL_FREE else 0

    def _refill(self, now):
        while self.debt and time.ticks_diff(now, self._debt_at) >= REFILL_S * 1000:
            self.debt -= 1
            self._debt_at = time.ticks_add(self._debt_at, REFILL_S * 1000)
        if not self.debt:
            self._debt_at = now

    def waits(self, client):
        """(this client's own wait, the overall wait) in seconds, 0: none.
        The overall one (consecutive failures from any client, the hourly
        bucket) is what the presence code lets the owner past."""
        now = self.clock()
        w = g = 0
        u = self._client_until.get(client)
        if u is not None:
            left = time.ticks_diff(u, now)
            if left > 0:
                w = (left + 999) // 1000
        if self._global_until is not None:
            left = time.ticks_diff(self._global_until, now)
            if left > 0:
                g = (left + 999) // 1000
        self._refill(now)
        if self.debt >= BUCKET:
            left = REFILL_S * 1000 - time.ticks_diff(now, self._debt_at)
            g = max(g, (max(left, 0) + 999) // 1000)
        return w, g

    def wait_s(self, client):
        """Seconds before `client` may try a password (0: now)."""
        w, g = self.waits(client)
        return max(w, g)

    def fail(self, client):
        """Record a failed try; returns the seconds this client must wait."""
        now = self.clock()
        self._refill(now)
        self.failures += 1
        self.g += 1
        n = self._pop(client) + 1
        self.clients.append([client, n])  # newest last
        while len(self.clients) > MAX_CLIENTS:
            self._client_until.pop(self.clients.pop(0)[0], None)
        if self.debt < BUCKET:
            self.debt += 1
        self._client_until[client] = time.ticks_add(now, _wait(CLIENT_BASE_S, n) * 1000)
        gw = self.global_wait_full()
        self._global_until = time.ticks_add(now, gw * 1000) if gw else None
        self._save()
        return self.wait_s(client)

    def success(self, client):
        changed = self._pop(client) or self.g
        self.g = 0
        self._global_until = None
        self._client_until.pop(client, None)
        if changed:
            self._save()  # (deferred, a lost clear errs on the safe side)

    def _pop(self, client):
        """Remove the client's entry; its failure count (0 if none)."""
        for i, e in enumerate(self.clients):
            if e[0] == client:
                return self.clients.pop(i)[1]
        return 0

    def _save(self):
        """Store the counts now if the write bucket allows, else later."""
        self.dirty = True
        self.flush()

    def flush(self, force=False):
        """Write deferred counts when the write bucket has refilled (the
        window's watch loop calls this), or at once with force (the window
        ends)."""
        now = self.clock()
        sv = self._saves
        while sv[0] < SAVE_BURST and time.ticks_diff(now, sv[1]) >= SAVE_S * 1000:
            sv[0] += 1
            sv[1] = time.ticks_add(sv[1], SAVE_S * 1000)
        if sv[0] >= SAVE_BURST:
            sv[1] = now
        if not self.dirty or not (force or sv[0] > 0):
            return
        if sv[0] > 0:
            sv[0] -= 1
        self.dirty = False
        self.writes += 1
        self.state.set(STATE_KEY, {"g": self.g, "c": [e[:] for e in self.clients], "b": self.debt})
