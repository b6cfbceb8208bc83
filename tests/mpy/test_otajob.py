"""An update as the user sees it: meter.otastatus.Job (progress, failure,
installation, the last result kept across the restart), the update screen
and status line of meter.otafeature, and the automatic-update feature
meter.otaauto (service, on-demand checks, refusals, results to the cloud).

The updater writes real (small, file-backed) host slots with a throwaway
key (tests/mpy/otakit.py); the settings and runtime state are the real
stores on file-backed flash.
"""

import asyncio
import time

import otakit
from upytest import tmpdir

from meter import VERSION, ota, otafeature, otafmt, otastatus
from meter.board.flashfile import FilePartition
from meter.board.otahost import HostOta
from meter.logstore import LogStore
from meter.settings import Settings
from meter.state import State

HEAP = "512k"
SLOT = 64 * 1024
KEY = otakit.Key()
NEXT = "%d.%d.%d" % (lambda c: (c >> 16, (c >> 8) & 255, (c & 255) + 1))(
    otafmt.version_code(VERSION))


class Audit:
    def __init__(self):
        self.events = []

    def append(self, source, event, outcome="ok", detail=""):
        self.events.append((source, event, outcome, detail))

    def refused(self, *a):
        pass


class App:
    """What the features use of meter.app.App: the stores, the registry."""

    def __init__(self):
        d = tmpdir()
        self.d = d
        self.audit = Audit()
        self.state_ = State(LogStore(FilePartition(d + "/state.bin", 16384)))
        self.settings = Settings(LogStore(FilePartition(d + "/config.bin", 16384)), self.audit,
                                 self.state_)
        self.resets = 0
        self.flushed = 0
        self.status = []
        self.notices = []
        self.services = []
        self.menu_entries = []
        self.spawned = []
        self.ui = None
        self.uplink = None
        app = self
        # meter.otaauto gives the updater's modules back after a check: the
        # test uses the module that is loaded now, with no update left over
        global ota
        from meter import ota

        ota._current[0] = None

        class Board:
            name = "host"
            files = d

            def __init__(self):
                self.parts = None

            def ota(self):
                if self.parts is None:
                    self.parts = HostOta(d, lambda label, size: FilePartition(
                        d + "/" + label + ".bin", SLOT if label != "otadata" else size))
                return self.parts

            def forget_ota(self):
                self.parts = None

            def reset(self):
                app.resets += 1

        class Sampler:
            def flush(self):
                app.flushed += 1

        self.board = Board()
        self.sampler = Sampler()
        otafeature.install(self)

    # the registry (meter/app.py)
    def add_status(self, prio, fn):
        self.status.append((prio, fn))

    def add_notice(self, fn):
        self.notices.append(fn)

    def add_command(self, name, fn):
        pass

    def add_state(self, key, fn):
        pass

    def on_start(self, fn):
        pass

    def add_service(self, label, key):
        self.services.append((label, key))

    def add_menu(self, where, label, fn):
        self.menu_entries.append((where, label, fn))

    def spawn(self, name, fn):
        self.spawned.append((name, fn))

    def screen(self):
        for fn in self.notices:
            lines = fn()
            if lines:
                return lines
        return None

    def status_line(self):
        for _, fn in sorted(self.status, key=lambda x: x[0]):
            t = fn()
            if t:
                return t
        return None


def update_file(version=NEXT, n=20000):
    return otakit.update_file(KEY, otakit.payload(n), version=version)


def updater(app, job, **kw):
    return ota.Updater(app.board.ota(), "host", keys={1: KEY.modulus}, audit=app.audit,
                       settings=app.settings, source=job.source, progress=job.progress, **kw)


