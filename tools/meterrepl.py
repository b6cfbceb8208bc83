"""Talk to a meter's service-mode REPL with mpremote (run as a subprocess,
`mpremote connect PORT resume exec CODE`: `resume` because a soft reset
would restart the firmware on the ESP32 and end the unix port's process).

Each service command prints one line `@@{json}` (meter/service.py `call`);
anything else on the line is the REPL's. Every failure is a DeviceError
with a message that says what to do.
"""

import json
import os
import subprocess
import sys
import time

MARK = "@@"  # = meter.service.MARK
# A REPL that has only just come up (service mode entered a moment ago; on a
# locked meter the wipe runs first) may not answer mpremote's Ctrl-C/Ctrl-A
# within mpremote's 10 s: entering the raw REPL is tried again, as esptool
# retries its connection, before the user is told the meter is not there.
RAW_ATTEMPTS = 3
RAW_RETRY_S = 1.0
NOT_IN_SERVICE = ("is the meter in service mode? Hold OK+DOWN for 5 s while it starts, "
                  "confirm on the display, then try again within 10 minutes")


class DeviceError(RuntimeError):
    pass


def _is_path(port):
    return "://" not in port


def mpremote(port, *words, timeout=20.0):
    """Run one mpremote command line against port; returns its stdout."""
    if _is_path(port) and not os.path.exists(port):
        raise DeviceError("no device at %s (is the USB cable in, is it the right port?)" % port)
    cmd = [sys.executable, "-m", "mpremote", "connect", port, "resume", *words]
    for attempt in range(1, RAW_ATTEMPTS + 1):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise DeviceError("no answer from a MicroPython REPL on %s within %d s: %s"
                              % (port, timeout, NOT_IN_SERVICE))
        if r.returncode == 0:
            return r.stdout
        why = (r.stderr.strip().splitlines() or ["exit code %d" % r.returncode])[-1]
        if "raw repl" not in why.lower():
            break
        if attempt == RAW_ATTEMPTS:
            why += "; " + NOT_IN_SERVICE
        else:  # nothing was run: the command is not sent twice
            time.sleep(RAW_RETRY_S)
    raise DeviceError("%s: %s" % (port, why))


def call(port, name, *args, timeout=20.0):
    """Run service command `name` on the meter; returns its result or
    raises DeviceError with the meter's own refusal."""
    code = "from meter import service; service.call(%s)" % ", ".join(
        repr(a) for a in (name,) + args)
    out = mpremote(port, "exec", code, timeout=timeout)
    for line in reversed(out.splitlines()):
        if line.startswith(MARK):
            res = json.loads(line[len(MARK):])
            if "error" in res:
                raise DeviceError("the meter refused: " + res["error"])
            return res["ok"]
    tail = out.strip()[-300:] or "(nothing)"
    raise DeviceError("unexpected answer from %s (is it this meter's firmware?): %s" % (port, tail))


def restart(port, timeout=20.0):
    """End service mode: the meter restarts (audited). Nothing answers
    after that, so mpremote does not wait for output."""
    mpremote(port, "exec", "--no-follow", "from meter import service; service.end()",
             timeout=timeout)
