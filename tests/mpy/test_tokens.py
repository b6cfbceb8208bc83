"""The app token store (meter/tokens.py): secrets, states, expiry, limits,
persistence and power cuts, the module lock."""

import hashlib
import json

from upytest import raises, tmpdir

from meter.board.flashfile import FilePartition
from meter.crypto import compare_digest
from meter.logstore import LogStore
from meter.settings import Locked, Settings
from meter import tokens as tk
from meter.tokens import TokenError, TokenStore

from test_store import Clock, Cut, CuttingPartition, _cut_in_first_write

HEAP = "512k"


class Audit:
    def __init__(self):
        self.events = []

    def append(self, source, event, outcome="ok", detail=""):
        self.events.append((source, event, outcome, detail))


class Dev:
    """A token store on a file partition, with settings and a fake clock;
    reopen() is a reboot."""

    def __init__(self, d=None, cut=None):
        self.d = d or tmpdir()
        self.clock = Clock()
        self.audit = Audit()
        self.settings = Settings(LogStore(FilePartition(self.d + "/config", 4 * 4096)))
        self.ms = 0
        self.open(cut)

    def part(self):
        return FilePartition(self.d + "/tokens", 4 * 4096)

    def open(self, cut=None):
        p = self.part()
        self.p = CuttingPartition(p, cut) if cut is not None else p
        self.s = TokenStore(LogStore(self.p), self.settings, self.audit, self.clock)
        self.s.ticks_ms = lambda: self.ms
        return self.s

    def pair(self, name="phone", ip="192.168.1.20"):
        return self.s.request(name, ip)


def test_token_has_128_random_bits_and_only_its_hash_is_stored():
    dev = Dev()
    tok, t = dev.pair()
    assert tk.well_formed(tok) and tok.startswith("mt1_") and len(tok) == 4 + 32
    assert len(bytes.fromhex(tok[4:])) == 16  # 128 bits
    tok2, _ = dev.pair("tablet")
    assert tok2 != tok
    assert t.h == hashlib.sha256(tok.encode()).digest()
    dev.s.confirm(t.id, "web")
    raw = open(dev.d + "/tokens", "rb").read()
    assert tok.encode() not in raw and tok[4:].encode() not in raw  # never the secret
    assert hashlib.sha256(tok.encode()).digest().hex().encode() in raw  # only its hash
    rec = json.loads(dev.s.store.latest()[2])
    assert len(rec["t"]) == 1 and rec["t"][0][2] == "phone"  # the pending tablet is not stored


def test_lookup_compares_every_entry_in_constant_time():
    dev = Dev()
    toks = []
    for i in range(4):
        tok, t = dev.pair("app%d" % i)
        dev.s.confirm(t.id, "web")
        toks.append(tok)
    calls = []
    orig = tk.compare_digest

    def counting(a, b):
        calls.append((len(a), len(b)))
        return orig(a, b)

    tk.compare_digest = counting
    try:
        for tok in (toks[0], toks[3], "mt1_" + "0" * 32):
            del calls[:]
            dev.s.find(tok)
            # every stored hash, 32 bytes against 32, whatever matched (no early exit)
            assert calls == [(32, 32)] * 4, calls
    finally:
        tk.compare_digest = orig
    assert dev.s.find(toks[2]).name == "app2"
    assert dev.s.find("mt1_" + "0" * 32) is None
    # compare_digest itself: same work for an early and a late difference
    assert not compare_digest(b"a" * 32, b"b" + b"a" * 31)
    assert not compare_digest(b"a" * 32, b"a" * 31 + b"b")


def test_malformed_tokens_are_not_ours():
    for bad in ("", "mt1_", "mt1_" + "0" * 31, "mt1_" + "0" * 33, "mt1_" + "G" * 32,
                "mt1_" + "A" * 32, "xx1_" + "0" * 32, "mt1_" + "0" * 31 + "\n", None, 12,
                "mt1_" + "0" * 5000):
        assert not tk.well_formed(bad), bad


