"""The Web Admin's login under MicroPython with a fake clock: the presence
code (meter/web/presence.py), the order of checks (meter/web/login.py), the
throttle's coalesced flash writes (meter/web/auth.py), and the guesses an
attacker gets in an hour with and without the owner's logins."""

import asyncio

from meter import passwd
from meter.web import auth, login, presence
from standins import Clock, State  # noqa: E402

PASSWORD = "owner-pass-2026"


class Ctl:
    """What meter.web.login.check uses of the Web Admin's controller: its
    throttle, presence code and the stored password."""

    def __init__(self, clock, stored=""):
        ctl = self

        class Settings:
            def get(self, k):
                assert k == "web.pass"
                return ctl.stored

        class Audit:
            def append(self, *a):
                ctl.audited += 1

        class App:
            settings = Settings()
            audit = Audit()

        self.app = App()
        self.stored = stored
        self.audited = 0
        self.state = State()
        self.throttle = auth.Throttle(self.state, clock)
        self.presence = presence.Presence(clock)
        self.verifying = False


def run(coro):
    return asyncio.run(coro)


def attempt(ctl, client, password, code=None, user="admin"):
    return run(login.check(ctl, client, user, password, code))


# -- the presence code ----------------------------------------------------------

def test_code_random_digits_stable_while_valid_then_expires():
    clk = Clock()
    p = presence.Presence(clk)
    assert p.lines() is None and p.valid() is None
    c = p.issue()
    assert len(c) == presence.DIGITS and c.isdigit()
    assert p.issue() == c  # asked again: the same, the display does not change
    lines = p.lines()
    assert lines[0] == "WEB LOGIN CODE" and c in lines[2] and "5:00" in lines[5], lines
    assert all(len(x) <= 16 for x in lines), lines
    clk.advance(presence.TTL_S)
    assert p.valid() is None and p.lines() is None
    codes = set(p.issue() for _ in range(1) if True)
    for _ in range(30):
        clk.advance(presence.TTL_S)
        codes.add(p.issue())
    assert len(codes) >= 28  # random, not a sequence


def test_wrong_codes_are_bounded_for_everybody_and_do_not_end_the_code():
    clk = Clock()
    p = presence.Presence(clk)
    c = p.issue()
    wrong = "000000" if c != "000000" else "111111"
    for _ in range(presence.TRY_BURST):
        assert p.check(wrong) is False
    assert p.check(c) == presence.TRY_REFILL_S  # refused unchecked, even the right one
    clk.advance(presence.TRY_REFILL_S)
    assert p.check(c) is True and p.valid() == c  # still valid: use() ends it
    p.use()
    assert p.valid() is None and p.check(c) is False
    # guesses in an hour, whoever sends them
    p = presence.Presence(clk)
    p.issue()
    n = 0
    for _ in range(3600 * 10):
        if p.check("999999x") is False:
            n += 1
        clk.advance(0.1)
    assert n <= presence.TRY_BURST + 3600 // presence.TRY_REFILL_S, n


# -- the login's order of checks ----------------------------------------------------

def test_default_password_needs_the_code_from_the_display():
    clk = Clock()
    ctl = Ctl(clk)
    # an attacker polling admin/admin gets no session, ever, and counts nothing
    for _ in range(50):
        assert attempt(ctl, "10.0.0.66", "admin") == ("code", 0)
        clk.advance(0.2)
    assert ctl.throttle.failures == 0 and ctl.presence.issues == 1
    code = ctl.presence.valid()
    assert code is not None
    # guesses at the code are failed logins
    wrong = "123456" if code != "123456" else "654321"
    assert attempt(ctl, "10.0.0.66", "admin", wrong)[0] == "badcode"
    assert ctl.throttle.failures == 1
    # the owner, reading the display, gets in; the code is used up
    r = attempt(ctl, "10.0.0.7", "admin", code)
    assert r == ("ok", 0), r
    assert ctl.presence.valid() is None
    clk.advance(2)  # (the attacker's own wait after its wrong code)
    assert attempt(ctl, "10.0.0.66", "admin", code)[0] == "badcode"


def test_a_right_code_with_a_wrong_password_is_not_spent():
    clk = Clock()
    ctl = Ctl(clk, run(passwd.make(PASSWORD)))
    code = ctl.presence.issue()
    assert attempt(ctl, "10.0.0.7", "typo", code)[0] == "fail"
    clk.advance(1)
    assert attempt(ctl, "10.0.0.7", PASSWORD, code) == ("ok", 0)


def test_the_code_lets_the_owner_past_the_overall_wait_not_past_its_own():
    clk = Clock()
    ctl = Ctl(clk, run(passwd.make(PASSWORD)))
    for i in range(auth.BUCKET):  # many attacking clients: overall wait, bucket empty
        assert attempt(ctl, "10.0.1.%d" % i, "guess%d" % i)[0] == "fail"
    verdict, wait = attempt(ctl, "10.0.0.7", PASSWORD)
    assert verdict == "hold" and wait > 0  # the owner too, without the code...
    code = ctl.presence.valid()
    assert code is not None  # ...which the display now shows
    assert attempt(ctl, "10.0.0.7", PASSWORD, code) == ("ok", 0)
    # a client's own wait holds even with a code
    code = ctl.presence.issue()
    assert attempt(ctl, "10.0.1.9", "guess", code)[0] == "wait"


# -- the throttle's flash writes ------------------------------------------------------

