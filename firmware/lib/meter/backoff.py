"""Waits after failures: the stored wrong-secret back-off of the PIN and the
module lock, and the jitter of network retries.

Backoff counts consecutive failures in the runtime state (meter/state.py)
and stores the count before the caller gives its answer, so cutting the
power neither resets it nor shortens a wait: after a restart the wait of the
stored count runs again in full (time spent switched off cannot be measured
without a trusted clock). The schedule is the caller's: wait_fn(fails) gives
the seconds to wait after `fails` failures.
"""

import time


def jitter(ms):
    """ms/2 plus a random part up to ms/2 ("equal jitter"): devices cut off
    together do not all retry in the same second."""
    import random

    return ms // 2 + random.getrandbits(16) * (ms - ms // 2) // 65536


def spread(ms):
    """ms stretched to between 0.75 and 1.25 times: devices that start
    together do not all ask at once (the automatic update check)."""
    ms = int(ms)
    return ms - ms // 4 + jitter(ms // 2)


class Backoff:
    def __init__(self, state, key, wait_fn):
        self.state = state
        self.key = key
        self.wait_fn = wait_fn
        f = state.get(key, 0)
        self.fails = f if isinstance(f, int) and f >= 0 else 0
        self.until = None  # ticks_ms when a try is allowed again; None: now
        self._arm()

    def _arm(self):
        w = self.wait_fn(self.fails)
        self.until = time.ticks_add(time.ticks_ms(), w * 1000) if w else None
        return w

    def wait_s(self):
        """Seconds until the next try (0: now)."""
        if self.until is None:
            return 0
        left = time.ticks_diff(self.until, time.ticks_ms())
        if left <= 0:
            self.until = None
            return 0
        return (left + 999) // 1000

    def fail(self):
        """One more failure, stored; returns the wait it starts (seconds)."""
        self._save(self.fails + 1)
        return self._arm()

    def clear(self):
        """A success (or a reset): no count, no wait."""
        if self.fails:
            self._save(0)
        self.until = None

    def _save(self, fails):
        self.state.set(self.key, fails)
        self.fails = fails
