"""Minimal SSD1306 driver: a 128x64 monochrome OLED on I2C.

`Display.fb` is a framebuf.FrameBuffer (MONO_VLSB: one byte is a column of
8 pixels, LSB on top, which is the SSD1306's own GDDRAM layout), and
`show()` copies it to the panel. Nothing is allocated after construction:

- the frame lives in one bytearray whose first byte is the I2C control byte
  0x40 (Co=0, D/C#=1: "all following bytes are display data"), and the
  FrameBuffer works on a memoryview of the rest, so `show()` sends the buffer
  as it is, in one I2C write, without copying;
- commands go out through small preallocated buffers that start with the
  control byte 0x00 (Co=0, D/C#=0: "all following bytes are commands").

Command bytes are from the SSD1306 datasheet (Solomon Systech, rev 1.5,
section 9 "Command Table"). The panel is driven from its internal charge
pump, as on the usual 0.96" modules.
"""

import framebuf
from micropython import const

WIDTH = const(128)
HEIGHT = const(64)
_PAGES = const(8)  # HEIGHT / 8 rows per page

_SET_CONTRAST = const(0x81)
_DISPLAY_OFF = const(0xAE)
_DISPLAY_ON = const(0xAF)
_NORMAL = const(0xA6)
_INVERSE = const(0xA7)

# Power-up configuration, sent as one command stream with the panel off.
_INIT = (
    b"\x00"  # control byte: command stream
    b"\xae"  # display off
    b"\xd5\x80"  # clock divide ratio / oscillator frequency: reset value
    b"\xa8\x3f"  # multiplex ratio: 64 rows
    b"\xd3\x00"  # display offset 0
    b"\x40"  # display start line 0
    b"\x8d\x14"  # charge pump on (internal VCC)
    b"\x20\x00"  # memory addressing mode: horizontal
    b"\xa1"  # segment remap: column 127 is SEG0 (x grows to the right)
    b"\xc8"  # COM scan from COM63 down (y grows downwards)
    b"\xda\x12"  # COM pins: alternative configuration (128x64 panels)
    b"\x81\xcf"  # contrast
    b"\xd9\xf1"  # pre-charge period (internal VCC)
    b"\xdb\x40"  # VCOMH deselect level
    b"\xa4"  # display follows RAM content
    b"\xa6"  # normal (not inverted)
    b"\x2e"  # scrolling off
)


class Display:
    width = WIDTH
    height = HEIGHT

    def __init__(self, i2c, addr=0x3C):
        self._i2c = i2c
        self._addr = addr
        buf = bytearray(1 + WIDTH * _PAGES)
        buf[0] = 0x40  # control byte: data stream
        self._buf = buf
        self.fb = framebuf.FrameBuffer(memoryview(buf)[1:], WIDTH, HEIGHT, framebuf.MONO_VLSB)
        # Column range 0..127, page range 0..7: the whole GDDRAM.
        self._window = bytes((0x00, 0x21, 0, WIDTH - 1, 0x22, 0, _PAGES - 1))
        self._cmd1 = bytearray(2)  # control byte 0x00 + one command byte
        self._cmd2 = bytearray(3)  # control byte 0x00 + command + argument
        self.init()

    def init(self):
        """(Re)configure the panel, clear it and switch it on."""
        self._i2c.writeto(self._addr, _INIT)
        self.fb.fill(0)
        self.show()
        self.power(True)

    def show(self):
        """Push the frame buffer to the panel (two I2C writes)."""
        i2c = self._i2c
        i2c.writeto(self._addr, self._window)
        i2c.writeto(self._addr, self._buf)

    def power(self, on):
        self._command(_DISPLAY_ON if on else _DISPLAY_OFF)

    def contrast(self, value):
        value = 0 if value < 0 else 255 if value > 255 else value
        c = self._cmd2
        c[1] = _SET_CONTRAST
        c[2] = value
        self._i2c.writeto(self._addr, c)

    def invert(self, on):
        self._command(_INVERSE if on else _NORMAL)

    def _command(self, byte):
        c = self._cmd1
        c[1] = byte
        self._i2c.writeto(self._addr, c)
