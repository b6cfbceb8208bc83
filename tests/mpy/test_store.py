"""LogStore, energy counters, settings and audit log on NOR-flash rules."""

import struct

import micropython
from upytest import raises, tmpdir

from meter.board.flashfile import FilePartition
from meter.logrec import record_size
from meter.logstore import LogStore
from meter.energy import EnergyCounters, CounterError, RESET_CONFIRM
from meter.settings import Settings, SettingsError
from meter.audit import AuditLog

HEAP = "256k"


class Clock:
    t = 1_800_000_000
    valid = True

    def time(self):
        return self.t

    def time_valid(self):
        return self.valid


class Cut(Exception):
    pass


class CuttingPartition:
    """Wraps a FilePartition; after `budget` flash operations the next one
    is cut: a program writes only its first `torn` bytes, an erase only
    its first half. Models a power cut at any step."""

    def __init__(self, part, budget, torn=16):
        self.p = part
        self.budget = budget
        self.torn = torn

    def _tick(self):
        if self.budget == 0:
            return True
        self.budget -= 1
        return False

    def readblocks(self, b, buf, off=0):
        self.p.readblocks(b, buf, off)

    def info(self):
        return self.p.info()

    def writeblocks(self, b, buf, off=0):
        if self._tick():
            if self.torn:
                self.p.writeblocks(b, memoryview(buf)[:self.torn], off)
            raise Cut()
        self.p.writeblocks(b, buf, off)

    def ioctl(self, op, arg=None):
        if op == 6 and self._tick():
            half = self.p.block_size // 2
            self.p.writeblocks(arg, b"\x00" * 0, 0)
            f = self.p._f
            f.seek(arg * self.p.block_size + half)
            f.write(b"\xff" * half)  # second half erased, first half old data
            f.flush()
            raise Cut()
        return self.p.ioctl(op, arg)


def part(d, name="p", size=4 * 4096, bs=4096, noise=False):
    return FilePartition(d + "/" + name, size, block_size=bs, erased_noise=noise)


# LogStore tests run twice: on plain flash (erased reads 0xFF) and with
# erased_noise (an encrypted partition: erased reads as noise).


def test_flash_refuses_program_over_programmed():
    p = part(tmpdir())
    p.writeblocks(0, b"\x01\x02", 0)
    raises(OSError, p.writeblocks, 0, b"\x03", 0)
    p.writeblocks(0, b"\x01", 0)  # same value: allowed (no bit would change)
    p.ioctl(6, 0)
    p.writeblocks(0, b"\x03", 0)


def _append_and_reload_newest(noise):
    d = tmpdir()
    s = LogStore(part(d, noise=noise))
    assert s.noise == noise
    assert s.blank and not s.formatted and s.latest() is None
    for i in range(300):  # several block rotations
        s.append(1, b"rec%d" % i)
    s2 = LogStore(part(d, noise=noise))
    seq, kind, data = s2.latest()
    assert (seq, kind, data) == (300, 1, b"rec299")
    assert s2.damaged == 0 and not s2.blank and s2.formatted


def test_append_and_reload_newest():
    _append_and_reload_newest(False)


def test_append_and_reload_newest_noise():
    _append_and_reload_newest(True)


def _records_ring_keeps_newest_in_order(noise):
    d = tmpdir()
    s = LogStore(part(d, noise=noise))
    for i in range(900):  # wraps the 4-block ring
        s.append(3, b"e%03d" % i)
    seqs = []
    last = None
    for seq, kind, data in LogStore(part(d, noise=noise)).records():
        seqs.append(seq)
        last = data
    assert last == b"e899"
    assert len(seqs) >= s.capacity(4)
    # the oldest are gone, the newest are all there, in order
    assert seqs[0] > 1 and seqs == list(range(seqs[0], 901))


def test_records_ring_keeps_newest_in_order():
    _records_ring_keeps_newest_in_order(False)


