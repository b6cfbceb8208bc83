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

from meter.board import BTN_DOWN, BTN_OK, BTN_UP, Buttons

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

# Time sync (meter/sntp.py): the server, unless `ntp.server` in `files`
# names another (a name or, to avoid a blocking DNS look-up, an IPv4
# address).
NTP_SERVER = "pool.ntp.org"
RESOLVE_AFTER = 3  # failed syncs in a row before the name is looked up again (blocking)
NTP_FILE = "ntp.server"

# ESP32 (classic) eFuse read registers, DR_REG_EFUSE_BASE = 0x3FF5A000
# (ESP-IDF components/soc/esp32/include/soc/soc.h, later
# register/soc/reg_base.h). Fields per ESP-IDF
# components/soc/esp32/register/soc/efuse_reg.h and
# components/hal/esp32/include/hal/efuse_ll.h:
# - EFUSE_BLK0_RDATA0_REG (base + 0x000): EFUSE_RD_FLASH_CRYPT_CNT, bits
#   [26:20] (7 bits; bit 27 is UART_DOWNLOAD_DIS on ESP32 v3). Flash
#   encryption is on when an odd number of these bits is set
#   (esp_flash_encryption_enabled(), esp_flash_encrypt.h).
# - EFUSE_BLK0_RDATA6_REG (base + 0x018): EFUSE_RD_ABS_DONE_0, bit 4, secure
#   boot v1 (efuse_ll_get_secure_boot_v1_en); EFUSE_RD_ABS_DONE_1, bit 5,
#   secure boot v2 (efuse_ll_get_secure_boot_v2_en, ESP32 v3 silicon).
# Other ESP32 family chips have different eFuse maps: see _is_classic_esp32.
_EFUSE_BLK0_RDATA0 = const(0x3FF5A000)
_EFUSE_BLK0_RDATA6 = const(0x3FF5A018)
_FLASH_CRYPT_CNT_SHIFT = const(20)
_FLASH_CRYPT_CNT_MASK = const(0x7F)
_ABS_DONE_0 = const(0x10)
_ABS_DONE_1 = const(0x20)

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
_SUBTYPE_DATA_OTA = const(0x00)  # otadata
_SUBTYPE_OTA_0 = const(0x10)


