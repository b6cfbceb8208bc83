"""Task supervision: every long-lived task runs under guard().

A task that raises is logged and restarted with exponential back-off,
never left silently dead. Critical tasks report heartbeats; the watchdog is
fed only while every critical task has beaten recently, so a wedged loop or
a dead metering task resets the device instead of running on blind.
"""

import asyncio
import time

from micropython import const

from meter import log

BEAT_MAX_MS = 5000  # (not const: tests shorten it)
WDT_TIMEOUT_MS = const(10000)
_BACKOFF_CAP_S = const(30)  # the longest wait before a crashed task restarts
_RAN_FINE_MS = const(60000)
_FEED_MS = const(1000)  # the watchdog's feeding period, well inside its timeout  # a task that ran this long starts its back-off over


class Supervisor:
    def __init__(self):
        self.tasks = {}
        self.restarts = {}
        self.beats = {}
        self.wdt = None

    def spawn(self, name, fn, critical=False):
        """Run the coroutine function fn() under guard; a critical task must
        call beat(name) at least every BEAT_MAX_MS."""
        if critical:
            self.beats[name] = time.ticks_ms()
        self.restarts.setdefault(name, 0)
        self.tasks[name] = asyncio.create_task(self._guard(name, fn))

    async def _guard(self, name, fn):
        # A critical task (metering) restarts within a second: its IC
        # registers would overflow during a long back-off.
        cap = 1 if name in self.beats else _BACKOFF_CAP_S
        backoff = 1
        while True:
            started = time.ticks_ms()
            try:
                await fn()
                log.warn("task %s ended; restarting" % name)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.exc("task %s crashed" % name, e)
            self.restarts[name] += 1
            if time.ticks_diff(time.ticks_ms(), started) > _RAN_FINE_MS:
                backoff = 1  # it ran fine for a while: start over
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, cap)

    def beat(self, name):
        self.beats[name] = time.ticks_ms()

    def healthy(self):
        now = time.ticks_ms()
        for t in self.beats.values():
            if time.ticks_diff(now, t) > BEAT_MAX_MS:
                return False
        return True

    async def watchdog(self, board):
        self.wdt = board.watchdog(WDT_TIMEOUT_MS)
        while True:
            if self.healthy():
                self.wdt.feed()
            await asyncio.sleep_ms(_FEED_MS)

    def cancel_all(self):
        for t in self.tasks.values():
            t.cancel()
