"""Energy counters: the billing registers of the analyzer.

Eight integer counters in micro-watt-hours (µWh): imported A, B, C, total,
exported A, B, C, total (the order of ATM90E32.read_energy). Totals are the
IC's own net-of-phases registers, as a billing meter counts: with phase C
exporting 1.5 kW while A and B import 3 kW, total import grows by 1.5 kW.

Integers only: each read-to-clear IC reading (in IC LSBs) is added, and a
counter is its saved µWh total plus the LSBs added since the last save times
the exact integer UWH_PER_LSB. Nothing is ever rounded, so the counters equal
the sum of everything the IC measured.

Small ints on the device: the ESP32 port's small ints are 31-bit, and a µWh
total passes that after ~1 kWh, so arithmetic on the totals allocates. The
per-tick path (add, due) therefore touches only the per-counter LSBs since
the last save (small: hundreds per save interval); the totals are combined
with them only when saving and when read (`uwh`, `wh`).

Persistence (see docs/energy.md for the figures): a snapshot record
(generation, time, 8 counters, flags) is appended to the `counters` LogStore
when at least SAVE_MIN_UWH is pending and SAVE_MIN_MS have passed since the
last save, or when anything at all is pending after SAVE_MAX_MS; and on every
orderly stop. A power cut therefore loses at most the energy measured in the
last SAVE_MIN_MS (or SAVE_MIN_UWH, whichever is larger), plus what the IC
held since its last read. Counters never go backwards: a torn write loads the
previous snapshot, which is not below any value loaded before it.

`status`: "ok"; "new" (nothing stored yet: first start); "missing" (the
store is blank although the audit log shows an earlier start: the counters
were lost; counting from 0 and saving go on, and the flag is stored with
every snapshot until a deliberate reset); "corrupt" (the store holds
something but no valid snapshot: kept for service, nothing is written until
a deliberate reset).

`generation` counts deliberate resets; reset() is the only way down.
"""

import struct
import time

from meter import log
from meter.errors import UserError

KIND = 1
N = 8
NAMES = ("imp_a", "imp_b", "imp_c", "imp_t", "exp_a", "exp_b", "exp_c", "exp_t")
_FMT = "<II8QI"  # generation, unix time, 8 counters (µWh), flags
_FMT_V0 = "<II8Q"  # snapshots written before the flags field (read only)
F_MISSING = 1  # flags: counting restarted from 0 after the store was lost

SAVE_MIN_MS = 30000
SAVE_MAX_MS = 900000
SAVE_MIN_UWH = 1000000  # 1 Wh

RESET_CONFIRM = "RESET"


class CounterError(UserError):
    """A counter reset was refused; str() says why."""


