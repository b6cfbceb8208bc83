"""Who gets a connection slot: the admission policy of meter.web.server.

Pure: no sockets and no clock of its own (the server passes `now` and what
it knows about each connection), so that tests/mpy/test_admission.py runs it
against a model of a flood with a fake clock.

Why these rules: a server with a few slots cannot tell a real client from an
attacker before it has read the request, and a real client on Wi-Fi sends
its request one round trip or a retransmission (50-200 ms) after the
connection is up. So:

- a newcomer takes a free slot (and a free request buffer) if there is one,
  but connections that have sent nothing may hold all slots but
  READY_SLOTS: a flood of idle connections refills every slot that frees
  up, and then a real request would find only idle ones too young to evict;
- otherwise it may take the slot of a connection that is still sending its
  request (phases HEAD and BODY), never of one being answered:
  - a newcomer whose request has arrived ("ready") evicts the oldest
    connection that has sent nothing for GRACE_MS (longer than a Wi-Fi round
    trip, so a real client is not evicted before its request can arrive),
    else the oldest connection still sending its request, whatever its
    age: a real request (at most 2.3 KB) completes within a round trip or
    two of its first bytes, so the oldest sender is the slow one (a model
    with a minimum age here admitted real requests far less often:
    tests/mpy/test_admission.py);
  - a newcomer that has sent nothing only evicts a connection that has sent
    nothing for IDLE_MS, or one still sending after SLOW_MS. Idle newcomers therefore do not
    churn the slots: the slots they hold grow old enough for the next ready
    request to take them;
- else it is refused at once (503 with Retry-After): cheap, and the client
  may retry.
A newcomer that has sent nothing and finds no slot may look again for its
request for up to PEEK_MS before that decision (at most MAX_PEEK at a time,
sockets are scarce: a newer one ends the oldest one's wait, which takes a
last look a loop turn later).
"""

import time

from micropython import const

READY_SLOTS = const(2)
GRACE_MS = const(250)
IDLE_MS = const(1000)
SLOW_MS = const(2000)
PEEK_MS = const(250)
MAX_PEEK = const(2)

# the connection phases that are "still sending the request" (server.HEAD, BODY)
_SENDING = const(1)


def _idle(conns):
    n = 0
    for c in conns:
        if c.phase <= _SENDING and c.got == 0:
            n += 1
    return n


def choose(conns, now, ready, free, limit):
    """The decision for a newcomer: True (admit, a slot is free), a
    connection of `conns` to evict in its favour, or None (refuse).

    conns: objects with t0 (ticks_ms when connected), got (bytes of the
    request received) and phase (0 head, 1 body, more: being answered);
    ready: the newcomer's request has started to arrive; free: a slot and a
    request buffer are free; limit: the server's slots."""
    idle_full = _idle(conns) >= max(1, limit - READY_SLOTS)
    if free and (ready or not idle_full):
        return True
    for idle in (True, False):
        if not idle and not ready and idle_full:
            break  # (an idle one in a sender's place would exceed the share)
        if idle:
            least = GRACE_MS if ready else IDLE_MS
        else:
            least = 0 if ready else SLOW_MS
        victim = None
        for c in conns:
            if c.phase <= _SENDING and (c.got == 0) == idle \
                    and time.ticks_diff(now, c.t0) >= least:
                if victim is None or time.ticks_diff(c.t0, victim.t0) < 0:
                    victim = c
        if victim is not None:
            return victim
    return None
