"""ESP32 service-mode helpers, loaded only in service mode: opening the
REPL for the service period, and the OTA slot state for `status`.

[unverified on hardware] Written against MicroPython's esp32 docs
(`esp32.Partition`, `machine.Timer`, `micropython.kbd_intr`) and ESP-IDF's
otadata layout; nothing here has run on a real ESP32 yet.
"""

import struct

from micropython import const

_MS = const(1000)
# ESP-IDF esp_ota_select_entry_t: u32 ota_seq, u8 seq_label[20], u32
# ota_state, u32 crc; two copies, one per 4 KiB sector of `otadata`.
_ENTRY = "<I20sII"
_STATES = {0: "new", 1: "pending-verify", 2: "valid", 3: "invalid", 4: "aborted",
           0xFFFFFFFF: "undefined"}


def service_repl(board, seconds):
    """The app has stopped: Ctrl-C on again (mpremote's raw REPL needs it),
    a one-shot timer resets the device when the period ends, the display
    says so. main.py then returns and MicroPython opens the REPL."""
    import machine
    import micropython

    from meter import service

    service.begin(seconds, board)
    micropython.kbd_intr(3)
    machine.Timer(0).init(mode=machine.Timer.ONE_SHOT, period=seconds * _MS,
                          callback=lambda t: machine.reset())
    try:
        fb = board.display().fb
        fb.fill(0)
        for row, text in enumerate(("SERVICE MODE", "", "Metering off", "USB REPL open",
                                    "%d min" % (seconds // 60), "", "", "Restart = end")):
            fb.text(text, 0, row * 8, 1)
        board.display().show()
    except OSError:  # no panel: service mode works without one
        pass


def slots():
    """{"running", "next", "otadata", "ota_seq"}: the running app slot, the
    one an update would go to, and the state of the newer otadata entry
    (None when there is no otadata partition, e.g. a single-app table)."""
    import esp32

    P = esp32.Partition
    run = P(P.RUNNING)
    try:
        nxt = run.get_next_update().info()[4]
    except OSError:
        nxt = None
    state = seq = None
    found = P.find(P.TYPE_DATA, label="otadata")
    if found:
        buf = bytearray(32)
        for block in (0, 1):
            found[0].readblocks(block, buf)
            s, _, st, _ = struct.unpack(_ENTRY, buf)
            # An erased entry reads 0xFFFFFFFF; the CRC is not checked here
            # [unverified: ESP-IDF's crc32_le seed], so this is informative.
            if s != 0xFFFFFFFF and (seq is None or s > seq):
                seq, state = s, _STATES.get(st, "0x%x" % st)
    return {"running": run.info()[4], "next": nxt, "otadata": state, "ota_seq": seq}
