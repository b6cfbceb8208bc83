"""meter.errors under MicroPython: every refusal a user can cause is one
UserError type, and the edges' message() shows nothing else (issue 17)."""

from meter.energy import CounterError
from meter.errors import UserError, message
from meter.lock import LockError
from meter.ota import UpdateError
from meter.service import ServiceError
from meter.settings import Locked, SettingsError
from meter.tokens import TokenError


def test_every_refusal_is_a_user_error():
    for cls in (SettingsError, LockError, TokenError, CounterError, ServiceError, UpdateError):
        assert issubclass(cls, UserError), cls
    assert isinstance(Locked(), UserError) and message(Locked()) == "module locked"
    assert TokenError("pending", 409).status == 409 and SettingsError("x").status == 400


def test_a_fault_is_never_shown_to_the_user():
    assert message(OSError(28, "/data/settings: no space")) == "internal error"
    assert message(KeyError("web.pass")) == "internal error"
    assert message(MemoryError()) == "internal error"


def test_message_cut_for_the_display():
    assert message(SettingsError("wifi.ssid: 1..32 characters"), 16) == "wifi.ssid: 1..32"
