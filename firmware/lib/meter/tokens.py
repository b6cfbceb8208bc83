"""App access tokens for the local API (docs/api.md): the token store.

A token is "mt1_" + 32 hex digits (128 bits from os.urandom). The app sees
it once, in the answer to its pairing request; the device keeps only its
SHA-256. A presented token is hashed and compared with every stored hash in
constant time (meter.crypto.compare_digest, all entries, no early exit), so
neither the answer's timing nor a dictionary lookup tells an attacker how
close a guess came.

States: pending (asked for by an app; does nothing until an admin confirms
it in the Web Admin; expires after PENDING_S), active (reads data), revoked
(refused; kept so the admin still sees it, until deleted). Confirming,
revoking and deleting ask the module lock first (Settings.require_unlocked)
and are audited.

Persistence: the active and revoked tokens are one LogStore record (JSON)
on the `tokens` partition, rewritten whole on each confirmation, revocation
or deletion: atomic like every record, so a power cut leaves the previous
table. The table in RAM changes only after the record is stored. Pending
tokens live in RAM only: a flood of pairing requests writes nothing to
flash, and a restart (which also closes the Web Admin window that pairing
needs) ends them; the app simply asks again.
"""

import hashlib
import json
import os
import time
from binascii import hexlify, unhexlify

from meter import log
from meter.crypto import compare_digest
from meter.errors import UserError

KIND = 5
PREFIX = "mt1_"
SECRET_HEX = 32  # 128 bits
TOKEN_LEN = len(PREFIX) + SECRET_HEX
MAX_TOKENS = 12  # active + revoked + pending; one record must fit a 4 KiB block
MAX_PENDING = 4
PENDING_S = 300
NAME_MAX = 32
PENDING, ACTIVE, REVOKED = "pending", "active", "revoked"
_CODE = {ACTIVE: "a", REVOKED: "r"}
_STATE = {"a": ACTIVE, "r": REVOKED}


class TokenError(UserError):
    """A refused request; the message is for the user, status for HTTP."""

    def __init__(self, msg, status=400):
        super().__init__(msg)
        self.status = status


class Token:
    __slots__ = ("id", "h", "name", "state", "t", "ip", "t_ok", "until")

    def __init__(self, id_, h, name, state, t, ip, t_ok=0, until=None):
        self.id = id_  # 8 hex digits, not secret: names the token on the admin page
        self.h = h  # SHA-256 of the token (bytes)
        self.name = name
        self.state = state
        self.t = t  # Unix time of the request (0: clock unknown)
        self.ip = ip
        self.t_ok = t_ok  # Unix time of the confirmation
        self.until = until  # pending: ticks_ms when it expires


def check_name(name):
    """The app's name as given, or TokenError: 1..NAME_MAX printable characters."""
    if not isinstance(name, str):
        raise TokenError("name: expected text")
    name = name.strip()
    if not name:
        raise TokenError("name: give the app or device a name")
    if len(name) > NAME_MAX or len(name.encode()) > 2 * NAME_MAX:
        raise TokenError("name: at most %d characters" % NAME_MAX)
    for c in name:
        if c < " " or c == "\x7f":
            raise TokenError("name: printable characters only")
    return name


def well_formed(token):
    """Whether token has the shape of one of ours (checked before hashing:
    anything else is refused as malformed without further work)."""
    if not isinstance(token, str) or len(token) != TOKEN_LEN or not token.startswith(PREFIX):
        return False
    for c in token[len(PREFIX):]:
        if c not in "0123456789abcdef":
            return False
    return True


def digest(token):
    return hashlib.sha256(token.encode()).digest()


