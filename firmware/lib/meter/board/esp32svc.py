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


def otadata(entries):
    """(ota_seq, state) of the newest valid otadata entry, or (None, None).

    entries: the two 32-byte esp_ota_select_entry_t copies. An entry counts
    when its CRC matches, as the bootloader checks it: ESP-IDF's
    bootloader_common_ota_select_crc() is esp_rom_crc32_le(UINT32_MAX,
    &ota_seq, 4), i.e. zlib's CRC-32 of the 4 sequence bytes with 0xFFFFFFFF
    as the starting value. [unverified on hardware]"""
    from binascii import crc32

    seq = state = None
    for e in entries:
        s, _, st, crc = struct.unpack(_ENTRY, e)
        if s == 0xFFFFFFFF or crc32(e[:4], 0xFFFFFFFF) != crc:
            continue  # erased (never written) or torn
        if seq is None or s > seq:
            seq, state = s, _STATES.get(st, "0x%x" % st)
    return seq, state


def slots():
    """{"running", "next", "otadata", "ota_seq"}: the running app slot, the
    one an update would go to, and the state of the newer valid otadata
    entry (None when there is none: erased otadata boots the first slot)."""
    import esp32

    P = esp32.Partition
    run = P(P.RUNNING)
    try:
        nxt = run.get_next_update().info()[4]
    except OSError:
        nxt = None
    seq = state = None
    found = P.find(P.TYPE_DATA, label="otadata")
    if found:
        entries = []
        for block in (0, 1):
            buf = bytearray(32)
            found[0].readblocks(block, buf)
            entries.append(bytes(buf))
        seq, state = otadata(entries)
    return {"running": run.info()[4], "next": nxt, "otadata": state, "ota_seq": seq}
