"""Driver for the Microchip (Atmel) ATM90E32AS three-phase metering IC.

Register map, scaling and sources: docs/metering.md.

The bus is any object with `frame(tx, rx)`: one chip-select framed 4-byte
full-duplex transfer. tx[0:2] is the 16-bit address with bit 15 set for a
read, tx[2:4] the data of a write; on a read the chip answers in rx[2:4].
Everything is MSB first.

Energy units: the chip is configured for a meter constant of 3200 imp/kWh
(PLconst = 450e9 / 3200), and each active-energy register counts 0.01 CF:

    1 LSB = 1 kWh / (3200 * 100) = 3.125 mWh = 3125 uWh = 11.25 J

A 16-bit energy register holds at most 65535 LSB = 204.8 Wh and then wraps,
so it must be read (which clears it) before that: see overflow_seconds().

Trust: every value read is checked against the LastSPIData register (the
chip's copy of the last data word on the bus), and every batch starts (and
the energy batch also ends) with a bus check reading MMode0 and MeterEn,
whose values are known. A chip that answers nothing (MISO stuck at 0x0000
or 0xFFFF) or garbage is reported, never turned into silently wrong values.
"""

import time

from micropython import const

# --- public constants -----------------------------------------------------
UWH_PER_LSB = const(3125)  # one energy LSB (0.01 CF at 3200 imp/kWh) in uWh
MJ_PER_LSB = const(11250)  # the same in millijoules (3.125 mWh * 3600 s/h)
ENERGY_REG_MAX = const(65535)  # largest count a 16-bit energy register holds
MAX_UWH_PER_REG = const(204796875)  # 65535 * 3125 uWh = 204.8 Wh, then it wraps
METER_CONSTANT = const(3200)  # imp/kWh
PL_CONST = const(140625000)  # 450e9 / METER_CONSTANT (0x0861C468)
POWER_W_PER_LSB = 0.00032  # W per LSB of the 32-bit (Pmean << 16 | PmeanLSB)

# Fault messages (short: they are shown on the 128x64 display).
NO_ANSWER = "IC no answer"  # MISO reads all 0x0000 or all 0xFFFF
GARBAGE = "IC garbage"  # answers, but inconsistent values
COMM = "IC comm error"  # a value could not be verified
RESET = "IC reset"  # chip lost its configuration: call init() again
BAD_VALUE = "IC bad value"  # verified but physically impossible

# Defaults for the CircuitSetup ESP32 meter boards (ESPHome examples): the
# Jameco 9 VAC transformer (Ugain 7305) and SCT-013-000 100 A/50 mA CTs
# (Igain 27518), PGA 2x on the current channels (MMode1 0x0015).
DEFAULT_UGAIN = const(7305)
DEFAULT_IGAIN = const(27518)
DEFAULT_PGA = const(0x0015)

# --- registers (see docs/metering.md) --------------------------------------
_METEREN = const(0x00)
_PLCONSTH = const(0x31)
_PLCONSTL = const(0x32)
_MMODE0 = const(0x33)
_MMODE1 = const(0x34)
_PSTARTTH = const(0x35)  # 0x35..0x37: P/Q/S all-phase startup thresholds
_PPHASETH = const(0x38)  # 0x38..0x3A: P/Q/S per-phase thresholds
_UGAINA = const(0x61)  # phase n: Ugain 0x61 + 4n, Igain 0x62 + 4n
_SOFTRESET = const(0x70)
_LASTSPIDATA = const(0x78)
_CFGREGACCEN = const(0x7F)
_PMEANA = const(0xB1)
_QMEANA = const(0xB5)
_SMEANA = const(0xB9)
_PFMEANT = const(0xBC)
_PFMEANA = const(0xBD)
_LSB_OFS = const(0x10)  # PmeanALSB = PmeanA + 0x10, same for Q and S
_URMSA = const(0xD9)
_IRMSA = const(0xDD)
_FREQ = const(0xF8)

