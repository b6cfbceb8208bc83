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

    u16 magic | u8 kind | u8 flags | u32 seq | u16 len | payload
        | [u32 tail, if flags & F_TAIL] | u32 crc32 (of all before it)

kind 0 is the format marker (seq 0, empty payload): the first record ever
written to a store, so that a store that was set up but holds no data yet is
told apart from one that never was. Data records have seq 1, 2, ...

Free space without 0xFF. On a partition with the `encrypted` flag (and flash
encryption on) reads are decrypted, so erased flash reads as noise, and a
blank partition the bootloader encrypted in place reads 0xFF although it is
programmed. So the store never takes "looks erased" as proof there:

- A block it erased itself in this boot is known erased; appends fill it.
- After a reboot it appends to the block of the newest record only if the
  rest of that block is proven untouched: on plain flash it reads all 0xFF;
  on encrypted flash its CRC32 equals `tail`, which that newest record
  carries: the CRC of the rest of its block as read (erased) just before the
  record was written. A torn or failed write after it changes those bytes.
- Otherwise the next block is erased and used: a reboot costs at most one
  erase, and only when the last write before it was interrupted or failed.

Each record is read back after programming; a mismatch fails the append.

The partition is a ring of erase blocks. Appends fill the current block; when
it is full, unproven or closed by a failed write, the next block is erased
and used. The newest record thus always sits in a block other than the one
being erased, so an interrupted erase cannot lose it, and a run of failed
writes never erases it (append raises ENOSPC instead). Old records survive
until their block comes round again: the audit log reads them all, the
counter and settings stores only the newest.
"""

import json
import struct
from binascii import crc32

# the record format: one global for the module, not one per name
from meter import logrec


class LogStore:
    """Records on `part` (a block device with the esp32.Partition protocol)."""

    def __init__(self, part):
        self.part = part
        self.nblocks = part.ioctl(4)
        self.bs = part.ioctl(5)
        self.noise = logrec.erased_noise(part)
        self._flags = logrec.F_TAIL if self.noise else 0
        self.max_payload = (self.bs - logrec.HDR_SIZE - logrec.CRC_SIZE
                            - (logrec.TAIL_SIZE if self.noise else 0))
        logrec.record_buffer(self.bs)
        self.writes = 0
        self.erases = 0
        self.load()

    # -- scanning ---------------------------------------------------------

    def load(self):
        """Scan the partition and set:

        - seq: the newest data sequence number (0: none);
        - formatted: some valid record (data or format marker) exists;
        - blank: no data record and no sign of damage (a never-used or
          freshly formatted store; an interrupted format counts as blank);
        - damaged: blocks holding something recognisably broken after their
          valid records (plain flash: anything not 0xFF; encrypted flash,
          where logrec.erased reads as noise: a record header that fails its check,
          i.e. a torn or corrupted record);
        - the append position: the newest record's block, only if its rest
          is proven erased (see the module doc)."""
        self.seq = 0
        self.damaged = 0
        self.blank = True
        self.formatted = False
        self._newest = None  # (seq, block, off, end, tail)
        self._cur = 0
        self._off = None  # append offset in _cur; None: full or not proven erased
        bs = self.bs
        noise = self.noise
        unit = bytearray(logrec.ALIGN)
        nfree = None  # plain flash: where the newest record's block is free
        free0 = None  # plain flash: block 0 wholly erased
        for b in range(self.nblocks):
            off = 0
            while off + logrec.ALIGN <= bs:
                self.part.readblocks(b, unit, off)
                rec = self._parse(b, off, unit)
                if rec is None:
                    break
                seq, kind, size, tail = rec
                self.formatted = True
                if kind != logrec.MARKER:
                    self.blank = False
                nb = self._newest
                if nb is None or seq > nb[0]:
                    self._newest = (seq, b, off, off + size, tail)
                    if kind != logrec.MARKER:
                        self.seq = seq
                off += size
            free = None
            if off + logrec.ALIGN <= bs:  # `unit` holds what stopped the scan
                if not noise and logrec.erased(unit) and self._rest_erased(b, off + logrec.ALIGN):
                    free = off
                elif self._torn_marker(b, off, unit):
                    self.damaged += 1  # an interrupted format: still blank
                elif not noise or self._record_like(unit):
                    self.damaged += 1
                    self.blank = False
            if b == 0:
                free0 = free
            nb = self._newest
            if nb is not None and nb[1] == b:
                nfree = free
        nb = self._newest
        if nb is None:
            self._off = free0
        else:
            self._cur = nb[1]
            end = nb[3]
            if not noise:
                self._off = nfree
            elif (end + logrec.ALIGN <= bs and nb[4] is not None
                  and self._tail_crc(nb[1], end) == nb[4]):
                self._off = end

    def _chunks(self, b, off):
        """Yield memoryviews over the rest of block b from off, read in
        CHUNK-byte pieces into one buffer."""
        buf = bytearray(min(logrec.CHUNK, self.bs - off))
        while off < self.bs:
            n = min(len(buf), self.bs - off)
            mv = memoryview(buf)[:n]
            self.part.readblocks(b, mv, off)
            yield mv
            off += n

    def _rest_erased(self, b, off):
        if off >= self.bs:
            return True
        for mv in self._chunks(b, off):
            if not logrec.erased(mv):
                return False
        return True

    def _tail_crc(self, b, off):
        c = 0
        if off < self.bs:
            for mv in self._chunks(b, off):
                c = crc32(mv, c)
        return c

    def _record_like(self, head):
        """A record header, valid or not (remnant of a torn/damaged record)."""
        magic, kind, flags, seq, n = struct.unpack_from(logrec.HDR, head)
        return magic == logrec.MAGIC and not flags & ~logrec.F_TAIL and n <= self.max_payload

    def _torn_marker(self, b, off, head):
        """The remains of a format marker cut while being written: the only
        write the store ever attempted in block b. On plain flash the marker
        is fixed bytes, and a cut program leaves some of its 0 bits at 1; on
        encrypted flash a cut leaves its header (or, on real hardware, noise
        that is not a record at all)."""
        if off:
            return False
        if self.noise:
            if not self._record_like(head):
                return False
            magic, kind, flags, seq, n = struct.unpack_from(logrec.HDR, head)
            return kind == logrec.MARKER and not seq and not n
        m = logrec.marker_unit()
        for i in range(logrec.ALIGN):
            if head[i] & m[i] != m[i]:
                return False
        return self._rest_erased(b, logrec.ALIGN)

    def _parse(self, b, off, head):
        """Validate the record at (b, off); head holds its first ALIGN bytes.
        Returns (seq, kind, size, tail) or None."""
        magic, kind, flags, seq, n = struct.unpack_from(logrec.HDR, head)
        if magic != logrec.MAGIC or flags & ~logrec.F_TAIL:
            return None
        size = logrec.record_size(n, flags)
        if off + size > self.bs:
            return None
        body = logrec.HDR_SIZE + n + (logrec.TAIL_SIZE if flags else 0)
        rec = bytearray(body + logrec.CRC_SIZE)
        self.part.readblocks(b, rec, off)
        crc = struct.unpack_from("<I", rec, body)[0]
        if crc32(memoryview(rec)[:body]) != crc:
            return None
        tail = struct.unpack_from("<I", rec, body - logrec.TAIL_SIZE)[0] if flags else None
        return seq, kind, size, tail

    def _payload(self, b, off):
        head = bytearray(logrec.HDR_SIZE)
        self.part.readblocks(b, head, off)
        _, kind, _, seq, n = struct.unpack(logrec.HDR, head)
        data = bytearray(n)
        self.part.readblocks(b, data, off + logrec.HDR_SIZE)
        return seq, kind, bytes(data)

    # -- reading ------------------------------------------------------------

    def latest(self):
        """(seq, kind, payload) of the newest valid data record, or None."""
        nb = self._newest
        if nb is None:
            return None
        r = self._payload(nb[1], nb[2])
        return None if r[1] == logrec.MARKER else r

    def records(self):
        """All valid data records, oldest first, as (seq, kind, payload).

        Blocks fill in ring order, so walking them from the one after the
        current block round to the current one yields records in sequence
        order without collecting and sorting them (which fragments a small
        heap)."""
        unit = bytearray(logrec.ALIGN)
        for i in range(1, self.nblocks + 1):
            b = (self._cur + i) % self.nblocks
            off = 0
            while off + logrec.ALIGN <= self.bs:
                self.part.readblocks(b, unit, off)
                rec = self._parse(b, off, unit)
                if rec is None:
                    break
                if rec[1] != logrec.MARKER:
                    yield self._payload(b, off)
                off += rec[2]

    # -- writing ------------------------------------------------------------

    def append(self, kind, payload):
        """Append one record atomically (a cut leaves the previous newest
        record in force). Returns its sequence number. The first append to a
        store without any valid record writes the format marker first."""
        if kind == logrec.MARKER:
            raise ValueError("kind 0 is the format marker")
        if self._newest is None:
            self._put(logrec.MARKER, b"")
        return self._put(kind, payload)

    def append_json(self, kind, obj):
        """append() of obj as JSON, serialised straight into the record
        buffer (no copy of the text on the heap). ValueError if it does not
        fit a record."""
        if kind == logrec.MARKER:
            raise ValueError("kind 0 is the format marker")
        if self._newest is None:
            self._put(logrec.MARKER, b"")
        return self._put(kind, None, obj)

    def format(self):
        """Mark a blank store as set up (writes the format marker), so that a
        later start tells "set up, nothing stored yet" from "never used".
        Does nothing on a store that holds a valid record or is damaged."""
        if self._newest is None and self.blank:
            self._put(logrec.MARKER, b"")
            return True
        return False

    def _put(self, kind, payload, obj=None):
        rec = logrec.record_buffer(self.bs)
        if obj is not None:
            w = logrec.Into(rec, logrec.HDR_SIZE, logrec.HDR_SIZE + self.max_payload)
            json.dump(obj, w)
            n = w.n - logrec.HDR_SIZE
        else:
            n = len(payload)
            if n > self.max_payload:
                raise ValueError("record too large")
            rec[logrec.HDR_SIZE:logrec.HDR_SIZE + n] = payload
        flags = self._flags
        size = logrec.record_size(n, flags)
        bs = self.bs
        b = self._cur
        off = self._off
        if off is None or off + size > bs:
            b = (b + 1) % self.nblocks
            nb = self._newest
            if nb is not None and b == nb[1]:
                # Only after a run of failed writes closed every other block:
                # never erase the newest record to make room.
                raise OSError(28)  # ENOSPC
            self.part.ioctl(6, b)
            self.erases += 1
            self._cur = b
            self._off = off = 0
        if kind == logrec.MARKER:
            seq = 0
        else:
            seq = self.seq + 1
            self.seq = seq  # used even if the write fails: never issued twice
        rec = memoryview(rec)[:size]
        struct.pack_into(logrec.HDR, rec, 0, logrec.MAGIC, kind, flags, seq, n)
        p = logrec.HDR_SIZE + n
        tail = None
        if flags:
            # The rest of the block after this record, still erased: the
            # reference a later start checks before appending after it.
            tail = self._tail_crc(b, off + size)
            struct.pack_into("<I", rec, p, tail)
            p += logrec.TAIL_SIZE
        struct.pack_into("<I", rec, p, crc32(rec[:p]))
        for i in range(p + logrec.CRC_SIZE, size):  # up to ALIGN: as erased
            rec[i] = 0xFF
        # Mark the slot used before programming: if the program fails half
        # way, we must not try to program the same bytes again.
        self._off = None
        self.part.writeblocks(b, rec, off)
        self.writes += 1
        if not self._programmed(b, off, rec):
            raise OSError(5)  # EIO: did not program as written; block closed
        end = off + size
        self._off = end if end + logrec.ALIGN <= bs else None
        self._newest = (seq, b, off, end, tail)
        self.formatted = True
        if kind != logrec.MARKER:
            self.blank = False
        return seq

    def _programmed(self, b, off, rec):
        """Read the record back piece by piece: True if it is as written."""
        for i in range(0, len(rec), logrec.CHUNK):
            k = min(logrec.CHUNK, len(rec) - i)
            back = memoryview(logrec.CMP)[:k]
            self.part.readblocks(b, back, off + i)
            for j in range(k):
                if back[j] != rec[i + j]:
                    return False
        return True

    def capacity(self, payload_len):
        """Records of this size the ring keeps at least (all blocks but one),
        as long as no write fails or is cut: each that does leaves the rest
        of its block unused (docs/energy.md)."""
        return (self.nblocks - 1) * (self.bs // logrec.record_size(payload_len, self._flags))
