"""The Web Admin password: PBKDF2-HMAC-SHA256, stored with its iteration count.

Stored form (settings key `web.pass`): "pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>",
16-byte random salt, 32-byte hash. "" means the factory default password
"admin", which only lets its user set a new password (docs/security.md).

PBKDF2 (RFC 8018) with HMAC-SHA256 on MicroPython's hashlib. Its hash
objects cannot be copied, so the keyed HMAC states cannot be saved either:
the two 64-byte pad blocks (key XOR ipad, key XOR opad) are computed once,
and every iteration hashes pad + 32 bytes twice, four SHA-256 compressions.
The XOR accumulation runs on one 256-bit int, not byte by byte.

The hash is slow on purpose (ITERATIONS: docs/security.md explains the
choice), so it runs as a coroutine that yields to the loop every CHUNK
iterations: metering keeps its schedule while a password is checked.
"""

import asyncio
import hashlib
import os
from binascii import hexlify, unhexlify

from meter.crypto import compare_digest

SCHEME = "pbkdf2-sha256"
# Chosen from a measurement (docs/security.md): about 0.7 to 1.3 s on the
# ESP32 at 240 MHz by the estimate there, 8 ms on the development machine.
ITERATIONS = 6000
MIN_ITERATIONS = 1000  # a stored hash below this is refused as damaged
MAX_ITERATIONS = 1000000
CHUNK = 64  # iterations between yields to the loop
SALT_BYTES = 16
DEFAULT = "admin"
USER = "admin"
MIN_LEN = 8
MAX_LEN = 64


def _pads(password):
    k = password
    if len(k) > 64:
        k = hashlib.sha256(k).digest()
    k = k + b"\x00" * (64 - len(k))
    return bytes(b ^ 0x36 for b in k), bytes(b ^ 0x5C for b in k)


def _blocks(password, salt, iterations, dklen):
    """Generator: runs the derivation, yielding None every CHUNK iterations
    and the derived key (bytes) last."""
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    ipad, opad = _pads(password)
    sha = hashlib.sha256
    fb = int.from_bytes
    out = b""
    block = 1
    while len(out) < dklen:
        h = sha(ipad)
        h.update(salt)
        h.update(block.to_bytes(4, "big"))
        u = h.digest()
        h = sha(opad)
        h.update(u)
        u = h.digest()
        acc = fb(u, "big")
        left = iterations - 1
        while left:
            n = CHUNK if left > CHUNK else left
            left -= n
            for _ in range(n):
                h = sha(ipad)
                h.update(u)
                u = h.digest()
                h = sha(opad)
                h.update(u)
                u = h.digest()
                acc ^= fb(u, "big")
            yield None
        out += acc.to_bytes(32, "big")
        block += 1
    yield out[:dklen]


def pbkdf2_sha256(password, salt, iterations, dklen=32):
    """PBKDF2-HMAC-SHA256 (blocking): bytes."""
    for r in _blocks(bytes(password), bytes(salt), iterations, dklen):
        if r is not None:
            return r


async def pbkdf2_sha256_async(password, salt, iterations, dklen=32):
    """PBKDF2-HMAC-SHA256, yielding to the loop every CHUNK iterations."""
    for r in _blocks(bytes(password), bytes(salt), iterations, dklen):
        if r is not None:
            return r
        await asyncio.sleep_ms(0)


def parse(stored):
    """(iterations, salt, hash) of a stored value; ValueError if malformed."""
    parts = stored.split("$")
    if len(parts) != 4 or parts[0] != SCHEME:
        raise ValueError("not a %s hash" % SCHEME)
    n = int(parts[1])
    if not MIN_ITERATIONS <= n <= MAX_ITERATIONS:
        raise ValueError("iteration count out of range")
    salt = unhexlify(parts[2])
    digest = unhexlify(parts[3])
    if len(salt) < 8 or len(digest) != 32:
        raise ValueError("bad salt or hash length")
    return n, salt, digest


async def make(password, iterations=ITERATIONS):
    """The stored form of a new password (fresh salt)."""
    salt = os.urandom(SALT_BYTES)
    d = await pbkdf2_sha256_async(password.encode(), salt, iterations)
    return "%s$%d$%s$%s" % (SCHEME, iterations, hexlify(salt).decode(), hexlify(d).decode())


async def verify(stored, password):
    """True if `password` (str) matches `stored` ("" = the default)."""
    if not isinstance(password, str) or len(password) > MAX_LEN:
        return False
    if not stored:
        return compare_digest(password.encode(), DEFAULT.encode())
    try:
        n, salt, digest = parse(stored)
    except ValueError:
        return False  # damaged: nothing matches (Reset Web Password recovers)
    d = await pbkdf2_sha256_async(password.encode(), salt, n)
    return compare_digest(d, digest)


def is_default(stored):
    return not stored


def policy(new, repeat, user=USER):
    """None if `new` may become the password, else the reason (for the user)."""
    if new != repeat:
        return "The two new passwords differ."
    if len(new) < MIN_LEN:
        return "The password needs at least %d characters." % MIN_LEN
    if len(new) > MAX_LEN:
        return "The password may have at most %d characters." % MAX_LEN
    low = new.lower()
    if low == DEFAULT or low == user:
        return "The default password cannot be used."
    for c in new:
        if ord(c) < 32 or ord(c) == 127:
            return "The password contains control characters."
    return None
