"""OTA figures for docs/ota.md (MicroPython unix port; not a test):

    MICROPYPATH=.frozen:build/lib:firmware/lib:tests/mpy \\
        .venv/bin/micropython -X heapsize=1m tests/mpy/otabench.py [MiB]

- Ed25519's floor: its field arithmetic alone, for the choice of scheme;
- signature check (RSA-3072 PKCS#1 v1.5, meter/otafmt.signature_ok): time
  per check, and the heap it allocates (gc off while it runs);
- a whole update of a MiB-sized payload (default 1.5 MiB - 4 KiB, a full
  slot) into the host board's file-backed slots, fed in 1 KiB chunks made
  on the fly: the heap the update holds between chunks (after a collect,
  over the baseline), what the feed() with the header and signature
  allocates (the check) and the most a payload feed() allocates (on the
  host this includes the file-backed flash's own 4 KiB read-back buffer per
  block program; esp32.Partition allocates nothing), and the total time.
"""

import gc
import os
import sys
import time

import otakit

from meter import ota, otafmt
from meter.board.otahost import SLOT_SIZE, HostOta


def sig_figures(key):
    head = b"h" * 64
    sig = key.sign(head)
    ts = []
    for _ in range(30):
        t = time.ticks_us()
        assert otafmt.signature_ok(head, sig, key.modulus)
        ts.append(time.ticks_diff(time.ticks_us(), t))
    ts.sort()
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    otafmt.signature_ok(head, sig, key.modulus)
    alloc = gc.mem_alloc() - a
    gc.enable()
    return ts[len(ts) // 2], ts[-1], alloc


def ed25519_floor():
    """The alternative's lower bound: an Ed25519 verification needs about
    4300 multiplications mod 2^255-19 (a double scalar multiplication:
    ~255 doublings and ~256 additions in extended coordinates), before its
    SHA-512, which MicroPython's hashlib lacks (pure Python then)."""
    p = (1 << 255) - 19
    a = int.from_bytes(os.urandom(32), "big") % p
    b = int.from_bytes(os.urandom(32), "big") % p
    t = time.ticks_us()
    for _ in range(4300):
        a = a * b % p
    return time.ticks_diff(time.ticks_us(), t)


def update_figures(key, length, o, target="host"):
    ota._current[0] = None  # each run as after a restart
    pay_chunk = bytes(range(256)) * 4  # 1 KiB, repeated: the payload
    import hashlib

    h = hashlib.sha256()
    n = 0
    while n < length:
        c = pay_chunk[:min(1024, length - n)]
        h.update(c)
        n += len(c)
    head = otafmt.pack_header(1, 0x000200, 0, length, target, h.digest())
    rec = head + key.sign(head)
    gc.collect()
    base = gc.mem_alloc()
    t0 = time.ticks_ms()
    u = ota.Updater(o, target, keys={1: key.modulus})
    held = transient = first = 0
    n = -1
    while n < length:
        c = rec if n < 0 else pay_chunk[:min(1024, length - n)]
        n = max(n, 0) + (len(c) if c is not rec else 0)
        gc.disable()
        a = gc.mem_alloc()
        u.feed(c)
        if c is rec:
            first = gc.mem_alloc() - a
        else:
            transient = max(transient, gc.mem_alloc() - a)
        gc.enable()
        if n % 65536 == 0:
            gc.collect()
            held = max(held, gc.mem_alloc() - base)
    u.finish()
    ms = time.ticks_diff(time.ticks_ms(), t0)
    return held, first, transient, ms


def host_slots():
    d = "/tmp/otabench-" + "".join("%02x" % b for b in os.urandom(4))
    os.mkdir(d)
    return d, HostOta(d)


def esp32_slots(size):
    """The esp32 board over the fake esp32.Partition (RAM), whose block
    writes allocate nothing, as the real one: the updater's own figures."""
    sys.path.insert(0, __file__.rsplit("/", 1)[0] + "/fakes")
    import esp32

    from meter.board.esp32 import Esp32Board

    esp32._reset()
    P = esp32.Partition
    P.table.extend([P("otadata", 1, 0, 0x2000), P("ota_0", 0, 0x10, size),
                    P("ota_1", 0, 0x11, size)])
    return Esp32Board(mcu="ESP32 module with ESP32", log=lambda m: None).ota()


def main():
    eo = esp32_slots(0x40000)  # first, while the heap has room in one piece
    key = otakit.Key()
    med, worst, alloc = sig_figures(key)
    print("signature check: median %d us, worst %d us, heap allocated %d bytes" % (med, worst, alloc))
    print("Ed25519 floor: 4300 field multiplications take %d us" % ed25519_floor())
    length = SLOT_SIZE - 4096
    if len(sys.argv) > 1:
        length = int(float(sys.argv[1]) * 1048576)
    d, o = host_slots()
    held, first, transient, ms = update_figures(key, length, o)
    for f in os.listdir(d):
        os.remove(d + "/" + f)
    os.rmdir(d)
    print("host slots (files), update of %d bytes: heap held %d bytes over the baseline; "
          "the feed() of the header and signature allocates %d bytes, a payload feed() "
          "at most %d; %d ms" % (length, held, first, transient, ms))
    held, first, transient, ms = update_figures(key, 0x40000 - 4096, eo, "esp32")
    print("esp32 board (fake esp32.Partition in RAM), update of %d bytes: heap held %d "
          "bytes; header feed() %d bytes, a payload feed() at most %d; %d ms" % (
              0x40000 - 4096, held, first, transient, ms))

main()
