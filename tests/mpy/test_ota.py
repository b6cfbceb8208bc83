"""OTA: otadata rules, the updater (every refusal), power cuts, self-test.

Update files are signed at test time with throwaway keys (tests/mpy/otakit.py).
The updater runs against the host board's slots (files with NOR-flash
rules) and against the esp32 board over the fake esp32.Partition.
"""

import sys

_HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
_FAKES = _HERE + "/fakes"
if _FAKES not in sys.path:
    sys.path.insert(0, _FAKES)

import asyncio  # noqa: E402
import gc  # noqa: E402
import hashlib  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402

import otakit  # noqa: E402
from upytest import raises, tmpdir  # noqa: E402

from meter import ota, otafmt  # noqa: E402
from meter import otadata as od  # noqa: E402
from meter.board.flashfile import FilePartition  # noqa: E402
from meter.board.otahost import HostOta  # noqa: E402

HEAP = "512k"
SLOT = 64 * 1024  # test slots: small, so that every test stays quick
K1 = otakit.Key()
K2 = otakit.Key()
KEYS = {1: K1.modulus}


class Audit:
    def __init__(self):
        self.events = []

    def append(self, source, event, outcome="ok", detail=""):
        self.events.append((source, event, outcome, detail))


class Cut(Exception):
    pass


class Budget:
    """Flash operations left before the power fails (None: never)."""

    def __init__(self, n=None):
        self.n = n
        self.ops = 0

    def tick(self):
        self.ops += 1
        if self.n is None:
            return False
        if self.n == 0:
            return True
        self.n -= 1
        return False


