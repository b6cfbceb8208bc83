"""Cloud commands authenticated with TOTP (RFC 6238), each code used once.

A command is one JSON object on the command topic (docs/mqtt.md):

    {"id": "c-17", "code": "492039", "cmd": "set_interval", "seconds": 30}

and the reply, on the reply topic, carries the same id:

    {"id": "c-17", "ok": true, "result": {"interval_s": 30}}
    {"id": "c-17", "ok": false, "error": "code already used"}

The code is TOTP-SHA1, 6 digits, 30 s steps, from a per-device secret
provisioned at the factory into `board.files/totp.secret` (base32 text, as
in otpauth:// URIs; at least 128 bits). It is never hard-coded, published,
logged or shown; the display shows only the current code (pairing).

Rules (RFC 6238 section 5.2; shared/notes/security.md section 3):
- steps T-1, T, T+1 are accepted, each at most once: the highest step ever
  accepted is stored in `board.files/totp.last` (written to a temporary
  file, then renamed over the old one: never half-written) *before* the
  command runs, so neither a retry nor a reboot can replay a code; a step
  at or below it is refused. One step per code also means at most one
  command per 30 s on average (two in a burst, with the T+1 code).
- a wrong or replayed code is audited and blocks the next attempts for
  1, 2, 4 ... 64 s (doubling per failure, cleared by a success); and all
  failures draw on one budget, a bucket of BUDGET tries refilled one per
  REFILL_S, which no success refills: at most BUDGET + 3600 / REFILL_S = 90
  wrong codes in any hour (ASVS 2.2.1), even while the cloud's own valid
  commands keep clearing the doubling. Codes arriving while blocked are not
  checked at all.
- no command is accepted while the clock is not known (board.time_valid()).
- the message is validated completely (size, JSON, types, known command
  and fields) before the code is checked: a malformed message changes
  nothing and does not use up a code.
- configuration changes go through app.settings.update(changes, "mqtt")
  (validation, the module lock, audit); the counter reset through
  app.counters.reset(confirm, "mqtt"), which asks the lock too. The lock
  itself is switched with its password (lock_set, lock, unlock,
  lock_change: app.lock, meter/lock.py).
- while the module is locked, the status reply leaves the configuration
  out: nothing new about it is published (docs/mqtt.md).
"""

import json
import time

from micropython import const

from meter import VERSION, log
from meter.crypto import compare_digest, hotp

_STEP = const(30)
_DIGITS = const(6)
_WINDOW = const(1)
MAX_PAYLOAD = const(1024)  # bytes; anything longer is refused unparsed
_MAX_ID = const(64)
_THROTTLE_MAX_S = const(64)
_QUIET_RESET_S = const(900)  # failures older than this are forgotten
# The guess budget: a success clears the doubling wait (the cloud must not
# stay slowed down), so it alone would let an attacker guess ~580 times an
# hour between the cloud's commands every 30 s. The bucket bounds that.
BUDGET = const(10)  # wrong codes in a burst
REFILL_S = const(45)  # then one per 45 s: at most 10 + 3600 / 45 = 90 an hour
MIN_SECRET_BYTES = const(16)  # RFC 4226 section 4: at least 128 bits
SECRET_FILE = "totp.secret"
STEP_FILE = "totp.last"

# command -> {field: (type, check)}; check: tuple of allowed values or None
COMMANDS = {
    "status": {},
    "set_interval": {"seconds": (int, None)},
    "service": {"name": (str, ("uplink", "ha_discovery", "auto_update")), "on": (bool, None)},
    "update_check": {},
    "set_update_interval": {"hours": (int, None)},
    "reset_counters": {"confirm": (str, None)},
    "lock_set": {"new": (str, None)},
    "lock": {"password": (str, None)},
    "unlock": {"password": (str, None)},
    "lock_change": {"password": (str, None), "new": (str, None)},
}
SERVICE_KEYS = {"uplink": "mqtt.enabled", "ha_discovery": "mqtt.ha_discovery",
                "auto_update": "update.enabled"}

_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


class CmdError(Exception):
    """Refused; str() is the error text of the reply."""


def b32decode(text):
    """RFC 4648 base32 (case, spaces and '=' padding ignored) to bytes."""
    bits = 0
    n = 0
    out = bytearray()
    for ch in text.upper():
        if ch in " =\n\r\t-":
            continue
        v = _B32.find(ch)
        if v < 0:
            raise ValueError("not base32")
        bits = (bits << 5) | v
        n += 5
        if n >= 8:
            n -= 8
            out.append((bits >> n) & 0xFF)
            bits &= (1 << n) - 1
    return bytes(out)


