"""Import the firmware's pure modules (meter/otafmt.py, meter/otadata.py)
into CPython, so that the host tools use the very code the device runs.

Those modules use only what CPython has too, except `micropython.const`,
which is stood in for here by the identity function (outside MicroPython it
is one).
"""

import os
import sys
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(ROOT, "firmware", "lib")

if "micropython" not in sys.modules:
    sys.modules["micropython"] = types.SimpleNamespace(const=lambda x: x)
if LIB not in sys.path:
    sys.path.insert(0, LIB)

from meter import otadata, otafmt  # noqa: E402,F401
