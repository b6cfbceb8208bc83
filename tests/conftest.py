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
