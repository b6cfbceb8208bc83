"""The Web Admin's connection admission policy (meter/web/admission.py),
pure, with a fake clock: its rules one by one, then a model of the attack
in tests/test_web_attack.py (an idle flood, slowloris, oversized and
malformed requests) with real clients among it, on the device's 5 slots."""

from meter.web import admission as adm

SLOTS = 5
HEAD, BODY, HANDLE = 0, 1, 2


class C:
    def __init__(self, t0, got=0, phase=HEAD, kind="idle"):
        self.t0 = t0
        self.got = got
        self.phase = phase
        self.kind = kind


def test_a_free_slot_admits_anyone():
    assert adm.choose([], 0, False, True, SLOTS) is True
    assert adm.choose([C(0)], 10, True, True, SLOTS) is True


def test_a_ready_newcomer_evicts_the_oldest_idle_past_the_grace():
    young = C(1000)
    old = C(500)
    older = C(400)
    conns = [young, old, older, C(300, got=10, phase=HANDLE)]
    now = 1000 + adm.GRACE_MS - 1
    assert adm.choose(conns, now, True, False, SLOTS) is older
    # idle ones all younger than a Wi-Fi round trip: none is evicted
    conns = [C(now - adm.GRACE_MS + 1) for _ in range(SLOTS)]
    assert adm.choose(conns, now, True, False, SLOTS) is None


def test_an_idle_newcomer_evicts_only_long_idle_ones():
    now = 10000
    conns = [C(now - adm.IDLE_MS + 1) for _ in range(SLOTS)]
    assert adm.choose(conns, now, False, False, SLOTS) is None
    conns[2].t0 = now - adm.IDLE_MS
    assert adm.choose(conns, now, False, False, SLOTS) is conns[2]


def test_slow_senders_go_and_requests_being_answered_never():
    now = 10000
    sending = C(now - 10, got=40)
    conns = [sending] + [C(now - 10000, got=100, phase=HANDLE) for _ in range(SLOTS - 1)]
    assert adm.choose(conns, now, True, False, SLOTS) is sending  # for a request that is there
    assert adm.choose(conns, now, False, False, SLOTS) is None
    sending.t0 = now - adm.SLOW_MS
    assert adm.choose(conns, now, False, False, SLOTS) is sending  # for anyone
    # idle ones past the grace go first, even younger than the slow sender
    idle = C(now - adm.GRACE_MS)
    conns[1] = idle
    assert adm.choose(conns, now, True, False, SLOTS) is idle
    # the oldest sender goes first: a real request is younger
    real = C(now - 50, got=300, phase=BODY)
    conns[1] = real
    assert adm.choose(conns, now, True, False, SLOTS) is sending
    conns = [C(now - 10000, got=100, phase=HANDLE) for _ in range(SLOTS)]
    assert adm.choose(conns, now, True, False, SLOTS) is None


def test_idle_connections_leave_slots_for_requests():
    now = 10000
    conns = [C(now - 10) for _ in range(SLOTS - adm.READY_SLOTS)]
    assert adm.choose(conns, now, False, True, SLOTS) is None  # free, but not for idle ones
    assert adm.choose(conns, now, True, True, SLOTS) is True
    assert adm.choose(conns[1:], now, False, True, SLOTS) is True
    # nor do they take a slow sender's place beyond their share
    slow = C(now - adm.SLOW_MS, got=30)
    full = conns + [slow, C(now - 10, got=30)]
    assert adm.choose(full, now, False, False, SLOTS) is None
    assert adm.choose(full[1:] + [C(now - 10, got=30)], now, False, False, SLOTS) is slow


def test_ticks_wrap_around():
    import time

    t0 = time.ticks_add(0, -100)  # just before the wrap
    now = time.ticks_add(t0, adm.GRACE_MS)
    assert adm.choose([C(t0)] * SLOTS, now, True, False, SLOTS) is not None


