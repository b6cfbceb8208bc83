"""The esp32 board against fake machine/esp32/network modules (tests/mpy/fakes).

On this unix port a directory at the front of sys.path shadows the built-in
`machine` module (checked: `import machine` then loads fakes/machine.py), so
the fakes go on sys.path first. `_fake()` checks that it really got the fake
and, if a future port lets the built-in win, registers the fake in
sys.modules under the plain name instead. The board imports its hardware
modules inside its methods, so every test gets the current fake.
"""

import sys

_HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
_FAKES = _HERE + "/fakes"
if _FAKES not in sys.path:
    sys.path.insert(0, _FAKES)

import asyncio  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import micropython  # noqa: E402
from upytest import raises, tmpdir  # noqa: E402

from meter.board import BTN_DOWN, BTN_OK, BTN_UP  # noqa: E402

_HW = ("machine", "esp32", "network")


def _fake(name):
    """The fake module `name`, reset, exactly as the board will import it."""
    m = __import__(name)
    if not getattr(m, "IS_FAKE", False):
        m = __import__("fakes." + name, None, None, [name])
        sys.modules[name] = m
    m._reset()
    return m


def _board(**kw):
    from meter.board.esp32 import Esp32Board

    return Esp32Board(**kw)


EFUSE0 = 0x3FF5A000  # EFUSE_BLK0_RDATA0_REG
EFUSE6 = 0x3FF5A018  # EFUSE_BLK0_RDATA6_REG
CLASSIC = "Generic ESP32 module with ESP32"


class _Clock2000:
    """A `time` module whose epoch is 2000-01-01, like the esp32 port's."""

    def __init__(self, now):
        self.now = now  # seconds since 2000

    def time(self):
        return self.now

    def gmtime(self, t=None):
        if t is None:
            t = self.now
        return time.gmtime(t + 946684800)  # the unix port counts from 1970


class _NullPin:
    def value(self, v=None):
        return 1


class _NullBus:
    def write_readinto(self, tx, rx):
        pass

    def writeto(self, addr, buf, stop=True):
        return len(buf)


# --- import cost ----------------------------------------------------------


def test_import_and_construction_touch_no_hardware():
    mods = _HW + ("meter.board.esp32", "meter.board.ssd1306", "meter.board.flashfile")
    for n in mods:
        sys.modules.pop(n, None)
    from meter.board.esp32 import Esp32Board

    b = Esp32Board()
    assert [n for n in mods if n in sys.modules] == ["meter.board.esp32"]
    b.meter_spi()
    assert "machine" in sys.modules
    assert "esp32" not in sys.modules and "network" not in sys.modules
    assert "meter.board.ssd1306" not in sys.modules


def test_has_every_board_member():
    b = _board()
    for n in ("meter_spi", "display", "buttons", "partition", "wifi", "time", "time_valid",
              "watchdog", "reset", "serial", "security_state", "services", "set_time"):
        assert callable(getattr(b, n)), n
    assert b.name == "esp32"
    assert b.files == "/data"


def test_optional_members_have_their_defaults_on_both_boards():
    # asked plainly by the app, the Web Admin and the API: never probed (issue 17)
    from meter.board.base import Board, Wifi
    from meter.board.host import HostBoard

    _fake("network")
    boards = (_board(), HostBoard(["x", "--state", tmpdir(), "--headless"]))
    for b in boards:
        assert isinstance(b, Board) and isinstance(b.wifi(), Wifi), b.name
        assert b.wifi().can_ap, b.name  # both radios run the setup access point
        assert len(b.http_bind) == 2 and len(b.api_bind) == 2, b.name
    esp, host = boards
    assert esp.api_bind == ("0.0.0.0", 8081) and esp.http_bind == ("0.0.0.0", 80)
    assert not esp.commands and host.commands  # only the simulator has a control socket
    bare = Wifi()
    assert not bare.can_ap and bare.scan() == []


def test_load_picks_esp32_board_by_name():
    import meter.board

    assert meter.board.load("esp32").name == "esp32"


# --- meter SPI --------------------------------------------------------------


def test_meter_spi_is_vspi_mode3_200khz():
    m = _fake("machine")
    link = _board().meter_spi()
    assert len(m.spis) == 1
    spi = m.spis[0]
    assert spi.id == 2  # VSPI
    assert spi.baudrate == 200000
    assert (spi.polarity, spi.phase) == (1, 1)  # mode 3
    assert spi.bits == 8 and spi.firstbit == m.SPI.MSB
    assert (spi.sck.id, spi.miso.id, spi.mosi.id) == (18, 19, 23)
    cs = m.pins[5]
    assert cs.mode == m.Pin.OUT and cs.level == 1  # deselected from the start
    assert link is not None


