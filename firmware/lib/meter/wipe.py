"""The service-centre factory wipe (docs/security.md, "Module lock";
docs/flashing.md): the only way past a forgotten lock password.

Erases the configuration (every setting: Wi-Fi, MQTT, display PIN, Web
Admin password, the module lock and its password), the runtime state (PIN
and login failure counts, the lock flag's copy, TOTP marks), the app tokens
and the provisioned files (TLS certificates and key, TOTP secret, NTP and
update settings). Keeps the energy counters and the audit log, and records
the wipe in it. Runs only in service mode (meter/service.py checks), so
only someone at the device can start it.

Every block of the three partitions is erased, not just superseded by an
empty record: the old records held the secrets. The order fails closed: a
power cut after the configuration is gone but before the runtime state is
leaves the copy of the lock flag set, so the device stays locked (with no
password that could open it) until the wipe is run again.
"""

import os

from meter.logstore import LogStore
from meter.servicecmd import FILES, SOURCE, Device

ERASED = ("config", "tokens", "state")  # in this order: see above


def _erase(part):
    for block in range(part.ioctl(4)):
        part.ioctl(6, block)
    LogStore(part).format()  # "set up, nothing stored": loads as a new store


def wipe(board, why="requested"):
    """Factory wipe; returns what was erased."""
    audit = Device(board).audit
    audit.append(SOURCE, "wipe", "started", why)
    for label in ERASED:
        _erase(board.partition(label))
    gone = []
    for name in list(FILES) + ["totp.last"]:
        try:
            os.remove(board.files + "/" + name)
            gone.append(name)
        except OSError:  # not provisioned
            pass
    audit.append(SOURCE, "wipe", "ok", "kept counters and audit log")
    return {"erased": list(ERASED), "files": gone}
