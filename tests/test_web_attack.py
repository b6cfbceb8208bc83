"""Hostile clients against the Web Admin (issue 4).

Phase 1, ATTACK_S: 50 idle connections, 5 slowloris clients, 1 MB headers,
10 MB bodies and malformed request lines, each attacker opening its next
connection REOPEN_S after its last one ended (the device drops idle and slow
ones to make room, so they keep coming back). At least USER_FIRST_TRY of
the page loads of a logged-in user are answered at the first try (counted,
not timed: a 503 is a miss), and each load, retried at once after a 503,
within USER_BOUND_S.

Phase 2, FLOOD_S: the same attackers reconnecting without pause, thousands
of connections a second, more than the device can look at: no server can
tell the user's connection from the flood before it has read it, so a load
may get a quick 503; retried at once, the page comes (FLOOD_BOUND_S only
catches a hang: how long depends on the machine). The first try is not
promised here (the server cannot tell the user from the flood before it has
read the request); the first-try success of both phases is printed
(docs/security.md states it); who gets a slot is meter/web/admission.py,
unit-tested against a model of this attack in tests/mpy/test_admission.py.

In both phases the heap the attack holds (collected) stays within HELD_MAX
of what it was before: connections are bounded, and nothing leads from one
to the next. (Until the server dropped its evicted victims, every evictor
held its victim, which held its own: 62 dead connections, 23 KB, for as
long as the flood lasted, every page refused for want of heap, and the
user's load took up to 11 s.)

Throughout, metering keeps its schedule (tick lateness within LATE_P99_MS /
LATE_MAX_MS at the 1 s tick), no task restarts, and the heap never runs
out: the simulator runs the device image (32-bit, firmware frozen in) at the
device budget (tools/sim.py DEVICE_HEAP)."""

import http.client
import multiprocessing
import os
import random
import socket
import threading
import time

from simctl import simtool
from test_web import boot, set_first_password, web_on

ATTACK_S = 12
FLOOD_S = 6
USER_BOUND_S = 2.0
USER_FIRST_TRY = 0.9
FLOOD_BOUND_S = 10.0
HELD_MAX = 12 * 1024  # measured 4-6 KB: five connections and their streams
LATE_P99_MS = 50
LATE_MAX_MS = 250
REOPEN_S = 0.2
ATTACK_MAX_S = 120  # the attacker process ends by itself after this, whatever happens


class Attack:
    def __init__(self, port, reopen_s):
        self.port = port
        self.reopen_s = reopen_s
        self.stop = threading.Event()
        self.counts = {}
        self.threads = []

    def count(self, what, n=1):
        self.counts[what] = self.counts.get(what, 0) + n

    def start(self, name, fn, n=1):
        for _ in range(n):
            t = threading.Thread(target=self._loop, args=(name, fn), daemon=True)
            t.start()
            self.threads.append(t)

    def _loop(self, name, fn):
        while not self.stop.is_set():
            try:
                fn()
                self.count(name)
            except OSError:
                self.count(name + ":oserror")
            if self.reopen_s:
                time.sleep(self.reopen_s)

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        return s

    def wait_closed(self, s, limit):
        """Block until the device closes s (or limit s pass)."""
        s.settimeout(0.2)
        end = time.time() + limit
        while time.time() < end and not self.stop.is_set():
            try:
                if not s.recv(4096):
                    return
            except socket.timeout:
                continue
        return

    # the attacks ------------------------------------------------------------

    def idle(self):
        """Connect, send nothing, hold it until the device drops it."""
        s = self.connect()
        try:
            self.wait_closed(s, 30)
        finally:
            s.close()

    def slowloris(self):
        """A request head one small header every 300 ms, never finished."""
        s = self.connect()
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            s.settimeout(0.3)
            while not self.stop.is_set():
                s.sendall(b"X-%d: %d\r\n" % (random.randrange(1000), random.randrange(1000)))
                try:
                    if not s.recv(4096):
                        return
                except socket.timeout:
                    pass
        finally:
            s.close()

    def big_header(self):
        s = self.connect()
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
            s.recv(4096)
        finally:
            s.close()

    def big_body(self):
        s = self.connect()
        try:
            s.sendall(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                      b"application/x-www-form-urlencoded\r\nContent-Length: 10485760\r\n\r\n")
            chunk = b"x" * 65536
            for _ in range(160):  # 10 MB
                s.sendall(chunk)
            s.recv(4096)
        finally:
            s.close()

    def malformed(self):
        s = self.connect()
        try:
            s.sendall(random.choice((b"\x00\x01\x02\r\n\r\n", b"GET\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                                     b" / HTTP/1.1\r\n\r\n", b"GET /\xff HTTP/1.1\r\n\r\n",
                                     os.urandom(200) + b"\r\n\r\n", b"\r\n\r\n",
                                     b"GET / HTTP/1.1\r\n" + b":" * 300 + b"\r\n\r\n")))
            s.recv(4096)
        finally:
            s.close()


