"""Fake `esp32` for tests: only Partition, backed by RAM.

Tests put fake partitions in `Partition.table`; `Partition.find` records
each query in `finds` and returns the matching ones, like the real one.
"""

IS_FAKE = True

finds = []


def _reset():
    del finds[:]
    del Partition.table[:]


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = 0
    TYPE_DATA = 1

    table = []

    def __init__(self, label, type=1, subtype=0x40, size=0x4000, block_size=4096):
        self.label = label
        self.type = type
        self.subtype = subtype
        self.size = size
        self.block_size = block_size
        self.data = bytearray(b"\xff" * size)

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
