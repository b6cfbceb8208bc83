"""Web Admin building blocks under MicroPython: PBKDF2 (published vectors),
password storage and policy, sessions, the login throttle (with a fake
clock: exponential waits, persistence, at most 100 failures an hour), the
request-head parser, and the Wi-Fi of both boards (fake `network`)."""

import sys

_HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
_FAKES = _HERE + "/fakes"

import asyncio  # noqa: E402
from binascii import hexlify  # noqa: E402

from upytest import raises  # noqa: E402

from meter import passwd
from meter.web import auth  # noqa: E402
from standins import Clock, State  # noqa: E402

# PBKDF2-HMAC-SHA256 vectors (shared/notes/security.md section 3)
PBKDF2 = [
    (b"password", b"salt", 1, 32,
     "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"),
    (b"password", b"salt", 2, 32,
     "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43"),
    (b"password", b"salt", 4096, 32,
     "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"),
    (b"passwordPASSWORDpassword", b"saltSALTsaltSALTsaltSALTsaltSALTsalt", 4096, 40,
     "348c89dbcbd32b2f32d814b8116e84cf2b17347ebc1800181c4e2a1fb8dd53e1c635518c7dac47e9"),
    (b"pass\x00word", b"sa\x00lt", 4096, 16, "89b69d0516f829893c696226650a8687"),
]


def run(coro):
    return asyncio.run(coro)


# -- PBKDF2 and password storage ---------------------------------------------

def test_pbkdf2_sha256_published_vectors():
    for p, s, c, n, want in PBKDF2:
        assert hexlify(passwd.pbkdf2_sha256(p, s, c, n)).decode() == want, (p, c)
        assert hexlify(run(passwd.pbkdf2_sha256_async(p, s, c, n))).decode() == want


def test_pbkdf2_long_password_is_hashed_first_like_hmac():
    # RFC 2104: keys longer than the block are hashed; cross-checked with HMAC
    from meter.crypto import hmac_digest

    key = b"k" * 100
    u1 = hmac_digest(key, b"salt" + b"\x00\x00\x00\x01")
    assert passwd.pbkdf2_sha256(key, b"salt", 1) == u1


def test_async_pbkdf2_yields_to_the_loop():
    ticks = [0]

    async def other():
        while True:
            ticks[0] += 1
            await asyncio.sleep_ms(0)

    async def main():
        t = asyncio.create_task(other())
        await passwd.pbkdf2_sha256_async(b"pw", b"salt", passwd.CHUNK * 20)
        t.cancel()

    run(main())
    assert ticks[0] >= 19  # another task ran between the chunks


def test_stored_form_carries_iterations_and_salt():
    h = run(passwd.make("correct horse"))
    scheme, n, salt, digest = h.split("$")
    assert scheme == "pbkdf2-sha256" and int(n) == passwd.ITERATIONS
    assert len(salt) == 32 and len(digest) == 64
    assert h != run(passwd.make("correct horse"))  # fresh salt
    assert run(passwd.verify(h, "correct horse"))
    assert not run(passwd.verify(h, "correct horsE"))
    assert not run(passwd.verify(h, ""))
    # another iteration count is honoured as stored
    h2 = run(passwd.make("x" * 10, 1500))
    assert h2.split("$")[1] == "1500" and run(passwd.verify(h2, "x" * 10))
    # damaged or foreign values match nothing
    for bad in ("plain", "pbkdf2-sha256$10$00$00", "pbkdf2-sha256$abc$%s$%s" % ("0" * 32, "0" * 64),
                "md5$1000$%s$%s" % ("0" * 32, "0" * 64), h[:-2]):
        assert not run(passwd.verify(bad, "correct horse")), bad


def test_default_password_only_while_nothing_is_stored():
    assert run(passwd.verify("", "admin"))
    assert not run(passwd.verify("", "Admin")) and not run(passwd.verify("", "admin "))
    assert passwd.is_default("") and not passwd.is_default("pbkdf2-sha256$1$a$b")
    assert not run(passwd.verify("", "a" * 1000))


def test_password_policy():
    assert passwd.policy("good-password", "good-password") is None
    assert "differ" in passwd.policy("good-password", "good-passwore")
    assert "at least" in passwd.policy("short", "short")
    assert "default" in passwd.policy("ADMIN", "ADMIN") or "at least" in passwd.policy("ADMIN",
                                                                                      "ADMIN")
    assert "at most" in passwd.policy("a" * 65, "a" * 65)
    assert "control" in passwd.policy("abc\x00defgh", "abc\x00defgh")


