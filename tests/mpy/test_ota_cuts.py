"""OTA power cuts at random moments, cheaply: the updater, the bootloader's
rules and the confirmation on the host board's slot files, without the
simulator (tests/test_ota_sim.py cuts some through the whole simulator).

Each trial starts from a factory-flashed slot 0 and cuts the power at a
random flash operation of a whole update cycle (writing, the slot record,
set_boot, the bootloader's first start, the self-test's confirmation):
either inside the operation (a program keeps a random prefix of its bytes,
an erase a random part of the block) or just after it. Then the device
restarts: the bootloader must start a slot holding a valid signed image,
the old or the new one, never a mix, and the same update, run again, must
install, boot and confirm.

The moments come from a seed, printed at the start; OTA_CUT_SEED=N repeats
a run, OTA_CUTS=N sets the number of trials (default 240).
"""

import os
import random

from upytest import _rmtree, tmpdir

import test_ota as t
from meter import ota

CUTS = int(os.getenv("OTA_CUTS") or 240)
OLD = 0x000100  # 0.1.0, t.factory()
NEW = 0x000200  # 0.2.0


class Cut(Exception):
    pass


class Budget:
    """Counts flash operations; the one numbered `at` is cut, `inside` it
    or after it completed."""

    def __init__(self, at=None, inside=True):
        self.at = at
        self.inside = inside
        self.ops = 0

    def tick(self):
        n = self.ops
        self.ops += 1
        return n == self.at


class CutPart:
    def __init__(self, part, budget):
        self.p = part
        self.b = budget

    def readblocks(self, b, buf, off=0):
        self.p.readblocks(b, buf, off)

    def writeblocks(self, b, buf, off=None):
        if self.b.tick():
            if self.b.inside:  # a random prefix reached the flash
                n = random.getrandbits(16) % (len(buf) + 1)
                if n:
                    self.p.writeblocks(b, memoryview(buf)[:n], off)
            else:
                self.p.writeblocks(b, buf, off)
            raise Cut()
        self.p.writeblocks(b, buf, off)

    def ioctl(self, op, arg=None):
        if op == 6 and self.b.tick():
            bs = self.p.block_size
            if self.b.inside:  # a random part of the block erased
                f = self.p._f
                f.seek(arg * bs)
                f.write(b"\xff" * (random.getrandbits(16) % bs))
                f.flush()
            else:
                self.p.ioctl(op, arg)
            raise Cut()
        return self.p.ioctl(op, arg)


def host(d, budget=None):
    ota._current[0] = None  # a restart: nothing in RAM survives

    def part(label, size):
        p = t.FilePartition(d + "/" + label + ".bin", t.SLOT if label != "otadata" else size)
        return CutPart(p, budget) if budget else p
    return t.HostOta(d, part)


FILE = t.otakit.update_file(t.K1, t.otakit.payload(9000, 4))


def cycle(o, step):
    """One whole update: the file, the restart into it (bootloader), the
    self-test's confirmation."""
    t.feed_all(t.updater(o), FILE, step)
    o.current = o.otadata.boot()
    o.mark_app_valid_cancel_rollback()


def boots(d):
    """Restart: the bootloader's rules on the flash as it is; returns the
    version of the image it starts (checked whole) and its slot."""
    o = host(d)
    slot = o.otadata.boot()
    v = t.slot_image_ok(o.slots[slot])
    if v is None:  # as ESP-IDF: a slot that fails its check is skipped
        slot ^= 1
        v = t.slot_image_ok(o.slots[slot])
    return v, slot, o


FILES = ("otadata.bin", "ota_0.bin", "ota_1.bin")


def snapshot(d):
    out = []
    for n in FILES:
        with open(d + "/" + n, "rb") as f:
            out.append(f.read())
    return out


def restore(d, snap):
    """The factory state again, written over the same files: creating and
    deleting files per trial costs ten times more on a journalled disk."""
    for n, data in zip(FILES, snap):
        with open(d + "/" + n, "r+b") as f:
            f.write(data)


def test_random_power_cuts_during_an_update_always_boot_a_valid_image():
    seed = int(os.getenv("OTA_CUT_SEED") or random.getrandbits(30))
    print("OTA_CUT_SEED=%d OTA_CUTS=%d" % (seed, CUTS))
    random.seed(seed)
    d = fast_dir()
    try:
        _trials(d, seed)
    finally:
        _rmtree(d)


def fast_dir():
    """A directory in RAM when there is one (/dev/shm): the trials write
    about 100 MB in small pieces, which a journalled disk makes ten times
    slower; else the test's own temporary directory."""
    try:
        os.stat("/dev/shm")
    except OSError:
        return tmpdir()
    d = "/dev/shm/ota-cuts-%d" % random.getrandbits(30)
    os.mkdir(d)
    return d


def _trials(d, seed):
    t.factory(host(d))
    factory = snapshot(d)
    b = Budget()
    cycle(host(d, b), 1000)
    total = b.ops
    assert total >= 10, total
    seen = {}
    for trial in range(CUTS):
        restore(d, factory)
        at = random.getrandbits(16) % total
        inside = random.getrandbits(1) == 1
        step = (1, 448, 1000, 4096, 5000)[random.getrandbits(8) % 5]
        where = "trial %d (seed %d): cut %s flash op %d of %d, chunks of %d" % (
            trial, seed, "inside" if inside else "after", at, total, step)
        try:
            cycle(host(d, Budget(at, inside)), step)
            raise AssertionError(where + ": no cut happened")
        except Cut:
            pass
        except ota.UpdateError as e:  # the updater reports the cut it saw
            assert "Cut()" in str(e), where + ": " + str(e)
        v, slot, o = boots(d)
        assert v in (OLD, NEW), "%s: slot %d holds no valid image (%r)" % (where, slot, v)
        seen[v] = seen.get(v, 0) + 1
        if v == OLD:
            # The cut update is simply run again, from the running old image.
            assert o.running_state() != "pending-verify", where
            o.current = slot
            cycle(o, 1000)
            v2, slot2, _ = boots(d)
            assert (v2, slot2) == (NEW, 1), "%s: the rerun boots %r from slot %d" % (
                where, v2, slot2)
        else:
            # set_boot() was on the flash: the new image starts, whole, and
            # waits for its self-test (or the confirmation was there too).
            st = o.otadata.slot_state(slot)
            assert slot == 1 and st in (t.od.PENDING_VERIFY, t.od.VALID), (where, slot, st)
            if st == t.od.PENDING_VERIFY:
                o.current = slot
                if random.getrandbits(1):  # its self-test passes
                    o.mark_app_valid_cancel_rollback()
                    want = NEW
                else:  # a second cut before it confirmed itself
                    want = OLD
                v2, slot2, _ = boots(d)
                assert v2 == want, "%s: then %r boots, not %r" % (where, v2, want)
    print("booted after the cut:", seen)
    assert seen.get(OLD), seen
