"""Composition root: builds the board and the core services, installs the
features, runs the tasks.

One cooperative asyncio loop. The core is metering (critical), the
settings store, the counters, the display and the watchdog. Everything
else is a feature: a module in FEATURES with install(app), which registers
what it brings through the registry below and nothing else
(docs/architecture.md, "Adding a feature"):

    add_menu(where, label, fn(ui))   a menu entry; where: "security",
                                     "communication", "wifi", or
                                     "wifi-reset" (offered after Reset Wi-Fi)
    add_service(label, key)          a network service switched by a bool
                                     setting (menu Services, self-test)
    add_command(name, fn(args))      a control command (the simulator's socket;
                                     none on a board without one)
    add_status(prio, fn() -> text)   a status-line text or None; lower prio
                                     first; the core faults rank at 20
                                     (meter/home.py)
    add_notice(fn() -> lines)        lines shown instead of the pages
    spawn(name, coroutine fn)        a supervised task, started by run()
    on_start(fn())                   called once the tasks run
    add_state(key, fn())             a value in the control socket's `state`
    provide(name, factory())         app.<name>, built by factory() on first
                                     use (code that loads only when needed)

A feature that others use sets its handle on the app (app.web, app.api,
app.uplink, app.lock).
"""

import asyncio
import gc
import sys
import time

from meter import VERSION, log
from meter import board as boards
from meter.atm90e32 import ATM90E32, UWH_PER_LSB
from meter.audit import AuditLog
from meter.energy import NAMES, EnergyCounters
from meter.logstore import LogStore
from meter.sampler import Sampler
from meter.settings import Settings
from meter.state import State
from meter.supervisor import Supervisor

# Installed in this order (it is the order of their menu entries and
# services): the module lock, the update state, the Web Admin, the local
# API, the cloud uplink, the automatic updates.
FEATURES = ("meter.lockfeature", "meter.otafeature", "meter.web", "meter.api", "meter.uplink",
            "meter.otaauto")


