"""Energy counters: the billing registers of the analyzer.

Eight integer counters in micro-watt-hours (µWh): imported A, B, C, total,
exported A, B, C, total (the order of ATM90E32.read_energy). Totals are the
IC's own net-of-phases registers, as a billing meter counts: with phase C
exporting 1.5 kW while A and B import 3 kW, total import grows by 1.5 kW.

Integers only: each read-to-clear IC reading (in IC LSBs) is multiplied by
the exact integer UWH_PER_LSB and added. Nothing is ever rounded, so the
counters equal the sum of everything the IC measured.

Persistence (see docs/energy.md for the figures): a snapshot record
(generation, time, 8 counters) is appended to the `counters` LogStore when
at least SAVE_MIN_UWH is pending and SAVE_MIN_MS have passed since the last
save, or when anything at all is pending after SAVE_MAX_MS; and on every
orderly stop. A power cut therefore loses at most the energy measured in the
last SAVE_MIN_MS (or SAVE_MIN_UWH, whichever is larger), plus what the IC
held since its last read. Counters never go backwards: a torn write loads the
previous snapshot, which is not below any value loaded before it.

`generation` counts deliberate resets; reset() is the only way down.
"""

import struct

from meter import log

KIND = 1
N = 8
NAMES = ("imp_a", "imp_b", "imp_c", "imp_t", "exp_a", "exp_b", "exp_c", "exp_t")
_FMT = "<II8Q"  # generation, unix time, 8 counters

SAVE_MIN_MS = 30000
SAVE_MAX_MS = 900000
SAVE_MIN_UWH = 1000000  # 1 Wh

RESET_CONFIRM = "RESET"


class CounterError(Exception):
    pass


class EnergyCounters:
    def __init__(self, store, clock, audit, uwh_per_lsb, save_min_ms=SAVE_MIN_MS):
        self.store = store
        self.save_min_ms = save_min_ms
        self.clock = clock
        self.audit = audit
        self.k = uwh_per_lsb
        self.uwh = [0] * N
        self._saved = [0] * N
        self._saved_ms = None
        self.generation = 0
        self.saved_at = 0  # unix time of the loaded/last snapshot
        self.status = "ok"  # ok, new, corrupt (not persisting)
        self.saves = 0
        self.save_failed = False
        self.load()

    def load(self):
        rec = self.store.latest()
        if rec is None:
            if self.store.blank:
                self.status = "new"
                log.info("energy: new counter store")
            else:
                # Something is there but nothing valid: keep it for service,
                # count in RAM only until someone resets deliberately.
                self.status = "corrupt"
                log.error("energy: counter store unreadable; not saving until reset")
            return
        gen, t, *vals = struct.unpack(_FMT, rec[2])
        self.generation = gen
        self.saved_at = t
        for i in range(N):
            self.uwh[i] = vals[i]
            self._saved[i] = vals[i]
        if self.store.damaged:
            log.warn("energy: %d damaged block(s), loaded seq %d" % (self.store.damaged, rec[0]))

    def add(self, lsb):
        """Add one set of IC readings (8 ints, IC LSBs). Called by exactly
        one task, right after the read, with no await in between."""
        k = self.k
        u = self.uwh
        for i in range(N):
            v = lsb[i]
            if v:
                u[i] += v * k

    def pending(self):
        """Largest unsaved amount on any counter (µWh)."""
        m = 0
        for i in range(N):
            d = self.uwh[i] - self._saved[i]
            if d > m:
                m = d
        return m

    def due(self, now_ms):
        import time

        if self.status == "corrupt":
            return False
        if self._saved_ms is None:
            self._saved_ms = now_ms
        age = time.ticks_diff(now_ms, self._saved_ms)
        p = self.pending()
        return (p >= SAVE_MIN_UWH and age >= self.save_min_ms) or (p and age >= SAVE_MAX_MS)

    def save(self, now_ms=None):
        """Append a snapshot. Raises CounterError if the store is unusable."""
        import time

        if self.status == "corrupt":
            raise CounterError("counter store corrupt")
        t = self.clock.time() if self.clock.time_valid() else 0
        u = self.uwh
        rec = struct.pack(_FMT, self.generation, t, u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7])
        now = time.ticks_ms() if now_ms is None else now_ms
        try:
            self.store.append(KIND, rec)
        except Exception:
            self._saved_ms = now  # retry after save_min, not every tick
            self.save_failed = True
            raise
        self.save_failed = False
        for i in range(N):
            self._saved[i] = u[i]
        self._saved_ms = now
        self.saved_at = t
        self.status = "ok"
        self.saves += 1

    def reset(self, confirm, source):
        """The energy-counter reset service: irreversible, so it needs
        confirm == RESET_CONFIRM. Audits the values before the reset, then
        stores zeroed counters under a new generation. Every interface calls
        this; nothing else lowers a counter."""
        if confirm != RESET_CONFIRM:
            self.audit.append(source, "counter-reset", "refused", "not confirmed")
            raise CounterError("reset not confirmed")
        before = self.uwh[:]
        # Audit first: a cut after the zeroed snapshot must not leave an
        # irreversible reset unrecorded.
        self.audit.append(source, "counter-reset", "pending",
                          "Wh " + " ".join("%d" % (v // 1000000) for v in before))
        old = (self.generation, self.status)
        self.generation += 1
        for i in range(N):
            self.uwh[i] = 0
        self.status = "ok"  # a deliberate reset re-arms a corrupt store
        try:
            self.save()
        except Exception as e:
            self.generation, self.status = old
            self.uwh[:] = before
            self.audit.append(source, "counter-reset", "failed", repr(e))
            raise CounterError("reset not stored: %r" % e)
        self.audit.append(source, "counter-reset", "ok", "generation %d" % self.generation)
        log.info("energy: counters reset by %s (generation %d)" % (source, self.generation))

    def wh(self, i):
        return self.uwh[i] // 1000000
