"""Proof of presence for the Web Admin login: a one-time code shown on the
device's display (docs/security.md, "Presence code").

Anyone on the LAN knows the factory password "admin", so after Reset Web
Password (and on first use) a login with it must also carry the code that
only someone looking at the device can read; the same code lets the owner
past the overall login wait that an attacker's failures cause.

- issue(): a code of DIGITS random decimal digits (os.urandom, rejection
  sampling: no bias), valid TTL_S. While one is valid, issue() returns it
  again: a client asking over and over cannot replace the code the owner
  is reading.
- check(code): constant-time comparison. Guessing is bounded for all
  clients together: a bucket of TRY_BURST wrong codes, refilled one per
  TRY_REFILL_S; while it is empty a code is refused unchecked (the answer
  says how long to wait). At most TRY_BURST + 3600 / TRY_REFILL_S = 183
  guesses an hour at 10^DIGITS codes: under 2e-4 a code per hour. A wrong
  code does not end the code (it would let an attacker wipe out the code
  the owner is reading); an attacker who keeps the bucket empty can make
  the owner retry, and gains nothing else. A right code is used up with
  use() once the rest of the login has passed.
- lines(): what the display shows while a code is valid.
The code lives in RAM only, with the Web Admin window (a restart or the
window's end drops it).
"""

import os
import time

from micropython import const

from meter.crypto import compare_digest

DIGITS = const(6)
TTL_S = const(300)
TRY_BURST = const(3)
TRY_REFILL_S = const(20)


def _digits(n):
    out = ""
    while len(out) < n:
        b = os.urandom(1)[0]
        if b < 250:  # 250 = 25 * 10: every digit equally likely
            out += chr(48 + b % 10)
    return out


class Presence:
    def __init__(self, clock=time.ticks_ms):
        self.clock = clock
        self.code = None
        self.until = 0
        self.tries = TRY_BURST  # wrong codes that may still be tried now
        self._tries_at = clock()
        self.issues = 0  # codes issued since the window opened (tests, benchmark)
        self.wrong = 0  # wrong codes since the window opened

    def valid(self):
        """The code, if one is valid now."""
        if self.code is not None and time.ticks_diff(self.until, self.clock()) <= 0:
            self.code = None
        return self.code

    def issue(self):
        """The valid code, or a new one (shown on the display from now)."""
        if self.valid():
            return self.code
        self.code = _digits(DIGITS)
        self.until = time.ticks_add(self.clock(), TTL_S * 1000)
        self.issues += 1
        return self.code

    def wait_s(self):
        """Seconds before a code may be tried (0: now)."""
        now = self.clock()
        while self.tries < TRY_BURST and \
                time.ticks_diff(now, self._tries_at) >= TRY_REFILL_S * 1000:
            self.tries += 1
            self._tries_at = time.ticks_add(self._tries_at, TRY_REFILL_S * 1000)
        if self.tries >= TRY_BURST:
            self._tries_at = now
        if self.tries > 0:
            return 0
        return (TRY_REFILL_S * 1000 - time.ticks_diff(now, self._tries_at) + 999) // 1000

    def check(self, code):
        """True for the valid code (not used up: use() does that), False
        for a wrong one, or the seconds to wait (refused unchecked)."""
        w = self.wait_s()
        if w:
            return w
        want = self.valid()
        code = code.strip() if isinstance(code, str) else ""
        if want is not None and len(code) == DIGITS \
                and compare_digest(code.encode(), want.encode()):
            return True
        self.tries -= 1
        self.wrong += 1
        return False

    def use(self):
        self.code = None

    def left_s(self):
        if not self.valid():
            return 0
        return (time.ticks_diff(self.until, self.clock()) + 999) // 1000

    def lines(self):
        """The display's lines while a code is valid, else None."""
        if not self.valid():
            return None
        s = self.left_s()
        return ["WEB LOGIN CODE", "", "    " + self.code, "", "Type it on the",
                "login page %d:%02d" % (s // 60, s % 60)]
