"""Fake `machine` for tests (stands in for the esp32 port's module).

Everything the board does is appended to `log` as tuples, in order:
("pin", id, level) when an output changes, ("spi.xfer", tx bytes),
("i2c.writeto", addr, bytes), ("wdt", timeout), ("wdt.feed",), ("reset",),
("mem32", addr) for each register read, ("rtc.datetime", 8-tuple) when the
RTC is set. `_reset()` starts afresh.
"""

IS_FAKE = True

log = []
mem = {}  # address -> value that mem32[address] reads
pins = {}  # id -> the last Pin made for it
spis = []
i2cs = []
uid = b"\x24\x0a\xc4\x12\x34\x56"
i2c_absent = False  # True: no I2C device answers (writeto raises ENODEV)
# The RTC, as the esp32 port keeps it: seconds and microseconds since
# 2000-01-01 (a cold boot starts at 0). It does not advance by itself.
rtc = [0, 0]


def _reset():
    global i2c_absent
    i2c_absent = False
    rtc[0] = rtc[1] = 0
    del log[:]
    mem.clear()
    pins.clear()
    del spis[:]
    del i2cs[:]


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1
    IRQ_RISING = 1  # the esp32 port's values
    IRQ_FALLING = 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.mode = mode
        self.pull = pull
        # An input with a pull-up idles high; tests set `level` directly,
        # or drive() it to also run the interrupt handler.
        self.level = 1 if (value or pull == Pin.PULL_UP) else 0
        self.handler = None
        self.trigger = 0
        pins[id] = self

    def irq(self, handler=None, trigger=3, hard=False):
        self.handler = handler
        self.trigger = trigger

    def drive(self, level):
        """The outside world moves an input: the level, and the handler
        if its trigger matches the edge (as the port schedules it)."""
        level = 1 if level else 0
        if level == self.level:
            return
        self.level = level
        edge = Pin.IRQ_RISING if level else Pin.IRQ_FALLING
        if self.handler is not None and self.trigger & edge:
            self.handler(self)

    def value(self, v=None):
        if v is None:
            return self.level
        self.level = 1 if v else 0
        log.append(("pin", self.id, self.level))

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class SPI:
    MSB = 0
    LSB = 1

    def __init__(self, id, baudrate=1000000, *, polarity=0, phase=0, bits=8, firstbit=0,
                 sck=None, mosi=None, miso=None):
        self.id = id
        self.baudrate = baudrate
        self.polarity = polarity
        self.phase = phase
        self.bits = bits
        self.firstbit = firstbit
        self.sck = sck
        self.mosi = mosi
        self.miso = miso
        self.reply = b""  # what the peripheral clocks back, byte for byte
        spis.append(self)

    def write_readinto(self, tx, rx):
        assert len(tx) == len(rx)
        log.append(("spi.xfer", bytes(tx)))
        r = self.reply
        for i in range(len(rx)):
            rx[i] = r[i] if i < len(r) else 0


class I2C:
    def __init__(self, id, *, scl=None, sda=None, freq=400000):
        self.id = id
        self.scl = scl
        self.sda = sda
        self.freq = freq
        i2cs.append(self)

    def writeto(self, addr, buf, stop=True):
        if i2c_absent:
            raise OSError(19)  # ENODEV
        log.append(("i2c.writeto", addr, bytes(buf)))
        return len(buf)


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        log.append(("wdt", timeout))

    def feed(self):
        log.append(("wdt.feed",))


class _Mem:
    def __getitem__(self, addr):
        log.append(("mem32", addr))
        return mem.get(addr, 0)


mem32 = _Mem()


def reset():
    log.append(("reset",))


def unique_id():
    return uid


def _days_from_civil(y, m, d):
    # days since 1970-01-01 of a proleptic Gregorian date (no libc mktime:
    # that would use the local time zone)
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


class RTC:
    """machine.RTC as on the esp32 port: datetime() reads or sets (year,
    month, day, weekday, hours, minutes, seconds, microseconds). Setting
    checks every field's range (the port would silently take nonsense, so a
    wrong field order shows here) and, like the port, ignores the weekday
    for the stored time."""

    def datetime(self, dt=None):
        import time

        if dt is None:
            t = time.gmtime(rtc[0] + 946684800)
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], rtc[1])
        assert len(dt) == 8, dt
        for v in dt:
            assert isinstance(v, int), dt
        y, mo, d, wd, h, mi, s, us = dt
        assert 2000 <= y <= 2135 and 1 <= mo <= 12 and 1 <= d <= 31, dt
        assert 0 <= wd <= 6 and 0 <= h <= 23 and 0 <= mi <= 59 and 0 <= s <= 59, dt
        assert 0 <= us < 1000000, dt
        log.append(("rtc.datetime", tuple(dt)))
        days = _days_from_civil(y, mo, d) - _days_from_civil(2000, 1, 1)
        rtc[0] = days * 86400 + h * 3600 + mi * 60 + s
        rtc[1] = us
