"""Composition root: builds the board and the services, runs the tasks.

One cooperative asyncio loop. Tasks now: metering (critical), display,
watchdog, and the board's own services (the simulator's control socket and
keys). Later features add the menu, Web Admin, MQTT and OTA here.
"""

import asyncio
import gc
import sys

from meter import VERSION, log
from meter import board as boards
from meter.atm90e32 import ATM90E32, UWH_PER_LSB
from meter.audit import AuditLog
from meter.energy import NAMES, EnergyCounters
from meter.logstore import LogStore
from meter.pin import PinGuard
from meter.sampler import Sampler
from meter.settings import Settings
from meter.state import State
from meter.supervisor import Supervisor


class App:
    def __init__(self, board):
        from meter import memory

        memory.reserve()  # first, while the heap is one free block
        self.board = board
        self.sup = Supervisor()
        self.audit = AuditLog(LogStore(board.partition("audit")), board)
        self.state_ = State(LogStore(board.partition("state")))
        self.settings = Settings(LogStore(board.partition("config")), self.audit, self.state_)
        self.counters = EnergyCounters(LogStore(board.partition("counters")), board,
                                       self.audit, UWH_PER_LSB,
                                       self.settings.get("energy.save_min_ms"),
                                       self.settings.require_unlocked)
        self._lock = None
        self.pin = PinGuard(self.settings, self.state_, self.audit)
        # The start-up screen (and its forgotten-PIN reset) is shown once per
        # start of the firmware, not again when the display task restarts.
        self.startup_shown = False
        # Firmware update state (meter/otastatus.py): the version the
        # bootloader went back from, and an update's progress in percent.
        self.ota_rollback = None
        self.ota_progress = None
        # Features register what the menu shows: (where, label, fn(ui)) and
        # network services as (label, settings key).
        self.menu_entries = []
        self.services = []
        from meter import web  # Web Admin: menu entries, service; loads its server on demand

        web.install(self)
        from meter import api  # local API for apps: its server loads only while it is on

        api.install(self)
        from meter.uplink import Uplink  # cloud MQTT: its session code loads only when on

        self.uplink = Uplink(self)
        self.services.extend(Uplink.SERVICES)
        self.menu_entries.extend(self.uplink.menu_entries())
        meter = ATM90E32(board.meter_spi(), line_freq=self.settings.get("meter.line_freq"))
        self.sampler = Sampler(meter, self.counters, self.sup,
                               self.settings.get("meter.tick_ms"))
        self._stop = asyncio.Event()
        self.exit_code = 0
        gc.collect()

    @property
    def lock(self):
        """The module lock's password checks (meter/lock.py), loaded on first
        use: the lock itself is enforced by the settings store, which needs
        none of this code (heap at start-up)."""
        lk = self._lock
        if lk is None:
            from meter.lock import ModuleLock

            lk = self._lock = ModuleLock(self.settings, self.state_, self.audit)
        return lk

    async def run(self):
        from meter.ui import Ui

        log.info("meter %s on %s, serial %s" % (VERSION, self.board.name, self.board.serial()))
        self.audit.append("system", "boot", "ok", VERSION)
        ssid = self.settings.get("wifi.ssid")
        if ssid:
            self.board.wifi().connect(ssid, self.settings.get("wifi.key"))
        if hasattr(self.board, "add_command"):
            self.board.add_command("state", self.state)
            self.board.add_command("quit", self.quit)
            from meter import memory

            self.board.add_command("mem", memory.snapshot)
            self.board.add_command("lateness-reset", lambda a: self.sampler.lateness.clear() or {"ok": True})
            self.board.add_command("ota", lambda a: _otastatus().status(self))
            self.board.add_command("ota-install", lambda a: _otastatus().install_file(self, a))
        sup = self.sup
        sup.spawn("meter", self.sampler.run, critical=True)
        # Built inside the task: a missing panel must not stop metering.
        sup.spawn("display", lambda: Ui(self).run())
        sup.spawn("mqtt", self.uplink.run)
        sup.spawn("watchdog", lambda: sup.watchdog(self.board))
        for name, fn in self.board.services():
            sup.spawn(name, fn)
        # After the tasks: reports a rollback, starts the self-test of a new image.
        _otastatus().check(self)
        _release_ota(self.board)
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
        return {
            "counters_uwh": dict(zip(NAMES, self.counters.uwh)),
            "generation": self.counters.generation,
            "counters_status": self.counters.status,
            "saves": self.counters.saves,
            "settings_status": self.settings.status,
            "config_seq": self.settings.store.seq,  # moves with every stored change
            "lock": self.settings.lock_state(),
            "fault": self.sampler.fault,
            "live": {"v": lv.v, "i": lv.i, "p": lv.p, "pf": lv.pf, "freq": lv.freq},
            "lateness_ms": self.sampler.lateness.summary(),
            "restarts": self.sup.restarts,
            "mqtt": self.uplink.snapshot(),
            "version": VERSION,
            "ota_rollback": self.ota_rollback,
            "heap_free": gc.mem_free(),
            "heap_used": gc.mem_alloc(),
        }


SERVICE_EXIT = 4  # = meter.service.EXIT_CODE (not imported: that module loads on demand)


def _otastatus():
    from meter import otastatus

    return otastatus


# What the start-up check of the app slots loads: about 6 KB that metering,
# the display and the services never use; an update or a self-test loads
# them again.
_OTA_MODULES = ("meter.otastatus", "meter.otadata", "meter.board.otahost", "meter.board.esp32ota")


def _release_ota(board):
    from meter.memory import unload

    board.forget_ota()
    unload(_OTA_MODULES)


def main():
    board = boards.load()
    app = None
    try:
        app = App(board)
        asyncio.run(app.run())
    finally:
        restore = getattr(sys.modules.get("meter.board.host"), "restore_terminal", None)
        if restore:
            restore()
        if board.name == "esp32" and (app is None or app.exit_code != SERVICE_EXIT):
            from meter.buildcfg import DEV_REPL

            if not DEV_REPL:  # production: never fall through to the REPL
                board.reset()
    if app.exit_code == SERVICE_EXIT:
        from meter.service import PERIOD_S

        board.service_repl(PERIOD_S)  # ESP32: returns into the REPL; host: exits
    elif app.exit_code:
        sys.exit(app.exit_code)