def test_frame_is_cs_low_one_transfer_cs_high():
    m = _fake("machine")
    b = _board()
    link = b.meter_spi()
    spi = m.spis[0]
    spi.reply = b"\x00\x00\x12\x34"
    del m.log[:]
    tx = bytearray(b"\x80\x01\x00\x00")
    rx = bytearray(4)
    link.frame(tx, rx)
    assert m.log == [("pin", 5, 0), ("spi.xfer", b"\x80\x01\x00\x00"), ("pin", 5, 1)]
    assert rx == b"\x00\x00\x12\x34"
    assert b.meter_spi() is link and len(m.spis) == 1


def test_frame_releases_cs_when_transfer_fails():
    m = _fake("machine")
    link = _board().meter_spi()

    def broken(tx, rx):
        raise OSError(5)

    m.spis[0].write_readinto = broken
    raises(OSError, link.frame, bytearray(4), bytearray(4))
    assert m.pins[5].level == 1


def test_frame_does_not_allocate():
    _fake("machine")
    link = _board().meter_spi()
    link._spi = _NullBus()
    link._cs = _NullPin()
    tx = bytearray(4)
    rx = bytearray(4)
    link.frame(tx, rx)
    micropython.heap_lock()
    try:
        for _ in range(10):
            link.frame(tx, rx)
    finally:
        micropython.heap_unlock()


# --- display ----------------------------------------------------------------


def test_display_init_and_show_bytes():
    m = _fake("machine")
    d = _board().display()
    i2c = m.i2cs[0]
    assert i2c.id == 0 and i2c.freq == 400000
    assert (i2c.sda.id, i2c.scl.id) == (21, 22)
    writes = [e for e in m.log if e[0] == "i2c.writeto"]
    assert all(e[1] == 0x3C for e in writes)
    init = writes[0][2]
    assert init[0] == 0x00 and init[1] == 0xAE  # command stream, display off first
    for seq in (b"\xa8\x3f", b"\x8d\x14", b"\x20\x00", b"\xda\x12"):
        assert seq in init, seq
    assert writes[-1][2] == b"\x00\xaf"  # switched on last, after a clear frame
    assert writes[-2][2] == b"\x40" + bytes(1024)

    del m.log[:]
    d.fb.fill(0)
    d.fb.pixel(0, 0, 1)
    d.fb.pixel(127, 63, 1)
    d.show()
    assert len(m.log) == 2
    assert m.log[0] == ("i2c.writeto", 0x3C, bytes((0x00, 0x21, 0, 127, 0x22, 0, 7)))
    data = m.log[1][2]
    assert len(data) == 1025 and data[0] == 0x40
    assert data[1] == 0x01  # column 0 of page 0, bit 0 = top row
    assert data[1024] == 0x80  # column 127 of page 7, bit 7 = bottom row
    assert sum(data[2:1024]) == 0


def test_display_power_contrast_invert():
    m = _fake("machine")
    d = _board().display()
    del m.log[:]
    d.power(False)
    d.power(True)
    d.contrast(0x20)
    d.contrast(300)
    d.contrast(-1)
    d.invert(True)
    d.invert(False)
    assert [e[2] for e in m.log] == [
        b"\x00\xae", b"\x00\xaf", b"\x00\x81\x20", b"\x00\x81\xff", b"\x00\x81\x00",
        b"\x00\xa7", b"\x00\xa6",
    ]


def test_display_show_does_not_allocate():
    from meter.board.ssd1306 import Display

    d = Display(_NullBus(), 0x3C)
    micropython.heap_lock()
    try:
        d.show()
        d.power(True)
        d.contrast(10)
    finally:
        micropython.heap_unlock()


def test_display_missing_panel_raises_and_is_retried():
    m = _fake("machine")
    b = _board()
    m.i2c_absent = True
    try:
        raises(OSError, b.display)
    finally:
        m.i2c_absent = False
    d = b.display()
    assert b.display() is d


# --- buttons ----------------------------------------------------------------


