"""ESP-IDF otadata: which app slot boots, and the rollback rule.

The `otadata` partition holds two 4 KiB sectors; each starts with one
esp_ota_select_entry_t (ESP-IDF components/bootloader_support,
esp_flash_partitions.h), little-endian, 32 bytes:

    0  ota_seq      uint32   boot counter, 1-based; 0xFFFFFFFF = erased
    4  seq_label    20 bytes unused (left erased, 0xFF)
   24  ota_state    uint32   NEW / PENDING_VERIFY / VALID / ... below
   28  crc          uint32   CRC-32 of the 4 ota_seq bytes only
                             (esp_rom_crc32_le(UINT32_MAX, &ota_seq, 4),
                             = binascii.crc32(seq_le, 0xFFFFFFFF))

An entry counts when its seq is not erased, its CRC matches and its state
is neither INVALID nor ABORTED (bootloader_common_ota_select_valid). The
valid entry with the highest seq wins and boots slot (seq - 1) % slots; with
none, slot 0 boots (no factory app here). Choosing a slot writes the
*other* sector (esp_rewrite_ota_data), so a cut while writing it leaves the
current entry, and the current firmware, in charge.

The bootloader's rollback rule (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE, on in
every MicroPython build): at each boot every PENDING_VERIFY entry becomes
ABORTED (the image was started once and never confirmed), then the chosen
entry, if NEW, becomes PENDING_VERIFY. The app confirms itself with
mark_valid() (esp_ota_mark_app_valid_cancel_rollback).

Pure logic over a block device (esp32.Partition protocol), shared by the
host board's OTA emulation (meter/board/otahost.py) and the simulator's
bootloader (tools/bootloader.py, CPython): keep it to what both run.
"""

import binascii
import struct

from micropython import const

SECTOR = const(4096)
ENTRY = const(32)
ERASED = const(0xFFFFFFFF)

NEW = const(0)
PENDING_VERIFY = const(1)
VALID = const(2)
INVALID = const(3)
ABORTED = const(4)
UNDEFINED = const(0xFFFFFFFF)
STATE_NAMES = {NEW: "new", PENDING_VERIFY: "pending-verify", VALID: "valid",
               INVALID: "invalid", ABORTED: "aborted", UNDEFINED: "undefined"}

_FMT = "<I20sII"


def crc(seq):
    return binascii.crc32(struct.pack("<I", seq), 0xFFFFFFFF) & 0xFFFFFFFF


def pack(seq, state):
    """One entry, exactly as ESP-IDF writes it (label left erased)."""
    return struct.pack(_FMT, seq, b"\xff" * 20, state, crc(seq))


class Otadata:
    def __init__(self, part, slots=2):
        self.part = part  # readblocks / writeblocks / ioctl(6) erase
        self.slots = slots

    def entries(self):
        """[(seq, state, crc_ok)] for sectors 0 and 1."""
        out = []
        buf = bytearray(ENTRY)
        for i in (0, 1):
            self.part.readblocks(i, buf, 0)
            seq, _, state, c = struct.unpack(_FMT, buf)
            out.append((seq, state, c == crc(seq)))
        return out

    @staticmethod
    def _valid(e):
        seq, state, ok = e
        return ok and seq != ERASED and state != INVALID and state != ABORTED

    def active(self, ents=None):
        """Index (0/1) of the entry that decides the boot, or -1."""
        ents = ents or self.entries()
        best = -1
        for i in (0, 1):
            if self._valid(ents[i]) and (best < 0 or ents[i][0] > ents[best][0]):
                best = i
        return best

    def boot_slot(self, ents=None):
        """The app slot the bootloader would start now (0 when none is set)."""
        ents = ents or self.entries()
        a = self.active(ents)
        return 0 if a < 0 else (ents[a][0] - 1) % self.slots

    def state(self):
        """State of the entry in charge (NEW, VALID, ...), UNDEFINED if none."""
        ents = self.entries()
        a = self.active(ents)
        return UNDEFINED if a < 0 else ents[a][1]

    def slot_state(self, slot):
        """State of the newest entry (CRC good) that boots `slot`: what the
        image in that slot is to the bootloader; UNDEFINED if none does."""
        best = None
        for seq, state, ok in self.entries():
            if ok and seq != ERASED and (seq - 1) % self.slots == slot:
                if best is None or seq > best[0]:
                    best = (seq, state)
        return UNDEFINED if best is None else best[1]

    def _write(self, i, seq, state):
        # Erase then program the one sector, as rewrite_ota_seq does.
        self.part.ioctl(6, i)
        self.part.writeblocks(i, pack(seq, state), 0)

    def set_boot(self, slot, state=NEW):
        """Make `slot` boot next (esp_ota_set_boot_partition after its image
        check): a new seq in the sector that is not in charge, or, if that
        slot already boots, only its state in place."""
        ents = self.entries()
        a = self.active(ents)
        if a < 0:
            self._write(0, slot + 1, state)
            return
        seq = ents[a][0]
        if (seq - 1) % self.slots == slot:
            self._write(a, seq, state)
            return
        new = (slot + 1) % self.slots
        while new < seq + 1:  # smallest seq above the current one for slot
            new += self.slots
        self._write(a ^ 1, new, state)

    def mark_valid(self):
        """Confirm the running image: PENDING_VERIFY (or NEW) becomes VALID
        in place. Returns False when nothing needed writing."""
        ents = self.entries()
        a = self.active(ents)
        if a < 0 or ents[a][1] == VALID:
            return False
        if ents[a][1] in (PENDING_VERIFY, NEW):
            self._write(a, ents[a][0], VALID)
            return True
        return False

    def boot(self):
        """What the bootloader does at reset: abort unconfirmed images, arm
        the chosen NEW one; returns the slot to start."""
        ents = self.entries()
        for i in (0, 1):
            if ents[i][1] == PENDING_VERIFY:  # whatever its CRC, as ESP-IDF
                self._write(i, ents[i][0], ABORTED)
        ents = self.entries()
        a = self.active(ents)
        if a >= 0 and ents[a][1] == NEW:
            self._write(a, ents[a][0], PENDING_VERIFY)
        return self.boot_slot()
