"""Write a monochrome framebuffer (MONO_VLSB) as a 1-bit PNG (host only).

Uncompressed deflate keeps it dependency-free: each scaled row is its own
stored deflate block, written as it is made, so the picture (~17 KB at
128x64 scaled 4x) never sits on the heap whole; the simulator runs at the
device's heap budget. Lit pixels are white on black, as on an OLED.
"""

import struct
from binascii import crc32


def write_mono(path, buf, w, h, scale=4):
    sw, sh = w * scale, h * scale
    rowbytes = (sw + 7) // 8
    # filter byte + pixels, behind a 5-byte stored-block header
    piece = bytearray(5 + 1 + rowbytes)
    n = 1 + rowbytes
    idat_len = 2 + sh * len(piece) + 4
    a, b = 1, 0  # adler-32 of the uncompressed rows
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        ihdr = struct.pack(">IIBBBBB", sw, sh, 1, 0, 0, 0, 0)
        f.write(struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr)
        f.write(struct.pack(">I", crc32(ihdr, crc32(b"IHDR"))))
        f.write(struct.pack(">I", idat_len) + b"IDAT")
        crc = crc32(b"IDAT")
        z = b"\x78\x01"
        f.write(z)
        crc = crc32(z, crc)
        for y in range(sh):
            sy = y // scale
            struct.pack_into("<BHH", piece, 0, 1 if y == sh - 1 else 0, n, n ^ 0xFFFF)
            for i in range(5, len(piece)):
                piece[i] = 0  # filter none, pixels dark
            for x in range(sw):
                if buf[(sy >> 3) * w + x // scale] >> (sy & 7) & 1:
                    piece[6 + (x >> 3)] |= 0x80 >> (x & 7)
            for i in range(5, len(piece)):
                a = (a + piece[i]) % 65521
                b = (b + a) % 65521
            f.write(piece)
            crc = crc32(piece, crc)
        tail = struct.pack(">I", (b << 16) | a)
        f.write(tail)
        f.write(struct.pack(">I", crc32(tail, crc)))
        f.write(struct.pack(">I", 0) + b"IEND" + struct.pack(">I", crc32(b"IEND")))
