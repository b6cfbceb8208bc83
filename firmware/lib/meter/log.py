"""Diagnostic log: printed, and the last lines kept in RAM for the UIs.

Not the audit log (audit.py): this is for developers and support, volatile.
"""

import time

_LINES = 24
_ring = [None] * _LINES
_pos = [0]
quiet = False  # True: not printed (the simulator's terminal shows the display)
_file = [None]


def to_file(path):
    """Also append every line to `path` (the simulator, while it draws the
    display in the terminal)."""
    _file[0] = open(path, "a")


def log(level, msg):
    line = "%d %s %s" % (time.ticks_ms(), level, msg)
    _ring[_pos[0] % _LINES] = line
    _pos[0] += 1
    if not quiet:
        print(line)
    f = _file[0]
    if f:
        f.write(line + "\n")
        f.flush()


def info(msg):
    log("I", msg)


def warn(msg):
    log("W", msg)


def error(msg):
    log("E", msg)


def exc(msg, e):
    """Log an exception with its traceback (as text, one line each)."""
    import io
    import sys

    buf = io.StringIO()
    sys.print_exception(e, buf)
    error("%s: %r" % (msg, e))
    for line in buf.getvalue().split("\n"):
        if line:
            log("E", "  " + line)


def recent():
    """The kept lines, oldest first."""
    n = _pos[0]
    return [_ring[i % _LINES] for i in range(max(0, n - _LINES), n)]