class Totp:
    """The device's TOTP verifier: secret, single use, throttling."""

    def __init__(self, board, audit):
        self.board = board
        self.audit = audit
        self.path = board.files + "/" + STEP_FILE
        self._secret = None
        self.last = None  # highest accepted step; loaded on first use
        self.fails = 0  # consecutive failures (the doubling wait)
        self.debt = 0  # budget used: BUDGET means empty
        self._debt_at = 0  # ticks_ms from which the next refill counts
        self._blocked_until = 0  # ticks_ms
        self._last_fail_ms = 0
        self._throttle_audited = False
        self.refused = 0  # counters for status and tests
        self.accepted = 0

    # -- secret ----------------------------------------------------------------

    def secret(self):
        """The secret bytes; raises CmdError (without details of the file)."""
        if self._secret is None:
            try:
                with open(self.board.files + "/" + SECRET_FILE) as f:
                    s = b32decode(f.read())
            except OSError:
                raise CmdError("no TOTP secret provisioned")
            except ValueError:
                raise CmdError("TOTP secret unreadable")
            if len(s) < MIN_SECRET_BYTES:
                raise CmdError("TOTP secret too short")
            self._secret = s
        return self._secret

    def code_now(self):
        """(current code, seconds it stays current) or (None, reason)."""
        if not self.board.time_valid():
            return None, "clock not set"
        try:
            secret = self.secret()
        except CmdError as e:
            return None, str(e)
        t = self.board.time()
        return hotp(secret, t // _STEP, _DIGITS), _STEP - t % _STEP

    # -- single use -----------------------------------------------------------

    def _load_last(self, now_step):
        try:
            with open(self.path) as f:
                return int(f.read().strip())
        except OSError:
            return -1  # never used (fresh provisioning)
        except ValueError:
            # Damaged: fail closed, nothing in the current window is accepted.
            log.error("totp: step file unreadable; refusing the current window")
            return now_step + _WINDOW

    def _store_last(self, step):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % step)
        import os

        os.rename(tmp, self.path)

    # -- verification -----------------------------------------------------------

    def _refill(self, now):
        while self.debt and time.ticks_diff(now, self._debt_at) >= REFILL_S * 1000:
            self.debt -= 1
            self._debt_at = time.ticks_add(self._debt_at, REFILL_S * 1000)
        if not self.debt:
            self._debt_at = now

    def blocked_s(self):
        now = time.ticks_ms()
        left = time.ticks_diff(self._blocked_until, now)
        self._refill(now)
        if self.debt >= BUDGET:  # budget used up: until the next refill
            left = max(left, REFILL_S * 1000 - time.ticks_diff(now, self._debt_at))
        return (left + 999) // 1000 if left > 0 else 0

    def _fail(self, why, cid):
        now = time.ticks_ms()
        self._refill(now)
        self.debt += 1  # blocked_s() refused the try if this were over BUDGET
        if time.ticks_diff(now, self._last_fail_ms) > _QUIET_RESET_S * 1000:
            self.fails = 0
        self.fails += 1
        self._last_fail_ms = now
        wait = min(1 << (self.fails - 1), _THROTTLE_MAX_S)
        self._blocked_until = time.ticks_add(now, wait * 1000)
        self._throttle_audited = False
        self.refused += 1
        self.audit.append("mqtt", "totp", "refused", "%s, id %s" % (why, cid))
        raise CmdError(why)

    def verify(self, code, cid):
        """Accept `code` once or raise CmdError. The clock must be valid."""
        left = self.blocked_s()
        if left:
            self.refused += 1
            if not self._throttle_audited:  # once per blocked period: no flash flood
                self._throttle_audited = True
                self.audit.append("mqtt", "totp", "throttled", "id %s" % cid)
            raise CmdError("too many wrong codes: retry in %d s" % left)
        secret = self.secret()
        t = self.board.time()
        now_step = t // _STEP
        if self.last is None:
            self.last = self._load_last(now_step)
        match = []
        for s in range(now_step - _WINDOW, now_step + _WINDOW + 1):
            # every candidate is computed and compared: no early exit
            if compare_digest(hotp(secret, s, _DIGITS), code):
                match.append(s)
        if not match:
            self._fail("wrong code", cid)
        fresh = [s for s in match if s > self.last]
        if not fresh:
            self._fail("code already used", cid)
        step = max(fresh)
        try:
            self._store_last(step)
        except Exception as e:
            log.exc("totp: cannot store the used step", e)
            raise CmdError("cannot record code use: refused")
        self.last = step
        self.fails = 0  # the doubling starts over; the budget does not refill
        self.accepted += 1


