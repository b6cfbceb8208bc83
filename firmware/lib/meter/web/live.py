"""The live values and their event stream, for the Dashboard (meter.web.
route_energy) and the local API (meter.web.api) alike.

A stream is an async iterator microdot writes out: one server-sent event a
second while `alive()` says so, `events` at most (the client then
reconnects). It runs inside its connection's task, so closing the server
cancels it; it renews its connection's write deadline before every event.
"""

import asyncio
import json
import time

# (the functions import what they need themselves: a name in this module's
# globals would cost heap for as long as the API or a window is open)


def values(fw, energy=False):
    """The live values (energy: with the import/export totals in kWh)."""
    lv = fw.sampler.live
    d = {"v": lv.v, "i": lv.i, "p": lv.p, "pf": lv.pf, "freq": lv.freq,
         "fault": fw.sampler.fault}
    if energy:
        from meter.text import kwh

        u = fw.counters.uwh
        d["imp_kwh"] = kwh(u[3])
        d["exp_kwh"] = kwh(u[7])
    return d


def stream(req, max_streams, live, alive, events, retry_ms, gone=None):
    """The streaming response, or None when max_streams streams are open
    already (the caller answers that in its own format). gone: the last
    event sent when alive() turns false (None: the stream just ends)."""
    from microdot import Response

    from meter.web.server import STREAM, WRITE_MS

    if _open(req.g.server.conns, STREAM) >= max_streams:
        return None
    req.g.conn.set(STREAM, WRITE_MS)
    return Response(LiveStream(req.g.conn, live, alive, events, retry_ms, gone, WRITE_MS), 200,
                    {"Content-Type": "text/event-stream; charset=UTF-8"})


def _open(conns, phase):
    """The streams whose client is still there. A browser that leaves a page
    closes its end of the page's stream, but this side would notice only
    when an event fails to be written, a second or two later: a newer page
    of the same browser would be refused its stream meanwhile, and a refused
    EventSource never tries again. So a stream whose socket reads as closed
    is ended here and now."""
    one = bytearray(1)  # (only when the streams are all taken: rare)
    n = 0
    for c in conns:
        if c.phase != phase:
            continue
        try:
            r = c.sock.readinto(one)  # None: open, nothing sent (as a stream's client does)
        except OSError:
            r = 0  # reset
        if r == 0:
            c.task.cancel()  # its connection's task gives its slot back
        else:
            n += 1
    return n


class LiveStream:
    def __init__(self, conn, live, alive, events, retry_ms, gone, write_ms):
        self.conn = conn
        self.live = live
        self.alive = alive
        self.events = events
        self.retry = ("retry: %d\n" % retry_ms).encode()
        self.gone = gone
        self.write_ms = write_ms  # each event renews the connection's deadline by this
        self.n = 0
        self.done = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.done or self.n >= self.events:
            raise StopAsyncIteration
        if self.n:
            await asyncio.sleep_ms(1000)
        self.conn.deadline = time.ticks_add(time.ticks_ms(), self.write_ms)
        if not self.alive():
            self.done = True
            if self.gone is None:
                raise StopAsyncIteration
            return self.gone
        self.n += 1
        data = b"data: " + json.dumps(self.live()).encode() + b"\n\n"
        return (self.retry + data) if self.n == 1 else data

    async def aclose(self):
        pass
