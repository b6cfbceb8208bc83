"""Minimal `warnings` for MicroPython, which has none.

Boundary shim for the pinned micropython-lib `hmac` (3.4.2.post3), which
imports `warnings` and calls `warn(msg, category, stacklevel)` with a
category of None. meter/crypto.py never takes those paths (it always passes
a digestmod with a block_size), so warn() is only a safety net: it prints
one line to stderr and never raises. See docs/device-libs.md.
"""

import sys


def warn(message, category=None, stacklevel=1):
    name = getattr(category, "__name__", None) or "Warning"
    try:
        print("%s: %s" % (name, message), file=sys.stderr)
    except Exception:  # never let a warning break the caller
        pass