def test_the_screen_follows_an_update_from_first_byte_to_restart():
    app = App()
    assert app.screen() is None and app.status_line() is None
    job = otastatus.Job(app, "web:admin")
    u = updater(app, job)
    data = update_file()
    u.feed(data[:100])  # the header is not complete: the version is not known yet
    lines = app.screen()
    assert lines[0] == "FIRMWARE UPDATE" and lines[1] == "%s > ?" % VERSION, lines
    assert lines[4:] == ["Do not remove", "power!"], lines
    u.feed(data[100:10000])
    lines = app.screen()
    p = app.ota_progress
    assert 0 < p < 100 and lines[1] == "%s > %s" % (VERSION, NEXT), lines
    assert lines[2] == "[" + "#" * (p * 14 // 100) + "." * (14 - p * 14 // 100) + "]", lines
    assert lines[3] == "%d%%  web:admin" % p, lines
    assert app.status_line() == "UPDATING %d%%" % p
    assert otastatus.busy(app) == "another update is in progress"
    u.feed(data[10000:])
    v = u.finish()
    job.installed(v, 10)
    assert app.screen()[:3] == ["FIRMWARE UPDATE", "Installed " + NEXT, "Restarting..."]
    assert otastatus.busy(app) == "the device is restarting into " + NEXT
    assert otastatus.last(app) == {"from": VERSION, "to": NEXT, "source": "web:admin",
                                   "result": "installed", "why": None}
    assert app.resets == 0
    async def later():
        while not app.resets:  # the restart: counters saved, audited, reset
            await asyncio.sleep_ms(1)

    asyncio.run(asyncio.wait_for_ms(later(), 5000))
    assert app.resets == 1 and app.flushed == 1
    assert ("system", "ota restart", "ok", NEXT) in app.audit.events, app.audit.events


def test_a_failure_says_why_for_10_s_then_on_the_status_line_for_10_min():
    app = App()
    job = otastatus.Job(app, "web:admin")
    u = updater(app, job)
    bad = bytearray(update_file())
    bad[500] ^= 1  # a damaged payload: the hash check at the end refuses it
    try:
        u.feed(bad)
        u.finish()
        assert False, "installed a damaged file"
    except ota.UpdateError as e:
        job.failed(e)
    lines = app.screen()
    assert lines[0] == "NOT UPDATED" and " ".join(lines[1:]) == \
        "checksum mismatch: the file is damaged", lines
    assert all(len(x) <= 16 for x in lines), lines
    assert app.status_line() == "UPDATE FAILED" and app.ota_progress is None
    assert otastatus.busy(app) is None  # another try may start at once
    last = otastatus.last(app)
    assert last["result"] == "failed" and last["to"] == NEXT and last["source"] == "web:admin"
    why, t = app.ota_failed
    app.ota_failed = (why, time.ticks_add(t, -10001))  # 10 s later: the pages again
    assert app.screen() is None and app.status_line() == "UPDATE FAILED"
    app.ota_failed = (why, time.ticks_add(t, -600001))  # 10 min later: the usual line
    assert app.status_line() is None


def test_a_second_update_refused_leaves_the_first_on_screen():
    app = App()
    first = otastatus.Job(app, "auto")
    u = updater(app, first)
    u.feed(update_file()[:5000])
    second = otastatus.Job(app, "web:admin")
    try:
        updater(app, second)
        assert False, "a second update started"
    except ota.UpdateError as e:
        assert str(e) == "another update is in progress"
        second.failed(e)
    assert app.screen()[0] == "FIRMWARE UPDATE" and app.ota_job is first
    assert app.ota_failed is None and otastatus.last(app) is None  # nothing recorded over it
    u.cancel("test")
    first.failed("the upload broke off at 5000 of 20448 bytes")
    assert app.screen()[0] == "NOT UPDATED"


def test_after_the_restart_the_result_is_confirmed_or_rolled_back():
    for running, want in ((NEXT, "confirmed"), (VERSION, "rolled back")):
        app = App()
        app.state_.set("ota.last", {"from": "0.0.1", "to": running, "source": "cloud",
                                    "result": "installed", "why": None})
        otastatus.check(app)  # the running image is confirmed (no otadata: a factory start)
        last = otastatus.last(app)
        if running == VERSION:
            assert last["result"] == "confirmed", last
        else:
            assert last["result"] == "rolled back", last
            assert last["why"] == "%s did not start; running %s" % (running, VERSION), last
    app = App()
    app.ota_rollback = NEXT  # the bootloader went back from NEXT (otastatus.check)
    lines = app.screen()
    assert lines[0] == "UPDATE FAILED" and NEXT in lines[1] and lines[3] == VERSION, lines
    app.ota_trial = True  # a new image checking itself
    app.ota_rollback = None
    assert app.screen()[:3] == ["UPDATED", "Now running", VERSION]


def test_status_reports_both_slots_and_the_last_result():
    app = App()
    st = otastatus.status(app)
    assert st["version"] == VERSION and st["busy"] is None and st["trial"] is False, st
    assert st["slot"] == "ota_0" and st["other"]["slot"] == "ota_1", st
    assert st["other"]["version"] is None and st["last"] is None, st
    job = otastatus.Job(app, "control")
    u = updater(app, job)
    u.feed(update_file())
    job.installed(u.finish(), 60000)
    st = otastatus.status(app)
    assert st["other"] == {"slot": "ota_1", "version": NEXT, "state": "new"}, st
    assert st["busy"] and st["to"] == NEXT and st["last"]["result"] == "installed", st


# -- meter.otaauto ----------------------------------------------------------------


class Uplink:
    def __init__(self):
        self.sent = []

    def event(self, d):
        self.sent.append(d)


class Ui:
    session = False


def auto_app():
    from meter import otaauto

    app = App()
    app.uplink = Uplink()
    otaauto.install(app)
    return app


def test_autoupdate_registers_its_service_menu_and_task():
    app = auto_app()
    assert app.services == [("Auto update", "update.enabled")]
    assert [(w, label) for w, label, _ in app.menu_entries] == [("firmware", "Check update")]
    assert [n for n, _ in app.spawned] == ["update"]
    assert app.settings.get("update.enabled") is False  # off by default


def test_a_check_on_demand_reports_its_result_and_gives_its_modules_back():
    import sys

    app = auto_app()
    a = app.autoupdate

    async def go():
        assert a.start("cloud") == {"outcome": "started"}
        assert a.start("cloud") == {"error": "an update check is already running"}
        while a.check is not None:
            await asyncio.sleep_ms(1)

    asyncio.run(go())
    # no update server configured: refused before any network, reported
    assert app.uplink.sent == [{"event": "update", "source": "cloud", "outcome": "failed",
                                "detail": "%s -> ?: no update server configured" % VERSION}]
    assert ("cloud", "ota check", "failed", "%s -> ?: no update server configured" % VERSION) \
        in app.audit.events
    assert app.screen() is None  # nothing was downloaded: no screen over the pages
    assert a.checker is None and "meter.otafetch" not in sys.modules  # service off: given back


def test_no_check_starts_while_a_user_is_in_the_menu_or_an_update_runs():
    app = auto_app()
    app.ui = Ui()
    app.ui.session = True
    assert app.autoupdate.start("cloud") == {
        "error": "the Settings menu is in use: try again later"}
    app.ui.session = False
    job = otastatus.Job(app, "web:admin")
    assert app.autoupdate.start("menu") == {"error": "another update is in progress"}
    job.failed("test")
    assert app.uplink.sent == []


def test_the_service_switch_starts_and_stops_the_periodic_check():
    import sys

    app = auto_app()
    a = app.autoupdate

    async def go():
        t = asyncio.create_task(a.run())
        await asyncio.sleep_ms(5)
        assert a.periodic is None and a.checker is None  # off: nothing loaded
        app.settings.update({"update.enabled": True}, "test")
        await asyncio.sleep_ms(5)
        assert a.periodic is not None
        # between checks the fetcher and its modules are given back
        assert a.checker is None and "meter.otafetch" not in sys.modules
        app.settings.update({"update.enabled": False}, "test")
        await asyncio.sleep_ms(5)
        assert a.periodic is None and a.checker is None
        t.cancel()

    asyncio.run(go())


def test_the_periodic_check_waits_for_the_menu_and_backs_off_after_a_failure():
    app = auto_app()
    a = app.autoupdate
    a.busy_retry_ms = 50
    app.ui = Ui()
    app.ui.session = True  # a user in the Settings menu: no check starts
    app.settings.update({"update.enabled": True, "test.update_first_s": 1}, "test")

    async def ends(n, ms):
        t0 = time.ticks_ms()
        while len(app.uplink.sent) < n:
            assert time.ticks_diff(time.ticks_ms(), t0) < ms, app.uplink.sent
            await asyncio.sleep_ms(10)
        return time.ticks_diff(time.ticks_ms(), t0)

    async def go():
        t = asyncio.create_task(a.run())
        await asyncio.sleep_ms(2500)  # the first check was due after 1-2 s
        assert app.uplink.sent == [] and a.last is None
        app.ui.session = False
        await ends(1, 1000)  # looked at again 50 ms later: it runs (no server: fails)
        assert app.uplink.sent[0]["outcome"] == "failed" and a.checker is None
        # the back-off (test.update_first_s brings its first step to 1 s: 0.5-1 s)
        ms = await ends(2, 3000)
        assert 400 <= ms, ms
        assert app.state_.get("ota_fails") == 2
        t.cancel()

    asyncio.run(go())