def test_buttons_active_low_bitmask():
    m = _fake("machine")
    btn = _board().buttons()
    up, down, ok = m.pins[32], m.pins[33], m.pins[25]
    for p in (up, down, ok):
        assert p.mode == m.Pin.IN and p.pull == m.Pin.PULL_UP
    assert btn.read() == 0
    up.level = 0
    assert btn.read() == BTN_UP
    ok.level = 0
    assert btn.read() == BTN_UP | BTN_OK
    up.level = 1
    down.level = 0
    assert btn.read() == BTN_DOWN | BTN_OK
    up.level = 0
    assert btn.read() == BTN_UP | BTN_DOWN | BTN_OK


def test_buttons_report_edges_between_reads():
    # A pulse that ends before the next read is invisible to read(); the
    # pin interrupt on both edges of every button records it.
    m = _fake("machine")
    btn = _board().buttons()
    up, down, ok = m.pins[32], m.pins[33], m.pins[25]
    for p in (up, down, ok):
        assert p.handler is not None and p.trigger == m.Pin.IRQ_FALLING | m.Pin.IRQ_RISING
    assert btn.edges() == 0
    up.drive(0)  # a 5 ms glitch between two reads
    up.drive(1)
    assert btn.read() == 0 and btn.edges() == BTN_UP and btn.edges() == 0
    ok.drive(0)
    down.drive(0)
    assert btn.read() == BTN_DOWN | BTN_OK and btn.edges() == BTN_DOWN | BTN_OK
    btn._n[2] = btn._seen[2] = 0xFFFF  # the counters wrap without growing
    ok.drive(1)
    assert btn._n[2] == 0 and btn.edges() == BTN_OK
    # the handlers, read() and edges() run in an interrupt or every 20 ms:
    # they must not allocate
    handlers = (up.handler, down.handler, ok.handler)
    micropython.heap_lock()
    try:
        for _ in range(10):
            for h in handlers:
                h(up)
            btn.read()
            btn.edges()
    finally:
        micropython.heap_unlock()
    assert btn.edges() == 0


# --- clock ------------------------------------------------------------------


def test_time_converts_2000_epoch_to_unix():
    b = _board(clock=_Clock2000(800000000))
    assert b.time() == 1746684800
    assert time.gmtime(b.time())[:6] == (2025, 5, 8, 6, 13, 20)
    b = _board(clock=_Clock2000(0))
    assert b.time() == 946684800


def test_time_on_1970_clock_is_unchanged():
    b = _board()  # the unix port's own clock counts from 1970
    assert abs(b.time() - time.time()) <= 2


def test_time_valid_from_2025():
    assert not _board(clock=_Clock2000(0)).time_valid()  # cold boot: 2000-01-01
    last_2024 = 1735689599 - 946684800  # 2024-12-31 23:59:59 UTC
    assert not _board(clock=_Clock2000(last_2024)).time_valid()
    assert _board(clock=_Clock2000(last_2024 + 1)).time_valid()
    assert _board().time_valid()  # the host clock is past 2025


class _RtcClock:
    """A 2000-epoch `time` module that reads the fake machine.RTC, as the
    esp32 port's time.time() reads the clock RTC.datetime() sets."""

    def __init__(self, m):
        self.m = m

    def time(self):
        return self.m.rtc[0]

    def gmtime(self, t=None):
        return time.gmtime((self.m.rtc[0] if t is None else t) + 946684800)


def test_set_time_rtc_fields_in_rtc_order():
    m = _fake("machine")
    b = _board(clock=_RtcClock(m))
    assert not b.time_valid()  # cold boot
    b.set_time(1795322355, 250000)  # 2026-11-22 04:39:15.25 UTC, a Sunday
    # (year, month, day, weekday Mon=0, hours, minutes, seconds, microseconds)
    assert m.log == [("rtc.datetime", (2026, 11, 22, 6, 4, 39, 15, 250000))]
    assert m.rtc == [1795322355 - 946684800, 250000]
    assert b.time() == 1795322355
    assert b.time_valid()


def test_set_time_on_1970_clock():
    m = _fake("machine")
    b = _board(clock=time)  # a port counting from 1970: nothing to convert
    b.set_time(1767322355)  # 2026-01-02 02:52:35, a Friday
    assert m.log == [("rtc.datetime", (2026, 1, 2, 4, 2, 52, 35, 0))]


# --- time sync service ----------------------------------------------------------


def test_services_is_the_time_sync():
    s = _board().services()
    assert [n for n, fn in s] == ["time"]
    assert callable(s[0][1])


