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


def test_restarted_display_task_does_not_offer_the_pin_reset_again():
    # The real app on the host board: the panel fails once, the display
    # task crashes and the supervisor restarts it, while UP+DOWN are held.
    # The forgotten-PIN reset belongs to the start-up screen of a real start
    # only: after the restart it must not appear, however long they are held.
    from upytest import tmpdir

    from meter import home as ui  # the start-up screen's timings
    from meter.app import App
    from meter.board import BTN_DOWN, BTN_UP
    from meter.board.host import HostBoard

    board = HostBoard(["test", "--state", tmpdir(), "--headless"])
    app = App(board)
    app.pin.set("4711", "menu")
    disp = board.display()
    show = disp.show
    drawn = []  # (ticks_ms, screen lines) of every frame
    crash = [False]

    def spy():
        show()
        drawn.append((time.ticks_ms(), disp.text()))
        if crash[0]:
            crash[0] = False
            raise OSError(5)  # the panel's bus fails once

    disp.show = spy
    saved = ui.SPLASH_MS, ui.RESET_HOLD_MS
    ui.SPLASH_MS, ui.RESET_HOLD_MS = 300, 1000  # shorter, same rules

    def seen(text, since=0):
        return [t for t, lines in drawn[since:] if any(text in l for l in lines)]

    async def until(cond, what, ms=15000):
        t0 = time.ticks_ms()
        while not cond():
            assert time.ticks_diff(time.ticks_ms(), t0) < ms, (what, drawn[-3:], log.recent()[-5:])
            await asyncio.sleep_ms(20)

    async def main():
        task = asyncio.create_task(app.run())
        try:
            await until(lambda: seen("POWER W"), "the measurement pages after start-up")
            assert seen("ENERGY ANALYZER"), drawn[:3]  # the start-up screen ran once
            board.btn.set(BTN_UP | BTN_DOWN)  # held from before the crash on
            crash[0] = True
            await until(lambda: app.sup.restarts.get("display"), "the display task restarted")
            mark = len(drawn)
            await until(lambda: len(drawn) > mark, "a frame after the restart")
            t_restart = drawn[mark][0]
            await until(lambda: seen("", mark) and time.ticks_diff(
                drawn[-1][0], t_restart) > ui.RESET_HOLD_MS + 1000, "frames for the hold time")
            after = [lines for _, lines in drawn[mark:]]
            assert not seen("PIN RESET", mark) and not seen("RESET PIN", mark), after[-1]
            assert not seen("ENERGY ANALYZER", mark), after[0]
            assert "POWER W" in after[-1][0], after[-1]
            assert app.pin.is_set()
            assert any("task display crashed" in l for l in log.recent())
        finally:
            board.btn.set(0)
            app.quit()
            await task

    try:
        asyncio.run(main())
    finally:
        ui.SPLASH_MS, ui.RESET_HOLD_MS = saved