def test_records_ring_keeps_newest_in_order_noise():
    _records_ring_keeps_newest_in_order(True)


def _torn_record_loads_previous_and_appends_elsewhere(noise):
    d = tmpdir()
    s = LogStore(part(d, noise=noise))
    s.append(1, b"good")
    c = CuttingPartition(part(d, noise=noise), 0, torn=16)
    s.part = c
    raises(Cut, s.append, 1, b"torn-record-payload")
    s2 = LogStore(part(d, noise=noise))
    assert s2.latest()[2] == b"good"
    assert s2.damaged == 1 and not s2.blank
    s2.append(1, b"after")  # not over the torn bytes: the flash would refuse
    assert s2.erases == 1  # a fresh block
    s3 = LogStore(part(d, noise=noise))
    assert s3.latest()[2] == b"after"
    assert [r[2] for r in s3.records()] == [b"good", b"after"]


def test_torn_record_loads_previous_and_appends_elsewhere():
    _torn_record_loads_previous_and_appends_elsewhere(False)


def test_torn_record_loads_previous_and_appends_elsewhere_noise():
    _torn_record_loads_previous_and_appends_elsewhere(True)


def _cut_at_every_step(noise, reboot):
    # MCUboot-style: count the flash operations of a workload, then rerun it
    # cut at every one of them; after each cut the newest valid record must
    # be the last one whose append returned, or the one being written, and
    # the store must go on appending after the cut (the flash refuses to
    # program over programmed bytes, so appending into torn space fails).
    # reboot: a fresh LogStore (a restart) before every append.
    payload = lambda i: struct.pack("<I", i) + b"x" * 60
    geo = {"size": 3 * 512, "bs": 512, "noise": noise}
    for torn in (0, 16, 48):
        k = 0
        while True:
            d = tmpdir()
            c = CuttingPartition(part(d, **geo), k, torn)
            s = LogStore(c)
            done = -1
            try:
                for i in range(30):
                    if reboot and i:
                        s = LogStore(c)
                    s.append(1, payload(i))
                    done = i
            except Cut:
                pass
            c.p.close()
            s2 = LogStore(part(d, **geo))
            got = s2.latest()
            val = -1 if got is None else struct.unpack_from("<I", got[2])[0]
            assert val in (done, done + 1), (torn, k, done, val)
            # a cut never reads as corrupt (no data, not blank, not formatted)
            assert got is not None or s2.blank or s2.formatted, (torn, k)
            s2.append(1, payload(99))
            s2.append(1, payload(100))
            s3 = LogStore(part(d, **geo))
            assert s3.latest()[2] == payload(100)
            seqs = [r[0] for r in s3.records()]
            assert seqs == sorted(seqs) and seqs[-1] == s3.seq, (torn, k, seqs)
            s2.part.close()
            s3.part.close()
            if done == 29:
                break
            k += 1
        assert k > 30  # every program and erase was cut once


def test_cut_at_every_step_never_loses_a_committed_record():
    _cut_at_every_step(False, False)


def test_cut_at_every_step_never_loses_a_committed_record_noise():
    _cut_at_every_step(True, False)


def test_cut_at_every_step_with_restarts():
    _cut_at_every_step(False, True)


def test_cut_at_every_step_with_restarts_noise():
    _cut_at_every_step(True, True)


def _restart_appends_in_place(noise):
    # An orderly restart (or a cut between writes) proves the tail erased:
    # no erase is spent, plain or encrypted.
    d = tmpdir()
    s = LogStore(part(d, noise=noise))
    s.append(1, b"a")
    assert s.erases == (1 if noise else 0)  # plain: a blank block 0 is proven
    for i in range(5):
        s = LogStore(part(d, noise=noise))
        s.append(1, b"b%d" % i)
        assert s.erases == 0
    assert [r[2] for r in LogStore(part(d, noise=noise)).records()] == [
        b"a", b"b0", b"b1", b"b2", b"b3", b"b4"]


def test_restart_appends_in_place():
    _restart_appends_in_place(False)


