"""Host side helpers to run code under the real MicroPython unix port."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(os.path.dirname(sys.executable), "micropython")
# .frozen first: the unix port's asyncio is frozen into the binary.
PATH = ":".join([".frozen", os.path.join(ROOT, "build", "lib"),
                 os.path.join(ROOT, "firmware", "lib"),
                 os.path.join(ROOT, "tests", "mpy")])
DEFAULT_HEAP = "512k"


def env(**extra):
    e = dict(os.environ)
    e["MICROPYPATH"] = PATH
    e.update({k: str(v) for k, v in extra.items()})
    return e


def cmd(args, heap=DEFAULT_HEAP):
    return [BIN, "-X", "heapsize=" + heap] + list(args)


def run(args, heap=DEFAULT_HEAP, timeout=60, **extra):
    """Run micropython with the firmware's module path; return CompletedProcess."""
    return subprocess.run(cmd(args, heap), env=env(**extra), capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def exec_code(code, heap=DEFAULT_HEAP, timeout=60, **extra):
    """Run a snippet under MicroPython; fail with its output if it raises."""
    r = run(["-c", code], heap=heap, timeout=timeout, **extra)
    if r.returncode != 0:
        raise AssertionError("micropython failed (%d):\n%s%s" % (r.returncode, r.stdout, r.stderr))
    return r.stdout
