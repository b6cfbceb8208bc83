"""A flash partition kept in a file, with NOR-flash rules.

The host board uses it for every partition, and the esp32 board falls back
to it when the partition table lacks a label. It behaves like
esp32.Partition's block protocol, and enforces what real (possibly
encrypted) flash allows, so that a store which works here works there:

- erased bytes read 0xFF; ioctl(6, block) erases one block;
- programming touches only erased bytes: writing over programmed data
  raises OSError(EIO) instead of silently "working" as a file would;
- programs land in `chunk`-byte pieces, each its own write(2), so a process
  killed mid-write leaves a torn record, as a power cut does.

A file shorter than the partition (truncated) reads as erased past its end.

erased_noise=True models a partition with the `encrypted` flag on a device
with flash encryption on: the file holds the raw flash (erased = 0xFF), and
every byte is read and written through a keystream derived from its address
(as the ESP32 decrypts and encrypts with a key tweaked by address). So erased
bytes read as deterministic noise, data reads back as written (0xFF too, and
that 0xFF is programmed), and the never-program-twice rule holds on the raw
bytes. info()[5] says so, as esp32.Partition.info() does.
"""

import errno
import os

from micropython import const

_BLK_COUNT = const(4)  # the ioctl() operations, as esp32.Partition's
_BLK_SIZE = const(5)
_BLK_ERASE = const(6)
_PIECE = const(256)
# Programs are checked and written through this (two chunks: new bytes,
# old bytes), and erased flash is written out from it; one for every
# partition, as nothing here yields mid-write.
_SCRATCH = bytearray(2 * _PIECE)


def _erased():
    """_SCRATCH's first piece as erased flash (0xFF): no buffer of its own."""
    e = memoryview(_SCRATCH)[:_PIECE]
    for i in range(_PIECE):
        e[i] = 0xFF
    return e


class FilePartition:
    def __init__(self, path, size, block_size=4096, chunk=16, delay_us=0,
                 erased_noise=False):
        self.path = path
        self.erased_noise = erased_noise
        if chunk > 256:
            raise ValueError("chunk above 256 bytes")
        self._ks = _keystream() if erased_noise else None
        self.size = size
        self.block_size = block_size
        self.chunk = chunk
        self.delay_us = delay_us
        self.writes = 0  # programs since start (for wear figures)
        self.erases = 0
        try:
            os.stat(path)
        except OSError:
            with open(path, "wb") as f:
                e = _erased()
                for _ in range(size // _PIECE):
                    f.write(e)
        self._f = open(path, "r+b")

    def close(self):
        self._f.close()

    def _read_raw(self, addr, buf):
        f = self._f
        f.seek(addr)
        n = f.readinto(buf)
        n = n or 0
        for i in range(n, len(buf)):  # past a truncated end: erased
            buf[i] = 0xFF

    def _read(self, addr, buf):
        self._read_raw(addr, buf)
        if self._ks is not None:
            _crypt(self._ks, addr, buf)

    def readblocks(self, block, buf, offset=0):
        addr = block * self.block_size + offset
        if addr + len(buf) > self.size:
            raise OSError(errno.EINVAL)
        self._read(addr, buf)

    def writeblocks(self, block, buf, offset=None):
        addr = block * self.block_size + (offset or 0)
        if addr + len(buf) > self.size:
            raise OSError(errno.EINVAL)
        if offset is None:  # esp32.Partition erases first in the 2-arg form
            for b in range(len(buf) // self.block_size):
                self.ioctl(_BLK_ERASE, block + b)
        # Checked and written in pieces through one small buffer: the model
        # of the flash must not take more heap than the real one (none).
        self.writes += 1
        f = self._f
        mv = memoryview(buf)
        step = self.chunk
        piece = memoryview(_SCRATCH)
        for i in range(0, len(buf), step):
            k = min(step, len(buf) - i)
            raw = piece[:k]
            raw[:] = mv[i:i + k]
            if self._ks is not None:
                _crypt(self._ks, addr + i, raw)
            old = piece[step:step + k]
            self._read_raw(addr + i, old)
            for j in range(k):
                if old[j] != 0xFF and old[j] != raw[j]:
                    raise OSError(errno.EIO)  # program over programmed data
            f.seek(addr + i)
            f.write(raw)
            f.flush()
            if self.delay_us:
                _sleep_us(self.delay_us)

    def info(self):
        """As esp32.Partition.info(): (type, subtype, addr, size, label,
        encrypted); type data, subtype unknown."""
        return (1, 0xFF, 0, self.size, self.path, self.erased_noise)

    def ioctl(self, op, arg=None):
        if op == _BLK_COUNT:
            return self.size // self.block_size
        if op == _BLK_SIZE:
            return self.block_size
        if op == _BLK_ERASE:
            self.erases += 1
            f = self._f
            f.seek(arg * self.block_size)
            # Erase in two halves: a cut between them leaves a half-erased
            # block, as an interrupted erase can on real flash.
            half = self.block_size // 2
            e = _erased()
            for _ in range(2):
                for _ in range(half // _PIECE):
                    f.write(e)
                f.flush()
                if self.delay_us:
                    _sleep_us(self.delay_us * 8)
            return 0
        return 0


_KS = []


def _keystream():
    # 4 KiB of fixed pseudo-random bytes (LCG), one table for every
    # partition; see _crypt.
    if _KS:
        return _KS[0]
    t = bytearray(4096)
    _KS.append(t)
    x = 0x2545F491
    for i in range(4096):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        t[i] = x >> 23
    return t


def _crypt(ks, addr, buf):
    """XOR buf (flash bytes from addr on) with the address keystream; its
    own inverse."""
    for i in range(len(buf)):
        a = addr + i
        buf[i] ^= ks[a & 4095] ^ ((a >> 12) * 73 & 255)


def _sleep_us(us):
    import time

    time.sleep_us(us)