class Commands:
    """Validates and runs one command message; returns the reply dict."""

    def __init__(self, app, uplink=None):
        self.app = app
        self.uplink = uplink
        self.totp = Totp(app.board, app.audit)

    async def handle(self, payload):
        cid = None
        try:
            msg = self._parse(payload)
            cid = msg["id"]
            cmd = self._validate(msg)
            if not self.app.board.time_valid():
                raise CmdError("clock not set: commands refused")
            self.totp.verify(msg["code"], cid)
            log.info("mqtt: command %s id %s accepted" % (cmd, cid))
            return {"id": cid, "ok": True, "result": await getattr(self, "_" + cmd)(msg)}
        except CmdError as e:
            log.warn("mqtt: command id %s refused: %s" % (cid, e))
            return {"id": cid, "ok": False, "error": str(e)}
        except Exception as e:  # a bug must not kill the uplink; the reply says so
            log.exc("mqtt: command failed", e)
            return {"id": cid, "ok": False, "error": "internal error"}

    def _parse(self, payload):
        if payload is None or len(payload) > MAX_PAYLOAD:
            raise CmdError("payload too large (max %d bytes)" % MAX_PAYLOAD)
        try:
            msg = json.loads(bytes(payload).decode())
        except Exception:
            raise CmdError("not JSON")
        if not isinstance(msg, dict):
            raise CmdError("expected a JSON object")
        cid = msg.get("id")
        if not isinstance(cid, str) or not 1 <= len(cid) <= _MAX_ID:
            raise CmdError("id: text of 1..%d characters required" % _MAX_ID)
        return msg

    def _validate(self, msg):
        cmd = msg.get("cmd")
        if not isinstance(cmd, str):
            raise CmdError("cmd: text required")
        spec = COMMANDS.get(cmd)
        if spec is None:
            raise CmdError("unknown command " + cmd[:32])
        for k in msg:
            if k not in ("id", "code", "cmd") and k not in spec:
                raise CmdError("unexpected field " + str(k)[:32])
        for k, (typ, allowed) in spec.items():
            v = msg.get(k)
            if v is None:
                raise CmdError("%s: missing" % k)
            if type(v) is not typ:  # bool is not an int here, nor int a bool
                raise CmdError("%s: expected %s" % (k, {int: "a whole number", str: "text",
                                                        bool: "true/false"}[typ]))
            if allowed and v not in allowed:
                raise CmdError("%s: one of %s" % (k, ", ".join(allowed)))
        code = msg.get("code")
        if not isinstance(code, str) or len(code) != _DIGITS or not code.isdigit():
            raise CmdError("code: %d digits (text) required" % _DIGITS)
        return cmd

    def _update(self, changes):
        from meter.settings import SettingsError

        try:
            self.app.settings.update(changes, "mqtt")
        except SettingsError as e:
            raise CmdError(str(e))

    # -- the commands -------------------------------------------------------------

    async def _status(self, msg):
        from meter.energy import NAMES

        app = self.app
        c = app.counters
        out = {"fw": VERSION, "serial": app.board.serial(), "time": app.board.time(),
               "uplink": self.uplink.status if self.uplink else None,
               # the version an update rolled back from (meter/otastatus.py), or None
               "rollback": app.ota_rollback,
               "locked": app.settings.locked,
               "meter": app.sampler.fault or "ok", "counters_status": c.status,
               "generation": c.generation, "counters_uwh": dict(zip(NAMES, c.uwh))}
        if not app.settings.locked:
            out["interval_s"] = app.settings.get("mqtt.interval_s")
            out["ha_discovery"] = app.settings.get("mqtt.ha_discovery")
        return out

    async def _set_interval(self, msg):
        self._update({"mqtt.interval_s": msg["seconds"]})
        return {"interval_s": self.app.settings.get("mqtt.interval_s")}

    async def _service(self, msg):
        key = SERVICE_KEYS[msg["name"]]
        self._update({key: msg["on"]})
        return {msg["name"]: self.app.settings.get(key)}

    async def _update_check(self, msg):
        """Check for an update now: answered at once, the result follows as
        an `event` (meter/otaauto.py), so the session is never held."""
        a = self.app.autoupdate
        if a is None:
            raise CmdError("automatic updates are not available")
        r = a.start("cloud")
        if "error" in r:
            raise CmdError(r["error"])
        return r

    async def _set_update_interval(self, msg):
        self._update({"update.interval_h": msg["hours"]})
        return {"interval_h": self.app.settings.get("update.interval_h")}

    async def _reset_counters(self, msg):
        from meter.energy import CounterError
        from meter.settings import SettingsError

        try:
            self.app.counters.reset(msg["confirm"], "mqtt")
        except (CounterError, SettingsError) as e:
            raise CmdError(str(e))
        return {"generation": self.app.counters.generation}

    async def _lock_op(self, op, *args):
        from meter.lock import LockError

        try:
            await op(*args, "mqtt")
        except LockError as e:
            raise CmdError(str(e))
        return {"lock": self.app.settings.lock_state()}

    async def _lock_set(self, msg):
        return await self._lock_op(self.app.lock.set_password, msg["new"])

    async def _lock(self, msg):
        return await self._lock_op(self.app.lock.lock, msg["password"])

    async def _unlock(self, msg):
        return await self._lock_op(self.app.lock.unlock, msg["password"])

    async def _lock_change(self, msg):
        return await self._lock_op(self.app.lock.change, msg["password"], msg["new"])