class Model:
    """Millisecond steps of the attack against SLOTS slots. Attackers: IDLE
    clients that reconnect REOPEN_MS after being dropped (by eviction, a
    refusal or the 5 s head deadline), SLOWLORIS clients that send a header
    now and then and are dropped by the head deadline, and oversized or
    malformed requests (ready at once, answered and closed within 2 ms).
    Real clients arrive every `every` ms; their request comes `delay` ms
    after the connection (0: with it); once it is complete they are answered
    within ANSWER_MS."""

    IDLE = 50
    SLOWLORIS = 5
    BAD = 6
    REOPEN_MS = 200
    HEAD_MS = 5000
    ANSWER_MS = 5

    def __init__(self, delays, every=200, seed=1):
        self.delays = delays
        self.every = every
        self.conns = []
        self.rnd = seed
        self.due = []  # [when, kind] attackers waiting to reconnect
        for i in range(self.IDLE):
            self.due.append([i * 3, "idle"])
        for i in range(self.SLOWLORIS):
            self.due.append([i * 7, "slow"])
        for i in range(self.BAD):
            self.due.append([i * 11, "bad"])
        self.real = {"tries": 0, "admitted": 0, "evicted_early": 0, "served": 0}

    def rand(self, n):
        self.rnd = (self.rnd * 1103515245 + 12345) & 0x7FFFFFFF
        return self.rnd % n

    def newcomer(self, now, kind, ready):
        d = adm.choose(self.conns, now, ready, len(self.conns) < SLOTS, SLOTS)
        if d is None:
            return None
        if d is not True:
            self.drop(now, d, evicted=True)
        c = C(now, got=1 if ready else 0, kind=kind)
        self.conns.append(c)
        return c

    def drop(self, now, c, evicted=False):
        self.conns.remove(c)
        if c.kind == "real":
            if evicted and c.got == 0:
                self.real["evicted_early"] += 1
        else:
            self.due.append([now + self.REOPEN_MS, c.kind])

    def run(self, ms):
        n_real = 0
        for now in range(ms):
            # attackers (re)connect
            for d in [d for d in self.due if d[0] <= now]:
                self.due.remove(d)
                c = self.newcomer(now, d[1], d[1] != "idle")
                if c is None:
                    self.due.append([now + self.REOPEN_MS, d[1]])
                elif d[1] == "slow":
                    c.got = 30  # its first header came with the connection
                elif d[1] == "bad":
                    c.phase = HANDLE
                    c.until = now + 2
            # a real client
            if now % self.every == 0 and now >= 1000:
                delay = self.delays[n_real % len(self.delays)]
                n_real += 1
                self.real["tries"] += 1
                c = self.newcomer(now, "real", delay == 0)
                if c is not None:
                    self.real["admitted"] += 1
                    c.arrives = now + delay
            for c in self.conns[:]:
                if c.kind == "real":
                    if c.phase == HEAD and now >= c.arrives:
                        c.got = 200
                        c.phase = HANDLE
                        c.until = now + self.ANSWER_MS
                    elif c.phase == HANDLE and now >= c.until:
                        self.real["served"] += 1
                        self.drop(now, c)
                elif c.phase == HANDLE and now >= c.until:
                    self.drop(now, c)
                elif now - c.t0 >= self.HEAD_MS:
                    self.drop(now, c)
        return self.real


def test_under_the_attack_a_real_request_gets_in_at_the_first_try():
    # clients whose request comes with the connection (a LAN, localhost)
    r = Model([0]).run(60000)
    rate = r["admitted"] / r["tries"]
    print("first-try admission, request with the connection: %d of %d (%.1f %%)"
          % (r["admitted"], r["tries"], 100 * rate))
    assert r["tries"] >= 290 and rate >= 0.99, r
    assert r["served"] >= r["admitted"] - 1, r


def test_a_request_a_wifi_round_trip_behind_is_never_evicted_once_admitted():
    # requests 50 to 200 ms behind their connection: once a slot is theirs,
    # the flood does not take it before the request is there
    r = Model([50, 120, 200, 80]).run(60000)
    print("Wi-Fi clients: %d of %d admitted, %d evicted before their request"
          % (r["admitted"], r["tries"], r["evicted_early"]))
    assert r["admitted"] > 0 and r["evicted_early"] == 0, r
    assert r["served"] >= r["admitted"] - 1, r