def test_ntp_server_default_and_file():
    b = _board()
    b.files = tmpdir()
    assert b.ntp_server() == "pool.ntp.org"
    with open(b.files + "/ntp.server", "w") as f:
        f.write("  192.168.1.1 \nsecond line ignored\n")
    assert b.ntp_server() == "192.168.1.1"
    with open(b.files + "/ntp.server", "w") as f:
        f.write("\n")
    assert b.ntp_server() == "pool.ntp.org"


def test_jitter_is_half_fixed_half_random():
    from meter.backoff import jitter as _jitter

    v = [_jitter(1000) for _ in range(200)]
    assert min(v) >= 500 and max(v) <= 1000
    assert max(v) - min(v) > 200  # spread, not a constant
    assert _jitter(600000) <= 600000


class _Sync:
    """The board's time service against a test SNTP server, Wi-Fi faked."""

    def __init__(self, mode):
        import sntpserver
        from meter import sntp

        self.m = _fake("machine")
        self.n = _fake("network")
        self.logs = []
        b = self.b = _board(clock=_RtcClock(self.m), log=self.logs.append)
        b.files = tmpdir()
        with open(b.files + "/ntp.server", "w") as f:
            f.write("127.0.0.1\n")
        self.srv = sntpserver.Server(mode=mode)
        b.ntp_port = self.srv.port
        b.ntp_timeout_ms = 150
        b.ntp_wifi_poll_ms = 20
        b.wifi()
        self.wlan = self.n.wlans[0]
        # count name resolutions (the one blocking step)
        self.resolved = 0
        orig = sntp.address

        def counting(server, port=123):
            self.resolved += 1
            return orig(server, port)

        self._orig = orig
        self._sntp = sntp
        sntp.address = counting

    def wifi_up(self):
        self.wlan.state = self.n.STAT_GOT_IP

    def requests(self):
        return [t for t, _ in self.srv.requests]

    def run(self, script):
        async def go():
            self.srv.start()
            name, fn = self.b.services()[0]
            t = asyncio.create_task(fn())
            try:
                await script(self)
            finally:
                t.cancel()
                self.srv.close()

        try:
            asyncio.run(go())
        finally:
            self._sntp.address = self._orig


async def _until(cond, ms):
    end = time.ticks_add(time.ticks_ms(), ms)
    while not cond():
        if time.ticks_diff(end, time.ticks_ms()) <= 0:
            return False
        await asyncio.sleep_ms(5)
    return True


def test_time_sync_waits_for_wifi_then_sets_rtc_and_resyncs():
    import sntpserver

    s = _Sync(sntpserver.GOOD)
    s.b.ntp_resync_ms = 300

    async def script(s):
        await asyncio.sleep_ms(200)
        assert s.requests() == []  # no Wi-Fi: nothing sent
        assert not s.b.time_valid()
        s.wifi_up()
        assert await _until(s.b.time_valid, 500)
        # the RTC holds the server's time (microseconds too)
        rtc_us = s.m.rtc[0] * 1000000 + s.m.rtc[1] + 946684800 * 1000000
        assert abs(rtc_us - s.srv.now_us()) < 80000, (rtc_us, s.srv.now_us())
        assert s.m.log[-1][0] == "rtc.datetime"
        assert s.b.ntp_synced == s.b.time() and s.b.ntp_error is None
        assert s.logs == ["time: set from 127.0.0.1"], s.logs
        s.m.rtc[0] -= 10  # the clock falls behind
        assert await _until(lambda: len(s.requests()) == 2, 600)
        r = s.requests()
        gap = time.ticks_diff(r[1], r[0])
        assert 300 <= gap < 500, gap  # re-synced after ntp_resync_ms, not before
        assert await _until(lambda: len(s.m.log) == 2, 200)
        rtc_us = s.m.rtc[0] * 1000000 + s.m.rtc[1] + 946684800 * 1000000
        assert abs(rtc_us - s.srv.now_us()) < 80000  # put right
        assert s.logs[1] in ("time: corrected by 10 s from 127.0.0.1",
                             "time: corrected by 11 s from 127.0.0.1"), s.logs
        assert await _until(lambda: len(s.m.log) == 3, 600)
        assert len(s.logs) == 2  # a re-sync without a step is not logged
        assert s.resolved == 1  # resolved once, reused

    s.run(script)