class Esp32Board:
    name = "esp32"
    files = "/data"
    # the Web Admin's address (meter/web): every interface, port 80
    http_bind = ("0.0.0.0", 80)
    # Time sync: hourly keeps the RTC well inside TOTP's 30 s steps; on
    # failure retry after 2 s, doubling (with jitter) up to 10 min, so that a
    # fleet does not hammer a server that is down or says RATE. Class
    # attributes so that tests can shorten them.
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
        self._ntp_addr = None  # (server, resolved address): DNS once, not hourly

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
            o = self._ota = _Ota()
        return o

    def forget_ota(self):
        """Drop the app-slot objects until ota() is asked again (the start-up
        check is their only user in normal running)."""
        self._ota = None

    def wifi(self):
        w = self._wifi
        if w is None:
            import network

            w = self._wifi = _Wifi(network, self.log)
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
        """The server to ask: the first line of `files`/ntp.server, else
        NTP_SERVER. Read at every sync, so a new file needs no restart."""
        try:
            with open(self.files + "/" + NTP_FILE) as f:
                s = f.readline(80).strip()
        except (OSError, UnicodeError):
            s = ""
        return s or NTP_SERVER

    async def time_sync(self):
        """The clock service: SNTP once Wi-Fi is connected, then every
        ntp_resync_ms; on failure retry with growing, jittered delays.
        Never returns."""
        import asyncio

        from meter import sntp
        from meter.backoff import jitter

        retry = self.ntp_retry_ms
        fails = 0
        while True:
            if self.wifi().status() != "connected":
                await asyncio.sleep_ms(self.ntp_wifi_poll_ms)
                continue
            server = self.ntp_server()
            try:
                na = self._ntp_addr
                if na is None or na[0] != server:
                    # Blocks the loop for a name (see meter/sntp.py): once,
                    # then again only after RESOLVE_AFTER failures in a row.
                    na = self._ntp_addr = (server, sntp.address(server, self.ntp_port))
                sec, us = await sntp.query(server, self.ntp_port, self.ntp_timeout_ms, na[1])
            except sntp.SntpError as e:
                fails += 1
                if fails % RESOLVE_AFTER == 0:
                    self._ntp_addr = None  # the pool may have moved: resolve again
                self.ntp_error = str(e)
                ms = jitter(retry)
                self.log("time: %s; retry in %d s" % (e, (ms + 999) // 1000))
                await asyncio.sleep_ms(ms)
                retry = min(retry * 2, self.ntp_retry_max_ms)
                continue
            was_valid = self.time_valid()
            step = sec - self.time()
            self.set_time(sec, us)
            self.ntp_synced = sec
            self.ntp_error = None
            retry = self.ntp_retry_ms
            fails = 0
            if not was_valid:
                self.log("time: set from %s" % server)
            elif not -2 <= step <= 2:
                self.log("time: corrected by %d s from %s" % (step, server))
            await asyncio.sleep_ms(self.ntp_resync_ms)

    def services(self):
        """(name, coroutine function) pairs the app runs under its supervisor."""
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
        if not _is_classic_esp32(self._mcu or _machine_name()):
            # Another chip of the family: the registers below mean something
            # else there, so say we cannot tell.
            return {"secure_boot": None, "flash_encryption": None}
        import machine

        mem = machine.mem32
        return decode_efuses(mem[_EFUSE_BLK0_RDATA0], mem[_EFUSE_BLK0_RDATA6])


def decode_efuses(rdata0, rdata6):
    """Security state from EFUSE_BLK0_RDATA0_REG and _RDATA6_REG (ESP32)."""
    cnt = (rdata0 >> _FLASH_CRYPT_CNT_SHIFT) & _FLASH_CRYPT_CNT_MASK
    ones = 0
    while cnt:
        ones += cnt & 1
        cnt >>= 1
    return {
        "secure_boot": bool(rdata6 & (_ABS_DONE_0 | _ABS_DONE_1)),
        "flash_encryption": bool(ones & 1),
    }


def _machine_name():
    import sys

    m = getattr(sys.implementation, "_machine", None)
    if m is None:
        import os

        m = os.uname().machine
    return m


def _is_classic_esp32(machine_name):
    """True for the original ESP32 (not S2/S3/C2/C3/C5/C6/C61/H2/P4).

    MicroPython names the machine "<board> with <MCU>", MCU being "ESP32" on
    the original chip and e.g. "ESP32S3" or "ESP32C3" on the others. Custom
    boards may spell it "ESP32-D0WD", "ESP32-PICO-D4" or "ESP32-S3".
    """
    mcu = machine_name.rsplit(" with ", 1)[-1].upper().replace("-", "").replace("_", "")
    if not mcu.startswith("ESP32"):
        return False
    rest = mcu[5:]
    # A family letter followed by a digit (S3, C6, H2, P4) is another chip;
    # D0WD, PICO, WROVER... are packages and modules of the original one.
    return not (len(rest) >= 2 and rest[0] in "SCHP" and rest[1] in "0123456789")


def _mkdir(path):
    import os

    try:
        os.mkdir(path)
    except OSError:  # exists already (EEXIST)
        pass


class _Ota:
    """The app slots: esp32.Partition itself (ESP-IDF writes otadata and
    checks the image in set_boot()); the state of the running image is read
    from otadata with meter/otadata.py, which MicroPython does not expose."""

    def running(self):
        import esp32

        return esp32.Partition(esp32.Partition.RUNNING)

    def next_update(self):
        return self.running().get_next_update()

    def mark_app_valid_cancel_rollback(self):
        import esp32

        try:
            esp32.Partition.mark_app_valid_cancel_rollback()
            return True
        except OSError:  # -261: this build has no rollback
            return False

    @property
    def otadata(self):
        """otadata through meter/otadata.py (None without one): what the
        firmware reports about a rollback (meter/otastatus.py)."""
        import esp32

        from meter.otadata import Otadata

        found = esp32.Partition.find(esp32.Partition.TYPE_DATA, _SUBTYPE_DATA_OTA)
        return Otadata(found[0]) if found else None

    def running_state(self):
        import esp32

        from meter.otadata import STATE_NAMES, Otadata

        found = esp32.Partition.find(esp32.Partition.TYPE_DATA, _SUBTYPE_DATA_OTA)
        slot = self.running().info()[1] - _SUBTYPE_OTA_0
        if not found or not 0 <= slot < 2:  # no otadata, or a factory app
            return None
        st = Otadata(found[0]).slot_state(slot)
        return None if st == 0xFFFFFFFF else STATE_NAMES[st]


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


class _Wifi:
    """The Wi-Fi station, never blocking: attempts are started, not awaited.

    Beyond the board interface (`status()`, `ip()`): `connect(ssid, key)`
    stores the credentials and starts an attempt; `connect()` starts another
    with the stored ones (after "failed"); `disconnect()` forgets them.
    For the Wi-Fi setup (meter/web): `scan()` lists the networks in range
    (blocks for about 2 s: the port's scan is synchronous), and
    `ap_start(ssid, key)` / `ap_stop()` / `ap_active()` / `ap_ip()` run a
    WPA2-PSK access point on the AP interface beside the station.
    The driver retries `reconnects` times after a drop or a failure and then
    gives up, so that a wrong password shows as "failed" and not as
    "connecting" for ever; the caller decides when to try again.
    """

    def __init__(self, network, log=print, reconnects=5):
        self._net = network
        self._log = log
        self._wlan = network.WLAN(network.STA_IF)
        self._reconnects = reconnects
        self._ssid = None
        self._key = None
        self._error = False

    def connect(self, ssid=None, key=None):
        if ssid is not None:
            self._ssid = ssid
            self._key = key
        if not self._ssid:
            return False
        w = self._wlan
        net = self._net
        try:
            if not w.active():
                w.active(True)
            try:
                w.config(reconnects=self._reconnects)
            except (ValueError, TypeError, OSError):
                pass  # firmware without the option: retries for ever
            if w.status() in (net.STAT_CONNECTING, net.STAT_GOT_IP):
                w.disconnect()  # connect() while connecting raises on ESP32
            w.connect(self._ssid, self._key)
        except OSError as e:
            self._error = True
            self._log("wifi: could not start a connection: %r" % (e,))
            return False
        self._error = False
        return True

    def disconnect(self):
        self._ssid = self._key = None
        self._error = False
        w = self._wlan
        try:
            if w.active():
                w.disconnect()
        except OSError:
            pass

    def status(self):
        w = self._wlan
        net = self._net
        s = w.status()
        if s == net.STAT_GOT_IP:
            return "connected"
        if not self._ssid:
            return "not configured"
        if self._error:
            return "failed"
        if s == net.STAT_CONNECTING:
            return "connecting"
        # STAT_IDLE (nothing under way, e.g. the interface was switched off)
        # or a driver error code (no AP, wrong password, ...) after the
        # retries ran out.
        return "failed"

    def ip(self):
        w = self._wlan
        if not w.isconnected():
            return None
        try:
            addr = w.ipconfig("addr4")[0]
        except (AttributeError, ValueError, TypeError):
            addr = w.ifconfig()[0]  # firmware before network.ipconfig
        if not addr or addr == "0.0.0.0":
            return None
        return addr

    def scan(self):
        w = self._wlan
        if not w.active():
            w.active(True)
        out = []
        for e in w.scan():  # (ssid, bssid, channel, RSSI, security, hidden)
            try:
                ssid = e[0].decode()
            except UnicodeError:
                continue
            if ssid and not e[5]:
                out.append({"ssid": ssid, "rssi": e[3], "auth": _AUTH.get(e[4], "secured")})
        return out

    def ap_start(self, ssid, key):
        if not 8 <= len(key) <= 63:
            raise ValueError("WPA2 needs a key of 8 to 63 characters")
        net = self._net
        ap = self._ap = net.WLAN(net.AP_IF)
        ap.active(True)
        wpa2 = getattr(net, "AUTH_WPA2_PSK", 3)
        try:
            ap.config(ssid=ssid, key=key, security=wpa2)
        except (ValueError, TypeError, OSError):  # firmware before the new names
            ap.config(essid=ssid, password=key, authmode=wpa2)
        self._log("wifi: setup access point %s on" % ssid)

    def ap_stop(self):
        ap = getattr(self, "_ap", None)
        if ap is not None:
            try:
                ap.active(False)
            except OSError:
                pass
            self._ap = None

    def ap_active(self):
        ap = getattr(self, "_ap", None)
        return ap is not None and ap.active()

    def ap_ip(self):
        ap = getattr(self, "_ap", None)
        if ap is None:
            return None
        try:
            return ap.ipconfig("addr4")[0]
        except (AttributeError, ValueError, TypeError):
            return ap.ifconfig()[0]


# network.WLAN.scan() security codes (esp32 port: wifi_auth_mode_t)
_AUTH = {0: "open", 1: "WEP", 2: "WPA", 3: "WPA2", 4: "WPA/WPA2", 5: "WPA2-Enterprise",
         6: "WPA3", 7: "WPA2/WPA3"}
