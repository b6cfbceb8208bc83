"""Fake `machine` for tests (stands in for the esp32 port's module).

Everything the board does is appended to `log` as tuples, in order:
("pin", id, level) when an output changes, ("spi.xfer", tx bytes),
("i2c.writeto", addr, bytes), ("wdt", timeout), ("wdt.feed",), ("reset",),
("mem32", addr) for each register read. `_reset()` starts afresh.
"""

IS_FAKE = True

log = []
mem = {}  # address -> value that mem32[address] reads
pins = {}  # id -> the last Pin made for it
spis = []
i2cs = []
uid = b"\x24\x0a\xc4\x12\x34\x56"
i2c_absent = False  # True: no I2C device answers (writeto raises ENODEV)


def _reset():
    global i2c_absent
    i2c_absent = False
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

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.mode = mode
        self.pull = pull
        # An input with a pull-up idles high; tests set `level` directly.
        self.level = 1 if (value or pull == Pin.PULL_UP) else 0
        pins[id] = self

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