def test_time_sync_backs_off_on_failure_then_recovers():
    import sntpserver

    s = _Sync(sntpserver.LI3)
    b = s.b
    b.ntp_retry_ms = 80
    b.ntp_retry_max_ms = 320
    b.ntp_resync_ms = 250
    s.wifi_up()

    async def script(s):
        assert await _until(lambda: len(s.requests()) == 5, 2000)
        assert not b.time_valid()
        assert s.m.log == []  # the RTC was never touched
        assert b.ntp_error == "127.0.0.1: not synchronised (leap indicator 3)"
        assert "retry in" in s.logs[0] and "leap indicator 3" in s.logs[0], s.logs
        r = s.requests()
        gaps = [time.ticks_diff(b_, a) for a, b_ in zip(r, r[1:])]
        # equal jitter: half of 80, 160, 320, 320 (the cap) fixed, half random
        for gap, full in zip(gaps, (80, 160, 320, 320)):
            assert full // 2 <= gap <= full + 100, (gaps, full)
        assert s.resolved == 2  # looked up again after 3 failures in a row (RESOLVE_AFTER)

        s.srv.mode = sntpserver.GOOD
        assert await _until(b.time_valid, 800)
        assert b.ntp_error is None
        # after a success the back-off starts over from ntp_retry_ms
        s.srv.mode = sntpserver.LI3
        n = len(s.requests())
        assert await _until(lambda: len(s.requests()) == n + 2, 1000)
        r = s.requests()
        gap = time.ticks_diff(r[-1], r[-2])
        assert 40 <= gap <= 150, gap  # not 160.. as the next step would be
        assert b.time_valid()  # a failed re-sync leaves the clock alone

    s.run(script)


def test_time_sync_survives_silent_server():
    import sntpserver

    s = _Sync(sntpserver.SILENT)
    s.b.ntp_retry_ms = 60
    s.wifi_up()

    async def script(s):
        assert await _until(lambda: len(s.requests()) == 2, 1000)
        assert s.b.ntp_error == "127.0.0.1: no reply within 150 ms"
        assert not s.b.time_valid()

    s.run(script)


# --- partitions -------------------------------------------------------------


def test_partition_found_by_label():
    e = _fake("esp32")
    counters = e.Partition("counters", size=0x10000)
    e.Partition.table.append(e.Partition("config"))
    e.Partition.table.append(counters)
    logs = []
    b = _board(log=logs.append)
    assert b.partition("counters") is counters
    assert e.finds == [(e.Partition.TYPE_DATA, 0xFF, "counters")]
    assert b.partition("counters") is counters
    assert len(e.finds) == 1  # cached
    assert logs == []


def test_partition_falls_back_to_file_once():
    from meter.board.flashfile import FilePartition

    e = _fake("esp32")
    logs = []
    b = _board(log=logs.append)
    b.files = tmpdir() + "/data"  # not there yet: the board makes it
    parts = []
    for label, blocks in (("counters", 16), ("config", 4), ("audit", 4)):
        p = b.partition(label)
        parts.append(p)
        assert isinstance(p, FilePartition)
        assert p.ioctl(4) == blocks and p.ioctl(5) == 4096
        assert os.stat(b.files + "/" + label + ".bin")[6] == blocks * 4096
    assert len(logs) == 3 and "counters" in logs[0]
    assert b.partition("counters") is parts[0]
    assert len(logs) == 3  # logged once per label
    # NOR rules hold on the fallback too.
    parts[1].writeblocks(0, b"\x00" * 16, 0)
    raises(OSError, parts[1].writeblocks, 0, b"\x01" * 16, 0)
    for p in parts:
        p.close()


def test_partition_unknown_label():
    _fake("esp32")
    b = _board(log=lambda s: None)
    b.files = tmpdir()
    raises(OSError, b.partition, "nope")
    assert os.listdir(b.files) == []


# --- security ---------------------------------------------------------------


def test_security_state_unset():
    m = _fake("machine")
    s = _board(mcu=CLASSIC).security_state()
    assert s == {"secure_boot": False, "flash_encryption": False}
    assert ("mem32", EFUSE0) in m.log and ("mem32", EFUSE6) in m.log


def _state(rdata0, rdata6):
    m = _fake("machine")
    m.mem[EFUSE0] = rdata0
    m.mem[EFUSE6] = rdata6
    return _board(mcu=CLASSIC).security_state()