class CutPart:
    """A FilePartition whose flash operations share one Budget: the cut one
    programs only its first 16 bytes, or erases only the first half."""

    def __init__(self, part, budget):
        self.p = part
        self.budget = budget

    def readblocks(self, b, buf, off=0):
        self.p.readblocks(b, buf, off)

    def writeblocks(self, b, buf, off=None):
        if self.budget.tick():
            self.p.writeblocks(b, memoryview(buf)[:16], off)
            raise Cut()
        self.p.writeblocks(b, buf, off)

    def ioctl(self, op, arg=None):
        if op == 6 and self.budget.tick():
            bs = self.p.block_size
            f = self.p._f
            f.seek(arg * bs)
            f.write(b"\xff" * (bs // 2))
            f.flush()
            raise Cut()
        return self.p.ioctl(op, arg)


def host(d, budget=None):
    """The host board's slots in d, as a device that just started: no
    update in RAM (a failed test cannot leave one running for the next)."""
    ota._current[0] = None

    def part(label, size):
        p = FilePartition(d + "/" + label + ".bin", SLOT if label != "otadata" else size)
        return CutPart(p, budget) if budget else p
    return HostOta(d, part)


def updater(o, **kw):
    kw.setdefault("keys", KEYS)
    kw.setdefault("audit", Audit())
    return ota.Updater(o, kw.pop("target", "host"), **kw)


def feed_all(u, data, step=1000):
    for i in range(0, len(data), step):
        u.feed(data[i:i + step])
    return u.finish()


def slot_bytes(slot, n):
    buf = bytearray(n)
    slot.readblocks(0, buf, 0)
    return bytes(buf)


def slot_image_ok(slot):
    """What a bootloader checks: the slot record's header and signature,
    and the payload's SHA-256. Returns the version code or None."""
    rec = bytearray(otafmt.RECORD_LEN)
    slot.readblocks(slot.ioctl(4, None) - 1, rec, 0)
    try:
        key_id, version, _, length, _, sha = otafmt.parse_header(rec)
    except otafmt.FormatError:
        return None
    if not otafmt.signature_ok(rec[:64], rec[64:], {1: K1.modulus}.get(key_id, b"")):
        return None
    h = hashlib.sha256()
    buf = bytearray(4096)
    b = 0
    while length > 0:
        slot.readblocks(b, buf, 0)
        h.update(buf[:min(length, 4096)])
        length -= 4096
        b += 1
    return version if h.digest() == sha else None


def factory(o, version="0.1.0", n=5000):
    """Slot 0 as the factory flashed it: an image and its record, otadata
    erased (the bootloader then starts slot 0)."""
    data = otakit.update_file(K1, otakit.payload(n, 7), version=version)
    s = o.slots[0]
    for b in range(0, (n + 4095) // 4096):
        s.ioctl(6, b)
        chunk = bytearray(b"\xff" * 4096)
        part = data[448 + b * 4096:448 + (b + 1) * 4096]
        chunk[:len(part)] = part
        s.writeblocks(b, chunk, 0)
    last = s.ioctl(4, None) - 1
    s.ioctl(6, last)
    rec = bytearray(b"\xff" * 4096)
    rec[:448] = data[:448]
    s.writeblocks(last, rec, 0)


# -- otadata ---------------------------------------------------------------------


class RamPart:
    def __init__(self, size=0x2000):
        self.data = bytearray(b"\xff" * size)

    def readblocks(self, b, buf, off=0):
        a = b * 4096 + off
        buf[:] = self.data[a:a + len(buf)]

    def writeblocks(self, b, buf, off=0):
        a = b * 4096 + off
        for i in range(len(buf)):
            self.data[a + i] &= buf[i]

    def ioctl(self, op, arg=None):
        if op == 6:
            self.data[arg * 4096:(arg + 1) * 4096] = b"\xff" * 4096
        return 0


def test_otadata_entry_bytes_match_esp_idf():
    # seq 1, label erased, state NEW, CRC-32 of the seq bytes with ESP-IDF's
    # UINT32_MAX seed: 0x4743989A (checked against binascii and zlib)
    assert od.pack(1, od.NEW) == (b"\x01\x00\x00\x00" + b"\xff" * 20
                                  + b"\x00\x00\x00\x00" + b"\x9a\x98\x43\x47")
    assert od.crc(1) == 0x4743989A


def test_otadata_blank_boots_slot_0_and_set_boot_alternates_sectors():
    p = RamPart()
    o = od.Otadata(p)
    assert o.active() == -1 and o.boot_slot() == 0 and o.state() == od.UNDEFINED
    o.set_boot(1)
    assert p.data[:32] == od.pack(2, od.NEW)  # first write: sector 0, seq slot+1
    assert o.boot_slot() == 1
    o.set_boot(0)
    assert p.data[4096:4096 + 32] == od.pack(3, od.NEW)  # the other sector
    assert p.data[:32] == od.pack(2, od.NEW)  # left as it was
    assert o.boot_slot() == 0
    o.set_boot(0)  # already selected: only its state, in place
    assert p.data[4096:4096 + 32] == od.pack(3, od.NEW)


def test_otadata_bad_crc_aborted_and_invalid_entries_do_not_count():
    p = RamPart()
    o = od.Otadata(p)
    p.data[:32] = od.pack(1, od.VALID)
    p.data[4096:4096 + 32] = od.pack(2, od.VALID)
    assert o.boot_slot() == 1
    p.data[4096 + 28] ^= 1  # CRC broken
    assert o.boot_slot() == 0
    for st in (od.ABORTED, od.INVALID):
        p.data[4096:4096 + 32] = od.pack(2, st)
        assert o.boot_slot() == 0, st
    p.data[:32] = od.pack(1, od.ABORTED)
    assert o.active() == -1 and o.boot_slot() == 0


def test_otadata_rollback_rule_new_pending_then_aborted():
    p = RamPart()
    o = od.Otadata(p)
    p.data[:32] = od.pack(1, od.VALID)
    o.set_boot(1)
    assert o.boot() == 1  # first boot of the new image
    assert o.slot_state(1) == od.PENDING_VERIFY
    assert o.boot() == 0  # reset before it confirmed: aborted, back to slot 0
    assert o.slot_state(1) == od.ABORTED and o.slot_state(0) == od.VALID
    o.set_boot(1)
    assert o.boot() == 1
    assert o.mark_valid() is True
    assert o.boot() == 1 and o.slot_state(1) == od.VALID
    assert o.mark_valid() is False  # nothing to do


def _csv_sizes():
    sizes = {}
    with open("firmware/boards/METER_ESP32/partitions.csv") as f:  # the tests run from the repository root
        for line in f:
            cols = [c.strip() for c in line.split("#")[0].split(",")]
            if len(cols) >= 5:
                sizes[cols[0]] = int(cols[4], 16)
    return sizes


def test_host_board_ota_slots_are_files_sized_as_the_partition_table():
    import os

    from meter.board.host import HostBoard

    d = tmpdir()
    ota._current[0] = None
    o = HostBoard(["main.py", "--state", d, "--headless"]).ota()
    csv = _csv_sizes()
    for label in ("otadata", "ota_0", "ota_1"):
        assert os.stat(d + "/" + label + ".bin")[6] == csv[label], label
    i = o.running().info()
    assert (i[1], i[4]) == (0x10, "ota_0") and o.next_update().info()[4] == "ota_1"
    assert o.running_state() is None
    with open(d + "/ota-running", "w") as f:  # what tools/bootloader.py leaves
        f.write("1\n")
    o = HostBoard(["main.py", "--state", d, "--headless"]).ota()
    assert o.running().info()[4] == "ota_1" and o.next_update().info()[4] == "ota_0"


# -- updater: success ---------------------------------------------------------------


def test_update_installs_and_boots_new_image_pending_verify():
    d = tmpdir()
    o = host(d)
    factory(o)
    pay = otakit.payload(10000, 3)
    seen = []
    a = Audit()
    u = updater(o, audit=a, progress=lambda n, t: seen.append((n, t)))
    assert ota.busy()
    assert feed_all(u, otakit.update_file(K1, pay, version="0.2.0"), 777) == "0.2.0"
    assert ota.busy()  # installed: no other update until the restart
    e = raises(ota.UpdateError, updater, o)
    assert str(e) == "an update is installed and waits for the restart"
    assert slot_bytes(o.slots[1], len(pay)) == pay
    assert slot_image_ok(o.slots[1]) == 0x000200
    assert seen[0] == (777, 448 + 10000) and seen[-1] == (448 + 10000, 448 + 10000)
    assert [e[1:3] for e in a.events] == [("ota start", "ok"), ("ota installed", "ok")]
    assert o.otadata.boot() == 1  # the bootloader: new image, pending verify
    o2 = host(d)
    o2.current = 1
    assert o2.running_state() == "pending-verify"
    assert o2.mark_app_valid_cancel_rollback() is True
    assert o2.running_state() == "valid"


def test_update_with_one_byte_chunks_and_exact_block_multiple():
    o = host(tmpdir())
    pay = otakit.payload(8192, 5)
    u = updater(o)
    data = otakit.update_file(K1, pay)
    for i in range(len(data)):
        u.feed(data[i:i + 1])
    u.finish()
    assert slot_bytes(o.slots[1], 8192) == pay


def test_update_on_esp32_board_over_fake_partitions():
    import esp32

    from meter.board.esp32 import Esp32Board

    esp32._reset()
    ota._current[0] = None
    gc.collect()  # three RAM partitions: room for them in one piece
    P = esp32.Partition
    P.table.extend([P("otadata", 1, 0, 0x2000), P("ota_0", 0, 0x10, 0x4000),
                    P("ota_1", 0, 0x11, 0x4000)])
    o = Esp32Board(mcu="ESP32 module with ESP32", log=lambda m: None).ota()
    assert o.running().label == "ota_0" and o.next_update().label == "ota_1"
    assert o.running_state() is None  # otadata blank: factory start
    pay = otakit.payload(6000, 9)
    feed_all(ota.Updater(o, "esp32", keys=KEYS),
             otakit.update_file(K1, pay, target="esp32"))
    assert bytes(P._label("ota_1").data[:6000]) == pay
    assert bytes(P._label("otadata").data[:32]) == od.pack(2, od.NEW)
    od.Otadata(P._label("otadata")).boot()  # reset: the bootloader
    P.running = "ota_1"
    assert o.running_state() == "pending-verify"
    assert o.mark_app_valid_cancel_rollback() is True
    assert o.running_state() == "valid"
    P.rollback = False  # a build without rollback: -261, reported, no crash
    assert o.mark_app_valid_cancel_rollback() is False


def test_key_rotation_second_trusted_key_accepted():
    o = host(tmpdir())
    u = updater(o, keys={1: K1.modulus, 2: K2.modulus})
    feed_all(u, otakit.update_file(K2, b"new", key_id=2))
    assert slot_image_ok(o.slots[1]) is None  # K2 is not in slot_image_ok's list
    assert slot_bytes(o.slots[1], 3) == b"new"


def _held(n):
    """Heap the updater holds between chunks (after a collect) during an
    update of an n-byte payload fed in 1 KiB chunks."""
    o = host(tmpdir())
    data = otakit.update_file(K1, otakit.payload(n, 2))
    u = updater(o, audit=None)
    most = 0
    for i in range(0, len(data), 1024):
        u.feed(data[i:i + 1024])
        gc.collect()
        most = max(most, gc.mem_alloc())
    u.finish()
    u = None
    gc.collect()  # measured against the heap without the updater, in the
    return most - gc.mem_alloc()  # same frame (conservative GC: stale stack)


def test_memory_is_constant_whatever_the_file_size():
    small, big = _held(8 * 1024), _held(56 * 1024)
    assert abs(big - small) <= 64, (small, big)
    # one block buffer, the record, the hash state and the updater itself
    assert 4096 + 448 <= small <= 4096 + 448 + 2048, small


# -- updater: refusals --------------------------------------------------------------


def _refused(data, expect, o=None, finish=True, **kw):
    o = o or host(tmpdir())
    a = Audit()
    u = updater(o, audit=a, **kw)
    try:
        u.feed(data)
        if finish:
            u.finish()
    except ota.UpdateError as e:
        msg = str(e)
    else:
        raise AssertionError("accepted; expected refusal: " + expect)
    assert expect in msg, msg
    assert not ota.busy()
    assert o.otadata.active() == -1, "otadata was written"  # boot unchanged
    assert a.events[-1][2] == "failed" and expect in a.events[-1][3], a.events
    assert raises(ota.UpdateError, u.feed, b"x")  # that update is over
    return o


def test_refuse_wrong_signature():
    data = bytearray(otakit.update_file(K1, b"abc"))
    data[100] ^= 1
    o = _refused(bytes(data), "signature check failed")
    assert o.slots[1].part.erases == 0  # refused before any flash erase


def test_refuse_signature_by_untrusted_key_with_trusted_id():
    _refused(otakit.update_file(K2, b"abc", key_id=1), "signature check failed")


def test_refuse_unknown_key():
    _refused(otakit.update_file(K2, b"abc", key_id=7), "unknown key (id 7)")


def test_refuse_garbage_header():
    _refused(b"GET / HTTP/1.1\r\n" * 40, "not an update file")
    data = bytearray(otakit.update_file(K1, b"abc"))
    data[4] = 9  # format version
    _refused(bytes(data), "format 9 is not supported")


def test_refuse_wrong_target():
    _refused(otakit.update_file(K1, b"abc", target="esp32"), "for another device (esp32")


def test_refuse_older_and_same_version():
    _refused(otakit.update_file(K1, b"abc", version="0.0.9"),
             "0.0.9 is not newer than the running 0.1.0")
    _refused(otakit.update_file(K1, b"abc", version="0.1.0"), "0.1.0 is not newer")


def test_refuse_lower_security_version():
    _refused(otakit.update_file(K1, b"abc", version="9.0.0", secver=1),
             "security version 1 is older than the running 2", secver=2)


def test_refuse_too_large_for_slot():
    head = otakit.update_file(K1, b"", length=SLOT - 4096 + 1)
    _refused(head, "does not fit the update slot (61441 bytes, at most 61440)")


def test_refuse_truncated_file_and_stream_stopping_halfway():
    data = otakit.update_file(K1, otakit.payload(9000))
    _refused(data[:300], "truncated (300 bytes, no complete header)")
    o = _refused(data[:448 + 5000], "truncated (5000 of 9000 bytes)")
    assert o.otadata.boot() == 0


def test_refuse_longer_than_header_says():
    data = otakit.update_file(K1, b"abc") + b"more"
    _refused(data, "longer than its header says", finish=False)


def test_refuse_payload_not_matching_signed_hash():
    data = otakit.update_file(K1, b"abc", sha=b"\x00" * 32)
    _refused(data, "checksum mismatch")


def test_second_update_while_one_runs_is_refused():
    o = host(tmpdir())
    u = updater(o)
    a = Audit()
    e = raises(ota.UpdateError, updater, o, audit=a)
    assert "another update is in progress" in str(e)
    assert a.events == [("web", "ota update", "refused", "another update is in progress")]
    u.cancel("test")
    assert not ota.busy()
    updater(o).cancel()


def test_module_lock_refuses_updates():
    from meter.settings import Settings
    from meter.logstore import LogStore

    d = tmpdir()
    a = Audit()
    s = Settings(LogStore(FilePartition(d + "/config", 16384)), a)
    s.set_lock({"lock.on": True, "lock.hash": "x"}, "web", "lock")
    e = raises(ota.UpdateError, updater, host(d), settings=s, audit=a)
    assert str(e) == "module locked: unlock it to update the firmware"
    assert a.events[-1] == ("web", "locked", "refused", "firmware update")
    assert not ota.busy()


def test_refused_while_running_image_is_unconfirmed():
    d = tmpdir()
    o = host(d)
    o.otadata.set_boot(1)
    o.otadata.boot()  # slot 1 started, pending verify
    o = host(d)
    o.current = 1
    e = raises(ota.UpdateError, updater, o)
    assert "has not passed its self-test" in str(e)


def test_async_reader_source_and_broken_source():
    class Reader:
        def __init__(self, data, fail_at=None):
            self.data, self.pos, self.fail_at = data, 0, fail_at

        async def read(self, n):
            if self.fail_at is not None and self.pos >= self.fail_at:
                raise OSError(104)  # ECONNRESET
            c = self.data[self.pos:self.pos + n]
            self.pos += len(c)
            return c

    data = otakit.update_file(K1, otakit.payload(5000))
    o = host(tmpdir())
    assert asyncio.run(ota.install(updater(o), Reader(data))) == "0.2.0"
    o = host(tmpdir())
    a = Audit()
    e = raises(ota.UpdateError, asyncio.run, ota.install(updater(o, audit=a), Reader(data, 2048)))
    assert "broke off" in str(e) and not ota.busy()
    assert a.events[-1][1:3] == ("ota update", "cancelled")
    assert o.otadata.active() == -1


def test_restart_saves_counters_audits_then_resets():
    app = FakeApp()
    ota.restart(app, "0.2.0")
    assert app.flushed == 1 and app.resets == 1
    assert app.audit.events == [("system", "ota restart", "ok", "0.2.0")]


# -- power cuts ---------------------------------------------------------------------


def _cycle(o):
    """Update to 0.2.0, the bootloader's first start, the self-test's
    confirmation: every flash operation of a whole update."""
    feed_all(updater(o), otakit.update_file(K1, otakit.payload(9000, 4)), 2500)
    o.current = o.otadata.boot()
    o.mark_app_valid_cancel_rollback()


def test_power_cut_at_every_flash_operation_boots_a_valid_image():
    d = tmpdir()
    o = host(d)
    factory(o)
    b = Budget()
    o = host(d, b)
    _cycle(o)
    total = b.ops
    assert total >= 10, total
    o = host(d)
    assert o.otadata.boot() == 1 and slot_image_ok(o.slots[1]) == 0x000200
    assert o.running_state() is not None and o.otadata.slot_state(1) == od.VALID
    new_seen = 0
    for k in range(total):
        d = tmpdir()
        factory(host(d))
        o = host(d, Budget(k))
        try:
            _cycle(o)
            raise AssertionError("no cut at operation %d of %d" % (k, total))
        except Cut:
            pass
        except ota.UpdateError as e:  # the updater reports the cut it saw
            assert "Cut()" in str(e), e
        ota._current[0] = None  # the power went: nothing in RAM survives
        o = host(d)  # reboot: the bootloader on the flash as the cut left it
        slot = o.otadata.boot()
        v = slot_image_ok(o.slots[slot])
        assert v is not None, "cut at op %d: slot %d does not hold a valid image" % (k, slot)
        new_seen += v == 0x000200
        assert slot == (1 if v == 0x000200 else 0)
    # Every cut comes before the confirmation is on the flash: each one
    # brings back the old image (the bootloader aborts a new image that was
    # started but not confirmed, or never sees it), and the update is simply
    # done again. Never a slot without a valid image.
    assert new_seen == 0, new_seen


# -- self-test ----------------------------------------------------------------------


class FakeOta:
    def __init__(self, state):
        self.state = state
        self.marked = 0

    def running_state(self):
        return self.state

    def mark_app_valid_cancel_rollback(self):
        self.marked += 1
        self.state = "valid"
        return True


class FakeApp:
    def __init__(self):
        from meter.supervisor import Supervisor

        self.audit = Audit()
        self.sup = Supervisor()
        self.resets = 0
        self.flushed = 0
        app = self

        class Board:
            def reset(self):
                app.resets += 1

        class Sampler:
            live_ok = True

            def flush(self):
                app.flushed += 1

        class Status:
            status = "ok"

            def get(self, key):
                return True

        self.board = Board()
        self.sampler = Sampler()
        self.counters = Status()
        self.settings = Status()
        self.services = [("Cloud MQTT", "mqtt.enabled"), ("Web Admin", "web.enabled")]


def test_selftest_confirms_once_everything_runs():
    app = FakeApp()
    app.sup.beats["meter"] = 1
    app.sup.tasks["display"] = app.sup.tasks["mqtt"] = object()
    o = FakeOta("pending-verify")
    from meter import selftest

    cs = selftest.checks(app)
    assert selftest.failing(cs) == "metering: metering task not running"
    app.sup.beats["meter"] = time.ticks_ms()  # it beat since
    assert selftest.failing(cs) is None
    assert [n for n, _ in cs] == ["stores", "metering", "display", "Cloud MQTT"]
    assert asyncio.run(selftest.run(app, o, cs, 1000, 1)) is None
    assert o.marked == 1 and app.resets == 0
    assert app.audit.events == [("system", "ota self-test", "ok", "0.1.0")]


def test_selftest_times_out_audits_saves_and_resets():
    from meter import selftest

    app = FakeApp()
    o = FakeOta("pending-verify")
    app.sup.restarts["mqtt"] = 1
    cs = [("Cloud MQTT", lambda: "mqtt task crashed")]
    assert asyncio.run(selftest.run(app, o, cs, 30, 5)) == "Cloud MQTT: mqtt task crashed"
    assert o.marked == 0 and app.resets == 1 and app.flushed == 1
    assert app.audit.events == [("system", "ota self-test", "failed",
                                 "Cloud MQTT: mqtt task crashed")]


def test_selftest_does_nothing_for_a_confirmed_image_or_without_otadata():
    from meter import selftest

    for state in ("valid", None):  # None: no otadata (a factory start)
        app = FakeApp()
        o = FakeOta(state)
        assert asyncio.run(selftest.run(app, o, [("x", lambda: "never")], 10, 1)) is None
        assert o.marked == 0 and app.resets == 0 and app.audit.events == [], state


def test_header_bytes_are_exact():
    h = otafmt.pack_header(3, otafmt.version_code("1.2.3"), 4, 0x10203, "esp32", b"\xab" * 32)
    assert h == (b"MOTA\x01\x03\x40\x00" + b"\x03\x02\x01\x00" + b"\x04\x00\x00\x00"
                 + b"\x03\x02\x01\x00" + b"esp32" + b"\x00" * 7 + b"\xab" * 32)
    assert otafmt.parse_header(h) == (3, 0x010203, 4, 0x10203, "esp32", b"\xab" * 32)
    assert struct.calcsize("<4sBBHIII12s32s") == 64
