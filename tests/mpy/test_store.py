"""LogStore, energy counters, settings and audit log on NOR-flash rules."""

import struct

from upytest import raises, tmpdir

from meter.board.flashfile import FilePartition
from meter.logstore import LogStore, record_size
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


def part(d, name="p", size=4 * 4096, bs=4096):
    return FilePartition(d + "/" + name, size, block_size=bs)


def test_flash_refuses_program_over_programmed():
    p = part(tmpdir())
    p.writeblocks(0, b"\x01\x02", 0)
    raises(OSError, p.writeblocks, 0, b"\x03", 0)
    p.writeblocks(0, b"\x01", 0)  # same value: allowed (no bit would change)
    p.ioctl(6, 0)
    p.writeblocks(0, b"\x03", 0)


def test_append_and_reload_newest():
    d = tmpdir()
    s = LogStore(part(d))
    assert s.blank and s.latest() is None
    for i in range(300):  # several block rotations
        s.append(1, b"rec%d" % i)
    s2 = LogStore(part(d))
    seq, kind, data = s2.latest()
    assert (seq, kind, data) == (300, 1, b"rec299")
    assert s2.damaged == 0 and not s2.blank


def test_records_ring_keeps_newest_in_order():
    d = tmpdir()
    s = LogStore(part(d))
    for i in range(500):
        s.append(3, b"e%03d" % i)
    seqs = []
    last = None
    for seq, kind, data in LogStore(part(d)).records():
        seqs.append(seq)
        last = data
    assert last == b"e499"
    assert len(seqs) >= s.capacity(4)
    # the oldest are gone, the newest are all there, in order
    assert seqs == list(range(seqs[0], 501))


def test_torn_record_loads_previous_and_appends_elsewhere():
    d = tmpdir()
    s = LogStore(part(d))
    s.append(1, b"good")
    c = CuttingPartition(part(d), 0, torn=16)
    s.part = c
    raises(Cut, s.append, 1, b"torn-record-payload")
    s2 = LogStore(part(d))
    assert s2.latest()[2] == b"good"
    assert s2.damaged == 1
    s2.append(1, b"after")
    s3 = LogStore(part(d))
    assert s3.latest()[2] == b"after"


def test_cut_at_every_step_never_loses_a_committed_record():
    # MCUboot-style: count the flash operations of a workload, then rerun it
    # cut at every one of them; after each cut the newest valid record must
    # be the last one whose append returned, or the one being written.
    payload = lambda i: struct.pack("<I", i) + b"x" * 60
    for torn in (0, 16, 48):
        k = 0
        while True:
            d = tmpdir()
            s = LogStore(part(d, size=3 * 512, bs=512))
            s.part = CuttingPartition(s.part, k, torn)
            done = -1
            try:
                for i in range(30):
                    s.append(1, payload(i))
                    done = i
            except Cut:
                pass
            got = LogStore(part(d, size=3 * 512, bs=512)).latest()
            s.part.p.close()
            val = -1 if got is None else struct.unpack_from("<I", got[2])[0]
            assert val in (done, done + 1), (torn, k, done, val)
            if done == 29:
                break
            k += 1
        assert k > 30  # every program and erase was cut once


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

    def locked(changes, source):
        raise SettingsError("module locked")

    s.add_guard(locked)
    e = raises(SettingsError, s.update, {"display.contrast": 11}, "web")
    assert str(e) == "module locked"
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


def test_failed_writes_never_erase_the_newest_record():
    d = tmpdir()
    s = LogStore(part(d))
    s.append(1, b"newest good")
    s.part = FailingPartition(part(d), 10 ** 6)
    for _ in range(3 * s.nblocks):  # a long run of failing saves
        try:
            s.append(1, b"x" * 40)
        except OSError:
            pass
    got = LogStore(part(d)).latest()
    assert got[2] == b"newest good"
    assert s.seq > got[0]  # sequence numbers of failed writes are not reused


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
