"""pytest plugin: MicroPython test modules in tests/mpy run on the unix port.

Each tests/mpy/test_*.py module runs once, in one `micropython` process with
the heap limited to the module's HEAP (default 512k, the unix port being
64-bit), and each of its test_* functions becomes a pytest item with its own
pass/fail and traceback.
"""

import os
import re
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import upy  # noqa: E402

# The real peers' fixtures: browser, pki, broker (tests/peers.py).
pytest_plugins = ["peers"]

# The tests that load the machine: tools/dev.py test runs them in a phase of
# their own, so that they never share the two cores with tests whose timing
# they would disturb (button presses, browser timeouts). docs/testing.md.
HEAVY = (
    "test_web_attack.py",
    "test_powercut.py",
    "test_api.py::test_thousands_of_pairing_requests_and_bad_tokens_keep_metering",
    "test_ota_sim.py::test_power_cuts_through_the_simulator_boot_old_or_new",
    # (a client posting logins as fast as they are answered)
    "test_web_lan.py::test_a_client_polling_the_default_password_during_a_reset_gets_no_session",
)
# Long but light (one simulator, about a tenth of a core): tools/dev.py test
# runs these in a lane of their own beside both phases.
LONG = (
    "test_memory.py::test_all_services_at_once_within_the_budget",
)


def pytest_addoption(parser):
    parser.addoption("--reverse", action="store_true",
                     help="run the collected tests in reverse order (a test that needs an "
                          "earlier one to have run fails this way; docs/testing.md)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--reverse"):
        items.reverse()
    for item in items:
        name = "%s::%s" % (item.path.name, item.name)
        for marker, names in (("heavy", HEAVY), ("long", LONG)):
            if any(name == h or item.path.name == h for h in names):
                item.add_marker(getattr(pytest.mark, marker))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    item._sims_before = len(sys.modules["simctl"].MADE) if "simctl" in sys.modules else 0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report carries the log tail of every simulator it
    started, and of any still running (a module's shared one): what the
    firmware said is most of the explanation."""
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    simctl = sys.modules.get("simctl")
    first = getattr(item, "_sims_before", 0)
    for i, sim in enumerate(simctl.MADE if simctl else ()):
        running = sim.proc is not None and sim.proc.poll() is None
        if i >= first or running:
            rep.sections.append(("simulator %s (%s)" % (
                os.path.basename(sim.state), "running" if running else "stopped"),
                sim.output()[-3000:]))
    browser = getattr(item, "funcargs", {}).get("browser")
    if browser is not None and call.when == "call":
        _pages_of(browser, item.name, rep)


def _pages_of(browser, name, rep):
    """Every open page of a failed browser test: its URL, its text, and a
    screenshot in tests/.tmp/shots/ (what the user would have seen)."""
    shots = os.path.join(TMP, "shots")
    os.makedirs(shots, exist_ok=True)
    n = 0
    for ctx in browser.contexts:
        for pg in ctx.pages:
            n += 1
            try:
                path = os.path.join(shots, "%s-%d.png" % (name, n))
                pg.screenshot(path=path, timeout=5000)
                text = pg.inner_text("body", timeout=2000)[:1500]
            except Exception as e:  # the page may be gone with the test's failure
                path, text = "-", "(unreadable: %r)" % e
            rep.sections.append(("page %d %s" % (n, pg.url), "screenshot %s\n%s" % (path, text)))


MPY_DIR = os.path.join(os.path.dirname(__file__), "mpy")
TMP = os.path.join(os.path.dirname(__file__), ".tmp")


def pytest_pycollect_makemodule(module_path, parent):
    # Replaces pytest's own Python collector for tests/mpy: those modules
    # are MicroPython code and never imported by CPython.
    if str(module_path.parent) == MPY_DIR:
        return MpyModule.from_parent(parent, path=module_path)


def _heap(src):
    m = re.search(r'^HEAP\s*=\s*"(\w+)"', src, re.M)
    return m.group(1) if m else upy.DEFAULT_HEAP


class MpyModule(pytest.File):
    _results = None

    def collect(self):
        src = self.path.read_text()
        for name in re.findall(r"^def (test_\w+)\(", src, re.M):
            yield MpyItem.from_parent(self, name=name)

    def results(self):
        if self._results is None:
            mod = self.path.stem
            tmp = os.path.join(TMP, mod)
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            r = upy.run(["-m", "upytest", mod], heap=_heap(self.path.read_text()),
                        timeout=600, UPYTEST_TMP=tmp)
            res, cur, buf = {}, None, []
            for line in (r.stdout + r.stderr).splitlines():
                if line.startswith("@@START "):
                    cur, buf = line[8:], []
                elif line.startswith("@@PASS "):
                    res[line[7:]] = (True, "\n".join(buf))
                    cur = None
                elif line.startswith("@@END "):
                    res[line[6:]] = (False, "\n".join(buf))
                    cur = None
                elif cur is not None:
                    buf.append(line)
            if cur is not None:  # the process died inside a test
                res[cur] = (False, "\n".join(buf) + "\n[micropython exited %d]\n%s" % (
                    r.returncode, r.stderr))
            self._results = (res, r)
        return self._results


class MpyItem(pytest.Item):
    def runtest(self):
        res, proc = self.parent.results()
        if self.name not in res:
            raise MpyFailure("test did not run (micropython exit %d)\n%s%s" % (
                proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))
        ok, out = res[self.name]
        if not ok:
            raise MpyFailure(out)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, MpyFailure):
            return "MicroPython test failed:\n" + str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, "mpy::%s" % self.name


class MpyFailure(Exception):
    pass
