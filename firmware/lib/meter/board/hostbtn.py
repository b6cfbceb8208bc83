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
        self.reads = 0  # samples the UI has taken (hold() counts them)

    def set(self, level):
        self._edges |= level ^ self.level
        self.level = level

    def read(self):
        self.reads += 1
        return self.level

    async def hold(self, ms):
        """Keep the levels for ms and for the UI samples ms spans (one per
        _POLL_MS), however late the process is scheduled: on a loaded test
        machine a 120 ms press must stay six samples, not shrink to one
        (bounce, lost). At most _HOLD_MAX_MS: a stalled UI cannot hold the
        control socket."""
        t0 = time.ticks_ms()
        want = self.reads + ms // _POLL_MS
        while time.ticks_diff(time.ticks_ms(), t0) < ms or (
                self.reads < want and time.ticks_diff(time.ticks_ms(), t0) < _HOLD_MAX_MS):
            await asyncio.sleep_ms(min(ms, _POLL_MS))
