"""The signed update file (docs/ota.md): header, signature check, versions.

    header  64 bytes, little-endian (HEAD below)
    sig     384 bytes: RSA-3072 PKCS#1 v1.5 over SHA-256 of the header
    payload `length` bytes: the device image for `target`

The header carries the payload's SHA-256, so the one signature covers the
whole file; it comes before the payload so that a forged or foreign file is
refused before the first flash erase. The same 448 bytes (header and
signature) are kept in the last block of the app slot they were written to
(the "slot record"), so a bootloader can check an image without the file.

Shared by the updater (meter/ota.py), tools/sign.py and tools/bootloader.py
(CPython): keep it to what both run.
"""

import struct

from micropython import const

MAGIC = b"MOTA"
FORMAT = const(1)
HEAD_LEN = const(64)
SIG_LEN = const(384)  # RSA-3072
RECORD_LEN = const(448)  # HEAD_LEN + SIG_LEN
E = const(65537)
# magic, format, key id, header length, version, security version, payload
# length, target (NUL-padded), payload SHA-256
_HEAD = "<4sBBHIII12s32s"
TARGET_LEN = const(12)

# DER DigestInfo of SHA-256 (RFC 8017 section 9.2, note 1)
_DIGEST_INFO = b"\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20"


class FormatError(ValueError):
    """Not a well-formed update file; the message says what is wrong."""


def version_code(text):
    """"1.2.3" -> 0x010203, so versions compare as integers."""
    parts = text.split(".")
    if len(parts) != 3:
        raise FormatError("version must be MAJOR.MINOR.PATCH: " + text)
    a, b, c = (int(p) for p in parts)
    if not (0 <= a < 65536 and 0 <= b < 256 and 0 <= c < 256):
        raise FormatError("version out of range: " + text)
    return (a << 16) | (b << 8) | c


def version_text(code):
    return "%d.%d.%d" % (code >> 16, (code >> 8) & 255, code & 255)


def pack_header(key_id, version, secver, length, target, sha):
    t = target.encode()
    if len(t) > TARGET_LEN or len(sha) != 32:
        raise FormatError("bad target or digest")
    return struct.pack(_HEAD, MAGIC, FORMAT, key_id, HEAD_LEN, version, secver,
                       length, t, sha)


def parse_header(buf):
    """(key_id, version, secver, length, target, sha) from the first 64
    bytes; FormatError when they are not a header this firmware reads."""
    if len(buf) < HEAD_LEN:
        raise FormatError("not an update file (too short)")
    magic, fmt, key_id, hlen, version, secver, length, t, sha = struct.unpack_from(_HEAD, buf)
    if magic != MAGIC:
        raise FormatError("not an update file")
    if fmt != FORMAT or hlen != HEAD_LEN:
        raise FormatError("update file format %d is not supported" % fmt)
    t = bytes(t)
    n = t.find(b"\x00")
    return key_id, version, secver, length, (t if n < 0 else t[:n]).decode(), bytes(sha)


def signature_ok(header, sig, modulus):
    """RSA-3072 PKCS#1 v1.5 with SHA-256, verified with the public key
    (`modulus`, big-endian bytes; e = 65537). The whole encoded message is
    rebuilt and compared, never parsed, so padding tricks have nothing to
    work on."""
    import hashlib

    if len(sig) != SIG_LEN or len(modulus) != SIG_LEN:
        return False
    n = int.from_bytes(modulus, "big")
    s = int.from_bytes(sig, "big")
    if s >= n:
        return False
    m = pow(s, E, n)
    digest = hashlib.sha256(header).digest()
    pad = SIG_LEN - 3 - len(_DIGEST_INFO) - 32
    em = b"\x00\x01" + b"\xff" * pad + b"\x00" + _DIGEST_INFO + digest
    return m == int.from_bytes(em, "big")


def max_size(ota_parts):
    """The largest update file the inactive slot takes, in bytes: its 4 KiB
    blocks but the last (the slot record, meter/ota.py) for the payload,
    plus the header and signature (RECORD_LEN)."""
    return (ota_parts.next_update().ioctl(4, None) - 1) * 4096 + RECORD_LEN
