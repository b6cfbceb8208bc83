"""ATM90E32 driver against the register-level IcSim, with a driven clock."""

import os
import time

from meter.atm90e32 import (
    ATM90E32,
    BAD_VALUE,
    COMM,
    GARBAGE,
    MAX_UWH_PER_REG,
    NO_ANSWER,
    RESET,
    UWH_PER_LSB,
    Live,
    MeterFault,
    overflow_seconds,
)
from meter.board.icsim import PROFILES, IcSim, _Mono
from upytest import raises, tmpdir

HEAP = "256k"

LSB_UJ = 11250000  # one energy LSB in uJ (= mW * ms)
EADDR = (0x81, 0x82, 0x83, 0x80, 0x85, 0x86, 0x87, 0x84)  # read_energy order


class Clock:
    def __init__(self, t=1000):
        self.t = t

    def __call__(self):
        return self.t


class Rec:
    """Bus wrapper that logs every frame as tx + rx bytes."""

    def __init__(self, sim):
        self.sim = sim
        self.log = []

    def frame(self, tx, rx):
        self.sim.frame(tx, rx)
        self.log.append(bytes(tx) + bytes(rx))


def rig(profile="const", line_freq=50, cal=None, **kw):
    c = Clock()
    sim = IcSim(profile, c, **kw)
    drv = ATM90E32(sim, line_freq, cal)
    drv.init()
    return c, sim, drv


def raw_read(sim, addr):
    rx = bytearray(4)
    sim.frame(bytes((0x80 | (addr >> 8), addr & 0xFF, 0, 0)), rx)
    return (rx[2] << 8) | rx[3]


def raw_write(sim, addr, val):
    rx = bytearray(4)
    sim.frame(bytes((addr >> 8, addr & 0xFF, val >> 8, val & 0xFF)), rx)


def lsb(mw, ms):
    """Whole LSBs from mW over ms, computed independently of the sim."""
    return mw * ms // LSB_UJ


def add(acc, out):
    for j in range(8):
        acc[j] += out[j]


