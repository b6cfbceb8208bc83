"""MicroPython side of the test harness (runs under the unix port).

`python -m pytest` collects tests/mpy/test_*.py through tests/conftest.py,
which runs each module once here, under `micropython -X heapsize=...`, and
reports every `test_*` function as its own pytest item.

Test functions are plain functions that use `assert`. Helpers:
- tmpdir(): a fresh empty directory for this test.
- raises(exc, fn, *args): assert that fn(*args) raises exc; returns it.
"""

import os
import sys

_count = [0]


def tmpdir():
    base = os.getenv("UPYTEST_TMP") or "/tmp"
    _count[0] += 1
    path = "%s/t%d" % (base, _count[0])
    _rmtree(path)
    os.mkdir(path)
    return path


def _rmtree(path):
    try:
        entries = list(os.ilistdir(path))
    except OSError:
        return
    for e in entries:
        p = path + "/" + e[0]
        if e[1] == 0x4000:
            _rmtree(p)
        else:
            os.remove(p)
    os.rmdir(path)


def raises(exc, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise AssertionError("%s not raised" % exc.__name__)


def run(modname):
    mod = __import__(modname)
    names = [n for n in dir(mod) if n.startswith("test_")]
    names.sort()
    only = os.getenv("UPYTEST_ONLY")
    for n in names:
        if only and n != only:
            continue
        print("@@START " + n)
        try:
            getattr(mod, n)()
            print("@@PASS " + n)
        except Exception as e:  # report and go on with the next test
            print("@@FAIL " + n)
            sys.print_exception(e)
            print("@@END " + n)


if __name__ == "__main__":
    run(sys.argv[1])