def test_states_pending_does_nothing_confirm_revoke_delete():
    dev = Dev()
    tok, t = dev.pair("Anna's phone", "10.0.0.7")
    assert t.state == "pending" and not dev.s.is_active(t.id)
    assert dev.s.find(tok).state == "pending"
    assert dev.audit.events[-1][:3] == ("api", "token-request", "pending")
    assert "10.0.0.7" in dev.audit.events[-1][3] and t.ip == "10.0.0.7" and t.t == Clock.t
    dev.s.confirm(t.id, "web")
    assert dev.s.find(tok).state == "active" and dev.s.is_active(t.id)
    assert dev.audit.events[-1][:3] == ("web", "token-confirm", "ok")
    e = raises(TokenError, dev.s.confirm, t.id, "web")  # only a pending one
    assert "not pending" in str(e)
    dev.s.revoke(t.id, "web")
    assert dev.s.find(tok).state == "revoked" and not dev.s.is_active(t.id)
    assert dev.audit.events[-1][:3] == ("web", "token-revoke", "ok")
    raises(TokenError, dev.s.confirm, t.id, "web")  # revoked stays revoked
    raises(TokenError, dev.s.revoke, t.id, "web")
    dev.s.delete(t.id, "web")
    assert dev.s.find(tok) is None and dev.s.get(t.id) is None
    assert dev.audit.events[-1][:3] == ("web", "token-delete", "ok")
    assert raises(TokenError, dev.s.delete, t.id, "web").status == 404
    # an active token can be deleted straight away too
    tok2, t2 = dev.pair()
    dev.s.confirm(t2.id, "web")
    dev.s.delete(t2.id, "web")
    assert dev.s.find(tok2) is None


def test_bad_names_are_refused_and_nothing_is_kept():
    dev = Dev()
    for bad in ("", "   ", None, 5, "x" * 33, "evil\r\nSet-Cookie: a=b", "tab\tname", "del\x7f",
                "é" * 33):
        e = raises(TokenError, dev.s.request, bad, "1.2.3.4")
        assert e.status == 400 and str(e).startswith("name:")
    assert dev.s.tokens == [] and dev.audit.events == []
    tok, t = dev.pair("  Küche Tablet  ")
    assert t.name == "Küche Tablet"


def test_pending_tokens_expire():
    dev = Dev()
    dev.settings.update({"test.token_pending_s": 10}, "test")
    tok, t = dev.pair()
    assert dev.s.remaining_s(t) == 10
    dev.ms = 9999
    assert dev.s.get(t.id) is not None
    dev.ms = 10000
    assert dev.s.get(t.id) is None and dev.s.find(tok) is None
    e = raises(TokenError, dev.s.confirm, t.id, "web")
    assert e.status == 404 and "expires" in str(e)
    # the product default is 5 minutes; the test setting never lengthens it
    dev.settings.update({"test.token_pending_s": 300}, "test")
    assert dev.s.pending_s() == tk.PENDING_S == 300
    # a confirmed token does not expire
    tok, t = dev.pair()
    dev.s.confirm(t.id, "web")
    dev.ms += 10 ** 8
    assert dev.s.find(tok).state == "active"


def test_limits_give_clear_errors():
    dev = Dev()
    pend = [dev.pair("p%d" % i) for i in range(tk.MAX_PENDING)]
    e = raises(TokenError, dev.pair, "one more")
    assert e.status == 429 and "waiting for confirmation" in str(e)
    for tok, t in pend:
        dev.s.confirm(t.id, "web")
    while len(dev.s.tokens) < tk.MAX_TOKENS:
        dev.s.confirm(dev.pair("a%d" % len(dev.s.tokens))[1].id, "web")
    e = raises(TokenError, dev.pair, "thirteenth")
    assert e.status == 409 and "at most %d tokens" % tk.MAX_TOKENS in str(e)
    assert len(dev.s.tokens) == tk.MAX_TOKENS
    # the largest table (longest names, all escaped) fits one record
    dev.s.delete(dev.s.tokens[0].id, "web")
    tok, t = dev.pair("\"\\" * 16, "255.255.255.255")
    dev.s.confirm(t.id, "web")
    assert len(dev.s.store.latest()[2]) <= dev.s.store.max_payload


def test_persistence_across_reload():
    dev = Dev()
    a, ta = dev.pair("active one")
    r, tr = dev.pair("revoked one")
    p, tp = dev.pair("pending one")
    dev.s.confirm(ta.id, "web")
    dev.s.confirm(tr.id, "web")
    dev.s.revoke(tr.id, "web")
    s = dev.open()  # reboot
    assert s.status == "ok"
    assert s.find(a).state == "active" and s.find(a).name == "active one"
    assert s.find(a).ip == "192.168.1.20" and s.find(a).t_ok == Clock.t
    assert s.find(r).state == "revoked"
    assert s.find(p) is None  # pending tokens end with a restart (never stored)


