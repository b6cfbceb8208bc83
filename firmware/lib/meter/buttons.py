"""Debounced buttons: short presses, long presses and the UP+DOWN combination.

`Buttons.poll(now_ms)` is called every POLL_MS by the UI task and returns at
most one event (an int, 0 for none). It only reads the board's button mask,
so it never blocks. Rules:

- a level counts once it has been stable for DEBOUNCE_MS (contact bounce is
  ignored), each button on its own. Stable means no change at all: the
  board also reports the buttons that had edges between two samples
  (`edges()`, a pin interrupt on the device), and an edge since the last
  sample starts that button's time again, so that pulses shorter than
  POLL_MS (mains interference repeats every 20 ms) never add up to a press
  however they fall between the samples;
- a short press is reported on release, so that a long press or the UP+DOWN
  combination never also counts as a short press;
- a long press is reported once, when the button has been held LONG_MS;
  holding longer adds nothing (holding OK for a minute is one OK_LONG);
- UP and DOWN held together report COMBO once; neither then counts alone.
  `held_ms(mask)` tells how long a set of buttons has been held together
  (the start-up PIN reset counts 5 s of UP+DOWN with it).
"""

import time

from micropython import const

from meter.board.base import BTN_DOWN, BTN_OK, BTN_UP  # the leaf: meter.board loads the boards

UP = 1
DOWN = 2
OK = 3
UP_LONG = 4
DOWN_LONG = 5
OK_LONG = 6
COMBO = 7

POLL_MS = const(20)
DEBOUNCE_MS = const(40)  # a press needs >= 60 ms (40 + up to one poll) to count
LONG_MS = const(800)

_SHORT = {BTN_UP: UP, BTN_DOWN: DOWN, BTN_OK: OK}
_LONG = {BTN_UP: UP_LONG, BTN_DOWN: DOWN_LONG, BTN_OK: OK_LONG}
_BOTH = BTN_UP | BTN_DOWN
# Built once: a tuple of these (non-const) names written in poll() would be
# a new allocation every 20 ms.
_EACH = (BTN_UP, BTN_DOWN, BTN_OK)
_ALL = BTN_UP | BTN_DOWN | BTN_OK


class Buttons:
    def __init__(self, hw):
        self.hw = hw
        hw.edges()  # what moved before we started does not count
        self.stable = hw.read()
        self._raw = self.stable
        now = time.ticks_ms()
        # per button: when its level last moved (sampled, or an edge between
        # samples); each button is debounced on its own, so noise on one
        # does not hold up another's release
        self._since = {BTN_UP: now, BTN_DOWN: now, BTN_OK: now}
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
        start = max(self._down_at[b] for b in _EACH if b & mask)
        return time.ticks_diff(now, start)

    def poll(self, now=None):
        now = time.ticks_ms() if now is None else now
        moved = self.hw.edges()  # before read(): an edge in between shows in both
        raw = self.hw.read() & _ALL
        moved |= raw ^ self._raw
        self._raw = raw
        new = self.stable
        since = self._since
        for b in _EACH:
            if moved & b:
                since[b] = now
            elif (raw ^ new) & b and time.ticks_diff(now, since[b]) >= DEBOUNCE_MS:
                new ^= b
        if new != self.stable:
            self._change(new, now)
        if self._pending:
            return self._pending.pop(0)
        held = self.stable & ~self._used
        if self.stable & _BOTH == _BOTH and held & _BOTH:
            self._used |= _BOTH
            return COMBO
        for b in _EACH:
            if held & b and time.ticks_diff(now, self._down_at[b]) >= LONG_MS:
                self._used |= b
                return _LONG[b]
        return 0

    def _change(self, new, now):
        old = self.stable
        self.stable = new
        for b in _EACH:
            if new & b and not old & b:
                self._down_at[b] = now
            elif old & b and not new & b:
                if not self._used & b and len(self._pending) < 4:
                    self._pending.append(_SHORT[b])
                self._used &= ~b