# -- sessions and CSRF tokens ------------------------------------------------

def test_sessions_random_ids_hashed_idle_timeout_limit():
    clk = Clock()
    s = auth.Sessions(clock=clk, idle_ms=300000, limit=2)
    sid, sess = s.create("10.0.0.2")
    assert len(sid) == 32 and int(sid, 16) >= 0
    assert s.get(sid) is sess and sid not in [k for k in s._by_key]  # only hashes kept
    sid2, _ = s.create("10.0.0.3")
    assert sid2 != sid
    clk.advance(299)
    assert s.get(sid) is sess  # touched: the idle time restarts
    clk.advance(299)
    assert s.get(sid) is sess
    assert s.get(sid2) is None  # idle for 598 s
    clk.advance(1)
    s.create("a")
    clk.advance(1)
    s.create("b")  # the table holds 2: the least recently used went
    assert s.get(sid) is None and len(s) == 2
    for bad in (None, "", "x" * 32, sid + "0", 123):
        assert s.get(bad if isinstance(bad, str) or bad is None else str(bad)) is None
    sid3, sess3 = s.create("c")
    assert s.alive(sess3)
    s.end(sid3)
    assert not s.alive(sess3) and s.get(sid3) is None
    s.clear()
    assert len(s) == 0


def test_csrf_tokens():
    clk = Clock()
    s = auth.Sessions(clock=clk)
    _, a = s.create("x")
    _, b = s.create("y")
    assert len(a.csrf) == 32 and a.csrf != b.csrf
    assert auth.check_csrf(a, a.csrf)
    assert not auth.check_csrf(a, b.csrf) and not auth.check_csrf(a, None)
    assert not auth.check_csrf(a, "") and not auth.check_csrf(None, a.csrf)
    t = auth.LoginTokens()
    pre = auth.new_id()
    tok = t.token(pre)
    assert t.check(pre, tok) and not t.check(auth.new_id(), tok)
    assert not t.check(pre, tok[:-1] + ("0" if tok[-1] != "0" else "1"))
    assert not t.check(None, tok) and not t.check(pre, None)
    assert not auth.LoginTokens().check(pre, tok)  # a new window, a new key


# -- the login throttle ---------------------------------------------------------

def test_throttle_per_client_exponential_and_cleared_by_success():
    clk = Clock()
    st = State()
    t = auth.Throttle(st, clk)
    assert t.wait_s("a") == 0
    waits = [t.fail("a")]
    for _ in range(5):
        clk.advance(waits[-1])
        assert t.wait_s("a") == 0
        waits.append(t.fail("a"))
    assert waits == [1, 2, 4, 8, 16, 32]
    assert t.wait_s("b") == 0  # another client is not slowed by "a" alone
    assert st.get("web_login")["g"] == auth.SAVE_BURST  # the first ones at once
    t.flush(True)  # the rest coalesced (test_login.py), at the latest when the window ends
    assert st.get("web_login")["g"] == 6
    clk.advance(32)
    t.success("a")
    assert t.wait_s("a") == 0
    clk.advance(auth.SAVE_S)  # a clear is written when the write bucket allows
    t.flush()
    assert st.get("web_login")["g"] == 0
    assert t.fail("a") == 1  # counting starts over


def test_throttle_overall_slows_every_client():
    clk = Clock()
    t = auth.Throttle(State(), clk)
    for i in range(auth.GLOBAL_FREE - 1):
        t.fail("10.0.0.%d" % i)  # each a new client: 1 s each
        clk.advance(auth.REFILL_S)  # slow enough for the bucket
    assert t.wait_s("fresh") == 0
    t.fail("another")
    assert t.wait_s("fresh") == 1  # the overall count reached GLOBAL_FREE
    clk.advance(1)
    t.fail("yet another")
    assert t.wait_s("fresh") == 2
    clk.advance(2)
    t.fail("and another")
    assert t.wait_s("fresh") == 4


