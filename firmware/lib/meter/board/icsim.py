"""Register-level simulator of the ATM90E32AS, used by the host board.

`IcSim(...).frame(tx, rx)` speaks the chip's SPI protocol (see
meter.atm90e32): bit 15 of the address selects read (1) or write (0), data
is MSB first, the answer of a read is in rx[2:4].

Modelled:
- LastSPIData (0x78) holds the data word of the last read or write (reading
  it does not change it).
- Registers 0x00-0x6F and EMMIntEn (0x75, 0x76) only accept writes while
  CfgRegAccEn (0x7F) is 0x55AA; SoftReset (0x70) written with 0x789A
  restores every register's reset value, clears the energy registers and
  the sub-LSB remainders and stops metering (MeterEn = 0); registers 0x80
  and up are read-only; unknown registers read 0.
- Metering runs while MeterEn is 1. Per-phase active power comes from the
  profile, constant over 10 s slots, so energy is a deterministic function
  of elapsed time whatever the read pattern. The 8 active-energy
  registers (forward/reverse A, B, C, T) integrate it exactly in integers
  (uJ x 25 with a remainder per register); the LSB is 0.01 CF for the meter
  constant set by PLconstH/L (11.25 J at the default 3200 imp/kWh).
  Forward registers take positive phase power, reverse ones negative; the T
  registers take the net (algebraic) sum of the three phases. Registers are
  read-to-clear and wrap at 16 bits (each wrap counted in `overflows`).
- Live registers: Urms (0.01 V), Irms (0.001 A, saturating at 65.535 A),
  Pmean/Qmean/Smean and their LSB words (32-bit, 0.00032 W per LSB, low 8
  bits zero; reading the high word latches its LSB word), totals PmeanT,
  QmeanT (algebraic) and SAmeanT (arithmetic) in 4x that unit, PFmean
  (0.001, signed), Freq (0.01 Hz; nominal 50 or 60 Hz after MMode0 bit 12).
- Faults (set_fault): "garbage" = the chip works but MISO carries random
  bytes; "silent" (rx all 0xFF, MISO pulled up) and "zero" (all 0x00) = the
  frames never reach the chip. In every case the chip keeps metering.

Not modelled: gains, offsets and thresholds (stored, read back, no effect),
reactive/apparent/fundamental/harmonic energy, status and interrupt
registers, timing (5 ms after reset, SPI speed), CRC registers.

`truth`: the 8 cumulative LSB counts ever put into the energy registers
(read_energy order), including what is still in them; energy lost in the
registers (read with a corrupted answer, wrapped, soft reset, or a power cut
of the host process: the IC's registers die with it) stays in `truth`. With
`truth_path` it is loaded at start and rewritten atomically (".tmp", then
rename) after every advance that changed it: one line of 8 integers. A
second line holds `read`, the LSB counts handed out by reads of the energy
registers: what the firmware must have counted (truth - read is what the
registers still hold, lost when the process ends).
"""

import os
import time

from micropython import const

PROFILES = ("house", "pv", "const", "full", "idle")
FAULTS = (None, "garbage", "silent", "zero")

SLOT_MS = const(10000)  # profile power is constant over a slot
CYCLE_MS = const(3600000)  # "house"/"pv" repeat every simulated hour

_LASTSPIDATA = const(0x78)
_SOFTRESET = const(0x70)
_CFGREGACCEN = const(0x7F)
_METEREN = const(0x00)
_PLCONSTH = const(0x31)
_PLCONSTL = const(0x32)
_MMODE0 = const(0x33)

# energy register address -> index in read_energy order
_EIDX = {0x81: 0, 0x82: 1, 0x83: 2, 0x80: 3, 0x85: 4, 0x86: 5, 0x87: 6, 0x84: 7}

# Reset values (registers not listed reset to 0).
_DEFAULTS = {0x31: 0x0861, 0x32: 0xC468, 0x33: 0x0087}


class _Mono:
    """Monotonic ms from time.ticks_ms, immune to its wraparound (as long
    as it is called at least once per half tick period)."""

    def __init__(self, ticks=None):
        self._ticks = ticks or time.ticks_ms
        self._prev = self._ticks()
        self._t = 0

    def __call__(self):
        now = self._ticks()
        self._t += time.ticks_diff(now, self._prev)
        self._prev = now
        return self._t


def _tri(x, period):
    """Triangle wave 0..1000..0 (integer) over `period`."""
    x = (x % period) * 2000 // period
    return x if x <= 1000 else 2000 - x


