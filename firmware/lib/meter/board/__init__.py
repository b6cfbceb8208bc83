"""The board layer: everything the firmware needs from hardware.

Nothing above this package imports `machine`, `esp32` or `network`. A board
is an object with these members (both `host` and `esp32` implement all):

name                  "host" or "esp32"
meter_spi()           SPI link to the ATM90E32AS: an object with
                      `frame(tx, rx)`, one chip-select framed 4-byte
                      full-duplex transfer (16-bit address with bit 15 = read,
                      then 16 data bits, MSB first; SPI mode 3).
display()             128x64 monochrome display: `.fb` is a
                      framebuf.FrameBuffer (MONO_VLSB, as an SSD1306),
                      `.show()` pushes it to the panel.
buttons()             a `Buttons` (below): `.read()` -> bitmask of pressed
                      buttons (UP, DOWN, OK); `.edges()` -> bitmask of the
                      buttons whose level changed since the last call (and
                      clears it), including pulses that ended between two
                      reads.
partition(label)      raw flash partition, block-device protocol of
                      esp32.Partition: readblocks(block, buf, offset),
                      writeblocks(block, buf, offset) programs without erase,
                      ioctl(4) block count, ioctl(5) block size,
                      ioctl(6, block) erases one block. Erased bytes read 0xFF;
                      a byte may be programmed once between erases (encrypted
                      flash cannot rewrite in place).
ota()                 the A/B app slots for firmware updates (meter/ota.py),
                      esp32.Partition's OTA API: `.running()` and
                      `.next_update()` -> a slot (block protocol as
                      partition(), `.info()` with subtype 0x10 + slot,
                      `.get_next_update()`, `.set_boot()`),
                      `.mark_app_valid_cancel_rollback()` -> True if done,
                      `.running_state()` -> "new", "pending-verify",
                      "valid", ... (meter/otadata.py) or None if unknown.
wifi()                Wi-Fi station: `.status()` -> "connected" / "connecting"
                      / "not configured" / "failed", `.ip()` -> str or None,
                      `.connect(ssid, key)` starts joining (never blocks),
                      `.disconnect()` forgets the credentials.
time()                Unix time in seconds (1970 epoch on every port: the
                      ESP32's 2000 epoch is converted here).
time_valid()          True once the clock is known to be right (SNTP or host).
watchdog(timeout_ms)  object with `.feed()`.
reset()               hard reset (does not return).
service_repl(seconds) service mode: the app has stopped; open the REPL for
                      `seconds` (ESP32: Ctrl-C on, reset timer; host: exit
                      code 4 for tools/sim.py). meter/service.py.
slots()               dict: running and next app slot, otadata state (status).
serial()              the device's serial number (str).
security_state()      dict: secure_boot, flash_encryption (bool or None when
                      the hardware cannot tell).
files                 directory for small files (certificates, keys).
services()            list of (name, coroutine function) the app runs under
                      its supervisor: the simulator's control socket and
                      keys; the ESP32's clock sync (SNTP, meter/sntp.py).

Boards subclass meter/board/base.py's Board (and their Wi-Fi its Wifi),
which gives the optional members their defaults: http_bind, api_bind,
commands (then add_command() exists), forget_ota(); on wifi(): scan(), and can_ap, which
says whether ap_start/ap_stop/ap_active/ap_ip (the setup access point)
exist. Ask them plainly; never probe a board with hasattr().
"""

# The shared names live in a leaf module that the boards import (no circle
# through this package's loader); re-exported for the firmware above.
from meter.board.base import BTN_DOWN, BTN_OK, BTN_UP, Buttons  # noqa: F401


def load(name=None, argv=None):
    """Build the board for this port: `esp32` on the device, `host` elsewhere."""
    import sys

    if name is None:
        name = "esp32" if sys.platform == "esp32" else "host"
    if name == "esp32":
        from meter.board.esp32 import Esp32Board

        return Esp32Board()
    from meter.board.host import HostBoard

    return HostBoard(argv if argv is not None else getattr(sys, "argv", []))
