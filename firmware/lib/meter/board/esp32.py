"""The ESP32 board: the CircuitSetup ESP32 energy meter on MicroPython's esp32 port.

Pin map (see docs/hardware.md):
- ATM90E32AS on VSPI (SPI id 2): SCK 18, MISO 19, MOSI 23, CS 5;
  SPI mode 3 (polarity 1, phase 1), 200 kHz, MSB first.
- SSD1306 128x64 OLED on I2C 0: SDA 21, SCL 22, address 0x3C.
- Buttons UP 32, DOWN 33, OK 25: active low, internal pull-ups.

Every piece of hardware is built on the first call of its accessor, so that
importing this module (and constructing the board) imports neither
`machine`, `esp32` nor `network` and allocates almost nothing.
"""

from micropython import const

from meter.board.base import BTN_DOWN, BTN_OK, BTN_UP, Board, Buttons

_SPI_ID = const(2)  # VSPI
_SPI_BAUD = const(200000)
_PIN_SCK = const(18)
_PIN_MISO = const(19)
_PIN_MOSI = const(23)
_PIN_CS = const(5)

_I2C_ID = const(0)
_I2C_FREQ = const(400000)
_PIN_SDA = const(21)
_PIN_SCL = const(22)
_OLED_ADDR = const(0x3C)

_PIN_UP = const(32)
_PIN_DOWN = const(33)
_PIN_OK = const(25)

# Seconds from 1970-01-01 to 2000-01-01, the epoch of the esp32 port's clock
# (MICROPY_EPOCH_IS_2000; the unix port counts from 1970).
_EPOCH_2000 = const(946684800)
_VALID_YEAR = const(2025)

# Data partitions the firmware uses, with the size of the file that stands
# in for one when the flashed partition table lacks it (firmware/boards/METER_ESP32/partitions.csv).
_FALLBACK_SIZES = (
    ("counters", 0x10000),
    ("config", 0x4000),
    ("audit", 0x4000),
    ("state", 0x4000),
    ("tokens", 0x4000),
)
_BLOCK = const(4096)