def rand_gen(seed):
    s = [seed]

    def nxt(lo, hi):
        s[0] = (s[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return lo + s[0] % (hi - lo + 1)

    return nxt


def close(a, b, tol):
    return abs(a - b) <= tol


# --- SPI frame format (simulator side) --------------------------------------
def test_sim_frame_format():
    sim = IcSim("idle", Clock())
    rx = bytearray(4)
    sim.frame(b"\x80\x33\x00\x00", rx)  # read MMode0: reset value 0x0087
    assert rx[2] == 0x00 and rx[3] == 0x87
    # locked: a write to MMode1 is dropped, but LastSPIData saw the word
    raw_write(sim, 0x34, 0x1234)
    assert raw_read(sim, 0x78) == 0x1234
    assert raw_read(sim, 0x34) == 0
    raw_write(sim, 0x7F, 0x55AA)  # unlock
    sim.frame(b"\x00\x34\x12\x34", rx)
    sim.frame(b"\x80\x34\x00\x00", rx)
    assert rx[2] == 0x12 and rx[3] == 0x34  # MSB first
    # bit 15 decides: clear = write, set = read (its data bytes are ignored)
    sim.frame(b"\x00\x34\xbe\xef", rx)
    sim.frame(b"\x80\x34\x55\x55", rx)
    assert (rx[2], rx[3]) == (0xBE, 0xEF)
    assert raw_read(sim, 0x34) == 0xBEEF
    assert raw_read(sim, 0x78) == 0xBEEF  # LastSPIData follows reads too
    assert raw_read(sim, 0x1FF) == 0 and raw_read(sim, 0x3AB) == 0  # unknown
    raw_write(sim, 0x81, 5)  # energy registers are read-only
    assert raw_read(sim, 0x81) == 0
    raw_write(sim, 0x70, 0x1234)  # wrong reset code: nothing happens
    assert raw_read(sim, 0x34) == 0xBEEF
    raw_write(sim, 0x70, 0x789A)  # soft reset: config back, locked again
    assert raw_read(sim, 0x34) == 0
    assert raw_read(sim, 0x33) == 0x0087
    raw_write(sim, 0x34, 0x0001)
    assert raw_read(sim, 0x34) == 0


def test_sim_energy_follows_meter_registers():
    c = Clock()
    sim = IcSim("const", c)
    c.t += 10000
    assert raw_read(sim, 0x81) == 0  # MeterEn 0 after power-up: no metering
    raw_write(sim, 0x7F, 0x55AA)
    raw_write(sim, 0x00, 1)
    pl = 2 * 140625000  # 1600 imp/kWh: one LSB is twice the energy
    raw_write(sim, 0x31, pl >> 16)
    raw_write(sim, 0x32, pl & 0xFFFF)
    c.t += 10000
    assert raw_read(sim, 0x81) == lsb(1000000, 10000) // 2 == 444
    assert raw_read(sim, 0x85) == 0 and raw_read(sim, 0x87) == lsb(1500000, 10000) // 2
    assert raw_read(sim, 0x81) == 0  # read-to-clear


def test_driver_frames():
    sim = IcSim("const", Clock())
    bus = Rec(sim)
    drv = ATM90E32(bus)
    drv.init()
    log = bus.log
    assert log[0][:4] == b"\x00\x70\x78\x9a"  # soft reset first
    assert b"\x00\x7f\x55\xaa" in [f[:4] for f in log]  # unlock
    assert b"\x00\x00\x00\x01" in [f[:4] for f in log]  # MeterEn = 1
    assert b"\x00\x7f\x00\x00" in [f[:4] for f in log]  # lock
    mm = [f for f in log if f[:2] == b"\x80\x33"]
    assert mm and mm[-1][6:8] == b"\x00\x87"  # read: answer in rx[2:4]
    for f in log:
        if f[0] & 0x80:
            assert f[2:4] == b"\x00\x00"
    # read_energy reads each energy register exactly once
    del log[:]
    out = [0] * 8
    assert drv.read_energy(out) is None
    for a in range(0x80, 0x90):
        n = len([f for f in log if f[0] == 0x80 and f[1] == a])
        assert n == (1 if a < 0x88 else 0), (hex(a), n)
    assert not [f for f in log if not f[0] & 0x80]  # and writes nothing


# --- init ---------------------------------------------------------------------
def test_init_configures_chip():
    cal = {"ugain": (101, 102, 103), "igain": 40000, "pga": 0x2A}
    c, sim, drv = rig("const", 60, cal)
    r = lambda a: raw_read(sim, a)  # noqa: E731
    assert r(0x00) == 1
    assert (r(0x31), r(0x32)) == (0x0861, 0xC468)  # 450e9 / 3200
    assert r(0x33) == 0x1087  # 60 Hz, 3P4W, net sum
    assert r(0x34) == 0x2A
    assert (r(0x61), r(0x65), r(0x69)) == (101, 102, 103)
    assert (r(0x62), r(0x66), r(0x6A)) == (40000, 40000, 40000)
    raw_write(sim, 0x34, 0x15)  # config is locked after init
    assert r(0x34) == 0x2A
    live = Live()
    drv.read_live(live)
    assert live.freq == 60.0
    c2, sim2, drv2 = rig("const")
    assert raw_read(sim2, 0x33) == 0x0087
    assert raw_read(sim2, 0x61) == 7305 and raw_read(sim2, 0x62) == 27518
    raises(ValueError, ATM90E32, sim, 55)
    raises(ValueError, ATM90E32, sim, 50, {"ugain": 70000})
    raises(ValueError, ATM90E32, sim, 50, {"igain": (1, 2)})


def test_init_fails_clearly():
    for fault, msg in (("silent", NO_ANSWER), ("zero", NO_ANSWER), ("garbage", GARBAGE)):
        sim = IcSim("house", Clock())
        sim.set_fault(fault)
        e = raises(MeterFault, ATM90E32(sim).init)
        assert str(e) == msg, (fault, str(e))
    assert len(NO_ANSWER) <= 16 and len(GARBAGE) <= 16 and len(COMM) <= 16


class DropWrites:
    """A chip that answers reads but never sees writes."""

    def __init__(self, sim):
        self.sim = sim

    def frame(self, tx, rx):
        if tx[0] & 0x80:
            self.sim.frame(tx, rx)


def test_init_fails_when_config_does_not_stick():
    sim = IcSim("house", Clock())
    e = raises(MeterFault, ATM90E32(DropWrites(sim)).init)
    assert str(e) == GARBAGE


# --- live values ----------------------------------------------------------------
def test_live_const():
    c, sim, drv = rig("const")
    c.t += 5000
    live = Live()
    drv.read_live(live)
    for n in range(3):
        assert live.v[n] == 230.0
    want_p = (1000.0, 2000.0, -1500.0)
    want_s = (1000.0, 2500.0, 1500.0)
    for n in range(3):
        assert close(live.p[n], want_p[n], 0.1), live.p
        assert close(live.s[n], want_s[n], 0.1), live.s
        assert close(live.i[n], want_s[n] / 230, 0.0006), live.i
    assert close(live.q[1], 1500.0, 0.1) and close(live.q[0], 0, 0.1)
    assert live.pf[:3] == [1.0, 0.8, -1.0]
    assert close(live.p[3], 1500.0, 0.3)  # net: 1000 + 2000 - 1500
    assert close(live.s[3], 5000.0, 0.3)  # arithmetic sum
    assert close(live.pf[3], 0.3, 0.0011)
    assert live.freq == 50.0


def test_live_matches_profile():
    for prof in ("house", "pv", "full", "idle"):
        c, sim, drv = rig(prof)
        rnd = rand_gen(7)
        live = Live()
        for _ in range(25):
            c.t += rnd(1, 400000)
            drv.read_live(live)
            pt = 0.0
            for n in range(3):
                v, i, p, q, s, pf = sim.phase(n)
                assert close(live.v[n], v, 0.006), (prof, live.v, v)
                assert close(live.i[n], min(i, 65.535), 0.0006), (prof, live.i, i)
                assert close(live.p[n], p, 0.1), (prof, live.p, p)
                assert close(live.q[n], q, 0.1), (prof, live.q, q)
                assert close(live.s[n], s, 0.1), (prof, live.s, s)
                assert close(live.pf[n], pf, 0.0006), (prof, live.pf, pf)
                pt += p
            assert close(live.p[3], pt, 0.3)
            assert live.freq == sim.freq()
            assert 49.9 <= live.freq <= 50.1


def test_live_pv_exports_on_phase_c():
    c, sim, drv = rig("pv")
    c.t += 15 * 60000  # mid "day"
    live = Live()
    drv.read_live(live)
    assert live.p[2] < -1000 and live.pf[2] < 0 and live.i[2] > 4
    assert live.p[0] > 0 and live.p[1] > 0
    c.t += 30 * 60000  # "night"
    drv.read_live(live)
    assert live.p[2] > 0


class Liar(IcSim):
    """Answers chosen registers with chosen (consistent) values."""

    over = {}

    def _read(self, addr):
        if addr in self.over:
            return self.over[addr]
        return IcSim._read(self, addr)


def test_live_rejects_impossible_values():
    bad = (
        {0xF8: 3000},  # 30 Hz with 230 V present
        {0xF8: 7500},  # 75 Hz
        {0xBD: 1200},  # pf A = 1.2
        {0xBF: 0x10000 - 1001},  # pf C = -1.001
        {0xBC: 1001},  # total pf
        {0xB9: 0x8000},  # negative apparent power
    )
    for over in bad:
        sim = Liar("house", Clock())
        drv = ATM90E32(sim)
        drv.init()
        sim.over = over
        e = raises(MeterFault, drv.read_live, Live())
        assert str(e) == BAD_VALUE, over
    # no voltage: a meaningless frequency is not an error
    sim = Liar("house", Clock())
    drv = ATM90E32(sim)
    drv.init()
    sim.over = {0xD9: 0, 0xDA: 0, 0xDB: 0, 0xF8: 0}
    live = Live()
    drv.read_live(live)
    assert live.freq == 0 and live.v == [0.0, 0.0, 0.0]


# --- energy ---------------------------------------------------------------------
def test_read_to_clear():
    c, sim, drv = rig("const")
    c.t += 10000
    out = [0] * 8
    assert drv.read_energy(out) is None
    a, b, x = lsb(1000000, 10000), lsb(2000000, 10000), lsb(1500000, 10000)
    assert out == [a, b, 0, x, 0, 0, x, 0], out
    assert a == 888 and b == 1777 and x == 1333
    assert drv.read_energy(out) is None
    assert out == [0] * 8  # cleared by the first read
    assert sim.truth == [a, b, 0, x, 0, 0, x, 0]


def test_const_exact_accounting_with_irregular_reads():
    c, sim, drv = rig("const")
    start = c.t
    rnd = rand_gen(11)
    acc = [0] * 8
    out = [0] * 8
    for n in range(1200):
        # mostly tiny steps (sub-LSB remainders), some seconds, some late
        r = rnd(0, 9)
        c.t += rnd(1, 40) if r < 4 else rnd(200, 9000) if r < 8 else rnd(20000, 60000)
        if n % 3:
            sim.advance()  # time passes between reads too
        assert drv.read_energy(out) is None
        add(acc, out)
    ms = c.t - start
    a, b, x = lsb(1000000, ms), lsb(2000000, ms), lsb(1500000, ms)
    assert acc == [a, b, 0, x, 0, 0, x, 0], (acc, ms)
    assert acc == sim.truth and sim.overflows == 0
    # the total is net (1500 W), not the arithmetic sum (4500 W)
    assert acc[3] == lsb(1000000 + 2000000 - 1500000, ms) and acc[7] == 0


def run(profile, seed, minutes, lo, hi, live_every=0):
    """Read energy at irregular intervals; return (sums, sim, clock)."""
    c, sim, drv = rig(profile)
    rnd = rand_gen(seed)
    end = c.t + minutes * 60000
    acc = [0] * 8
    out = [0] * 8
    live = Live()
    n = 0
    while c.t < end:
        c.t = min(end, c.t + rnd(lo, hi))
        assert drv.read_energy(out) is None
        add(acc, out)
        n += 1
        if live_every and n % live_every == 0:
            drv.read_live(live)
    return acc, sim, c


def test_house_exact_accounting_long_run():
    # 6 simulated hours, reads 50 ms .. 60 s apart, some live reads between
    acc, sim, c = run("house", 3, 360, 50, 60000, live_every=7)
    assert sim.overflows == 0
    assert acc == sim.truth, (acc, sim.truth)
    assert min(acc[:4]) > 0 and acc[4:] == [0, 0, 0, 0]  # all import
    # same world read every 10 s: identical totals (path independence)
    acc2, sim2, c2 = run("house", 3, 360, 10000, 10000)
    assert acc2 == acc, (acc2, acc)
    # hours of a few hundred W to a few kW per phase
    wh = [x * UWH_PER_LSB / 1e6 / 6 for x in acc[:3]]  # mean W
    for w in wh:
        assert 300 < w < 3000, wh


def test_pv_export_and_net_total():
    acc, sim, c = run("pv", 5, 60, 1000, 20000)
    assert acc == sim.truth and sim.overflows == 0
    assert acc[6] > 0  # exp_C: the inverter exports in the "day"
    assert acc[0] > 0 and acc[1] > 0 and acc[4] == 0 and acc[5] == 0
    assert acc[2] > 0  # phase C imports at "night"
    assert acc[7] > 0  # at peak the house as a whole exports
    # T is the net sum: each register floors its own remainder (< 1 LSB)
    net_t = acc[3] - acc[7]
    net_ph = acc[0] + acc[1] + acc[2] - acc[4] - acc[5] - acc[6]
    assert abs(net_t - net_ph) < 8, (net_t, net_ph)


def test_pv_night_does_not_export():
    c, sim, drv = rig("pv")
    c.t += 31 * 60000  # into the "night" half
    out = [0] * 8
    drv.read_energy(out)
    for _ in range(20):
        c.t += 30000
        assert drv.read_energy(out) is None
        assert out[6] == 0 and out[2] > 0


# --- faults during operation -------------------------------------------------
def test_faults_during_operation_lose_nothing():
    c, sim, drv = rig("house")
    acc = [0] * 8
    out = [0] * 8
    live = Live()
    for fault, msg in (("garbage", GARBAGE), ("silent", NO_ANSWER), ("zero", NO_ANSWER)):
        for _ in range(5):
            c.t += 5000
            assert drv.read_energy(out) is None
            add(acc, out)
        sim.set_fault(fault)
        for _ in range(3):
            c.t += 5000
            assert drv.read_energy(out) == msg, fault
            assert out == [0] * 8 and drv.unverified == 0
            e = raises(MeterFault, drv.read_live, live)
            assert str(e) == msg
        sim.set_fault(None)
        c.t += 5000
        assert drv.read_energy(out) is None
        add(acc, out)
    # the bus check kept the driver off the read-to-clear registers: the
    # energy waited in the chip and nothing was lost
    assert acc == sim.truth and sim.overflows == 0


class CorruptOnce:
    """Corrupts the answer of the first read of `addr` (after `skip` such
    reads), remembering the true value."""

    def __init__(self, sim, addr, skip=0):
        self.sim = sim
        self.addr = addr
        self.skip = skip
        self.true = None

    def frame(self, tx, rx):
        self.sim.frame(tx, rx)
        if self.true is None and tx[0] & 0x80 and tx[1] == self.addr:
            if self.skip:
                self.skip -= 1
                return
            self.true = (rx[2] << 8) | rx[3]
            rx[2] ^= 0x5A
            rx[3] ^= 0xA5


def test_corrupted_energy_read_is_not_trusted():
    c = Clock()
    sim = IcSim("const", c)
    bus = CorruptOnce(sim, 0x82)  # imp_B
    drv = ATM90E32(bus)
    drv.init()
    c.t += 10000
    out = [0] * 8
    assert drv.read_energy(out) == COMM
    assert drv.unverified == 1 << 1
    assert out == [888, 0, 0, 1333, 0, 0, 1333, 0]
    assert bus.true == 1777  # what the chip held, now cleared: lost
    c.t += 10000
    assert drv.read_energy(out) is None and drv.unverified == 0
    # trusted reads + the lost value account for every LSB of imp_B
    assert sim.truth[1] == lsb(2000000, 20000) == out[1] + bus.true


def test_corrupted_check_read_is_retried():
    c, sim, drv = rig("const")
    # the bus check reads LastSPIData twice; the third read is the check of
    # imp_A: corrupt it, the driver asks LastSPIData again
    bus = CorruptOnce(sim, 0x78, skip=2)
    drv._spi = bus
    c.t += 10000
    out = [0] * 8
    assert drv.read_energy(out) is None
    assert bus.true is not None  # the corruption did happen
    assert out == sim.truth == [888, 1777, 0, 1333, 0, 0, 1333, 0]


class DiesAfter:
    """MISO sticks at 0xFF after the first read of `addr`; the chip still
    receives (and clears what is read). `true` keeps what the chip sent."""

    def __init__(self, sim, addr):
        self.sim = sim
        self.addr = addr
        self.dead = False
        self.true = [0] * 8

    def frame(self, tx, rx):
        self.sim.frame(tx, rx)
        if tx[0] & 0x80 and tx[1] in EADDR:
            self.true[EADDR.index(tx[1])] = (rx[2] << 8) | rx[3]
        if self.dead:
            for n in range(4):
                rx[n] = 0xFF
        elif tx[0] & 0x80 and tx[1] == self.addr:
            self.dead = True


def test_bus_dying_mid_batch_gives_no_phantom_energy():
    c = Clock()
    sim = IcSim("full", c)
    bus = DiesAfter(sim, 0x83)  # dies right after reading imp_C
    drv = ATM90E32(bus)
    drv.init()
    c.t += 10000
    out = [0] * 8
    assert drv.read_energy(out) == NO_ANSWER
    assert out[:2] == sim.truth[:2] == [20444, 20444]  # verified in time
    assert out[2:] == [0] * 6  # unverified, or 0xFFFF from a stuck bus
    assert drv.unverified == 0xFC
    assert bus.true == sim.truth  # the chip was drained: that energy is lost
    c.t += 10000
    assert drv.read_energy(out) == NO_ANSWER and out == [0] * 8


class DiesAfterConfirm:
    """MISO sticks at 0xFF right after the LastSPIData read that confirms
    the first read of `addr`."""

    def __init__(self, sim, addr):
        self.sim = sim
        self.addr = addr
        self.state = 0  # 0 before addr, 1 addr read, 2 dead

    def frame(self, tx, rx):
        self.sim.frame(tx, rx)
        if self.state == 2:
            for k in range(4):
                rx[k] = 0xFF
        elif tx[0] & 0x80 and tx[1] == self.addr and self.state == 0:
            self.state = 1
        elif tx[0] & 0x80 and tx[1] == 0x78 and self.state == 1:
            self.state = 2


def test_bus_dying_during_live_read_is_reported():
    c, sim, drv = rig("house")
    # Freq is the last value read and it is confirmed: only the final bus
    # check can see that the bus is now stuck
    drv._spi = DiesAfterConfirm(sim, 0xF8)
    e = raises(MeterFault, drv.read_live, Live())
    assert str(e) == NO_ANSWER
    # dead from the Freq read on: the stuck 655.35 Hz is blamed on the bus
    drv._spi = DiesAfter(sim, 0xF8)
    e = raises(MeterFault, drv.read_live, Live())
    assert str(e) == NO_ANSWER
    drv._spi = sim
    drv.read_live(Live())


def test_ic_reset_is_detected():
    c, sim, drv = rig("const")
    c.t += 5000
    raw_write(sim, 0x70, 0x789A)  # the IC restarts behind our back
    out = [0] * 8
    assert drv.read_energy(out) == RESET
    e = raises(MeterFault, drv.read_live, Live())
    assert str(e) == RESET
    drv.init()
    c.t += 10000
    assert drv.read_energy(out) is None and out[0] == 888


def test_init_drain_keeps_energy_across_mcu_restart():
    c, sim, drv = rig("const")
    c.t += 10000
    out = [0] * 8
    ATM90E32(sim).init(drain=out)  # a new driver: the MCU restarted
    assert out == sim.truth == [888, 1777, 0, 1333, 0, 0, 1333, 0]
    c.t += 10000
    ATM90E32(sim).init()  # without draining, the soft reset loses it
    assert sim.truth[0] == 2 * 888
    assert drv.read_energy(out) is None and out == [0] * 8
    c2 = Clock()
    fresh = IcSim("const", c2)  # never configured: nothing to drain
    c2.t += 10000
    ATM90E32(fresh).init(drain=out)
    assert out == [0] * 8


# --- overflow bound ---------------------------------------------------------------
def test_overflow_constants():
    assert UWH_PER_LSB == 3125
    assert MAX_UWH_PER_REG == 65535 * 3125
    assert close(MAX_UWH_PER_REG / 1e6, 204.8, 0.01)
    assert close(overflow_seconds(23000), 32.05, 0.01)
    assert close(overflow_seconds(69000), 10.68, 0.01)
    assert overflow_seconds(0) == float("inf")
    assert overflow_seconds(-5) == float("inf")


def periodic(profile, interval_ms, reads):
    c, sim, drv = rig(profile)
    acc = [0] * 8
    out = [0] * 8
    for _ in range(reads):
        c.t += interval_ms
        assert drv.read_energy(out) is None
        add(acc, out)
    return acc, sim


def test_wrap_only_when_reads_are_late():
    t_total = overflow_seconds(69000) * 1000
    t_phase = overflow_seconds(23000) * 1000
    # in time for the 69 kW total register: nothing wraps
    acc, sim = periodic("full", int(t_total * 0.98), 12)
    assert sim.overflows == 0 and acc == sim.truth
    # too late for the total, in time for the phases: T wraps once a read
    acc, sim = periodic("full", int(t_total * 1.02), 12)
    assert sim.overflows == 12
    assert acc[:3] == sim.truth[:3]
    assert sim.truth[3] - acc[3] == 12 * 65536
    # too late for the phases as well
    acc, sim = periodic("full", int(t_phase * 1.02), 4)
    assert sim.overflows >= 4 * 4
    for j in range(4):
        assert sim.truth[j] - acc[j] >= 4 * 65536
        assert (sim.truth[j] - acc[j]) % 65536 == 0
    # house loads never come near the bound at a 60 s read interval
    acc, sim = periodic("house", 60000, 120)
    assert sim.overflows == 0 and acc == sim.truth


# --- truth file -------------------------------------------------------------------
def test_truth_file_round_trip():
    d = tmpdir()
    path = d + "/truth"
    c, sim, drv = rig("const", truth_path=path)
    c.t += 10000
    out = [0] * 8
    drv.read_energy(out)  # 888 1777 ... read
    c.t += 5000
    sim.advance()  # and 5 s more still in the registers
    with open(path) as f:
        text = f.read()
    assert text.endswith("\n") and text.count("\n") == 2
    truth, read = text.split("\n")[:2]
    assert [int(x) for x in truth.split()] == sim.truth
    assert [int(x) for x in read.split()] == sim.read == out  # handed out: 10 s
    assert sim.truth[0] == lsb(1000000, 15000) and len(truth.split()) == 8
    assert "truth.tmp" not in os.listdir(d)
    # "power cut": a new process loads the truth, the IC starts empty
    c2 = Clock(50)
    sim2 = IcSim("const", c2, truth_path=path)
    assert sim2.truth == sim.truth and sim2.read == sim.read
    drv2 = ATM90E32(sim2)
    drv2.init()
    assert drv2.read_energy(out) is None and out == [0] * 8
    c2.t += 10000
    assert drv2.read_energy(out) is None and out[0] == 888
    assert sim2.truth[0] == lsb(1000000, 15000) + 888
    with open(path) as f:
        assert [int(x) for x in f.read().split()][:8] == sim2.truth
    assert sim2.read[0] == sim.read[0] + 888  # carried over, plus this read
    # nothing accumulates (and nothing is written) while metering is off
    c3 = Clock(0)
    sim3 = IcSim("const", c3, truth_path=d + "/none")
    c3.t += 5000
    sim3.advance()
    assert "none" not in os.listdir(d)


# --- misc -----------------------------------------------------------------------
def test_profiles_and_arguments():
    assert PROFILES == ("house", "pv", "const", "full", "idle")
    raises(ValueError, IcSim, "nope")
    sim = IcSim("idle", Clock())
    raises(ValueError, sim.set_fault, "smoke")
    sim.set_fault("garbage")
    sim.set_fault(None)


def test_house_is_realistic_and_time_varying():
    c = Clock(0)
    sim = IcSim("house", c)
    lo = [1e9] * 3
    hi = [0.0] * 3
    for _ in range(360):  # one cycle in 10 s slots
        for n in range(3):
            p = sim.phase(n)[2]
            lo[n] = min(lo[n], p)
            hi[n] = max(hi[n], p)
        c.t += 10000
    for n in range(3):
        assert 100 <= lo[n] and hi[n] <= 6000, (lo, hi)
        assert hi[n] - lo[n] > 1000, (lo, hi)
    idle = IcSim("idle", c)
    assert [idle.phase(n)[2] for n in range(3)] == [0.0, 0.0, 0.0]


def test_default_clock_is_monotonic_across_tick_wrap():
    seq = [time.ticks_add(0, -5), time.ticks_add(0, 5), time.ticks_add(0, 25)]
    mono = _Mono(lambda: seq.pop(0))
    assert mono() == 10 and mono() == 30
    sim = IcSim("full")  # real clock
    drv = ATM90E32(sim)
    drv.init()
    time.sleep_ms(30)
    out = [0] * 8
    assert drv.read_energy(out) is None
    assert out[0] > 0 and out == sim.truth
