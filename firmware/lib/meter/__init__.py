"""Firmware of the three-phase energy analyzer."""

VERSION = "0.1.0"
# Anti-rollback level (docs/ota.md): raised when a release fixes a security
# flaw, so that no update file can bring back a version below it.
SECURITY_VERSION = 0