class Esp32Board(Board):
    name = "esp32"
    files = "/data"
    # Time sync (meter/board/esp32time.py): hourly keeps the RTC well inside
    # TOTP's 30 s steps; on failure retry after 2 s, doubling (with jitter)
    # up to 10 min. Class attributes so that tests can shorten them.
    ntp_port = 123
    ntp_timeout_ms = 2000
    ntp_resync_ms = 3600000
    ntp_retry_ms = 2000
    ntp_retry_max_ms = 600000
    ntp_wifi_poll_ms = 1000

    def __init__(self, mcu=None, clock=None, log=None):
        # mcu: the chip name as in os.uname().machine ("... with ESP32");
        # clock: a module like `time`. Both default to the real ones and
        # exist so that tests can stand in for them.
        self._mcu = mcu
        self._clock = clock
        self._epoch = None
        self.log = log or print
        self._spi = None
        self._display = None
        self._buttons = None
        self._wifi = None
        self._wdt = None
        self._wdt_timeout = None
        self._serial = None
        self._parts = {}
        self._ota = None
        # time sync state, for the log and later the UIs
        self.ntp_synced = None  # Unix time of the last good sync
        self.ntp_error = None  # why the last attempt failed (text), or None

    # --- hardware -------------------------------------------------------

    def meter_spi(self):
        link = self._spi
        if link is None:
            import machine

            Pin = machine.Pin
            cs = Pin(_PIN_CS, Pin.OUT, value=1)
            spi = machine.SPI(
                _SPI_ID,
                baudrate=_SPI_BAUD,
                polarity=1,
                phase=1,
                bits=8,
                firstbit=machine.SPI.MSB,
                sck=Pin(_PIN_SCK),
                mosi=Pin(_PIN_MOSI),
                miso=Pin(_PIN_MISO),
            )
            link = self._spi = _MeterSpi(spi, cs)
        return link

    def display(self):
        d = self._display
        if d is None:
            import machine

            from meter.board.ssd1306 import Display

            Pin = machine.Pin
            i2c = machine.I2C(_I2C_ID, scl=Pin(_PIN_SCL), sda=Pin(_PIN_SDA), freq=_I2C_FREQ)
            # Raises OSError when no panel answers; nothing is cached then,
            # so a later call tries again.
            d = self._display = Display(i2c, _OLED_ADDR)
        return d

    def buttons(self):
        b = self._buttons
        if b is None:
            import machine

            Pin = machine.Pin
            b = self._buttons = _Buttons(
                Pin(_PIN_UP, Pin.IN, Pin.PULL_UP),
                Pin(_PIN_DOWN, Pin.IN, Pin.PULL_UP),
                Pin(_PIN_OK, Pin.IN, Pin.PULL_UP),
            )
        return b

    def partition(self, label):
        p = self._parts.get(label)
        if p is not None:
            return p
        import esp32

        found = esp32.Partition.find(esp32.Partition.TYPE_DATA, label=label)
        if found:
            p = found[0]
        else:
            size = 0
            for name, n in _FALLBACK_SIZES:
                if name == label:
                    size = n
            if not size:
                import errno

                raise OSError(errno.ENOENT)
            from meter.board.flashfile import FilePartition

            _mkdir(self.files)
            path = self.files + "/" + label + ".bin"
            p = FilePartition(path, size, _BLOCK)
            # Once per label: the partition is cached below.
            self.log("board: partition table has no '%s'; using file %s" % (label, path))
        self._parts[label] = p
        return p

    def ota(self):
        o = self._ota
        if o is None:
            from meter.board.esp32ota import Esp32Ota

            o = self._ota = Esp32Ota()
        return o

    def wifi(self):
        w = self._wifi
        if w is None:
            import network

            from meter.board.esp32wifi import Esp32Wifi

            w = self._wifi = Esp32Wifi(network, self.log)
        return w

    # --- clock ----------------------------------------------------------

    def _time_module(self):
        c = self._clock
        if c is None:
            import time

            c = self._clock = time
        return c

    def _epoch_offset(self):
        off = self._epoch
        if off is None:
            # Ask the port where its epoch is instead of assuming it.
            off = self._epoch = _EPOCH_2000 if self._time_module().gmtime(0)[0] == 2000 else 0
        return off

    def time(self):
        return self._time_module().time() + self._epoch_offset()

    def time_valid(self):
        # The RTC starts at the epoch after a cold boot; time_sync sets it.
        return self._time_module().gmtime()[0] >= _VALID_YEAR

    def set_time(self, unix, us=0):
        """Set the RTC to Unix time `unix` (+ `us` microseconds)."""
        import machine

        tm = self._time_module().gmtime(unix - self._epoch_offset())
        # RTC.datetime's order differs from gmtime's: (year, month, day,
        # weekday, hours, minutes, seconds, subseconds); the esp32 port
        # ignores the weekday (it derives it) and takes microseconds.
        machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], us))

    def ntp_server(self):
        """The server the next sync asks (meter/board/esp32time.py)."""
        from meter.board.esp32time import server

        return server(self.files)

    async def time_sync(self):
        """The clock service (meter/board/esp32time.py). Never returns."""
        from meter.board.esp32time import run

        await run(self)

    def services(self):
        return [("time", self.time_sync)]

    # --- system ---------------------------------------------------------

    def watchdog(self, timeout_ms):
        w = self._wdt
        if w is None or self._wdt_timeout != timeout_ms:
            import machine

            # The ESP32 task watchdog cannot be stopped once started; a new
            # WDT object reconfigures its timeout.
            w = self._wdt = machine.WDT(timeout=timeout_ms)
            self._wdt_timeout = timeout_ms
        return w

    def reset(self):
        import machine

        machine.reset()

    def service_repl(self, seconds):
        from meter.board.esp32svc import service_repl

        service_repl(self, seconds)

    def slots(self):
        from meter.board.esp32svc import slots

        return slots()

    def serial(self):
        s = self._serial
        if s is None:
            import machine

            s = self._serial = "".join("%02x" % b for b in machine.unique_id())
        return s

    def security_state(self):
        from meter.board.esp32sec import security_state

        return security_state(self._mcu)


def _mkdir(path):
    import os

    try:
        os.mkdir(path)
    except OSError:  # exists already (EEXIST)
        pass


class _MeterSpi:
    """One chip-select framed full-duplex transfer per register access."""

    def __init__(self, spi, cs):
        self._spi = spi
        self._cs = cs

    def frame(self, tx, rx):
        cs = self._cs
        cs.value(0)
        try:
            self._spi.write_readinto(tx, rx)
        finally:
            cs.value(1)


_EACH = (BTN_UP, BTN_DOWN, BTN_OK)


class _Buttons(Buttons):
    """Levels read from the pins; edges counted by a pin interrupt on both
    edges of every button, so a pulse between two reads is seen too. Each
    button's handler (a scheduled, soft IRQ; made once here) only bumps its
    16-bit counter: no allocation, and edges() compares the counters with
    the ones it saw last, so it never races a handler (each side writes
    its own array)."""

    def __init__(self, up, down, ok):
        from array import array

        self._up = up
        self._down = down
        self._ok = ok
        self._n = array("H", (0, 0, 0))  # edges per button, modulo 2**16
        self._seen = array("H", (0, 0, 0))  # _n at the last edges()
        trig = up.IRQ_FALLING | up.IRQ_RISING
        for i, p in enumerate((up, down, ok)):
            p.irq(handler=self._counter(i), trigger=trig)

    def _counter(self, i):
        n = self._n

        def edge(pin):
            n[i] = (n[i] + 1) & 0xFFFF

        return edge

    def edges(self):
        n = self._n
        seen = self._seen
        m = 0
        for i in range(3):
            c = n[i]
            if c != seen[i]:
                seen[i] = c
                m |= _EACH[i]
        return m

    def read(self):
        m = 0
        if not self._up.value():
            m |= BTN_UP
        if not self._down.value():
            m |= BTN_DOWN
        if not self._ok.value():
            m |= BTN_OK
        return m
