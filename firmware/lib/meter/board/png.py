"""Write a monochrome framebuffer (MONO_VLSB) as a 1-bit PNG (host only).

Uncompressed deflate blocks keep it dependency-free and small enough at
128x64 scaled 4x (~17 KB). Lit pixels are white on black, as on an OLED.
"""

import struct
from binascii import crc32


def _chunk(f, kind, data):
    f.write(struct.pack(">I", len(data)))
    f.write(kind)
    f.write(data)
    f.write(struct.pack(">I", crc32(data, crc32(kind))))


def write_mono(path, buf, w, h, scale=4):
    sw, sh = w * scale, h * scale
    rowbytes = (sw + 7) // 8
    raw = bytearray()
    for y in range(sh):
        sy = y // scale
        row = bytearray(rowbytes)
        for x in range(sw):
            sx = x // scale
            if buf[(sy >> 3) * w + sx] >> (sy & 7) & 1:
                row[x >> 3] |= 0x80 >> (x & 7)
        raw.append(0)  # filter: none
        raw.extend(row)
    z = bytearray(b"\x78\x01")
    for i in range(0, len(raw), 65535):  # stored deflate blocks
        block = raw[i:i + 65535]
        last = 1 if i + 65535 >= len(raw) else 0
        z.append(last)
        z.extend(struct.pack("<HH", len(block), len(block) ^ 0xFFFF))
        z.extend(block)
    z.extend(struct.pack(">I", _adler32(raw)))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        _chunk(f, b"IHDR", struct.pack(">IIBBBBB", sw, sh, 1, 0, 0, 0, 0))
        _chunk(f, b"IDAT", bytes(z))
        _chunk(f, b"IEND", b"")


def _adler32(data):
    a, b = 1, 0
    for x in data:
        a = (a + x) % 65521
        b = (b + a) % 65521
    return (b << 16) | a
