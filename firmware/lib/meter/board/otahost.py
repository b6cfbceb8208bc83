"""The host board's app slots: esp32.Partition's OTA API over files.

`otadata`, `ota_0` and `ota_1` are FilePartitions (NOR rules, torn writes)
in the state directory, sized as in firmware/boards/METER_ESP32/partitions.csv. Which slot boots is
decided by meter/otadata.py with ESP-IDF's rules, the same code the
simulator's bootloader (tools/bootloader.py) runs before it starts the
firmware. The slot that is running is the one that bootloader started: it
writes its index to DIR/ota-running; without that file (the firmware
started directly) it is the slot otadata selects.
"""

from micropython import const

from meter.board.flashfile import FilePartition
from meter.otadata import STATE_NAMES, Otadata

OTADATA_SIZE = const(0x2000)
SLOT_SIZE = const(0x180000)
LABELS = ("ota_0", "ota_1")
RUNNING_FILE = "ota-running"
_TYPE_APP = const(0)
_SUBTYPE_OTA_0 = const(0x10)


class HostOta:
    def __init__(self, path, part=None, delay_us=0):
        """path: the state directory; part(label, size): the block device
        for a partition (default a FilePartition there; tests wrap it);
        delay_us: the board's --flash-delay-us (slow flash)."""
        self.path = path
        self.delay_us = delay_us
        mk = part or self._file
        self.otadata = Otadata(mk("otadata", OTADATA_SIZE))
        self.slots = [Slot(self, i, mk(label, SLOT_SIZE)) for i, label in enumerate(LABELS)]
        self.current = self._started()

    def _file(self, label, size):
        # An app slot programs in 256-byte pieces (the largest FilePartition
        # checks through its fixed scratch buffer): a 16-byte write(2) each
        # (the default) makes a 1.5 MiB update take 20 s here instead of 1 s.
        # Torn programs inside a slot need no finer model: the image is
        # checked whole by its SHA-256 (tests/mpy/test_ota.py cuts at 16 bytes).
        chunk = 16 if label == "otadata" else 256
        return FilePartition(self.path + "/" + label + ".bin", size, chunk=chunk,
                             delay_us=self.delay_us)

    def _started(self):
        try:
            with open(self.path + "/" + RUNNING_FILE) as f:
                return int(f.read().strip()) & 1
        except (OSError, ValueError):
            return self.otadata.boot_slot()

    def running(self):
        return self.slots[self.current]

    def next_update(self):
        return self.slots[self.current ^ 1]

    def running_state(self):
        """"new", "pending-verify", "valid", ... for the running image, as
        otadata has it; None when no entry points at its slot."""
        st = self.otadata.slot_state(self.current)
        return None if st == 0xFFFFFFFF else STATE_NAMES[st]

    def mark_app_valid_cancel_rollback(self):
        """Confirm the running image (esp_ota_mark_app_valid_cancel_rollback):
        only when otadata boots it; True when something was written."""
        if self.otadata.boot_slot() != self.current:
            return False
        return self.otadata.mark_valid()


class Slot:
    """One app slot: the block protocol of partition(), info(),
    get_next_update() and set_boot(), as esp32.Partition."""

    def __init__(self, ota, index, part):
        self.ota = ota
        self.index = index
        self.part = part

    def readblocks(self, block, buf, offset=0):
        self.part.readblocks(block, buf, offset)

    def writeblocks(self, block, buf, offset=None):
        self.part.writeblocks(block, buf, offset)

    def ioctl(self, op, arg=None):
        return self.part.ioctl(op, arg)

    def info(self):
        return (_TYPE_APP, _SUBTYPE_OTA_0 + self.index, 0, SLOT_SIZE, LABELS[self.index], False)

    def get_next_update(self):
        return self.ota.slots[self.index ^ 1]

    def set_boot(self):
        self.ota.otadata.set_boot(self.index)
