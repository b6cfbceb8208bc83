"""The metering task's step against the register-level IC model."""

from meter.atm90e32 import ATM90E32, RESET, UWH_PER_LSB
from meter.board.icsim import IcSim
from meter.energy import EnergyCounters
from meter.logstore import LogStore
from meter.board.flashfile import FilePartition
from meter.sampler import Sampler
from meter.supervisor import Supervisor
from upytest import tmpdir

HEAP = "256k"


class Clock:
    def time(self):
        return 0

    def time_valid(self):
        return False


def make():
    now = [0]
    ic = IcSim(profile="const", clock_ms=lambda: now[0])
    c = EnergyCounters(LogStore(FilePartition(tmpdir() + "/c", 4 * 4096)), Clock(), None,
                       UWH_PER_LSB)
    return now, ic, c, Sampler(ATM90E32(ic), c, Supervisor())


def test_every_lsb_reaches_the_counters_with_late_ticks():
    now, ic, c, s = make()
    s._init_ic()
    for i, dt in enumerate((1000, 1000, 7000, 30, 2500, 9000, 1000)):
        now[0] += dt
        s.tick()
    assert s.fault is None
    assert c.uwh == [t * UWH_PER_LSB for t in ic.truth]
    assert c.uwh[6] > 0 and c.uwh[4] == 0  # const: C exports, A does not


def test_ic_reset_is_noticed_and_metering_set_up_again():
    now, ic, c, s = make()
    s._init_ic()
    now[0] += 2000
    s.tick()
    tx = bytearray(b"\x00\x70\x78\x9a")  # SoftReset: the chip loses its set-up
    ic.frame(tx, bytearray(4))
    now[0] += 2000
    s.tick()
    assert s.fault == RESET and not s._ready
    s._init_ic()  # what run() does next
    assert s._ready and s.fault is None
    before = c.uwh[0]
    now[0] += 2000
    s.tick()
    assert c.uwh[0] > before


def test_energy_held_by_the_ic_at_start_is_drained_not_dropped():
    now, ic, c, s = make()
    s._init_ic()
    now[0] += 3000
    s.tick()
    now[0] += 5000  # the MCU restarts: a new sampler, the IC keeps its registers
    s2 = Sampler(ATM90E32(ic), c, Supervisor())
    s2._init_ic()
    assert c.uwh == [t * UWH_PER_LSB for t in ic.truth]