class App:
    def __init__(self, board):
        from meter import memory

        memory.reserve()  # first, while the heap is one free block
        self._lazy = {}  # provide(): before anything could miss a member
        self.board = board
        self.sup = Supervisor()
        self.audit = AuditLog(LogStore(board.partition("audit")), board)
        self.state_ = State(LogStore(board.partition("state")))
        self.settings = Settings(LogStore(board.partition("config")), self.audit, self.state_)
        self.counters = EnergyCounters(LogStore(board.partition("counters")), board,
                                       self.audit, UWH_PER_LSB,
                                       self.settings.get("energy.save_min_ms"),
                                       self.settings.require_unlocked)
        # The display PIN's guard (meter/pin.py, with its hashing) loads at
        # the first menu entry; a stored lock-out still runs from now.
        t0 = time.ticks_ms()
        self.provide("pin", lambda: _pin_guard(self, t0))
        # The start-up screen (and its forgotten-PIN reset) is shown once per
        # start of the firmware, not again when the display task restarts.
        self.startup_shown = False
        self.ui = None  # the display's Ui once its task runs (meter/home.py)
        # Handles of features that others use; None when not installed.
        self.uplink = None
        self.autoupdate = None
        # The registry (see the module's docstring).
        self.menu_entries = []
        self.services = []
        self.status = []
        self.notices = []
        self._tasks = []
        self._started = []
        self._state = []
        self.add_command("state", self.state)
        self.add_command("quit", self.quit)
        for name in FEATURES:
            __import__(name)
            sys.modules[name].install(self)
        meter = ATM90E32(board.meter_spi(), line_freq=self.settings.get("meter.line_freq"))
        self.sampler = Sampler(meter, self.counters, self.sup,
                               self.settings.get("meter.tick_ms"))
        self.add_command("lateness-reset", lambda a: self.sampler.lateness.clear() or {"ok": True})
        self.add_command("mem", memory.snapshot)
        self._stop = asyncio.Event()
        self.exit_code = 0
        gc.collect()

    # -- the registry ---------------------------------------------------------------

    def add_menu(self, where, label, fn):
        self.menu_entries.append((where, label, fn))

    def add_service(self, label, key):
        self.services.append((label, key))

    def add_command(self, name, fn):
        if self.board.commands:  # a board without a control socket takes none
            self.board.add_command(name, fn)

    def add_status(self, prio, fn):
        st = self.status
        i = 0
        while i < len(st) and st[i][0] <= prio:
            i += 1
        st.insert(i, (prio, fn))

    def add_notice(self, fn):
        self.notices.append(fn)

    def spawn(self, name, fn):
        self._tasks.append((name, fn))

    def on_start(self, fn):
        self._started.append(fn)

    def add_state(self, key, fn):
        self._state.append((key, fn))

    def provide(self, name, factory):
        self._lazy[name] = factory

    def __getattr__(self, name):
        # Only for what a feature provides; once built it is a plain member.
        factory = self._lazy.get(name)
        if factory is None:
            raise AttributeError(name)
        v = factory()
        setattr(self, name, v)
        return v

    # -- running --------------------------------------------------------------------

    async def run(self):
        from meter import home

        log.info("meter %s on %s, serial %s" % (VERSION, self.board.name, self.board.serial()))
        self.audit.append("system", "boot", "ok", VERSION)
        ssid = self.settings.get("wifi.ssid")
        if ssid:
            self.board.wifi().connect(ssid, self.settings.get("wifi.key"))
        sup = self.sup
        sup.spawn("meter", self.sampler.run, critical=True)
        # Built inside the task: a missing panel must not stop metering.
        sup.spawn("display", lambda: home.run(self))
        for name, fn in self._tasks:
            sup.spawn(name, fn)
        sup.spawn("watchdog", lambda: sup.watchdog(self.board))
        for name, fn in self.board.services():
            sup.spawn(name, fn)
        for fn in self._started:  # e.g. the rollback report, the self-test
            fn()
        self._tasks = self._started = ()  # done with: their closures back to the heap
        gc.collect()
        await self._stop.wait()
        sup.cancel_all()
        self.sampler.flush()
        log.info("stopped; counters saved")

    def quit(self, args=None, code=0):
        """Orderly stop: final reading and counter save, then exit."""
        self.exit_code = code
        self._stop.set()
        return {"ok": True}

    def state(self, args=None):
        """Snapshot for the simulator's control socket and the benchmark."""
        lv = self.sampler.live
        gc.collect()
        out = {
            "counters_uwh": dict(zip(NAMES, self.counters.uwh)),
            "generation": self.counters.generation,
            "counters_status": self.counters.status,
            "saves": self.counters.saves,
            "settings_status": self.settings.status,
            "config_seq": self.settings.store.seq,  # moves with every stored record
            "lock": self.settings.lock_state(),
            "fault": self.sampler.fault,
            "live": {"v": lv.v, "i": lv.i, "p": lv.p, "pf": lv.pf, "freq": lv.freq},
            "lateness_ms": self.sampler.lateness.summary(),
            "restarts": self.sup.restarts,
            "version": VERSION,
            "heap_free": gc.mem_free(),
            "heap_used": gc.mem_alloc(),
        }
        for key, fn in self._state:
            out[key] = fn()
        return out


def _pin_guard(app, since):
    from meter.pin import PinGuard

    return PinGuard(app.settings, app.state_, app.audit, since)


SERVICE_EXIT = 4  # = meter.service.EXIT_CODE (not imported: that module loads on demand)


def main():
    board = boards.load()
    app = None
    try:
        app = App(board)
        asyncio.run(app.run())
    finally:
        host = sys.modules.get("meter.board.host")
        if host is not None:  # the simulator's terminal back to normal
            host.restore_terminal()
        if board.name == "esp32" and (app is None or app.exit_code != SERVICE_EXIT):
            from meter.buildcfg import DEV_REPL

            if not DEV_REPL:  # production: never fall through to the REPL
                board.reset()
    if app.exit_code == SERVICE_EXIT:
        from meter.service import PERIOD_S

        board.service_repl(PERIOD_S)  # ESP32: returns into the REPL; host: exits
    elif app.exit_code:
        sys.exit(app.exit_code)