def test_restart_appends_in_place_noise():
    _restart_appends_in_place(True)


def test_noise_partition_reads_noise_and_enforces_flash_rules():
    d = tmpdir()
    p = part(d, noise=True)
    buf = bytearray(64)
    p.readblocks(1, buf, 0)
    assert buf != b"\xff" * 64 and len(set(buf)) > 16  # erased: noise
    again = bytearray(64)
    part(d, "p", noise=True).readblocks(1, again, 0)
    assert again == buf  # deterministic
    p.writeblocks(1, b"\xff" * 16 + b"data", 0)
    p.readblocks(1, buf, 0)
    assert buf[:20] == b"\xff" * 16 + b"data"  # programmed 0xFF reads 0xFF
    raises(OSError, p.writeblocks, 1, b"\x00", 0)  # ... and is programmed
    raises(OSError, p.writeblocks, 1, b"x", 16)
    p.ioctl(6, 1)
    p.writeblocks(1, b"x", 16)
    assert p.info()[5] and not part(d, "q").info()[5]


def _encrypt_in_place(path, size, bs):
    """What the ESP-IDF bootloader does on the first boot with flash
    encryption to a partition flagged `encrypted`: read each sector, erase
    it, write it back encrypted. Erased space becomes programmed ciphertext
    of 0xFF."""
    plain = FilePartition(path, size, block_size=bs)
    enc = FilePartition(path, size, block_size=bs, erased_noise=True)
    data = bytearray(bs)
    for b in range(size // bs):
        plain.readblocks(b, data, 0)
        enc.ioctl(6, b)
        enc.writeblocks(b, data, 0)
    plain.close()
    enc.close()


def test_blank_partition_encrypted_in_place_is_new_and_usable():
    d = tmpdir()
    part(d).close()
    _encrypt_in_place(d + "/p", 4 * 4096, 4096)
    s = LogStore(part(d, noise=True))
    buf = bytearray(32)
    s.part.readblocks(0, buf, 0)
    assert buf == b"\xff" * 32  # reads erased, but is programmed
    assert s.blank and not s.formatted and s.damaged == 0
    s.append(1, b"first")  # the flash would refuse a program into block 0
    assert s.erases == 1
    assert LogStore(part(d, noise=True)).latest()[2] == b"first"


def test_store_survives_encryption_turned_on():
    # Plain records, then the bootloader encrypts the partition in place:
    # they stay readable, and the first append does not program over the
    # (now programmed) space after them.
    d = tmpdir()
    s = LogStore(part(d))
    for i in range(50):
        s.append(1, b"r%d" % i)
    s.part.close()
    _encrypt_in_place(d + "/p", 4 * 4096, 4096)
    s = LogStore(part(d, noise=True))
    assert s.latest()[2] == b"r49" and s.damaged == 0
    s.append(1, b"enc")
    assert s.erases == 1
    s = LogStore(part(d, noise=True))
    assert s.latest()[2] == b"enc"
    assert [r[2] for r in s.records()][-3:] == [b"r48", b"r49", b"enc"]


def _torn_format_marker_is_still_blank(noise):
    d = tmpdir()
    # plain: the marker's meaningful bytes are its first 14 (header + CRC)
    for torn in ((0, 16) if noise else (0, 4, 8, 12)):
        name = "m%d" % torn
        c = CuttingPartition(part(d, name, noise=noise), 1 if noise else 0, torn)
        s = LogStore(c)
        raises(Cut, s.format)
        s2 = LogStore(part(d, name, noise=noise))
        assert s2.blank and not s2.formatted and s2.latest() is None, torn
        assert s2.damaged == (1 if torn else 0)
        assert s2.format()
        s3 = LogStore(part(d, name, noise=noise))
        assert s3.formatted and s3.blank and s3.latest() is None
        assert not s3.format()  # once


def test_torn_format_marker_is_still_blank():
    _torn_format_marker_is_still_blank(False)
    # a cut program can also leave bits of any byte unprogrammed
    d = tmpdir()
    s = LogStore(part(d, "ok"))
    s.format()
    unit = bytearray(32)
    s.part.readblocks(0, unit, 0)
    p = part(d)
    p.writeblocks(0, bytes(x | 0x21 for x in unit), 0)
    s = LogStore(p)
    assert s.blank and not s.formatted and s.damaged == 1
    p.writeblocks(0, b"\x00", 40)  # anything else in the block: corrupt
    s = LogStore(p)
    assert not s.blank and not s.formatted


def test_torn_format_marker_is_still_blank():
    _torn_format_marker_is_still_blank(False)


def test_torn_format_marker_is_still_blank_noise():
    _torn_format_marker_is_still_blank(True)


def _cut_in_first_write(noise, name, first, check):
    # A blank store, then its first write (which writes the format marker,
    # then the record) cut at every flash operation, with 0, 16 and 48 bytes
    # of the cut program landing. After the cut the store must load as
    # "new" (set up, nothing stored), never as damage; and the next write
    # must work. `first(part)` opens the store's user on `part` and does the
    # first write; `check(part, done)` reopens it after the cut.
    for torn in (0, 16, 48):
        k = 0
        while True:
            d = tmpdir()
            c = CuttingPartition(part(d, name, noise=noise), k, torn)
            try:
                first(c)
                done = True
            except Cut:
                done = False
            c.p.close()
            p = part(d, name, noise=noise)
            check(p, done, (noise, torn, k))
            p.close()
            if done:
                break
            k += 1
        # cut at the marker and the record (and, encrypted, the erase before)
        assert k == (3 if noise else 2), k


def _settings_first_write(noise):
    for key, value in (("ui.pin", "0123456789abcdef$" + "ab" * 32),  # first PIN
                       ("web.pass", "pbkdf2-sha256$6000$" + "cd" * 16 + "$" + "ef" * 32)):
        def first(p):
            s = Settings(LogStore(p))
            assert s.status == "new"
            s.update({key: value}, "menu")

        def check(p, done, how):
            s = Settings(LogStore(p))
            # never "corrupt"; a cut program may have landed whole: then "ok"
            assert s.status in (("ok",) if done else ("new", "ok")), (key, how, s.status)
            assert s.get(key) == (value if s.status == "ok" else ""), (key, how)
            s.update({key: value + "0"}, "menu")  # and the store goes on working
            assert Settings(LogStore(p)).get(key) == value + "0", (key, how)

        _cut_in_first_write(noise, "config", first, check)


def test_cut_in_first_settings_write_loads_as_new():
    _settings_first_write(False)


def test_cut_in_first_settings_write_loads_as_new_noise():
    _settings_first_write(True)


def _state_and_audit_first_write(noise):
    from meter import log
    from meter.state import State

    def first(p):
        State(LogStore(p)).set("pin_fails", 1)

    def check(p, done, how):
        mark = len(log.recent())
        st = State(LogStore(p))
        # a cut program may have landed whole: then the new value
        assert st.get("pin_fails") in ((1,) if done else (None, 1)), how
        warned = [l for l in log.recent()[mark:] if "state:" in l]
        assert not warned, (how, warned)  # a first write cut is no damage
        st.set("pin_fails", 2)
        assert State(LogStore(p)).get("pin_fails") == 2, how

    _cut_in_first_write(noise, "state", first, check)

    def first_a(p):
        a = AuditLog(LogStore(p), Clock())
        a.append("system", "boot")  # never raises: losing an event is logged
        if a.store.latest() is None:
            raise Cut()

    def check_a(p, done, how):
        a = AuditLog(LogStore(p), Clock())
        assert [e[3] for e in a.events()] in ([["boot"]] if done else [[], ["boot"]]), how
        a.append("menu", "again")
        assert AuditLog(LogStore(p), Clock()).events()[-1][3] == "again", how

    _cut_in_first_write(noise, "audit", first_a, check_a)


def test_cut_in_first_state_and_audit_write_loads_as_new():
    _state_and_audit_first_write(False)


def test_cut_in_first_state_and_audit_write_loads_as_new_noise():
    _state_and_audit_first_write(True)


def test_torn_only_record_is_not_blank_noise():
    # On encrypted flash junk cannot be told from erased space, but the
    # remains of one of our records can: not a first start.
    d = tmpdir()
    p = part(d, noise=True)
    p.ioctl(6, 2)
    p.writeblocks(2, struct.pack("<HBBIH", 0x5A17, 1, 1, 7, 40) + b"\x00" * 6, 0)
    s = LogStore(p)
    assert not s.blank and not s.formatted and s.damaged == 1
    junk = part(d, "junk", noise=True)
    junk.ioctl(6, 1)
    junk.writeblocks(1, b"garbage!" * 8, 0)
    assert LogStore(junk).blank  # indistinguishable from erased noise


def test_counters_persist_and_never_go_backwards():
    d = tmpdir()
    clk = Clock()
    audit = AuditLog(LogStore(part(d, "audit")), clk)
    c = EnergyCounters(LogStore(part(d, "cnt")), clk, audit, 3125)
    assert c.status == "new"
    c.add([1, 2, 3, 4, 0, 0, 0, 1])
    assert c.uwh[:4] == [3125, 6250, 9375, 12500]
    assert not c.due(0)
    c.add([400, 0, 0, 0, 0, 0, 0, 0])  # > 1 Wh pending
    assert not c.due(1000) and c.due(31000)
    c.save(31000)
    c2 = EnergyCounters(LogStore(part(d, "cnt")), clk, audit, 3125)
    assert c2.uwh == c.uwh and c2.status == "ok"


def test_small_pending_saved_after_max_interval():
    d = tmpdir()
    c = EnergyCounters(LogStore(part(d)), Clock(), None, 3125)
    c.add([1, 0, 0, 0, 0, 0, 0, 0])
    assert not c.due(0)
    assert not c.due(899_999)
    assert c.due(900_000)


def test_reset_needs_confirmation_and_is_audited():
    d = tmpdir()
    clk = Clock()
    audit = AuditLog(LogStore(part(d, "audit")), clk)
    c = EnergyCounters(LogStore(part(d, "cnt")), clk, audit, 3125)
    c.add([320] * 8)  # 1000 Wh each
    c.save()
    e = raises(CounterError, c.reset, "yes", "menu")
    assert "not confirmed" in str(e)
    assert c.uwh == [1_000_000] * 8
    c.reset(RESET_CONFIRM, "menu")
    assert c.uwh == [0] * 8 and c.generation == 1
    c2 = EnergyCounters(LogStore(part(d, "cnt")), clk, audit, 3125)
    assert c2.uwh == [0] * 8 and c2.generation == 1
    ev = audit.events()
    assert ev[-3][2:5] == ("menu", "counter-reset", "refused")
    assert ev[-2][2:6] == ("menu", "counter-reset", "pending", "Wh 1 1 1 1 1 1 1 1")
    assert ev[-1][2:6] == ("menu", "counter-reset", "ok", "generation 1")


def test_corrupt_counter_store_is_kept_not_overwritten():
    d = tmpdir()
    p = part(d)
    p.writeblocks(0, b"garbage!" * 8, 0)  # not blank, nothing valid
    c = EnergyCounters(LogStore(p), Clock(), None, 3125)
    assert c.status == "corrupt"
    c.add([1000] * 8)
    assert not c.due(10_000_000)
    raises(CounterError, c.save)
    buf = bytearray(64)
    p.readblocks(0, buf, 0)
    assert bytes(buf) == b"garbage!" * 8


def _snapshot(p, vals, gen=0, flags=0, v0=False):
    s = LogStore(p)
    if v0:  # written before the flags field existed
        s.append(1, struct.pack("<II8Q", gen, 0, *vals))
    else:
        s.append(1, struct.pack("<II8QI", gen, 0, *vals, flags))


def test_add_and_due_stay_in_small_ints():
    # On the ESP32 small ints are 31-bit and µWh totals pass that after
    # ~1 kWh. Here (63-bit) totals beyond 2**62 play that part: any
    # arithmetic on them would allocate, which heap_lock turns into an error.
    d = tmpdir()
    big = [2 ** 63 + i for i in range(8)]
    _snapshot(part(d), big)
    c = EnergyCounters(LogStore(part(d)), Clock(), None, 3125)
    assert c.uwh == big and c.status == "ok"
    buf = [65535, 1, 0, 7, 0, 0, 2, 65535]
    c.add(buf)
    c.due(0)
    micropython.heap_lock()
    try:
        for t in range(100):
            c.add(buf)
            c.due(t * 1000)
        due = c.due(31000)
    finally:
        micropython.heap_unlock()
    assert due
    assert c.uwh == [big[i] + 101 * buf[i] * 3125 for i in range(8)]
    assert c.pending() == 101 * 65535 * 3125
    assert c.wh(3) == (big[3] + 101 * 7 * 3125) // 1000000
    c.save(31000)
    assert c.pending() == 0 and c.uwh == [big[i] + 101 * buf[i] * 3125 for i in range(8)]
    assert EnergyCounters(LogStore(part(d)), Clock(), None, 3125).uwh == c.uwh


def test_save_threshold_is_exactly_one_wh():
    d = tmpdir()
    c = EnergyCounters(LogStore(part(d)), Clock(), None, 3125)
    c.add([319, 0, 0, 0, 0, 0, 0, 0])  # 996.875 mWh
    assert c.pending() == 996875
    assert not c.due(0) and not c.due(60000)
    c.add([1, 0, 0, 0, 0, 0, 0, 0])  # exactly 1 Wh
    assert c.pending() == 1000000 and c.due(60001)


def test_snapshot_without_flags_still_loads():
    d = tmpdir()
    _snapshot(part(d), [5 * 3125] * 8, gen=3, v0=True)
    c = EnergyCounters(LogStore(part(d)), Clock(), None, 3125)
    assert c.status == "ok" and c.generation == 3 and c.uwh == [15625] * 8
    c.add([1] * 8)
    c.save()
    c2 = EnergyCounters(LogStore(part(d)), Clock(), None, 3125)
    assert c2.uwh == [18750] * 8 and c2.generation == 3


def _counters_missing_after_earlier_boot(noise):
    d = tmpdir()
    clk = Clock()
    audit = AuditLog(LogStore(part(d, "audit", noise=noise)), clk)
    cnt = lambda: EnergyCounters(LogStore(part(d, "cnt", noise=noise)), clk, audit, 3125)
    c = cnt()
    assert c.status == "new"
    audit.append("system", "boot", "ok", "1.0")  # App.run, after loading
    c.add([400] * 8)
    c.save()
    assert cnt().status == "ok"
    # the counters partition is lost (erased, reflashed...)
    p = part(d, "cnt", noise=noise)
    for b in range(4):
        p.ioctl(6, b)
    c = cnt()
    assert c.status == "missing" and c.uwh == [0] * 8
    c.add([320] * 8)
    c.save()
    assert c.status == "missing"  # saving goes on, the flag stays
    c = cnt()
    assert c.status == "missing" and c.uwh == [1000000] * 8  # stored with the flag
    c.reset(RESET_CONFIRM, "menu")
    assert c.status == "ok"
    c = cnt()
    assert c.status == "ok" and c.generation == 1 and c.uwh == [0] * 8


def test_counters_missing_after_earlier_boot():
    _counters_missing_after_earlier_boot(False)


def test_counters_missing_after_earlier_boot_noise():
    _counters_missing_after_earlier_boot(True)


def _cut_before_first_save_is_still_new(noise):
    # First start: the store is set up at once, so a cut before the first
    # snapshot (after the boot event) does not read as counters lost.
    d = tmpdir()
    clk = Clock()
    audit = AuditLog(LogStore(part(d, "audit", noise=noise)), clk)
    c = EnergyCounters(LogStore(part(d, "cnt", noise=noise)), clk, audit, 3125)
    assert c.status == "new" and c.store.formatted
    audit.append("system", "boot", "ok", "1.0")
    c.add([400] * 8)  # never saved: power cut
    c = EnergyCounters(LogStore(part(d, "cnt", noise=noise)), clk, audit, 3125)
    assert c.status == "new" and c.uwh == [0] * 8
    # ... and so does a cut inside that first snapshot
    c.add([400] * 8)
    c.store.part = CuttingPartition(c.store.part, 0, 16)
    raises(Cut, c.save)
    c = EnergyCounters(LogStore(part(d, "cnt", noise=noise)), clk, audit, 3125)
    assert c.status == "new"
    c.add([400] * 8)
    c.save()
    assert EnergyCounters(LogStore(part(d, "cnt", noise=noise)), clk, audit, 3125).status == "ok"


def test_cut_before_first_save_is_still_new():
    _cut_before_first_save_is_still_new(False)


def test_cut_before_first_save_is_still_new_noise():
    _cut_before_first_save_is_still_new(True)


def test_blank_counters_without_earlier_boot_are_new():
    d = tmpdir()
    clk = Clock()
    audit = AuditLog(LogStore(part(d, "audit")), clk)
    audit.append("web", "login", "ok")  # events, but no boot
    c = EnergyCounters(LogStore(part(d, "cnt")), clk, audit, 3125)
    assert c.status == "new"


def test_settings_validate_atomic_and_guarded():
    d = tmpdir()
    clk = Clock()
    audit = AuditLog(LogStore(part(d, "audit")), clk)
    s = Settings(LogStore(part(d, "cfg")), audit)
    assert s.status == "new" and s.get("meter.line_freq") == 50
    raises(SettingsError, s.update, {"meter.line_freq": 55}, "web")
    raises(SettingsError, s.update, {"nope": 1}, "web")
    raises(SettingsError, s.update, {"display.contrast": "7"}, "web")
    # one bad key refuses the whole change
    raises(SettingsError, s.update, {"display.contrast": 10, "meter.tick_ms": 1}, "web")
    assert s.get("display.contrast") == 200
    s.update({"meter.line_freq": 60, "display.contrast": 10}, "menu")
    s2 = Settings(LogStore(part(d, "cfg")))
    assert s2.get("meter.line_freq") == 60 and s2.get("display.contrast") == 10
    assert audit.events()[-1][2:6] == ("menu", "settings", "ok", "display.contrast,meter.line_freq")


def test_settings_corrupt_runs_on_defaults_without_writing():
    d = tmpdir()
    p = part(d)
    p.writeblocks(0, b"\x17\x5a" + b"\x00" * 30, 0)
    s = Settings(LogStore(p))
    assert s.status == "corrupt" and s.get("display.contrast") == 200
    buf = bytearray(32)
    p.readblocks(0, buf, 0)
    assert buf[:2] == b"\x17\x5a"


def test_audit_survives_reload_and_clock_unknown():
    d = tmpdir()
    clk = Clock()
    a = AuditLog(LogStore(part(d)), clk)
    a.append("menu", "pin", "fail", "attempt 1")
    clk.valid = False
    a.append("web", "login", "ok")
    ev = AuditLog(LogStore(part(d)), clk).events()
    assert ev[0][1:] == (clk.t, "menu", "pin", "fail", "attempt 1")
    assert ev[1][1:] == (0, "web", "login", "ok", "")


def test_record_size_alignment():
    assert record_size(0) == 32 and record_size(18) == 32 and record_size(19) == 64
    assert record_size(72) == 96


class FailingPartition(CuttingPartition):
    """Every program fails (a flash that stopped taking writes)."""

    def writeblocks(self, b, buf, off=0):
        raise OSError(5)


def _failed_writes_never_erase_the_newest_record(noise):
    d = tmpdir()
    s = LogStore(part(d, noise=noise))
    s.append(1, b"newest good")
    s.part = FailingPartition(part(d, noise=noise), 10 ** 6)
    for _ in range(3 * s.nblocks):  # a long run of failing saves
        try:
            s.append(1, b"x" * 40)
        except OSError:
            pass
    got = LogStore(part(d, noise=noise)).latest()
    assert got[2] == b"newest good"
    assert s.seq > got[0]  # sequence numbers of failed writes are not reused


def test_failed_writes_never_erase_the_newest_record():
    _failed_writes_never_erase_the_newest_record(False)


def test_failed_writes_never_erase_the_newest_record_noise():
    _failed_writes_never_erase_the_newest_record(True)


class WrongPartition(CuttingPartition):
    """Programs a different byte than asked (silently bad flash)."""

    def writeblocks(self, b, buf, off=0):
        bad = bytearray(buf)
        bad[12] ^= 0x01
        self.p.writeblocks(b, bad, off)


def test_write_is_read_back():
    d = tmpdir()
    s = LogStore(part(d))
    s.append(1, b"good")
    s.part = WrongPartition(part(d), 10 ** 6)
    e = raises(OSError, s.append, 1, b"bad")
    assert e.args[0] == 5
    s.part = part(d)
    s.append(1, b"next")  # the block was closed: a fresh one
    assert s.erases == 1
    assert [r[2] for r in LogStore(part(d)).records()] == [b"good", b"next"]


def test_counter_save_failure_backs_off_and_is_flagged():
    d = tmpdir()
    c = EnergyCounters(LogStore(part(d)), Clock(), None, 3125)
    c.add([1000] * 8)
    c.store.part = FailingPartition(part(d), 10 ** 6)
    assert not c.due(0)
    assert c.due(40000)
    raises(OSError, c.save, 40000)
    assert c.save_failed
    assert not c.due(41000)  # not retried every tick
    assert c.due(70000)


def test_settings_change_announced_once_after_it_is_durable_and_audited():
    # Consumers wait in Settings.changed() instead of polling: each stored
    # change wakes every waiter once, when the record is on flash and the
    # audit has its one entry; a refused change wakes nobody.
    import asyncio

    d = tmpdir()
    audit = AuditLog(LogStore(part(d, "audit")), Clock())
    s = Settings(LogStore(part(d, "cfg")), audit)
    seen = []  # (waiter, value on a fresh load of the flash, audit entries)

    async def waiter(name):
        while True:
            await s.changed()
            seen.append((name, Settings(LogStore(part(d, "cfg"))).get("mqtt.port"),
                         len(audit.events())))

    async def main():
        tasks = [asyncio.create_task(waiter(n)) for n in ("a", "b")]
        await asyncio.sleep_ms(10)
        assert seen == [], "a waiter woke before any change: %r" % seen
        n0 = len(audit.events())
        s.update({"mqtt.port": 1883}, "web")
        await asyncio.sleep_ms(10)
        assert sorted(seen) == [("a", 1883, n0 + 1), ("b", 1883, n0 + 1)], \
            "each waiter wakes once, after the write and its single audit entry: %r" % seen
        raises(SettingsError, s.update, {"mqtt.port": 0}, "web")
        await asyncio.sleep_ms(10)
        assert len(seen) == 2, "a refused change must not wake anyone: %r" % seen
        s.update({"mqtt.port": 1884}, "menu")
        await asyncio.sleep_ms(10)
        assert [v for _, v, _ in seen[2:]] == [1884, 1884], seen
        assert s.seq == 2, "seq counts stored changes: %d" % s.seq
        for t in tasks:
            t.cancel()
        await asyncio.sleep_ms(0)

    asyncio.run(main())