def attack(port, done, reopen_s, out):
    """The attacker process: every attack at once until `done` is set (the
    user's phase is over; at most ATTACK_MAX_S, should the test die)."""
    a = Attack(port, reopen_s)
    a.start("idle", a.idle, 50)
    a.start("slowloris", a.slowloris, 5)
    a.start("big_header", a.big_header, 2)
    a.start("big_body", a.big_body, 2)
    a.start("malformed", a.malformed, 2)
    done.wait(ATTACK_MAX_S)
    a.stop.set()
    for t in a.threads:
        t.join(10)
    out.put(a.counts)


def run_phase(sim, user, seconds, reopen_s, retry):
    """Attack for `seconds` while the user loads /energy every 200 ms;
    returns (load times, attack counts, server stats, state)."""
    ctx = multiprocessing.get_context("fork")  # not slowed by the attackers' threads
    out = ctx.Queue()
    done = ctx.Event()
    before = sim.cmd("web")["stats"]
    p = ctx.Process(target=attack, args=(sim.web_port, done, reopen_s, out))
    p.start()
    try:
        # The attack is in full swing once the server has had to turn
        # attackers away (50 idle connections are more than it keeps).
        sim.wait_for(lambda: sim.cmd("web")["stats"]["refused"] + sim.cmd("web")["stats"]["evicted"]
                     >= before["refused"] + before["evicted"] + 20, timeout=30,
                     what="the server turning attackers away")
        loads = []
        tries = []
        end = time.time() + seconds
        while time.time() < end:
            t0 = time.time()
            n = 0
            while True:
                n += 1
                try:
                    r = user.get("/energy", timeout=10)
                    if r.status == 200 or not retry:
                        break
                except (ConnectionError, http.client.HTTPException):
                    if not retry:
                        raise
                assert time.time() - t0 < FLOOD_BOUND_S + 5, "no page after %d tries; %s" % (
                    n, sim.cmd("web")["stats"])
            loads.append(time.time() - t0)
            tries.append(n)
            assert r.status == 200 and "Imported kWh" in r.text, "%s %s after %d loads; %s" % (
                r.status, r.text[:100], len(loads), sim.cmd("web")["stats"])
            time.sleep(0.2)
        stats = sim.cmd("web")["stats"]
        st = sim.state_()
        st["mem"] = sim.cmd("mem")  # (collected: what the attack holds, not garbage)
        stats["first_try"] = [tries.count(1), len(tries)]
        stats["most_tries"] = max(tries)
        done.set()
        return sorted(loads), out.get(timeout=30), stats, st
    finally:
        done.set()
        p.join(15)


def test_hostile_clients_do_not_stop_the_admin_page_or_metering(tmp_path):
    sim = boot(tmp_path / "dev", profile="house")
    try:
        web_on(sim)
        user = set_first_password(sim)
        assert user.get("/energy").status == 200
        base = sim.cmd("mem")["used"]
        for name, seconds, reopen_s, bound in (("attack", ATTACK_S, REOPEN_S, USER_BOUND_S),
                                               ("flood", FLOOD_S, 0, FLOOD_BOUND_S)):
            sim.cmd("lateness-reset")
            loads, counts, stats, st = run_phase(sim, user, seconds, reopen_s, True)
            late = st["lateness_ms"]
            report = ("%s: user %d loads, median %.0f ms, max %.0f ms; lateness %s; heap held "
                      "%d B (%d before the attack) of %s; server %s; attackers %s" % (
                          name, len(loads), loads[len(loads) // 2] * 1000, loads[-1] * 1000,
                          late, st["mem"]["used"], base, simtool.DEVICE_HEAP, stats, counts))
            print(report)
            assert loads[-1] <= bound, report
            assert st["mem"]["used"] - base <= HELD_MAX, report
            first, n = stats["first_try"]
            if name == "attack":
                assert first >= USER_FIRST_TRY * n, report
            assert late["p99"] <= LATE_P99_MS and late["max"] <= LATE_MAX_MS, report
            assert not any(st["restarts"].values()) and st["fault"] is None, report
            assert stats["evicted"] > 0 and stats["rejected"] > 0, report
            for kind in ("idle", "slowloris", "big_header", "big_body", "malformed"):
                assert counts.get(kind, 0) + counts.get(kind + ":oserror", 0) > 0, counts
        # afterwards every connection is released and the page still answers
        sim.wait_for(lambda: sim.cmd("web")["conns"] == 0, timeout=10, what="connections gone")
        assert user.get("/").status == 200
        assert "MemoryError" not in sim.output()
        assert sim.quit() == 0
    finally:
        if sim.proc.poll() is None:
            sim.kill()
