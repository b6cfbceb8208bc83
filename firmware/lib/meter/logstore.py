"""Append-only record log on a raw flash partition.

The one persistence mechanism of the firmware: energy counters, settings and
the audit log are each a LogStore on their own partition.

Why this shape: encrypted flash cannot rewrite in place and a power cut can
land anywhere, so records are only ever appended to erased space, each with a
sequence number and a CRC32. On load the newest record whose CRC checks out
wins; a torn write therefore loads as the previous good record. Nothing is
ever patched in place (no "valid/obsolete" flag bits).

On-flash record (little endian), padded with 0xFF to a multiple of ALIGN
bytes (32: the ESP32's encrypted-write granularity):

    u16 magic | u8 kind | u8 0 | u32 seq | u16 len | payload | u32 crc32

The partition is a ring of erase blocks. Appends fill the block holding the
newest record; when it is full (or damaged by a torn write, which "closes"
it), the next block is erased and used. The newest record thus always sits in
a block other than the one being erased, so an interrupted erase cannot lose
it. Old records survive until their block comes round again: the audit log
reads them all, the counter and settings stores only the newest.
"""

import struct
from binascii import crc32

MAGIC = 0x5A17
ALIGN = 32
_HDR = "<HBBIH"
HDR_SIZE = 10  # struct.calcsize(_HDR)
CRC_SIZE = 4


def record_size(n):
    size = HDR_SIZE + n + CRC_SIZE
    return (size + ALIGN - 1) // ALIGN * ALIGN


class LogStore:
    """Records on `part` (a block device with the esp32.Partition protocol)."""

    def __init__(self, part):
        self.part = part
        self.nblocks = part.ioctl(4)
        self.bs = part.ioctl(5)
        self.max_payload = self.bs - HDR_SIZE - CRC_SIZE
        self.writes = 0
        self.erases = 0
        self.load()

    # -- scanning ---------------------------------------------------------

    def load(self):
        """Scan the partition. Sets seq, the append position and `damaged`
        (count of blocks holding something that is not a valid record: torn
        writes, interrupted erases, corruption). `blank` means never written."""
        self.seq = 0
        self.damaged = 0
        self.blank = True
        self._newest = None  # (seq, block, off)
        self._free = [None] * self.nblocks  # append offset per block, None = closed
        unit = bytearray(ALIGN)
        for b in range(self.nblocks):
            off = 0
            while off + ALIGN <= self.bs:
                self.part.readblocks(b, unit, off)
                if _erased(unit):
                    if self._rest_erased(b, off):
                        self._free[b] = off
                    else:
                        self.damaged += 1
                        self.blank = False
                    break
                self.blank = False
                rec = self._parse(b, off, unit)
                if rec is None:
                    self.damaged += 1
                    break
                seq, size = rec
                if seq >= self.seq:
                    self.seq = seq
                    self._newest = (seq, b, off)
                off += size
        if self._newest is None:
            self._cur = 0
        else:
            self._cur = self._newest[1]

    def _rest_erased(self, b, off):
        buf = bytearray(256)
        while off < self.bs:
            n = min(256, self.bs - off)
            mv = memoryview(buf)[:n]
            self.part.readblocks(b, mv, off)
            if not _erased(mv):
                return False
            off += n
        return True

    def _parse(self, b, off, head):
        """Validate the record at (b, off); head holds its first ALIGN bytes.
        Returns (seq, size) or None."""
        magic, kind, _, seq, n = struct.unpack_from(_HDR, head)
        if magic != MAGIC or n > self.bs - off - HDR_SIZE - CRC_SIZE:
            return None
        size = record_size(n)
        if off + size > self.bs:
            return None
        rec = bytearray(HDR_SIZE + n + CRC_SIZE)
        self.part.readblocks(b, rec, off)
        crc = struct.unpack_from("<I", rec, HDR_SIZE + n)[0]
        if crc32(memoryview(rec)[:HDR_SIZE + n]) != crc:
            return None
        return seq, size

    def _payload(self, b, off):
        head = bytearray(HDR_SIZE)
        self.part.readblocks(b, head, off)
        _, kind, _, seq, n = struct.unpack(_HDR, head)
        data = bytearray(n)
        self.part.readblocks(b, data, off + HDR_SIZE)
        return seq, kind, bytes(data)

    # -- reading ------------------------------------------------------------

    def latest(self):
        """(seq, kind, payload) of the newest valid record, or None."""
        if self._newest is None:
            return None
        return self._payload(self._newest[1], self._newest[2])

    def records(self):
        """All valid records, oldest first, as (seq, kind, payload).

        Blocks fill in ring order, so walking them from the one after the
        current block round to the current one yields records in sequence
        order without collecting and sorting them (which fragments a small
        heap)."""
        unit = bytearray(ALIGN)
        for i in range(1, self.nblocks + 1):
            b = (self._cur + i) % self.nblocks
            off = 0
            while off + ALIGN <= self.bs:
                self.part.readblocks(b, unit, off)
                if _erased(unit):
                    break
                rec = self._parse(b, off, unit)
                if rec is None:
                    break
                yield self._payload(b, off)
                off += rec[1]

    # -- writing ------------------------------------------------------------

    def append(self, kind, payload):
        """Append one record atomically (a cut leaves the previous newest
        record in force). Returns its sequence number."""
        n = len(payload)
        if n > self.max_payload:
            raise ValueError("record too large")
        size = record_size(n)
        b = self._cur
        off = self._free[b]
        if off is None or off + size > self.bs:
            b = (b + 1) % self.nblocks
            if self._newest is not None and b == self._newest[1]:
                # Only after a run of failed writes closed every other block:
                # never erase the newest record to make room.
                raise OSError(28)  # ENOSPC
            self.part.ioctl(6, b)
            self.erases += 1
            off = 0
            self._cur = b
        seq = self.seq + 1
        self.seq = seq  # used even if the write fails: never issued twice
        rec = bytearray(b"\xff" * size)
        struct.pack_into(_HDR, rec, 0, MAGIC, kind, 0, seq, n)
        rec[HDR_SIZE:HDR_SIZE + n] = payload
        struct.pack_into("<I", rec, HDR_SIZE + n, crc32(memoryview(rec)[:HDR_SIZE + n]))
        # Mark the slot used before programming: if the program fails half
        # way, we must not try to program the same bytes again.
        self._free[b] = None
        self.part.writeblocks(b, rec, off)
        self.writes += 1
        self._free[b] = off + size if off + size < self.bs else None
        self._newest = (seq, b, off)
        self.blank = False
        return seq

    def capacity(self, payload_len):
        """Records of this size the ring keeps at least (all blocks but one)."""
        return (self.nblocks - 1) * (self.bs // record_size(payload_len))


def _erased(buf):
    for x in buf:
        if x != 0xFF:
            return False
    return True
