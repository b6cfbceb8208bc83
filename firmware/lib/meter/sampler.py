"""The metering task: the only reader of the IC's energy registers.

Every tick it reads the eight read-to-clear energy registers and adds them
to the counters in the same synchronous step (no await in between), so no
reading can be lost to a task switch. A late tick loses nothing: the IC keeps
accumulating until the next read. The tick (1 s) is far below the time a
16-bit register takes to overflow at full load (see docs/energy.md), and
missed ticks are not made up in a burst: the next read simply collects more.
Then it refreshes the live values and, when the persistence policy says so,
saves a counter snapshot.
"""

import asyncio
import time

from meter import log
from meter.atm90e32 import RESET, Live, MeterFault
from meter.stats import Lateness

RETRY_INIT_MS = 5000


class Sampler:
    def __init__(self, meter, counters, supervisor, period_ms=1000):
        self.meter = meter
        self.counters = counters
        self.sup = supervisor
        self.period = period_ms
        self.live = Live()
        self.live_ok = False
        self.fault = "IC starting"  # None when the IC answers properly
        self.lateness = Lateness()
        self.energy_faults = 0
        self._buf = [0] * 8
        self._ready = False

    def tick(self):
        """One sampling step (synchronous: safe against task switches). The
        energy read comes last, so a final tick leaves nothing unread."""
        try:
            self.meter.read_live(self.live)
            self.live_ok = True
            live_fault = None
        except MeterFault as e:
            self.live_ok = False
            live_fault = str(e)
        buf = self._buf
        bad = self.meter.read_energy(buf)
        self.counters.add(buf)  # even with a fault: verified entries are real
        if bad:
            self.energy_faults += 1
        fault = bad or live_fault
        if fault == RESET:  # the IC lost its configuration: set it up again
            self._ready = False
        self._set_fault(fault)

    def _set_fault(self, msg):
        if msg != self.fault:
            if msg:
                log.error("meter: " + msg)
            else:
                log.info("meter: IC ok")
            self.fault = msg

    def _init_ic(self):
        try:
            # Drain first: after an MCU-only restart the IC still holds the
            # energy measured since the last read; the soft reset would drop it.
            # (Read and added here, not via init(drain=), so that it counts
            # even if the set-up then fails.)
            buf = self._buf
            self.meter.read_energy(buf)
            self.counters.add(buf)
            self.meter.init()
            self._ready = True
            self._set_fault(None)
        except MeterFault as e:
            self._set_fault(str(e))

    def flush(self):
        """Final read and save, for an orderly stop or reboot."""
        if self._ready:
            self.tick()
        if self.counters.status != "corrupt":
            self.counters.save()

    async def run(self):
        while True:
            while not self._ready:
                self._init_ic()
                self.sup.beat("meter")
                if not self._ready:
                    await asyncio.sleep_ms(RETRY_INIT_MS)
            await self._metering()

    async def _metering(self):
        period = self.period
        due = time.ticks_add(time.ticks_ms(), period)
        while self._ready:
            wait = time.ticks_diff(due, time.ticks_ms())
            if wait > 0:
                await asyncio.sleep_ms(wait)
            now = time.ticks_ms()
            late = time.ticks_diff(now, due)
            self.lateness.add(late)
            due = time.ticks_add(due, period)
            if time.ticks_diff(due, now) <= 0:  # missed whole ticks: resync
                due = time.ticks_add(now, period)
            self.tick()
            self.sup.beat("meter")
            if self.counters.due(now):
                try:
                    self.counters.save(now)
                except Exception as e:
                    log.exc("energy: save failed", e)
