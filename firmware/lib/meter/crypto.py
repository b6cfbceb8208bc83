"""HMAC, constant-time comparison, HOTP (RFC 4226) and TOTP (RFC 6238).

HMAC is the pinned micropython-lib `hmac` module (device-libs.toml), used
unchanged. It expects CPython-style hash objects: `digest_size`,
`block_size`, `name` and `copy()`, with a `digest()` that does not finalise.
MicroPython's hashlib objects have only update() and digest(), and digest()
finalises them. `_Hash` adapts them at this boundary: it keeps the bytes it
was fed and hashes them afresh with a new hashlib object on every digest(),
so copy() and repeated digest() are correct. The cost is memory: an object
holds everything it was fed (for HMAC, a 64-byte pad plus the message), so
do not feed it large streams. The `warnings` module that hmac imports is the
shim in firmware/lib/warnings.py. See docs/device-libs.md.

    hmac_digest(key, msg, algo="sha256") -> bytes
    compare_digest(a, b) -> bool                       constant time
    hotp(secret, counter, digits=6, algo="sha1") -> str
    totp(secret, unix_time, step=30, digits=6, t0=0, algo="sha1") -> str

Keys, secrets and messages are bytes-like. Codes are returned as strings of
exactly `digits` digits (leading zeros kept).
"""

import hashlib
from binascii import hexlify

# algo -> (digest_size, block_size); only those this firmware's hashlib has
# are usable (MicroPython: md5, sha1, sha256; sha512 where built in).
_SIZES = {"md5": (16, 64), "sha1": (20, 64), "sha224": (28, 64), "sha256": (32, 64),
          "sha384": (48, 128), "sha512": (64, 128)}


class _Hash:
    """A CPython-style hash object over a MicroPython hashlib constructor.

    Buffers the data it is fed; digest() hashes the buffer with a fresh
    hashlib object, so it can be called repeatedly and copy() is cheap."""

    def __init__(self, algo, data=b""):
        self._cons = getattr(hashlib, algo)
        self.name = algo
        self.digest_size, self.block_size = _SIZES[algo]
        self._buf = bytearray(data)

    def update(self, data):
        self._buf.extend(data)

    def copy(self):
        return _Hash(self.name, self._buf)

    def digest(self):
        return self._cons(bytes(self._buf)).digest()

    def hexdigest(self):
        return hexlify(self.digest()).decode()


def _digestmod(algo):
    try:
        if algo in _SIZES:
            getattr(hashlib, algo)  # this port's hashlib may lack it (sha512)
            return lambda data=b"": _Hash(algo, data)
    except AttributeError:
        pass
    raise ValueError("unsupported hash algorithm: %r" % (algo,))


def hmac_digest(key, msg, algo="sha256"):
    """HMAC(key, msg) with the named hash (RFC 2104), as bytes."""
    import hmac as _hmac  # on use: ~6 KB of heap that most users (PIN, tokens) never need

    return _hmac.new(bytes(key), bytes(msg), _digestmod(algo)).digest()


def compare_digest(a, b):
    """a == b without leaking where they differ (for MACs, tokens, hashes).

    Every byte of b is examined whatever a holds; when the lengths differ, b
    is compared with itself so the work stays the same and the answer False.
    Takes two bytes-like values or two str (ASCII); mixing raises TypeError."""
    if isinstance(a, str) != isinstance(b, str):
        raise TypeError("compare_digest: both str or both bytes-like")
    if isinstance(a, str):
        a, b = a.encode(), b.encode()
    result = len(a) ^ len(b)
    if result:
        a = b
    for i in range(len(b)):
        result |= a[i] ^ b[i]
    return result == 0


def hotp(secret, counter, digits=6, algo="sha1"):
    """RFC 4226 HOTP value for an integer counter in [0, 2**64)."""
    if not 0 <= counter < (1 << 64):
        raise ValueError("counter out of range")
    if not 6 <= digits <= 10:
        raise ValueError("digits must be 6..10")
    # 8-byte big-endian counter, built byte by byte: works for any int size.
    c = bytes((counter >> s) & 0xFF for s in (56, 48, 40, 32, 24, 16, 8, 0))
    h = hmac_digest(secret, c, algo)
    o = h[-1] & 0x0F
    code = ((h[o] & 0x7F) << 24 | h[o + 1] << 16 | h[o + 2] << 8 | h[o + 3]) % (10 ** digits)
    s = str(code)
    return "0" * (digits - len(s)) + s


def totp(secret, unix_time, step=30, digits=6, t0=0, algo="sha1"):
    """RFC 6238 TOTP value at unix_time (seconds; T may exceed 32 bits)."""
    if step <= 0:
        raise ValueError("step must be positive")
    t = (int(unix_time) - t0) // step
    if t < 0:
        raise ValueError("time before t0")
    return hotp(secret, t, digits, algo)
