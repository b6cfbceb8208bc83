"""The display task without an app (meter.ui takes its screens, PIN guard and
audit passed in), its error boundary (a refusal's own words, a fault as
"internal error"), and the PIN guard built after the start."""

import asyncio
import time

from meter import buttons as btn
from meter import log
from meter.audit import AuditLog
from meter.board import BTN_OK, BTN_DOWN
from meter.board.flashfile import FilePartition
from meter.errors import UserError
from meter.logstore import LogStore
from upytest import tmpdir


def _part(d, name):
    return FilePartition("%s/%s.bin" % (d, name), 4 * 4096, 4096)


class Clock:
    def time(self):
        return 1_800_000_000

    def time_valid(self):
        return True


def test_display_task_runs_without_an_app_and_words_errors_for_the_user():
    from meter.board.host import HostBoard
    from meter.screens import Menu
    from meter.ui import Ui

    d = tmpdir()
    board = HostBoard(["test", "--state", d, "--headless"])
    audit = AuditLog(LogStore(_part(d, "audit")), Clock())
    disp = board.display()

    def refuse():
        raise UserError("Not allowed while testing.")

    def brk():
        raise OSError(5)  # a fault, not the user's doing

    class Home:
        def __init__(self, ui):
            self.ui = ui

        def render(self, s):
            s.line(0, "HOME")

        def event(self, ev):
            if ev == btn.OK:
                self.ui.push(Menu(self.ui, "TEST MENU", lambda: [("Refuse", refuse),
                                                                  ("Break", brk)]))

    ui = Ui(disp, btn.Buttons(board.buttons()), Home, None, None, audit)

    def screen():
        return "\n".join(disp.text())

    async def until(cond, what, ms=5000):
        t0 = time.ticks_ms()
        while not cond():
            assert time.ticks_diff(time.ticks_ms(), t0) < ms, (what, screen())
            await asyncio.sleep_ms(20)

    async def tap(mask, then, what):
        board.btn.set(mask)
        await until(lambda: ui.buttons.stable == mask, "the press is seen")
        board.btn.set(0)
        await until(lambda: then in screen(), what)

    async def main():
        task = asyncio.create_task(ui.run())
        try:
            await until(lambda: "HOME" in screen(), "the home screen passed in")
            await tap(BTN_OK, "TEST MENU", "the menu pushed by the home screen")
            await tap(BTN_OK, "Not allowed", "a UserError's own words on the display")
            assert "ERROR" in screen(), screen()
            await tap(BTN_OK, "HOME", "OK continues to the home screen")
            await tap(BTN_OK, "TEST MENU", "the menu again")
            await tap(BTN_DOWN, ">Break", "the second entry selected")
            await tap(BTN_OK, "internal error", "a fault is 'internal error', never its text")
            assert "OSError" not in screen() and "5" not in screen(), screen()
            assert any("ui: ERROR" in l and "OSError" in l for l in log.recent()), \
                "the fault is logged with its traceback: %r" % log.recent()[-3:]
        finally:
            task.cancel()
            await asyncio.sleep_ms(0)

    asyncio.run(main())


def test_pin_guard_built_later_runs_a_stored_lockout_from_the_start():
    # The app builds its PIN guard at the first menu entry; a lock-out
    # stored before a restart must still end when it would have ended had
    # the guard been built at the start (not later, not earlier).
    from meter.pin import FREE_TRIES, LOCK_BASE_S, PinGuard
    from meter.settings import Settings
    from meter.state import State

    d = tmpdir()
    audit = AuditLog(LogStore(_part(d, "audit")), Clock())
    state = State(LogStore(_part(d, "state")))
    settings = Settings(LogStore(_part(d, "cfg")), audit, state)
    g = PinGuard(settings, state, audit)
    g.set("1234", "menu")
    for _ in range(FREE_TRIES):
        g.check("0000")
    assert g.wait_s() == LOCK_BASE_S, g.wait_s()
    # "Restart": the guard is built 20 s after the start.
    since = time.ticks_add(time.ticks_ms(), -20000)
    late = PinGuard(settings, State(LogStore(_part(d, "state"))), audit, since)
    assert LOCK_BASE_S - 21 <= late.wait_s() <= LOCK_BASE_S - 19, late.wait_s()
    # Built after the wait would have ended: no wait left.
    since = time.ticks_add(time.ticks_ms(), -(LOCK_BASE_S + 1) * 1000)
    over = PinGuard(settings, State(LogStore(_part(d, "state"))), audit, since)
    assert over.wait_s() == 0 and over.fails == FREE_TRIES, (over.wait_s(), over.fails)