def test_throttle_bucket_refuses_bursts_from_many_clients():
    clk = Clock()
    t = auth.Throttle(State(), clk)
    for i in range(auth.BUCKET):
        assert t.wait_s("c%d" % i) == 0
        t.fail("c%d" % i)
    assert t.wait_s("new") == auth.REFILL_S  # bucket empty: one try per REFILL_S
    clk.advance(auth.REFILL_S)
    t.success("c0")  # a right password does not refill it
    t.g = 0
    t._global_until = None
    assert t.wait_s("new") == 0
    t.fail("new")
    assert t.wait_s("other") == auth.REFILL_S


def test_throttle_count_survives_a_reboot_and_the_wait_restarts_in_full():
    clk = Clock()
    st = State()
    t = auth.Throttle(st, clk)
    for _ in range(4):
        clk.advance(t.wait_s("a"))
        t.fail("a")
    assert t.wait_s("a") == 8
    clk.advance(7)  # 1 s left ... then the power goes
    t2 = auth.Throttle(st, clk)  # reboot: the same stored state
    assert t2.wait_s("a") == 8  # the full wait again, not 1 s
    clk.advance(8)
    assert t2.fail("a") == 16  # and the count went on


def test_throttle_state_from_flash_is_checked():
    for bad in ({"g": -5, "c": "x", "b": 99}, {"c": [["a", "b"], [1, 2], "zz"]}, "junk", None):
        st = State()
        st.d["web_login"] = bad
        t = auth.Throttle(st, Clock())
        assert t.g == 0 and t.clients == [] and t.debt == 0


