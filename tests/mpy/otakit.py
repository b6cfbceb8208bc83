"""Test kit for OTA (MicroPython): throwaway signing keys and update files.

The keys are made here, at test time, and never stored: a 3072-bit
*multi-prime* RSA modulus (RFC 8017 allows more than two primes), the
product of 64-bit primes and one last prime that brings it to exactly 3072
bits. Finding 64-bit primes takes milliseconds on the unix port, where two
1536-bit primes would take many seconds. The verifier neither knows nor
cares how many primes the modulus has: a signature from such a key checks
exactly like one from an openssl key (tests/test_sign.py checks the
firmware against openssl-made keys and signatures).
"""

import gc
import hashlib
import os

from meter import otafmt

E = 65537
_SMALL = (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47)


def _rand(bits):
    n = int.from_bytes(os.urandom(bits // 8), "big")
    return n | (1 << (bits - 1)) | 1


def _probably_prime(n):
    for p in _SMALL:
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41):
        x = pow(a, d, n)
        if x == 1 or x == n - 1:
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(lo, hi):
    span = hi - lo
    while True:
        c = lo + int.from_bytes(os.urandom(12), "big") % span
        c |= 1
        if c < hi and (c - 1) % E and _probably_prime(c):
            return c


class Key:
    """A throwaway RSA-3072 signing key: .modulus (384 bytes), .sign(data)."""

    def __init__(self):
        primes = []
        n = 1
        while n < (1 << (3072 - 96)):
            p = _rand(64)
            while (p - 1) % E == 0 or not _probably_prime(p):
                p = _rand(64)
            if p not in primes:
                primes.append(p)
                n *= p
            # Collect as we go: the key's survivors then sit together at the
            # bottom of the heap instead of scattered through it, which
            # would leave no room for a 16 KiB buffer in a 512 KiB heap.
            gc.collect()
        lo = ((1 << 3071) + n - 1) // n  # the last prime: n * q has 3072 bits
        hi = ((1 << 3072) - 1) // n
        q = _prime(lo, hi)
        primes.append(q)
        n *= q
        self.n = n
        self.primes = primes
        self.modulus = n.to_bytes(384, "big")

    def sign(self, data):
        """PKCS#1 v1.5 SHA-256 signature, by CRT over the primes."""
        digest = hashlib.sha256(data).digest()
        em = (b"\x00\x01" + b"\xff" * (384 - 3 - 19 - 32) + b"\x00"
              + otafmt._DIGEST_INFO + digest)
        m = int.from_bytes(em, "big")
        x, mod = 0, 1
        for p in self.primes:
            d = _inverse(E, p - 1)
            s = pow(m % p, d, p)
            t = (s - x) * pow(mod % p, p - 2, p) % p  # Garner
            x += mod * t
            mod *= p
        return x.to_bytes(384, "big")


def _inverse(a, m):
    r0, r1, s0, s1 = m, a % m, 0, 1
    while r1:
        q = r0 // r1
        r0, r1 = r1, r0 - q * r1
        s0, s1 = s1, s0 - q * s1
    return s0 % m


def update_file(key, payload, key_id=1, version="0.2.0", secver=0, target="host",
                length=None, sha=None):
    head = otafmt.pack_header(key_id, otafmt.version_code(version), secver,
                              len(payload) if length is None else length, target,
                              sha or hashlib.sha256(payload).digest())
    return head + key.sign(head) + payload


def payload(n, seed=1):
    """n bytes of a repeatable pattern (not all one value: a write that
    lands in the wrong place shows)."""
    out = bytearray(n)
    x = seed
    for i in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out[i] = x >> 16 & 255
    return bytes(out)
