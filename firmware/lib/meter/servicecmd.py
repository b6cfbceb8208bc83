"""Service commands run over the REPL in service mode (tools/flash.py):
`status` and `provision`. meter/service.py calls them after checking that
service mode is on; the wipe is meter/wipe.py. Loaded only then.

Provisioning goes through the firmware's own checks: settings through
`Settings.update()` (validation and the module lock, source "usb"), the
TLS and TOTP files into `board.files` under the names the uplink reads
(meter/mqttlink.py, meter/cloudcmd.py), each written whole and renamed into
place. Everything is checked before anything is written.
"""

import gc
import json
import os

from micropython import const

from meter import VERSION, buildcfg
from meter.audit import AuditLog
from meter.logstore import LogStore
from meter.settings import Settings
from meter.state import State

# The provisioned files: name -> what it must look like. Certificates and
# keys in PEM (meter/mqttlink.py converts), the TOTP secret as base32 text
# (meter/cloudcmd.py), the NTP server as one name (the ESP32 board's sync).
FILES = {
    "mqtt-ca.crt": "-----BEGIN CERTIFICATE-----",
    "mqtt-client.crt": "-----BEGIN CERTIFICATE-----",
    "mqtt-client.key": "-----BEGIN ",
    "update-ca.crt": "-----BEGIN CERTIFICATE-----",
    "totp.secret": None,
    "ntp.server": None,
}
MAX_FILE = const(8192)  # a PEM chain of a few certificates; keeps the heap safe
SOURCE = "usb"
_AUDIT_TAIL = const(8)


class Device:
    """The stores as the app opens them, without the app (which is stopped)."""

    def __init__(self, board):
        self.board = board
        self.audit = AuditLog(LogStore(board.partition("audit")), board)
        self.state = State(LogStore(board.partition("state")))
        self.settings = Settings(LogStore(board.partition("config")), self.audit, self.state)


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def status(board):
    """Everything the service centre checks before and after its work."""
    from meter.atm90e32 import UWH_PER_LSB
    from meter.energy import NAMES, EnergyCounters
    from meter.tokens import TokenStore

    d = Device(board)
    s = d.settings
    c = EnergyCounters(LogStore(board.partition("counters")), board, None, UWH_PER_LSB)
    files = board.files + "/"
    gc.collect()
    return {
        "version": VERSION,
        "board": board.name,
        "serial": board.serial(),
        "build": "development" if buildcfg.DEV_REPL else "production",
        "repl": "open while metering" if buildcfg.DEV_REPL else "service mode only",
        "service_left_s": 0,  # meter/service.py call() fills in the session's
        "slots": board.slots(),
        "security": board.security_state(),
        "lock": s.lock_state(),
        "settings_status": s.status,
        "pin_set": bool(s.get("ui.pin")),
        "web_password_set": bool(s.get("web.pass")),
        "counters_uwh": dict(zip(NAMES, c.uwh)),
        "counters_status": c.status,
        "generation": c.generation,
        "provisioned": {
            "wifi.ssid": s.get("wifi.ssid"),
            "mqtt.host": s.get("mqtt.host"),
            "mqtt.enabled": s.get("mqtt.enabled"),
            "device.name": s.get("device.name"),
            "update.server": s.get("update.server"),
            "files": sorted(n for n in FILES if _exists(files + n)),
        },
        "app_tokens": len(TokenStore(LogStore(board.partition("tokens")), s, None, board).tokens),
        # the newest events: what happened to this meter before it came in
        "audit_tail": [" ".join(str(x) for x in e[2:]) for e in d.audit.events(_AUDIT_TAIL)],
        "heap_free": gc.mem_free(),
    }


def _check_file(name, text):
    if name not in FILES:
        raise ValueError("not a provisioned file: " + name)
    if not isinstance(text, str) or not text or len(text) > MAX_FILE:
        raise ValueError("%s: empty or larger than %d bytes" % (name, MAX_FILE))
    head = FILES[name]
    if head is not None and not text.startswith(head):
        raise ValueError(name + ": not PEM")
    if name == "totp.secret":
        from meter.cloudcmd import MIN_SECRET_BYTES, b32decode

        if len(b32decode(text.strip())) < MIN_SECRET_BYTES:
            raise ValueError("totp.secret: shorter than %d bytes" % MIN_SECRET_BYTES)
    if name == "ntp.server" and (len(text.strip()) > 64 or any(
            ch in text.strip() for ch in " /\\\t\r\n")):
        raise ValueError("ntp.server: one host name or address")


def provision(board, settings, files):
    """Check all, then store: settings (one record, refused while locked)
    and files. Returns what changed (names only, never values)."""
    d = Device(board)
    d.settings.require_unlocked(SOURCE, "provision")
    for name, text in files.items():
        try:
            _check_file(name, text)
        except ValueError as e:
            raise ValueError(str(e) or "TOTP secret: not base32")
    d.settings.update(settings, SOURCE)  # validates every value; nothing stored on error
    path = board.files + "/"
    for name, text in files.items():
        tmp = path + name + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, path + name)
    if "totp.secret" in files:  # a new secret: the old replay mark means nothing
        try:
            os.remove(path + "totp.last")
        except OSError:
            pass
    done = sorted(settings) + sorted(files)
    d.audit.append(SOURCE, "provision", "ok", json.dumps(done)[:96])
    return done


COMMANDS = {"status": status, "provision": provision}