class EnergyCounters:
    def __init__(self, store, clock, audit, uwh_per_lsb, save_min_ms=SAVE_MIN_MS, guard=None):
        """guard(source, what): raises to refuse a reset (the module lock:
        Settings.require_unlocked)."""
        self.store = store
        self.guard = guard
        self.save_min_ms = save_min_ms
        self.clock = clock
        self.audit = audit
        self.k = uwh_per_lsb
        self._tot = [0] * N  # µWh at the last save (or load): may be long ints
        self._lsb = [0] * N  # IC LSBs added since then: small ints
        self._min_lsb = -(-SAVE_MIN_UWH // uwh_per_lsb)  # SAVE_MIN_UWH in LSBs, rounded up
        self._saved_ms = None
        self.generation = 0
        self.saved_at = 0  # unix time of the loaded/last snapshot
        self.status = "ok"  # ok, new, missing, corrupt (not persisting)
        self.saves = 0
        self.save_failed = False
        self.load()

    @property
    def uwh(self):
        """The eight counters in exact µWh (a new list on every read)."""
        k = self.k
        t = self._tot
        u = self._lsb
        return [t[i] + u[i] * k for i in range(N)]

    def load(self):
        store = self.store
        rec = store.latest()
        if rec is None:
            if store.formatted:
                # Set up by an earlier start that stored no snapshot (or was
                # cut writing the first one): nothing to lose yet.
                self.status = "new"
                log.info("energy: no counter snapshot yet")
            elif store.blank:
                if self._booted_before():
                    self.status = "missing"
                    log.error("energy: counter store blank after earlier starts; counting from 0")
                    try:
                        self.save()  # stores the flag at once
                    except Exception as e:
                        log.exc("energy: save failed", e)
                else:
                    self.status = "new"
                    log.info("energy: new counter store")
                    if self.audit is not None:
                        # First use: a later start must see this store as set
                        # up, or a cut before the first save would read as
                        # counters lost.
                        try:
                            store.format()
                        except Exception as e:
                            log.exc("energy: cannot set up counter store", e)
            else:
                # Something is there but nothing valid: keep it for service,
                # count in RAM only until someone resets deliberately.
                self._corrupt("counter store unreadable")
            return
        p = rec[2]
        if len(p) == 76:
            v = struct.unpack(_FMT, p)
            flags = v[10]
        elif len(p) == 72:
            v = struct.unpack(_FMT_V0, p)
            flags = 0
        else:
            self._corrupt("counter snapshot of unknown size %d" % len(p))
            return
        self.generation = v[0]
        self.saved_at = v[1]
        for i in range(N):
            self._tot[i] = v[2 + i]
            self._lsb[i] = 0
        if flags & F_MISSING:
            self.status = "missing"
            log.error("energy: counters restarted from 0 after the store was lost (until reset)")
        if store.damaged:
            log.warn("energy: %d damaged block(s), loaded seq %d" % (store.damaged, rec[0]))

    def _corrupt(self, why):
        self.status = "corrupt"
        log.error("energy: %s; not saving until reset" % why)

    def _booted_before(self):
        """Whether the audit log holds a "boot" event: App.run() records one
        at every start after the counters are loaded, so one found here is
        from an earlier start."""
        if self.audit is None:
            return False
        try:
            for ev in self.audit.events():
                if ev[3] == "boot" and ev[2] == "system":
                    return True
        except Exception as e:
            log.exc("energy: audit log unreadable", e)
        return False

    def add(self, lsb):
        """Add one set of IC readings (8 ints, IC LSBs). Called by exactly
        one task, right after the read, with no await in between. Small-int
        arithmetic only: allocates nothing."""
        u = self._lsb
        for i in range(N):
            v = lsb[i]
            if v:
                u[i] += v

    def _pending_lsb(self):
        m = 0
        u = self._lsb
        for i in range(N):
            if u[i] > m:
                m = u[i]
        return m

    def pending(self):
        """Largest unsaved amount on any counter (µWh)."""
        return self._pending_lsb() * self.k

    def due(self, now_ms):
        """Whether the save policy wants a snapshot now (allocates nothing)."""
        if self.status == "corrupt":
            return False
        if self._saved_ms is None:
            self._saved_ms = now_ms
        age = time.ticks_diff(now_ms, self._saved_ms)
        p = self._pending_lsb()
        return (p >= self._min_lsb and age >= self.save_min_ms) or (p > 0 and age >= SAVE_MAX_MS)

    def save(self, now_ms=None):
        """Append a snapshot. Raises CounterError if the store is unusable."""
        if self.status == "corrupt":
            raise CounterError("counter store corrupt")
        t = self.clock.time() if self.clock.time_valid() else 0
        u = self.uwh
        flags = F_MISSING if self.status == "missing" else 0
        rec = struct.pack(_FMT, self.generation, t, u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7],
                          flags)
        now = time.ticks_ms() if now_ms is None else now_ms
        try:
            self.store.append(KIND, rec)
        except Exception:
            self._saved_ms = now  # retry after save_min, not every tick
            self.save_failed = True
            raise
        self.save_failed = False
        tot = self._tot
        lsb = self._lsb
        for i in range(N):
            tot[i] = u[i]
            lsb[i] = 0
        self._saved_ms = now
        self.saved_at = t
        if self.status != "missing":
            self.status = "ok"
        self.saves += 1

    def reset(self, confirm, source):
        """The energy-counter reset service: irreversible, so it needs
        confirm == RESET_CONFIRM. Audits the values before the reset, then
        stores zeroed counters under a new generation. Every interface calls
        this; nothing else lowers a counter. Clears "corrupt" and "missing"."""
        if self.guard is not None:
            self.guard(source, "counter-reset")
        if confirm != RESET_CONFIRM:
            self.audit.append(source, "counter-reset", "refused", "not confirmed")
            raise CounterError("reset not confirmed")
        before = self.uwh
        # Audit first: a cut after the zeroed snapshot must not leave an
        # irreversible reset unrecorded.
        self.audit.append(source, "counter-reset", "pending",
                          "Wh " + " ".join("%d" % (v // 1000000) for v in before))
        old = (self.generation, self.status, self._tot[:], self._lsb[:])
        self.generation += 1
        for i in range(N):
            self._tot[i] = 0
            self._lsb[i] = 0
        self.status = "ok"  # a deliberate reset re-arms a corrupt store
        try:
            self.save()
        except Exception as e:
            self.generation, self.status = old[0], old[1]
            self._tot[:] = old[2]
            self._lsb[:] = old[3]
            self.audit.append(source, "counter-reset", "failed", repr(e))
            raise CounterError("reset not stored: %r" % e)
        self.audit.append(source, "counter-reset", "ok", "generation %d" % self.generation)
        log.info("energy: counters reset by %s (generation %d)" % (source, self.generation))

    def wh(self, i):
        return (self._tot[i] + self._lsb[i] * self.k) // 1000000
