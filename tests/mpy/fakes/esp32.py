"""Fake `esp32` for tests: only Partition, backed by RAM.

Tests put fake partitions in `Partition.table`; `Partition.find` records
each query in `finds` and returns the matching ones, like the real one.

OTA: `Partition(Partition.RUNNING)` is the app partition labelled
`Partition.running` (its data shared); `get_next_update()`, `set_boot()`
and `mark_app_valid_cancel_rollback()` act on the otadata partition in the
table (type data, subtype 0) with ESP-IDF's rules (meter/otadata.py);
`rollback = False` makes the last raise OSError(-261) as builds without
rollback do.
"""

IS_FAKE = True

finds = []


def _reset():
    del finds[:]
    del Partition.table[:]
    Partition.running = "ota_0"
    Partition.rollback = True


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1

    table = []
    running = "ota_0"
    rollback = True

    def __init__(self, label, type=1, subtype=0x40, size=0x4000, block_size=4096):
        src = None
        if label == Partition.RUNNING:  # the same flash as the table's entry
            src = Partition._label(Partition.running)
            label, type, subtype, size = src.label, src.type, src.subtype, src.size
        self.label = label
        self.type = type
        self.subtype = subtype
        self.size = size
        self.block_size = block_size
        self.data = src.data if src else bytearray(b"\xff" * size)

    @staticmethod
    def _label(label):
        return [p for p in Partition.table if p.label == label][0]

    @staticmethod
    def _otadata():
        from meter.otadata import Otadata

        return Otadata([p for p in Partition.table if p.type == 1 and p.subtype == 0][0])

    def get_next_update(self):
        apps = [p for p in Partition.table if p.type == 0]
        return [p for p in apps if p.subtype == (self.subtype ^ 1)][0]

    def set_boot(self):
        Partition._otadata().set_boot(self.subtype - 0x10)

    @classmethod
    def mark_app_valid_cancel_rollback(cls):
        if not cls.rollback:
            raise OSError(-261)
        Partition._otadata().mark_valid()

    @staticmethod
    def find(type=0, subtype=0xFF, label=None, block_size=4096):
        finds.append((type, subtype, label))
        return [p for p in Partition.table
                if p.type == type and (subtype == 0xFF or p.subtype == subtype)
                and (label is None or p.label == label)]

    def info(self):
        return (self.type, self.subtype, 0, self.size, self.label, False)

    def readblocks(self, block, buf, offset=0):
        a = block * self.block_size + offset
        buf[:] = self.data[a:a + len(buf)]

    def writeblocks(self, block, buf, offset=None):
        a = block * self.block_size + (offset or 0)
        for i in range(len(buf)):
            self.data[a + i] &= buf[i]

    def ioctl(self, op, arg=None):
        if op == 4:
            return self.size // self.block_size
        if op == 5:
            return self.block_size
        if op == 6:
            a = arg * self.block_size
            for i in range(a, a + self.block_size):
                self.data[i] = 0xFF
            return 0
        return 0