_RESET_CODE = const(0x789A)
_UNLOCK_CODE = const(0x55AA)
_STARTTH = const(0x1D4C)  # startup / no-load thresholds as on CircuitSetup
_PHASETH = const(0x02EE)
_MMODE0_3P4W = const(0x0087)  # CF2varh, EnPA|EnPB|EnPC, ABSEnP=0 (net sum)
_MMODE0_60HZ = const(0x1000)

# Energy registers in read_energy() order: APenergyA, B, C, T (forward =
# import), ANenergyA, B, C, T (reverse = export).
_EREGS = b"\x81\x82\x83\x80\x85\x86\x87\x84"

_V_PRESENT = 50.0  # V: above this on a phase the frequency must be sane
_F_MIN = 40.0
_F_MAX = 70.0


class MeterFault(Exception):
    """The metering IC cannot be trusted; str(e) is a short display text."""


class Live:
    """Preallocated instantaneous values, filled by ATM90E32.read_live().

    v, i: per phase A, B, C (V, A).
    p, q, s, pf: A, B, C, then total (W, var, VA, -1..1). Totals: p and q
    are the algebraic sums of the phases, s the arithmetic sum, pf the
    chip's total power factor.
    freq: Hz.
    """

    def __init__(self):
        self.v = [0.0, 0.0, 0.0]
        self.i = [0.0, 0.0, 0.0]
        self.p = [0.0, 0.0, 0.0, 0.0]
        self.q = [0.0, 0.0, 0.0, 0.0]
        self.s = [0.0, 0.0, 0.0, 0.0]
        self.pf = [0.0, 0.0, 0.0, 0.0]
        self.freq = 0.0


def overflow_seconds(watts):
    """Seconds until a 16-bit energy register fed `watts` wraps.

    65535 LSB * 11.25 J / watts: 32.05 s for one phase at 23 kW, 10.68 s
    for the total register at 69 kW. Read more often than this. Returns
    inf when watts <= 0 (nothing accumulates).
    """
    if watts <= 0:
        return float("inf")
    return ENERGY_REG_MAX * (MJ_PER_LSB / 1000) / watts


def _per_phase(val, name):
    if isinstance(val, int):
        val = (val, val, val)
    if len(val) != 3:
        raise ValueError(name)
    for g in val:
        if not 0 <= g <= 0xFFFF:
            raise ValueError(name)
    return val