def _hash(n):
    n = (n * 2654435761) & 0xFFFFFFFF
    return n ^ (n >> 15)


class IcSim:
    def __init__(self, profile="house", clock_ms=None, truth_path=None):
        if profile not in PROFILES:
            raise ValueError("profile")
        self.profile = profile
        self._clock = clock_ms or _Mono()
        self._t0 = self._clock()
        self._now = 0  # ms since start, up to which energy is integrated
        self._const = profile in ("const", "full", "idle")
        self.truth = [0] * 8
        self.read = [0] * 8
        self.overflows = 0
        self.fault = None
        self.truth_path = truth_path
        self._rng = 0x2545F491
        self._energy = [0] * 8
        self._rem = [0] * 8
        self._num = [0] * 8
        self._regs = {}
        self._latch = {}
        self._last = 0
        if truth_path:
            try:
                with open(truth_path) as f:
                    vals = [int(x) for x in f.read().split()]
            except OSError:
                vals = None
            if vals is not None:
                if len(vals) not in (8, 16):
                    raise ValueError("truth file")
                self.truth = vals[:8]
                self.read = vals[8:] or vals[:8]
        self._reset()

    # --- faults ----------------------------------------------------------
    def set_fault(self, mode):
        """None, "garbage", "silent" or "zero" (see the module doc)."""
        if mode not in FAULTS:
            raise ValueError("fault")
        self.fault = mode

    def _rand(self):
        x = self._rng
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._rng = x
        return x

    # --- SPI -------------------------------------------------------------
    def frame(self, tx, rx):
        self.advance()
        f = self.fault
        if f == "silent" or f == "zero":
            b = 0xFF if f == "silent" else 0
            for n in range(4):
                rx[n] = b
            return
        addr = ((tx[0] & 0x03) << 8) | tx[1]
        rx[0] = 0
        rx[1] = 0
        if tx[0] & 0x80:
            v = self._read(addr)
            if addr != _LASTSPIDATA:
                self._last = v
            rx[2] = v >> 8
            rx[3] = v & 0xFF
        else:
            v = (tx[2] << 8) | tx[3]
            self._write(addr, v)
            self._last = v
            rx[2] = 0
            rx[3] = 0
        if f == "garbage":
            r = self._rand()
            for n in range(4):
                rx[n] = (r >> (8 * n)) & 0xFF

    def _write(self, addr, v):
        if addr == _SOFTRESET:
            if v == 0x789A:
                self._reset()
        elif addr == _CFGREGACCEN or addr in (0x73, 0x74):
            self._regs[addr] = v if addr == _CFGREGACCEN else 0
        elif addr <= 0x6F or addr in (0x75, 0x76):
            if self._regs.get(_CFGREGACCEN) == 0x55AA:
                self._regs[addr] = v
        # anything else is read-only: ignored

    def _reset(self):
        self._regs = dict(_DEFAULTS)
        self._latch = {}
        for j in range(8):
            self._energy[j] = 0
            self._rem[j] = 0

    def _read(self, addr):
        if addr == _LASTSPIDATA:
            return self._last
        j = _EIDX.get(addr)
        if j is not None:
            v = self._energy[j]
            self._energy[j] = 0
            if v:
                self.read[j] += v
                if self.truth_path:
                    self._save()
            return v
        if 0xB0 <= addr <= 0xFF:
            return self._live(addr)
        return self._regs.get(addr, 0)

    # --- the electrical world -------------------------------------------
    def _phase(self, k, n):
        """(active power mW, power factor x1000 signed, voltage x100) of
        phase n during slot k."""
        prof = self.profile
        if prof == "const":
            return ((1000000, 1000), (2000000, 800), (-1500000, -1000))[n] + (23000,)
        if prof == "full":
            return (23000000, 1000, 23000)
        if prof == "idle":
            return (0, 0, 23000)
        t = k * SLOT_MS
        tri = _tri(t + n * (CYCLE_MS // 3), CYCLE_MS)
        h = _hash(k // 18 + 7919 * n)  # 3-minute appliance blocks
        p = (220, 160, 300)[n] * 1000 + 700 * tri  # base + slow swing
        if h % 5 == 0:
            p += (2000, 1200, 2400)[n] * 1000  # kettle, oven, heater...
        if (k // 9 + n) % 3 == 0:
            p += 110000  # fridge compressor
        pf = 920 + h % 60
        v = 23000 + (-150, 80, 40)[n] + (tri - 500) // 5
        if prof == "pv" and n == 2:
            c = t % CYCLE_MS
            if c < CYCLE_MS // 2:  # "day": a bell of PV production, 4.5 kW peak
                x = c * 1000 // (CYCLE_MS // 2)
                p -= 4500 * 4 * x * (1000 - x) // 1000
                if p < 0:
                    pf = -990
        return (p, pf, v)

    def advance(self):
        """Integrate energy up to the clock's now (frame() calls it)."""
        now = self._clock() - self._t0
        t = self._now
        if now <= t:
            return
        self._now = now
        regs = self._regs
        if regs.get(_METEREN, 0) & 1 == 0:
            return
        denom = 2 * ((regs.get(_PLCONSTH, 0) << 16) | regs.get(_PLCONSTL, 0))
        if denom == 0:
            return
        num = self._num
        if self._const:
            self._accum(num, 0, now - t)
        else:
            while t < now:
                k = t // SLOT_MS
                end = (k + 1) * SLOT_MS
                if end > now:
                    end = now
                self._accum(num, k, end - t)
                t = end
        changed = False
        energy = self._energy
        rem = self._rem
        for j in range(8):
            if num[j]:
                # 1 LSB = PLconst * 0.08 uJ; numbers here are uJ * 25.
                q, r = divmod(rem[j] + 25 * num[j], denom)
                num[j] = 0
                rem[j] = r
                if q:
                    changed = True
                    self.truth[j] += q
                    e = energy[j] + q
                    if e > 0xFFFF:
                        self.overflows += e >> 16
                        e &= 0xFFFF
                    energy[j] = e
        if changed and self.truth_path:
            self._save()

    def _accum(self, num, k, dt):
        tot = 0
        for n in range(3):
            p = self._phase(k, n)[0]
            tot += p
            if p > 0:
                num[n] += p * dt
            elif p < 0:
                num[4 + n] -= p * dt
        if tot > 0:
            num[3] += tot * dt
        elif tot < 0:
            num[7] -= tot * dt

    def _save(self):
        tmp = self.truth_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(" ".join([str(x) for x in self.truth]) + "\n")
            f.write(" ".join([str(x) for x in self.read]) + "\n")
        os.rename(tmp, self.truth_path)

    def phase(self, n):
        """Truth of phase n now: (V, A, W, var, VA, pf) as floats."""
        self.advance()
        return self._ph(n)

    def _ph(self, n):
        p, pf, v = self._phase(self._now // SLOT_MS, n)
        p /= 1000
        pf /= 1000
        v /= 100
        s = abs(p / pf) if pf else 0.0
        q = (s * s - p * p) ** 0.5 if s * s > p * p else 0.0
        return (v, s / v if v else 0.0, p, q, s, pf)

    def freq(self):
        """Line frequency now (Hz), as the Freq register reports it."""
        self.advance()
        return self._freq_reg() / 100

    def _freq_reg(self):
        f = 6000 if self._regs.get(_MMODE0, 0) & 0x1000 else 5000
        if not self._const:
            f += (_tri(self._now, 600000) - 500) // 100  # +-5 x 0.01 Hz
        return f

    def _live(self, addr):
        if addr == 0xF8:
            return self._freq_reg()
        lsb = 0xC0 <= addr <= 0xCB
        base = addr - 0x10 if lsb else addr
        if 0xD9 <= addr <= 0xDB or 0xDD <= addr <= 0xDF:
            v, i = self._ph((addr - 0xD9) & 3)[:2]
            if addr <= 0xDB:
                return int(v * 100 + 0.5)
            return min(int(i * 1000 + 0.5), 0xFFFF)
        if not 0xB0 <= base <= 0xBF:
            return 0
        grp = (base - 0xB0) >> 2  # 0 P, 1 Q, 2 S, 3 PF
        n = (base - 0xB0) & 3  # 0 total, 1..3 phases A..C
        if grp == 3:
            if n:
                return self._phase(self._now // SLOT_MS, n - 1)[1] & 0xFFFF
            pt = st = 0.0
            for m in range(3):
                ph = self._ph(m)
                pt += ph[2]
                st += ph[4]
            return (int(round(pt / st * 1000)) if st else 0) & 0xFFFF
        if n:
            w = self._ph(n - 1)[2 + grp]
        else:
            w = 0.0
            for m in range(3):
                w += self._ph(m)[2 + grp]
            w /= 4  # all-phase registers count 4x the phase unit
        raw = int(round(w / 0.00032)) & ~0xFF & 0xFFFFFFFF
        if lsb:
            v = self._latch.pop(addr, None)
            return (raw & 0xFFFF) if v is None else v
        self._latch[addr + 0x10] = raw & 0xFFFF
        return raw >> 16
