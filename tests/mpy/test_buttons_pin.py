"""Button events and the PIN guard, with a simulated clock and levels."""

from meter import buttons as btn
from meter.audit import AuditLog
from meter.board import BTN_DOWN, BTN_OK, BTN_UP
from meter.board.flashfile import FilePartition
from meter.logstore import LogStore
from meter.pin import FREE_TRIES, PinGuard, lockout_s
from meter.settings import Settings
from meter.state import State
from upytest import tmpdir

HEAP = "256k"


class Hw:
    level = 0

    def read(self):
        return self.level


def run(b, hw, script):
    """script: list of (level, ms); poll every 20 ms; return the events."""
    t = 0
    out = []
    for level, ms in script:
        hw.level = level
        for _ in range(ms // 20):
            t += 20
            e = b.poll(t)
            if e:
                out.append(e)
    return out


def buttons():
    hw = Hw()
    return btn.Buttons(hw), hw


def test_short_press_on_release_and_bounce_ignored():
    b, hw = buttons()
    ev = run(b, hw, [(BTN_OK, 100), (0, 100), (BTN_DOWN, 20), (0, 20), (BTN_DOWN, 20), (0, 100)])
    assert ev == [btn.OK]  # the 20 ms DOWN blips are bounce


def test_long_press_once_and_no_short_after_it():
    b, hw = buttons()
    ev = run(b, hw, [(BTN_OK, 60000), (0, 100)])
    assert ev == [btn.OK_LONG]


def test_up_down_combo_is_one_event_and_no_singles():
    b, hw = buttons()
    ev = run(b, hw, [(BTN_UP, 40), (BTN_UP | BTN_DOWN, 3000), (BTN_DOWN, 60), (0, 100)])
    assert ev == [btn.COMBO]
    assert b.held_ms(BTN_UP | BTN_DOWN) == 0


def test_all_buttons_at_once():
    b, hw = buttons()
    ev = run(b, hw, [(BTN_UP | BTN_DOWN | BTN_OK, 2000), (0, 100)])
    assert ev == [btn.COMBO, btn.OK_LONG]


def test_held_ms_counts_from_power_on():
    hw = Hw()
    hw.level = BTN_UP | BTN_DOWN
    b = btn.Buttons(hw)  # held before we started
    import time

    assert b.held_ms(BTN_UP | BTN_DOWN, time.ticks_add(time.ticks_ms(), 5000)) >= 4999
    assert b.poll() == 0  # and they do not count as a combo or a press


def guard(d):
    audit = AuditLog(LogStore(FilePartition(d + "/a", 16384)), _Clock())
    s = Settings(LogStore(FilePartition(d + "/c", 16384)), audit)
    st = State(LogStore(FilePartition(d + "/s", 16384)))
    return PinGuard(s, st, audit), s


class _Clock:
    def time(self):
        return 1

    def time_valid(self):
        return True


def test_pin_hashed_checked_and_lockout_grows():
    d = tmpdir()
    g, s = guard(d)
    assert not g.is_set()
    g.set("4711")
    # stored as salt$hash (hex), never in clear (a plain substring test
    # would fail now and then: hex digits can spell 4711)
    salt, digest = s.get("ui.pin").split("$")
    assert len(salt) == 16 and len(digest) == 64 and "4711" not in (salt, digest)
    assert g.check("4711")
    waits = []
    for i in range(6):
        assert not g.check("0000")
        waits.append(g.wait_s())
        g.backoff.until = None  # as if the wait had passed
    assert waits[:FREE_TRIES - 1] == [0] * (FREE_TRIES - 1)
    assert waits[FREE_TRIES - 1:] == [30, 60, 120, 240]
    assert lockout_s(100) == 3600
    g2, _ = guard(d)  # a restart keeps the count and the wait
    assert g2.fails == 6 and g2.wait_s() == 240
    assert not g2.check("4711")  # refused while locked, even if right
    g2.backoff.until = None
    assert g2.check("4711") and g2.fails == 0


def test_pin_clear_and_bad_format():
    d = tmpdir()
    g, s = guard(d)
    g.set("1234")
    for bad in ("123", "12345", "12a4", 1234):
        try:
            g.set(bad)
            assert False, bad
        except ValueError:
            pass
    assert not g.check("12345")
    g.clear("startup")
    assert not g.is_set() and g.fails == 0
