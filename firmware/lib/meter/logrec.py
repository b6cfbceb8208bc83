"""The on-flash record format of meter/logstore.py (its docstring has the
why), and the buffers every store shares:

    u16 magic | u8 kind | u8 flags | u32 seq | u16 len | payload
        | [u32 tail, if flags & F_TAIL] | u32 crc32 (of all before it)

padded with 0xFF to a multiple of ALIGN bytes. kind 0 is the format marker.
"""

import io
import struct
from binascii import crc32

from micropython import const

MAGIC = const(0x5A17)
ALIGN = const(32)
HDR = "<HBBIH"
HDR_SIZE = const(10)  # struct.calcsize(HDR)
CRC_SIZE = const(4)
TAIL_SIZE = const(4)
F_TAIL = const(1)  # flags: a u32 tail fingerprint precedes the CRC
MARKER = const(0)  # kind of the format marker
CHUNK = const(256)


# One record buffer for every store, allocated with the first store (at
# start-up, while the heap is one free block) and big enough for a whole
# block. An append never yields, so stores never share it at once; a
# settings or token record (up to a few KB) is therefore built, written and
# read back without one multi-KB allocation on a fragmented heap.
_rec = None
CMP = bytearray(CHUNK)  # a read-back piece, to compare with what was written


def record_buffer(n):
    global _rec
    if _rec is None or len(_rec) < n:
        _rec = bytearray(n)
    return _rec


class Into(io.IOBase):
    """A stream json.dump() writes into the record buffer, from `at` up to
    `end` (ValueError past it: the record would not fit a block)."""

    def __init__(self, buf, at, end):
        self.buf, self.n, self.end = buf, at, end

    def write(self, data):
        k = len(data)
        if self.n + k > self.end:
            raise ValueError("record too large")
        self.buf[self.n:self.n + k] = data
        self.n += k
        return k


def record_size(n, flags=0):
    size = HDR_SIZE + n + (TAIL_SIZE if flags & F_TAIL else 0) + CRC_SIZE
    return (size + ALIGN - 1) // ALIGN * ALIGN


def erased_noise(part):
    """Whether erased bytes of `part` may not read as 0xFF: an encrypted
    esp32.Partition (info()[5]; ESP-IDF sets it only while flash encryption
    is on) or a FilePartition(erased_noise=True)."""
    try:
        return bool(part.info()[5])
    except Exception:
        return False


def marker_unit():
    """The format marker as plain flash holds it (one ALIGN unit)."""
    u = bytearray(b"\xff" * ALIGN)
    struct.pack_into(HDR, u, 0, MAGIC, MARKER, 0, 0, 0)
    struct.pack_into("<I", u, HDR_SIZE, crc32(memoryview(u)[:HDR_SIZE]))
    return u


def erased(buf):
    for x in buf:
        if x != 0xFF:
            return False
    return True
