"""Debounced buttons: short presses, long presses and the UP+DOWN combination.

`Buttons.poll(now_ms)` is called every POLL_MS by the UI task and returns at
most one event (an int, 0 for none). It only reads the board's button mask,
so it never blocks. Rules:

- a level counts once it has been stable for DEBOUNCE_MS (contact bounce is
  ignored);
- a short press is reported on release, so that a long press or the UP+DOWN
  combination never also counts as a short press;
- a long press is reported once, when the button has been held LONG_MS;
  holding longer adds nothing (holding OK for a minute is one OK_LONG);
- UP and DOWN held together report COMBO once; neither then counts alone.
  `held_ms(mask)` tells how long a set of buttons has been held together
  (the start-up PIN reset counts 5 s of UP+DOWN with it).
"""

import time

from meter.board import BTN_DOWN, BTN_OK, BTN_UP

UP = 1
DOWN = 2
OK = 3
UP_LONG = 4
DOWN_LONG = 5
OK_LONG = 6
COMBO = 7

POLL_MS = 20
DEBOUNCE_MS = 40
LONG_MS = 800

_SHORT = {BTN_UP: UP, BTN_DOWN: DOWN, BTN_OK: OK}
_LONG = {BTN_UP: UP_LONG, BTN_DOWN: DOWN_LONG, BTN_OK: OK_LONG}
_BOTH = BTN_UP | BTN_DOWN


class Buttons:
    def __init__(self, hw):
        self.hw = hw
        self.stable = hw.read()
        self._raw = self.stable
        now = time.ticks_ms()
        self._raw_since = now
        # held since before start: counts from now (the start-up reset
        # times UP+DOWN held from power-on)
        self._down_at = {BTN_UP: now, BTN_DOWN: now, BTN_OK: now}
        # buttons held since before we started, or already reported as
        # long/combo, do not produce a short press on release
        self._used = self.stable
        self._pending = []

    def held_ms(self, mask, now=None):
        """How long all buttons in mask have been held together (0 if not)."""
        if self.stable & mask != mask:
            return 0
        now = time.ticks_ms() if now is None else now
        start = max(self._down_at[b] for b in (BTN_UP, BTN_DOWN, BTN_OK) if b & mask)
        return time.ticks_diff(now, start)

    def poll(self, now=None):
        now = time.ticks_ms() if now is None else now
        raw = self.hw.read() & (BTN_UP | BTN_DOWN | BTN_OK)
        if raw != self._raw:
            self._raw = raw
            self._raw_since = now
        elif raw != self.stable and time.ticks_diff(now, self._raw_since) >= DEBOUNCE_MS:
            self._change(raw, now)
        if self._pending:
            return self._pending.pop(0)
        held = self.stable & ~self._used
        if self.stable & _BOTH == _BOTH and held & _BOTH:
            self._used |= _BOTH
            return COMBO
        for b in (BTN_UP, BTN_DOWN, BTN_OK):
            if held & b and time.ticks_diff(now, self._down_at[b]) >= LONG_MS:
                self._used |= b
                return _LONG[b]
        return 0

    def _change(self, new, now):
        old = self.stable
        self.stable = new
        for b in (BTN_UP, BTN_DOWN, BTN_OK):
            if new & b and not old & b:
                self._down_at[b] = now
            elif old & b and not new & b:
                if not self._used & b and len(self._pending) < 4:
                    self._pending.append(_SHORT[b])
                self._used &= ~b