def test_no_more_than_100_failures_in_any_hour():
    """An attacker with many clients tries as soon as each is allowed, for
    three hours; the failures in every sliding hour are counted."""
    clk = Clock()
    st = State()
    t = auth.Throttle(st, clk)
    times = []
    n = 0
    while clk.t < 1000000 + 3 * 3600 * 1000:
        client = "10.0.%d.%d" % (n // 250, n % 250)
        if t.wait_s(client) == 0:
            t.fail(client)
            times.append(clk.t)
            n += 1
            # a legitimate login now and then resets the consecutive counts
            if n % 7 == 0:
                t.success("admin-pc")
                t.g = 0
                t._global_until = None
        clk.advance(0.5)
    worst = 0
    j = 0
    for i in range(len(times)):
        while times[i] - times[j] >= 3600 * 1000:
            j += 1
        worst = max(worst, i - j + 1)
    assert 90 <= worst <= 100, worst
    # stored coalesced (test_login.py): a burst, then one write per SAVE_S
    assert st.writes <= auth.SAVE_BURST + 3 * 3600 // auth.SAVE_S + 1, st.writes


def test_throttle_keeps_a_bounded_client_table():
    t = auth.Throttle(State(), Clock())
    for i in range(50):
        t.fail("c%d" % i)
    assert len(t.clients) == auth.MAX_CLIENTS and t.clients[-1][0] == "c49"


# -- the HTTP layer's parser and helpers ------------------------------------------

def test_parse_head():
    from meter.web import server

    m, url, v, h = server.parse_head(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Y:  z \r\nx-y: dup")
    assert (m, url, v) == ("GET", "/a?b=1", "1.1") and h["host"] == "x" and h["X-Y"] == "z"
    for head, code in ((b"GET / HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 2", 400),
                       (b"GET / HTTP/1.1\r\nHost: a\r\nHOST: b", 400),
                       (b"GET / HTTP/1.1 extra", 400), (b"BREW / HTTP/1.1", 405),
                       (b"GET / HTTP/3", 505), (b"GET \x7f HTTP/1.1", 400),
                       (b"GET / HTTP/1.1\r\n: novalue", 400), (b"GET / HTTP/1.1\r\nA B: c", 400),
                       (b"GET / HTTP/1.1\r\nA: b\x00c", 400), (b"\xc3\x28 / HTTP/1.1", 400),
                       (b"GET /" + b"x" * 600 + b" HTTP/1.1", 414),
                       (b"GET / HTTP/1.1" + b"\r\nA: b" * 40, 431)):
        e = raises(server.Reject, server.parse_head, head)
        assert e.status == code, (head[:30], e.status)


class _Reader:
    """An asyncio stream stand-in that hands out `data` as asked."""

    def __init__(self, data):
        self.data = memoryview(data)  # no copies: the heap stays tidy
        self.asked = []

    async def readinto(self, mv):
        self.asked.append(len(mv))
        n = min(len(mv), len(self.data))
        mv[:n] = self.data[:n]
        self.data = self.data[n:]
        return n


class _Split(_Reader):
    """Hands out the first `cut` bytes, then the rest."""

    def __init__(self, data, cut):
        super().__init__(data)
        self.cut = cut

    async def readinto(self, mv):
        n = min(len(mv), len(self.data), self.cut or len(self.data))
        self.cut = 0
        mv[:n] = self.data[:n]
        self.data = self.data[n:]
        return n


class _Conn:
    got = 0


def test_read_head_is_bounded():
    from meter.web import server

    buf = bytearray(server.BUF)
    c = _Conn()
    assert run(server.read_head(_Reader(b"GET / HTTP/1.1\r\nA: b\r\n\r\nBODY"), c, buf)) == (20, 24)
    assert bytes(buf[:20]) == b"GET / HTTP/1.1\r\nA: b" and c.got == 28
    c = _Conn()
    buf[:14] = b"GET / HTTP/1.0"  # already peeked
    c.got = 14
    assert run(server.read_head(_Reader(b"\r\nA: b\n\nX"), c, buf)) == (20, 22)
    r = _Reader(b"x" * 8192)  # a long header (a 1 MB one: tests/test_web_attack.py)
    e = raises(server.Reject, run, server.read_head(r, _Conn(), buf))
    assert e.status == 431 and sum(r.asked) <= server.MAX_HEAD + 4
    assert max(r.asked) <= server.READ
    assert run(server.read_head(_Reader(b""), _Conn(), buf)) is None
    raises(server.Reject, run, server.read_head(_Reader(b"GET / HTTP/1.1\r\n"), _Conn(), buf))
    # split anywhere, even inside the blank line
    data = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    for cut in range(1, len(data)):
        c = _Conn()
        assert run(server.read_head(_Split(data, cut), c, buf)) == (len(data) - 4, len(data)), cut


def test_peer_ip_both_ports():
    from meter.web import server

    assert server.peer_ip(("192.168.1.9", 5000)) == "192.168.1.9"
    assert server.peer_ip(bytearray(b"\x02\x00\xe1p\x7f\x00\x00\x01" + bytes(8))) == "127.0.0.1"
    assert server.peer_ip(b"") == "?"


def test_host_header_check_and_escaping():
    from meter.text import kwh
    from meter.web import chrome, wire

    for ok in ("192.168.4.1", "10.0.0.5:80", "localhost:8080", "[::1]:8080", "127.0.0.1"):
        assert wire.host_ok(ok), ok
    for bad in ("", "evil.example", "evil.example:80", "1.2.3", "1.2.3.4.5", "256.1.1.1",
                "1.2.3.4:x", "[::1", "a" * 70, "meter.local"):
        assert not wire.host_ok(bad), bad
    assert chrome.esc("<a href='x'>&\"") == "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
    assert chrome.utc(0) == "-" and chrome.utc(1700000000) == "2023-11-14 22:13:20"
    assert chrome.utc(951782400) == "2000-02-29 00:00:00"
    assert kwh(1234567891234) == "1234.567"


def test_the_controller_asks_the_service_switch_the_handle_registers():
    # meter.web.admin names the key itself (meter.web loads it: importing
    # the key from there would be an import circle); the two must agree.
    import meter.web
    from meter.web import admin

    assert admin.SERVICE_KEY == meter.web.SERVICE_KEY


def test_the_web_edge_turns_a_refusal_into_the_pages_message():
    # One helper for every page (issue 17): a UserError in its own words, a
    # fault as "internal error" (logged), the lock on to the 423 page.
    from meter import log
    from meter.errors import UserError
    from meter.settings import Locked
    from meter.web.chrome import attempt

    def refuse(what):
        raise UserError("no room for " + what)

    def broken():
        raise KeyError("wifi.ssid")

    def locked():
        raise Locked()

    async def slow(why):
        await asyncio.sleep_ms(1)
        return why

    assert run(attempt(refuse, "that")) == "no room for that"
    assert run(attempt(broken)) == "internal error"
    assert any("web: change failed" in l and "wifi.ssid" in l for l in log.recent()), log.recent()
    assert run(attempt(slow, None)) is None and run(attempt(slow, "busy")) == "busy"
    raises(Locked, run, attempt(locked))


# -- Wi-Fi of both boards -------------------------------------------------------------

def test_host_wifi_simulation():
    from meter.board.host import HostWifi

    w = HostWifi()
    assert w.status() == "not configured" and w.ip() is None
    names = [n["ssid"] for n in w.scan()]
    assert "HomeNet" in names and all(set(n) == {"ssid", "rssi", "auth"} for n in w.scan())
    w.connect("HomeNet", "wrong")
    assert w.status() == "failed" and w.ip() is None
    w.connect("HomeNet", "secret-key")
    assert w.status() == "connected" and w.ip() == "127.0.0.1"
    w.connect("Nowhere", "whatever1")
    assert w.status() == "failed"
    w.connect("CafeGuest", "")
    assert w.status() == "connected"
    raises(ValueError, w.ap_start, "Meter-1", "short")
    w.ap_start("Meter-1", "abcdefgh23")
    assert w.ap_active() and w.ap_ip() == "192.168.4.1"
    w.ap_stop()
    assert not w.ap_active() and w.ap_ip() is None


def test_host_wifi_networks_from_the_state_directory():
    import os

    from meter.board.host import HostWifi
    from upytest import tmpdir

    d = tmpdir()
    with open(d + "/wifi-sim.json", "w") as f:
        f.write('[["Lab", -40, "WPA2", "lab-key-123"]]')
    w = HostWifi(d + "/wifi-sim.json")
    assert [n["ssid"] for n in w.scan()] == ["Lab"]
    w.connect("Lab", "lab-key-123")
    assert w.status() == "connected"
    os.remove(d + "/wifi-sim.json")


def test_esp32_wifi_scan_and_access_point():
    if _FAKES not in sys.path:
        sys.path.insert(0, _FAKES)
    for m in ("network", "meter.board.esp32"):
        sys.modules.pop(m, None)
    import network

    assert getattr(network, "IS_FAKE", False)
    network._reset()
    from meter.board.esp32wifi import Esp32Wifi as _Wifi

    w = _Wifi(network, log=lambda m: None)
    sta = network.wlans[0]
    sta.scan = lambda: [(b"Home", b"\x00" * 6, 6, -50, 3, False),
                        (b"Hidden", b"\x00" * 6, 1, -40, 3, True),
                        (b"\xff\xfe", b"\x00" * 6, 1, -60, 0, False),
                        (b"Cafe", b"\x00" * 6, 11, -80, 0, False)]
    assert w.scan() == [{"ssid": "Home", "rssi": -50, "auth": "WPA2"},
                        {"ssid": "Cafe", "rssi": -80, "auth": "open"}]
    raises(ValueError, w.ap_start, "Meter-1", "short")
    w.ap_start("Meter-1A2B", "abcdefgh2345")
    ap = network.wlans[-1]
    assert ap.interface_id == network.AP_IF and ap.active()
    assert ap.cfg["ssid"] == "Meter-1A2B" and ap.cfg["key"] == "abcdefgh2345"
    assert ap.cfg["security"] == getattr(network, "AUTH_WPA2_PSK", 3)
    ap.addr = "192.168.4.1"
    assert w.ap_active() and w.ap_ip() == "192.168.4.1"
    w.ap_stop()
    assert not ap.active() and not w.ap_active() and w.ap_ip() is None
    sys.path.remove(_FAKES)
    sys.modules.pop("network", None)


def _wifi_ctl(wifi):
    """A Web Admin controller on real settings, audit and state stores (in
    files), with `wifi` as the board's Wi-Fi, joined to the stored CafeGuest."""
    from upytest import tmpdir

    from meter.audit import AuditLog
    from meter.board.flashfile import FilePartition
    from meter.logstore import LogStore
    from meter.settings import Settings
    from meter.state import State as RealState
    from meter.web.admin import WebAdmin

    d = tmpdir()

    class App:
        pass

    class Board:
        def wifi(self):
            return self.w

        def time(self):
            return 1_800_000_000

        def time_valid(self):
            return True

    app = App()
    app.board = Board()
    app.board.w = wifi  # (a class body cannot see this function's names)
    app.audit = AuditLog(LogStore(FilePartition(d + "/audit", 16384)), app.board)
    state = RealState(LogStore(FilePartition(d + "/state", 16384)))
    app.settings = Settings(LogStore(FilePartition(d + "/config", 16384)), app.audit, state)
    app.settings.update({"wifi.ssid": "CafeGuest", "wifi.key": ""}, "menu")
    app.board.w.connect("CafeGuest", "")
    return app, WebAdmin(app, None)


def test_a_join_the_lock_refuses_to_store_does_not_stay():
    # Locked while a Wi-Fi join from the setup page is under way: the new
    # network is not stored, and the device goes back to the stored one.
    from meter.board.host import HostWifi

    app, ctl = _wifi_ctl(HostWifi())

    async def go():
        assert ctl.wifi.join("HomeNet", "secret-key") is None  # unlocked: the join starts
        app.settings.set_lock({"lock.on": True}, "mqtt", "lock")  # locked meanwhile
        for _ in range(20):
            await asyncio.sleep_ms(10)
            if ctl.wifi.join_state[0] != "joining":
                break

    run(go())
    assert ctl.wifi.join_state[0] == "failed" and "module locked" in ctl.wifi.join_state[1], ctl.wifi.join_state
    assert app.settings.get("wifi.ssid") == "CafeGuest"
    assert app.board.w.status() == "connected" and app.board.w._ssid == "CafeGuest"


def test_microdot_tracebacks_go_to_the_log_not_the_console():
    # In the simulator the console is the terminal that draws the display
    # (issue 18): a failing handler's traceback belongs in the log.
    from meter import log
    from meter.web import server  # noqa: F401 (routes microdot's tracebacks)
    import microdot.microdot as md

    try:
        raise ValueError("handler broke")
    except ValueError as e:
        md.print_exception(e)
    recent = log.recent()
    assert any("web: request failed" in l and "handler broke" in l for l in recent), recent
    assert any("Traceback" in l for l in recent), recent


def test_a_join_cancelled_by_the_window_end_goes_back_to_the_stored_network():
    # On the ESP32 a join takes seconds ("connecting"); the window ends
    # meanwhile (stop() cancels the join): the device goes back to the
    # stored network, and nothing new is stored.
    from meter.board.host import HostWifi

    class SlowWifi(HostWifi):
        """Joins take long: "connecting" until the test says."""

        def status(self):
            st = HostWifi.status(self)
            return "connecting" if self._ssid == "HomeNet" else st

    app, ctl = _wifi_ctl(SlowWifi())

    async def go():
        assert ctl.wifi.join("HomeNet", "secret-key") is None
        await asyncio.sleep_ms(600)  # still connecting
        assert app.board.w._ssid == "HomeNet"
        ctl.wifi._join_task.cancel()  # what stop() does when the window ends
        await asyncio.sleep_ms(10)

    run(go())
    assert app.settings.get("wifi.ssid") == "CafeGuest"
    assert app.board.w._ssid == "CafeGuest" and app.board.w.status() == "connected"


def test_evictions_leave_no_chain_of_dead_connections():
    """Slow senders, each evicting the oldest one when the slots are full
    (meter.web.admission), then evicted in turn by the next: the heap the
    server holds must not grow with their number. An evictor that kept its
    victim (and the victim its own) held them all: under the flood of
    tests/test_web_attack.py 62 dead connections, 23 KB."""
    import gc
    import time

    from microdot import Microdot

    from meter.web import server

    app = Microdot()
    port = [0]

    async def slow_sender(opened):
        r, w = await asyncio.open_connection("127.0.0.1", port[0])
        w.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        await w.drain()
        opened.append(w)

    async def main():
        for i in range(50):  # a free port (another run may hold one)
            port[0] = 18000 + (time.ticks_ms() + 37 * i) % 2000
            srv = server.Server(app, "127.0.0.1", port[0])
            try:
                await srv.start()
                break
            except OSError:
                pass
        opened = []
        held = []
        try:
            for n in range(60):
                await slow_sender(opened)
                for _ in range(5):  # the server's turn: admit, evict
                    await asyncio.sleep_ms(2)
                while len(opened) > server.MAX_CONN + 1:  # the client side stays bounded
                    opened.pop(0).close()
                if n in (19, 59):
                    await asyncio.sleep_ms(20)
                    gc.collect()
                    held.append(gc.mem_alloc())
            evicted = srv.stats["evicted"]
        finally:
            for w in opened:
                w.close()
            await srv.close(0)
        return evicted, held

    evicted, held = run(main())
    assert evicted >= 50, evicted
    # 40 more evictions: the dead ones are not held (860 B each here, 64-bit)
    assert held[1] - held[0] < 4096, held