def test_a_power_cut_during_a_write_leaves_the_previous_table():
    # Count the flash operations of one confirmation, then cut at each of
    # them: after the reboot the token is either confirmed or (as before the
    # write) unknown, never half-stored; the older tokens are always intact.
    # With 1..4 earlier tables (about 1 KB each) some confirmations fit the
    # current block (one program) and some need a fresh block (erase first).
    worst = 0
    for before in range(1, 5):
        base = Dev()
        olds = []
        for i in range(before):
            tok, t = base.pair("old app %d, a long long name" % i)
            base.s.confirm(t.id, "web")
            olds.append(tok)
        for i in range(6 - before):  # same table size in every round
            base.s.confirm(base.pair("filler %d, a long long name" % i)[1].id, "web")
        snapshot = open(base.d + "/tokens", "rb").read()
        for k in range(20):
            d = tmpdir()
            with open(d + "/tokens", "wb") as f:
                f.write(snapshot)
            dev = Dev(d, cut=k)
            tok, t = dev.pair("new")
            try:
                dev.s.confirm(t.id, "web")
                done = True
            except Cut:
                done = False
                assert dev.s.get(t.id).state == "pending"  # RAM unchanged by the failed write
            s = dev.open()  # power back
            for old in olds:
                assert s.find(old).state == "active", (before, k)
            got = s.find(tok)
            assert (got is not None and got.state == "active") if done else got is None, k
            if done:
                worst = max(worst, k)
                break
            # and the store goes on working after the cut
            tok3, t3 = s.request("again", "1.1.1.1")
            s.confirm(t3.id, "web")
            assert dev.open().find(tok3).state == "active"
    assert worst == 2  # an erase and a program were both cut somewhere


def _first_confirm_cut(noise):
    # The first confirmation writes the format marker and the first table:
    # a cut at any of its flash operations leaves a "new" store (no token,
    # as before), never "corrupt", and the next confirmation works.
    settings = Settings(LogStore(FilePartition(tmpdir() + "/config", 4 * 4096)))
    made = []

    def first(p):
        s = TokenStore(LogStore(p), settings, Audit(), Clock())
        assert s.status == "new"
        tok, t = s.request("phone", "192.168.1.20")
        made[:] = [tok]
        s.confirm(t.id, "web")

    def check(p, done, how):
        s = TokenStore(LogStore(p), settings, Audit(), Clock())
        # a cut program may have landed whole: then the token is there
        assert s.status in (("ok",) if done else ("new", "ok")), (how, s.status)
        got = s.find(made[0])
        assert (got is not None and got.state == "active") == (s.status == "ok"), how
        tok, t = s.request("tablet", "192.168.1.21")
        s.confirm(t.id, "web")
        s2 = TokenStore(LogStore(p), settings, Audit(), Clock())
        assert s2.status == "ok" and s2.find(tok).state == "active", how

    _cut_in_first_write(noise, "tokens", first, check)


def test_a_cut_in_the_first_confirmation_loads_as_new():
    _first_confirm_cut(False)


def test_a_cut_in_the_first_confirmation_loads_as_new_noise():
    _first_confirm_cut(True)


def test_corrupt_store_fails_closed():
    dev = Dev()
    tok, t = dev.pair()
    dev.s.confirm(t.id, "web")
    dev.s.store.append(tk.KIND, b"{not json")
    s = dev.open()
    assert s.status == "corrupt" and s.find(tok) is None


def test_module_lock_refuses_confirm_revoke_delete_but_not_pairing():
    dev = Dev()
    a, ta = dev.pair("active")
    dev.s.confirm(ta.id, "web")
    dev.settings.set_lock({"lock.on": True}, "test", "lock")
    tok, t = dev.pair("while locked")  # a request changes no configuration
    assert t.state == "pending"
    writes = dev.s.store.writes
    e = raises(Locked, dev.s.confirm, t.id, "web")
    assert str(e) == "module locked"
    raises(Locked, dev.s.revoke, ta.id, "web")
    raises(Locked, dev.s.delete, ta.id, "web")
    raises(Locked, dev.s.delete, t.id, "web")
    assert dev.s.store.writes == writes
    assert dev.s.find(a).state == "active" and dev.s.find(tok).state == "pending"
    dev.settings.set_lock({"lock.on": False}, "test", "unlock")
    dev.s.confirm(t.id, "web")
    assert dev.s.find(tok).state == "active"