class ATM90E32:
    """One ATM90E32AS on `spi` (an object with frame(tx, rx)).

    line_freq: 50 or 60 (Hz). calibration: dict with optional keys
    "ugain" and "igain" (an int for all phases or three ints, raw
    Ugain/Igain register values) and "pga" (raw MMode1 value); missing
    keys take the CircuitSetup defaults above.
    """

    def __init__(self, spi, line_freq=50, calibration=None):
        if line_freq not in (50, 60):
            raise ValueError("line_freq")
        cal = calibration or {}
        self._spi = spi
        self._tx = bytearray(4)
        self._rx = bytearray(4)
        self._mmode0 = _MMODE0_3P4W | (_MMODE0_60HZ if line_freq == 60 else 0)
        self._ugain = _per_phase(cal.get("ugain", DEFAULT_UGAIN), "ugain")
        self._igain = _per_phase(cal.get("igain", DEFAULT_IGAIN), "igain")
        self._pga = cal.get("pga", DEFAULT_PGA)
        if not 0 <= self._pga <= 0xFFFF:
            raise ValueError("pga")
        self.unverified = 0  # bitmask of read_energy() entries lost last time

    # --- bus -------------------------------------------------------------
    def _read(self, addr):
        tx = self._tx
        rx = self._rx
        tx[0] = 0x80 | ((addr >> 8) & 0x03)
        tx[1] = addr & 0xFF
        tx[2] = 0
        tx[3] = 0
        self._spi.frame(tx, rx)
        return (rx[2] << 8) | rx[3]

    def _write(self, addr, val):
        tx = self._tx
        tx[0] = (addr >> 8) & 0x03
        tx[1] = addr & 0xFF
        tx[2] = (val >> 8) & 0xFF
        tx[3] = val & 0xFF
        self._spi.frame(tx, self._rx)

    def _confirmed(self, v):
        # LastSPIData holds the data word of the last transfer; reading it
        # does not change it, so a disagreement caused by a corrupted answer
        # to this check is retried once (a read-to-clear register is not).
        return self._read(_LASTSPIDATA) == v or self._read(_LASTSPIDATA) == v

    def _rdv(self, addr):
        """Verified read of a register that is not read-to-clear."""
        for _ in range(3):
            v = self._read(addr)
            if self._confirmed(v):
                return v
        raise MeterFault(COMM)

    def _rd32(self, addr):
        """Signed 32-bit (high word, then its LSB word) as a float."""
        hi = self._rdv(addr)
        lo = self._rdv(addr + _LSB_OFS)
        if hi & 0x8000:
            hi -= 0x10000
        return hi * 65536.0 + lo

    def _bus_check(self):
        """None when the chip answers with its known configuration."""
        m0 = self._read(_MMODE0)
        last = self._read(_LASTSPIDATA)
        if m0 != self._mmode0 or last != m0:
            if m0 == last:
                if m0 == 0 or m0 == 0xFFFF:
                    return NO_ANSWER
                return RESET  # consistent, but not what init() wrote
            return GARBAGE
        en = self._read(_METEREN)
        if self._read(_LASTSPIDATA) != en:
            return GARBAGE
        if en != 1:
            return RESET  # power glitch of the IC: metering stopped
        return None

    # --- API -------------------------------------------------------------
    def init(self, drain=None):
        """Reset and configure the chip, then verify it; MeterFault if not.

        Soft reset, unlock (CfgRegAccEn=0x55AA), MeterEn=1, PLconst for
        3200 imp/kWh, MMode0 (line frequency, 3P4W, net all-phase sum),
        MMode1 (PGA), startup thresholds, Ugain/Igain, lock. Every register
        written is read back and checked against LastSPIData.

        The soft reset clears the energy registers. If `drain` is a list of
        8, read_energy(drain) runs first, so that energy accumulated since
        the last read is not lost when only the MCU restarted. A chip that
        was not metering yet (fresh power-up) leaves drain all zeros, which
        is right: it holds no energy.
        """
        if drain is not None:
            self.read_energy(drain)
        w = self._write
        rd = self._read
        w(_SOFTRESET, _RESET_CODE)
        time.sleep_ms(6)  # the chip needs 5 ms after a reset
        cfg = [
            (_METEREN, 1),
            (_PLCONSTH, PL_CONST >> 16),
            (_PLCONSTL, PL_CONST & 0xFFFF),
            (_MMODE0, self._mmode0),
            (_MMODE1, self._pga),
            (_PSTARTTH, _STARTTH),
            (_PSTARTTH + 1, _STARTTH),
            (_PSTARTTH + 2, _STARTTH),
            (_PPHASETH, _PHASETH),
            (_PPHASETH + 1, _PHASETH),
            (_PPHASETH + 2, _PHASETH),
        ]
        for n in range(3):
            cfg.append((_UGAINA + 4 * n, self._ugain[n]))
            cfg.append((_UGAINA + 1 + 4 * n, self._igain[n]))
        checks = []  # (value read, value expected)
        w(_CFGREGACCEN, _UNLOCK_CODE)
        checks.append((rd(_LASTSPIDATA), _UNLOCK_CODE))
        for addr, val in cfg:
            w(addr, val)
        for addr, val in cfg:
            checks.append((rd(addr), val))
            checks.append((rd(_LASTSPIDATA), val))
        w(_CFGREGACCEN, 0)  # lock
        checks.append((rd(_LASTSPIDATA), 0))
        seen0 = seenf = True
        bad = False
        for got, want in checks:
            if got != 0:
                seen0 = False
            if got != 0xFFFF:
                seenf = False
            if got != want:
                bad = True
        if bad:
            # Nobody drives MISO when every word read is 0x0000 or 0xFFFF.
            raise MeterFault(NO_ANSWER if seen0 or seenf else GARBAGE)
        f = self._bus_check()
        if f:
            raise MeterFault(f)

    def read_energy(self, out):
        """Read the 8 read-to-clear active-energy registers, each once.

        out (list of 8) gets, in LSB (UWH_PER_LSB uWh each):
        (imp_A, imp_B, imp_C, imp_T, exp_A, exp_B, exp_C, exp_T), import =
        forward (APenergy), export = reverse (ANenergy). T is the chip's
        total register, accumulated from the algebraic sum of the phase
        powers (net across phases, as a billing meter counts).

        Returns None when every entry and the bus checks before and after
        verified, else a short fault string:
        - bus check before fails (NO_ANSWER, GARBAGE, RESET): nothing was
          read, out is all 0, and the energy stays in the chip for the next
          call (unless RESET: the chip restarted, its energy is gone; call
          init()).
        - an entry could not be verified (COMM): that entry is 0 and must
          not be trusted. Its register was cleared by the read, so its
          energy is LOST. self.unverified has bit j set for each such j.
        - bus check after fails: entries already verified are kept, except
          a 0xFFFF (a stuck bus looks like a full register), which is
          zeroed, counted as lost, and flagged in self.unverified.
        Never raises for a bus problem: registers already read are cleared
        and their values must reach the caller.
        """
        for j in range(8):
            out[j] = 0
        self.unverified = 0
        f = self._bus_check()
        if f:
            return f
        bad = 0
        for j in range(8):
            v = self._read(_EREGS[j])
            if self._confirmed(v):
                out[j] = v
            else:
                bad |= 1 << j
        f = self._bus_check()
        if f:
            for j in range(8):
                if out[j] == 0xFFFF:
                    out[j] = 0
                    bad |= 1 << j
        self.unverified = bad
        if f:
            return f
        return COMM if bad else None

    def read_live(self, live):
        """Fill `live` (a Live) with verified instantaneous values.

        Raises MeterFault when a bus check (before and after) or a value's
        verification fails, or a verified value is physically impossible
        (|pf| > 1, negative apparent power, frequency outside 40..70 Hz with
        voltage present). After a MeterFault `live` may be partly updated:
        do not use it.
        """
        f = self._bus_check()
        if f:
            raise MeterFault(f)
        k = POWER_W_PER_LSB
        vmax = 0.0
        pt = qt = st = 0.0
        for n in range(3):
            v = self._rdv(_URMSA + n) / 100
            live.v[n] = v
            if v > vmax:
                vmax = v
            live.i[n] = self._rdv(_IRMSA + n) / 1000
            p = self._rd32(_PMEANA + n) * k
            q = self._rd32(_QMEANA + n) * k
            s = self._rd32(_SMEANA + n) * k
            if s < 0:
                raise self._bad()
            live.p[n] = p
            live.q[n] = q
            live.s[n] = s
            pt += p
            qt += q
            st += s
            live.pf[n] = self._pf(_PFMEANA + n)
        live.p[3] = pt
        live.q[3] = qt
        live.s[3] = st
        live.pf[3] = self._pf(_PFMEANT)
        fr = self._rdv(_FREQ) / 100
        if vmax > _V_PRESENT and not _F_MIN <= fr <= _F_MAX:
            raise self._bad()
        live.freq = fr
        f = self._bus_check()  # a bus stuck at 0xFFFF confirms itself
        if f:
            raise MeterFault(f)

    def _pf(self, addr):
        pf = self._rdv(addr)
        if pf & 0x8000:
            pf -= 0x10000
        if pf > 1000 or pf < -1000:
            raise self._bad()
        return pf / 1000

    def _bad(self):
        # An impossible value: blame the bus if it fails now, else the data.
        return MeterFault(self._bus_check() or BAD_VALUE)