def test_counts_are_written_coalesced_and_a_cut_loses_at_most_save_s():
    clk = Clock()
    st = State()
    t = auth.Throttle(st, clk)
    n = 0
    for i in range(200):  # 200 failures from many clients over 2000 s
        t.fail("c%d" % i)
        n += 1
        clk.advance(10)
        t.flush()
    # SAVE_BURST at once, then one per SAVE_S
    assert st.writes <= auth.SAVE_BURST + 2000 // auth.SAVE_S + 1, st.writes
    assert st.writes == t.writes
    stored = st.get("web_login")["g"]
    assert n - stored <= auth.SAVE_S // 10, (n, stored)  # at most SAVE_S of failures lost
    t.flush(True)  # the window ends
    assert st.get("web_login")["g"] == n
    # a restart starts from what is stored: the full waits again
    t2 = auth.Throttle(st, clk)
    assert t2.g == n and t2.waits("c199")[0] >= 1


def test_the_first_failures_are_stored_before_the_answer():
    st = State()
    t = auth.Throttle(st, Clock())
    for i in range(auth.SAVE_BURST):
        t.fail("a")
        assert st.get("web_login")["g"] == i + 1


# -- guesses an hour -------------------------------------------------------------------

def _worst_hour(times):
    worst = j = 0
    for i in range(len(times)):
        while times[i] - times[j] >= 3600 * 1000:
            j += 1
        worst = max(worst, i - j + 1)
    return worst


def _attack(owner_every_s):
    """Three hours of an attacker with many clients trying a password as
    soon as one is allowed, every 0.5 s; the owner logs in every
    owner_every_s (0: never) from its own client, with the code from the
    display when asked. Returns (attacker's worst hour, owner's logins,
    owner's logins that got in, flash writes)."""
    clk = Clock()
    ctl = Ctl(clk, run(passwd.make(PASSWORD)))
    t0 = clk.t
    times = []
    n = 0
    owner = ok = 0
    next_owner = t0 + owner_every_s * 1000 if owner_every_s else None
    while clk.t < t0 + 3 * 3600 * 1000:
        client = "10.0.%d.%d" % (n // 250, n % 250)
        if ctl.throttle.wait_s(client) == 0:
            verdict, _ = attempt(ctl, client, "guess%d" % n)
            assert verdict == "fail", verdict
            times.append(clk.t)
            n += 1
        if next_owner is not None and clk.t >= next_owner:
            owner += 1
            verdict, _ = attempt(ctl, "192.168.1.20", PASSWORD)
            if verdict == "hold":  # the page asks for the code on the display
                verdict, _ = attempt(ctl, "192.168.1.20", PASSWORD, ctl.presence.valid())
            ok += verdict == "ok"
            next_owner += owner_every_s * 1000
        clk.advance(0.5)
        ctl.throttle.flush()
    return _worst_hour(times), owner, ok, ctl.state.writes


def test_guesses_an_hour_with_and_without_the_owner():
    alone = _attack(0)
    with_owner = _attack(600)
    print("attacker's worst hour: %d guesses alone, %d with the owner logging in every "
          "10 min (%d of %d owner logins in at once); flash writes in 3 h: %d, %d"
          % (alone[0], with_owner[0], with_owner[2], with_owner[1], alone[3], with_owner[3]))
    assert alone[0] <= 100 and with_owner[0] <= 100, (alone, with_owner)
    assert with_owner[1] >= 17 and with_owner[2] == with_owner[1], with_owner
    # coalesced: at most SAVE_BURST + one per SAVE_S (+ the owner's clears)
    assert alone[3] <= auth.SAVE_BURST + 3 * 3600 // auth.SAVE_S + 1, alone


def test_state_partition_wear_under_a_login_attack_all_day():
    """A day of windows opened back to back (the worst case: the attack
    needs an open window), an attacker with many clients at the most the
    throttle allows, the owner logging in every 10 minutes (each login
    clears the overall count, so the attacker gets the most tries), on the
    real state store (LogStore on a 16 KiB flash file with 4 KiB blocks)
    next to the other runtime state."""
    from upytest import tmpdir

    from meter.board.flashfile import FilePartition
    from meter.logstore import LogStore
    from meter.state import State as RealState

    part = FilePartition(tmpdir() + "/state", 16384)
    st = RealState(LogStore(part))
    st.set("pin", {"n": 0})  # the other keys of a real device's state
    st.set("lock", {"n": 0, "on": False})
    st.set("totp_step", 59123456)
    e0 = part.erases
    clk = Clock()
    t0 = clk.t
    saves = [auth.SAVE_BURST, clk()]
    failures = n = 0
    while clk.t < t0 + 24 * 3600 * 1000:
        t = auth.Throttle(st, clk, saves)  # a window opens
        end = clk.t + 600 * 1000
        while clk.t < end:
            client = "192.168.%d.%d" % (n // 250 % 250, n % 250)
            if t.wait_s(client) == 0:
                t.fail(client)
                failures += 1
                n += 1
            clk.advance(1)
            t.flush()
        t.success("192.168.200.7")  # the owner, once a window
        t.flush(True)  # the window ends
    erases = part.erases - e0
    per_block = erases / 4
    print("a day of login attack: %d failures, %d state writes, %d erases = %.1f per block "
          "per day (lifetime at 100 000 cycles: %d years)" % (
              failures, st.store.writes, erases, per_block, 100000 / per_block / 365))
    assert failures >= 2000, failures
    # (every failure written, as before: about 2200 writes, 40-45 per block a day)
    assert st.store.writes <= 500 and per_block <= 10, (st.store.writes, per_block)
