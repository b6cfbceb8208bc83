"""Task supervision and the watchdog, on the real asyncio of the unix port."""

import asyncio
import time

from meter import log
from meter import supervisor as supmod
from meter.supervisor import Supervisor


class Wdt:
    def __init__(self):
        self.feeds = 0

    def feed(self):
        self.feeds += 1


class Board:
    def __init__(self):
        self.wdt = Wdt()

    def watchdog(self, ms):
        assert ms == supmod.WDT_TIMEOUT_MS
        return self.wdt


def test_crashing_task_is_logged_and_restarted():
    runs = []

    async def flaky():
        runs.append(time.ticks_ms())
        if len(runs) < 3:
            raise ValueError("boom %d" % len(runs))
        await asyncio.sleep(10)

    async def main():
        sup = Supervisor()
        sup.spawn("flaky", flaky)
        await asyncio.sleep_ms(3500)  # back-off 1 s, then 2 s
        sup.cancel_all()
        return sup

    sup = asyncio.run(main())
    assert len(runs) == 3
    assert sup.restarts["flaky"] == 2
    assert time.ticks_diff(runs[2], runs[1]) >= 1900  # back-off doubled
    assert any("task flaky crashed" in l and "boom 1" in l for l in log.recent())


def test_watchdog_fed_only_while_critical_tasks_beat():
    board = Board()

    async def main():
        sup = Supervisor()
        old = supmod.BEAT_MAX_MS
        supmod.BEAT_MAX_MS = 1500
        try:
            sup.spawn("meter", lambda: asyncio.sleep(100), critical=True)
            asyncio.create_task(sup.watchdog(board))
            await asyncio.sleep_ms(1200)
            fed = board.wdt.feeds
            assert fed >= 1 and sup.healthy()
            await asyncio.sleep_ms(2500)  # no beats: stale
            assert not sup.healthy()
            stale = board.wdt.feeds
            await asyncio.sleep_ms(2000)
            assert board.wdt.feeds == stale  # not fed while unhealthy
            sup.beat("meter")
            await asyncio.sleep_ms(1100)
            assert board.wdt.feeds > stale
        finally:
            supmod.BEAT_MAX_MS = old
            sup.cancel_all()

    asyncio.run(main())