class TokenStore:
    def __init__(self, store, settings, audit, clock):
        """store: LogStore on the `tokens` partition; settings: for the
        module lock and the test-only expiry; clock: the board (time())."""
        self.store = store
        self.settings = settings
        self.audit = audit
        self.clock = clock
        self.ticks_ms = time.ticks_ms  # tests replace it
        self.tokens = []
        self.status = "ok"
        self.load()

    # -- persistence -------------------------------------------------------------

    def load(self):
        """Read the table; pending tokens are not stored, so none survive."""
        self.tokens = []
        rec = self.store.latest()
        if rec is None:
            # formatted without a data record: the first confirmation was
            # cut, nothing was ever stored (docs/energy.md): "new"
            self.status = "new" if self.store.blank or self.store.formatted else "corrupt"
        else:
            try:
                for e in json.loads(rec[2])["t"]:
                    self.tokens.append(Token(e[0], unhexlify(e[1]), e[2], _STATE[e[3]],
                                             e[4], e[5], e[6]))
                self.status = "ok"
            except (ValueError, KeyError, IndexError, TypeError):
                # Fail closed: no token works until an admin confirms anew.
                self.tokens = []
                self.status = "corrupt"
        if self.status == "corrupt":
            log.error("tokens: store unreadable, no token is valid")

    def _save(self, tokens):
        """Store the table that `tokens` would leave (pending ones are left
        out), then adopt it: RAM changes only once the record is written."""
        rows = [[t.id, hexlify(t.h).decode(), t.name, _CODE[t.state], t.t, t.ip, t.t_ok]
                for t in tokens if t.state != PENDING]
        try:
            self.store.append_json(KIND, {"t": rows})
        except ValueError:  # MAX_TOKENS is chosen so this cannot happen
            raise TokenError("token table too large", 507)
        self.tokens = tokens
        self.status = "ok"

    # -- queries -------------------------------------------------------------------

    def pending_s(self):
        return min(self.settings.get("test.token_pending_s"), PENDING_S)

    def expire(self):
        """Drop pending tokens nobody confirmed in time (RAM only)."""
        now = self.ticks_ms()
        keep = [t for t in self.tokens
                if t.state != PENDING or time.ticks_diff(t.until, now) > 0]
        if len(keep) != len(self.tokens):
            for t in self.tokens:
                if t not in keep:
                    log.info("tokens: pending %s (%s) expired" % (t.id, t.name))
            self.tokens = keep

    def count(self, state=None):
        return sum(1 for t in self.tokens if state is None or t.state == state)

    def find(self, token):
        """The entry whose hash matches token (any state), or None. Every
        entry is compared, in constant time, whatever matches."""
        self.expire()
        h = digest(token)
        hit = None
        for t in self.tokens:
            if compare_digest(h, t.h):
                hit = t
        return hit

    def get(self, id_):
        self.expire()
        for t in self.tokens:
            if t.id == id_:
                return t
        return None

    def is_active(self, id_):
        """Whether the token `id_` still reads data (asked on every event of
        an open live stream)."""
        for t in self.tokens:
            if t.id == id_:
                return t.state == ACTIVE
        return False

    def remaining_s(self, t):
        if t.state != PENDING:
            return 0
        return max(0, time.ticks_diff(t.until, self.ticks_ms()) // 1000)

    # -- changes ---------------------------------------------------------------------

    def request(self, name, ip):
        """A pairing request: a new pending token. Returns (token, entry);
        the token is never stored and cannot be shown again. TokenError
        (nothing changed) beyond the limits."""
        name = check_name(name)
        self.expire()
        if len(self.tokens) >= MAX_TOKENS:
            raise TokenError("token limit reached: at most %d tokens; delete one in the Web "
                             "Admin (Tokens)" % MAX_TOKENS, 409)
        if self.count(PENDING) >= MAX_PENDING:
            raise TokenError("too many pairing requests waiting for confirmation (at most %d); "
                             "try again later" % MAX_PENDING, 429)
        token = PREFIX + hexlify(os.urandom(SECRET_HEX // 2)).decode()
        while True:
            id_ = hexlify(os.urandom(4)).decode()
            if not any(t.id == id_ for t in self.tokens):
                break
        now = self.clock.time() if self.clock.time_valid() else 0
        t = Token(id_, digest(token), name, PENDING, now, ip,
                  until=time.ticks_add(self.ticks_ms(), self.pending_s() * 1000))
        self.tokens.append(t)
        if self.audit:
            self.audit.append("api", "token-request", "pending", "%s %s from %s" % (id_, name, ip))
        return token, t

    def confirm(self, id_, source):
        """An admin's explicit confirmation: the pending token starts to work."""
        self.settings.require_unlocked(source, "token-confirm")
        t = self._pending_or_fail(id_)
        new = []
        for x in self.tokens:
            if x is t:
                x = Token(t.id, t.h, t.name, ACTIVE, t.t, t.ip,
                          self.clock.time() if self.clock.time_valid() else 0)
            new.append(x)
        self._save(new)
        self._audit(source, "token-confirm", t)
        return t

    def revoke(self, id_, source):
        """Refused from the next request on (and on an open stream); the
        entry stays, marked revoked, until deleted. A revoked token cannot
        be confirmed again: the app pairs anew."""
        self.settings.require_unlocked(source, "token-revoke")
        t = self.get(id_)
        if t is None:
            raise TokenError("no such token", 404)
        if t.state != ACTIVE:
            raise TokenError("only an active token can be revoked (this one is %s)" % t.state)
        new = []
        for x in self.tokens:
            if x is t:
                x = Token(t.id, t.h, t.name, REVOKED, t.t, t.ip, t.t_ok)
            new.append(x)
        self._save(new)
        self._audit(source, "token-revoke", t)

    def delete(self, id_, source):
        """Gone for good, whatever its state."""
        self.settings.require_unlocked(source, "token-delete")
        t = self.get(id_)
        if t is None:
            raise TokenError("no such token", 404)
        new = [x for x in self.tokens if x is not t]
        if t.state == PENDING:
            self.tokens = new  # never stored: nothing to write
        else:
            self._save(new)
        self._audit(source, "token-delete", t)

    def _pending_or_fail(self, id_):
        t = self.get(id_)
        if t is None:
            raise TokenError("no such token (a pending token expires after %d s)"
                             % self.pending_s(), 404)
        if t.state != PENDING:
            raise TokenError("this token is %s, not pending" % t.state)
        return t

    def _audit(self, source, event, t):
        if self.audit:
            self.audit.append(source, event, "ok", "%s %s" % (t.id, t.name))
