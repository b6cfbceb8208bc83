"""The simulator's buttons: levels set by the terminal's keys and the
control socket (press, release, tap)."""

import asyncio
import time

from micropython import const

from meter.board.base import Buttons

_POLL_MS = const(20)  # meter.buttons.POLL_MS (the board does not import the UI)
_HOLD_MAX_MS = const(5000)


class HostButtons(Buttons):
    """Levels set by the keys and the control socket through set(), which
    records the changed buttons as the device's pin interrupt does: a tap
    shorter than the UI's 20 ms sampling is seen as edges (and so as
    bounce)."""

    def __init__(self):
        self.level = 0
        self._edges = 0
        self.reads = 0  # samples the UI has taken
        self._lift = 0  # the tapping finger's buttons, lifted after...
        self._left = 0  # ...this many more UI samples

    def set(self, level):
        self._edges |= level ^ self.level
        self.level = level

    def read(self):
        self.reads += 1
        level = self.level
        if self._left:
            self._left -= 1
            if not self._left:  # this was the tap's last sample
                self.set(self.level & ~self._lift)
        return level

    async def tap(self, mask, ms):
        """A finger: down for the UI samples ms spans (one per _POLL_MS),
        then up for as many. Counted in samples, not time: on a loaded test
        machine the simulator may not run for 100 ms, and a 120 ms press
        must stay six samples (not one, bounce) and a 5 ms blip none (not
        four, a press). At most _HOLD_MAX_MS each way: a stalled UI does
        not hold the control socket."""
        n = ms // _POLL_MS
        self.set(self.level | mask)
        if not n:  # a blip between two samples: edges only
            self.set(self.level & ~mask)
        else:
            self._lift, self._left = mask, n
            await self._until(lambda: not self._left)
            self._left = 0
            self.set(self.level & ~mask)  # (done by read() unless the UI stalled)
        up = self.reads + max(n, 1)
        await self._until(lambda: self.reads >= up)

    async def _until(self, done):
        t0 = time.ticks_ms()
        while not done() and time.ticks_diff(time.ticks_ms(), t0) < _HOLD_MAX_MS:
            await asyncio.sleep_ms(_POLL_MS // 4)