def test_security_state_flash_crypt_cnt_parity():
    enc = lambda r0: _state(r0, 0)["flash_encryption"]  # noqa: E731
    assert enc(1 << 20)  # first burn: on
    assert not enc(3 << 20)  # second burn: off again
    assert enc(7 << 20)
    assert enc(0x7F << 20)  # all 7 bits: on for good
    # Neighbours are not part of the field: WR_DIS/RD_DIS (15:0, 19:16),
    # UART_DOWNLOAD_DIS (27), reserved (31:28).
    assert not enc(0xF80FFFFF)
    assert not enc((1 << 27) | (3 << 20))
    assert enc(-(1 << 31) | (1 << 20))  # a signed 32-bit read works too


def test_security_state_secure_boot_bits():
    sb = lambda r6: _state(0, r6)["secure_boot"]  # noqa: E731
    assert sb(0x10)  # ABS_DONE_0: secure boot v1
    assert sb(0x20)  # ABS_DONE_1: secure boot v2
    assert sb(0x30)
    assert not sb(0xFFFFFFCF)  # every other bit of the register
    assert _state(1 << 20, 0x20) == {"secure_boot": True, "flash_encryption": True}


def test_security_state_classic_module_names():
    for name in ("x with ESP32-D0WD", "x with ESP32-PICO-D4", "x with ESP32-WROVER-B"):
        m = _fake("machine")
        m.mem[EFUSE6] = 0x10
        assert _board(mcu=name).security_state()["secure_boot"] is True, name


def test_security_state_unknown_on_other_chips():
    for name in ("Generic ESP32S3 module with ESP32S3", "ESP32C3 module with ESP32C3",
                 "x with ESP32-S3", "x with ESP32-C6", "x with ESP32P4", "x with ESP32H2",
                 "linux [GCC 14.2.1] version"):
        m = _fake("machine")
        s = _board(mcu=name).security_state()
        assert s == {"secure_boot": None, "flash_encryption": None}, name
        assert m.log == [], name  # no register read on a foreign chip
    m = _fake("machine")
    assert _board().security_state()["secure_boot"] is None  # this unix port
    assert m.log == []


# --- Wi-Fi ------------------------------------------------------------------


def test_wifi_is_lazy_and_starts_unconfigured():
    n = _fake("network")
    b = _board()
    assert n.wlans == []
    w = b.wifi()
    assert len(n.wlans) == 1 and n.wlans[0].interface_id == n.STA_IF
    assert b.wifi() is w
    assert w.status() == "not configured"
    assert w.ip() is None
    assert ("connect",) not in [e[:1] for e in n.log]


def test_wifi_connect_starts_and_reports():
    n = _fake("network")
    w = _board().wifi()
    wl = n.wlans[0]
    assert w.connect("home", "secret") is True
    assert ("active", True) in n.log
    assert n.log[-1] == ("connect", "home", "secret")
    assert wl.cfg.get("reconnects") == 5
    assert w.status() == "connecting"  # started, not waited for
    assert w.ip() is None
    wl.state = n.STAT_GOT_IP
    wl.addr = "192.168.1.20"
    assert w.status() == "connected"
    assert w.ip() == "192.168.1.20"
    wl.state = n.STAT_WRONG_PASSWORD
    assert w.status() == "failed"
    assert w.ip() is None
    wl.state = n.STAT_IDLE
    assert w.status() == "failed"


def test_wifi_retry_and_disconnect():
    n = _fake("network")
    logs = []
    w = _board(log=logs.append).wifi()
    wl = n.wlans[0]
    w.connect("home", "secret")
    del n.log[:]
    w.connect()  # while connecting: stop that attempt, then start again
    assert n.log[-2:] == [("disconnect",), ("connect", "home", "secret")]
    wl.connect_raises = OSError(-1)
    assert w.connect() is False
    assert w.status() == "failed"
    assert len(logs) == 1 and "wifi" in logs[0]
    wl.connect_raises = None
    assert w.connect() is True
    assert w.status() == "connecting"
    w.disconnect()
    assert w.status() == "not configured"
    assert w.connect() is False  # no stored credentials any more


# --- watchdog, reset, serial ------------------------------------------------


def test_watchdog_reset_serial():
    m = _fake("machine")
    b = _board()
    w = b.watchdog(8000)
    assert m.log == [("wdt", 8000)]
    w.feed()
    assert m.log[-1] == ("wdt.feed",)
    assert b.watchdog(8000) is w
    assert b.watchdog(4000) is not w and m.log[-1] == ("wdt", 4000)
    b.reset()
    assert m.log[-1] == ("reset",)
    assert b.serial() == "240ac4123456"
