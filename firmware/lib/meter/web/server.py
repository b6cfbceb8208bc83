"""The Web Admin's HTTP layer: microdot routes behind a socket layer that
hostile clients cannot use to stall the firmware or run its heap out.

microdot (pinned 2.7.0) parses requests with `readline()` on the asyncio
stream, which keeps reading until it sees a newline: a 1 MB header line is
1 MB of heap before its length is checked. It also has no timeouts and no
connection limit, and its `shutdown()` only stops accepting. So this layer
owns the sockets and hands microdot a parsed request:

- at most MAX_CONN connections are served at once; who gets a slot when
  they are taken is meter.web.admission's pure policy (a newcomer whose
  request has arrived may evict a connection that has sent nothing for
  longer than a Wi-Fi round trip, or a slow sender; an idle newcomer only
  long-idle ones; else an immediate 503). An evicted connection's request
  buffer goes back to the pool at once;
- the request head must arrive within HEAD_MS and fit MAX_HEAD bytes and
  MAX_HEADERS lines (else closed / 431), the body within BODY_MS and
  MAX_BODY bytes (else 413, decided from Content-Length before reading);
  the handler and the response have deadlines too. The paths in
  `streamed` (the firmware upload) are the exception: their body is not
  read here but handed to the handler as a stream (wire.Body), which
  marks the connection as uploading (upload()): no longer evictable, no
  handler turn held, its own deadline. A reaper cancels any
  connection past its deadline. A request is read into a buffer of the
  shared pool (below), the response is gathered in the same buffer once
  the request is parsed, and at most MAX_HANDLERS
  requests are handled and answered at once, so the memory a window can
  take is bounded whatever clients send; a malformed request is answered
  with one non-blocking send and closed;
- only GET, HEAD and POST; HTTP/1.0 and 1.1; one request per connection;
- every response gets the security headers (CSP without inline script,
  frame denial, no-store, nosniff, no referrer);
- the Host and Origin checks both servers apply (meter.web.wire's
  request_refusal);
- close() stops accepting, lets requests already in their handlers finish
  and be answered (at most CLOSE_MS), then cancels every connection and
  every streaming response (they run inside their connection's task), and
  returns only once the listening socket is closed.
"""

import asyncio
import time

from microdot import Request, Response

from meter import log, memory
from meter.web import admission
from meter.web.admission import MAX_PEEK, PEEK_MS
# (BUF, MAX_HEAD, READ, parse_head, peer_ip, host_ok, request_refusal: the
# tests name them through server)
from meter.web.wire import (BUF, MAX_BODY, MAX_HEAD, READ, Body, Reject,  # noqa: F401
                            error_bytes, host_ok, parse_head, peer_ip, read_head, refuse,
                            request_refusal, respond, send_now)


def _print_exception(exc):
    # microdot prints a failing handler's traceback straight to the console,
    # which in the simulator is the terminal drawing the display: it goes to
    # the diagnostic log (and so to the log file there) like every other.
    log.exc("web: request failed", exc)


def _route_tracebacks():
    import microdot.microdot as md

    md.print_exception = _print_exception


_route_tracebacks()

MAX_CONN = 5
# How long close() lets requests in their handlers finish and be answered:
# longer than any handler takes (a password hash ~1 s on the device, a
# Wi-Fi join's first answer 0.3 s); HANDLER_MS bounds a stuck one anyway.
CLOSE_MS = 3000
HEAD_MS = 5000
BODY_MS = 5000
HANDLER_MS = 20000
WRITE_MS = 10000
# Request buffers come from memory.net_buffers(), shared by every server
# that is open (the Web Admin and the local API), allocated at start-up and
# never freed. There are fewer than both servers' MAX_CONN added up (5 + 2):
# when none is left a newcomer is refused with 503, as by a full server.
MAX_HANDLERS = 2
# What a newcomer has sent already, read here and copied into its request
# buffer before the next await: one for every server.
_PEEK = bytearray(READ)

# phases of a connection; the first two are "still sending its request"
# (meter.web.admission evicts only those); UPLOAD: a streamed body being
# read by its handler
HEAD, BODY, HANDLE, WRITE, STREAM, UPLOAD = 0, 1, 2, 3, 4, 5

_WHY = {0: "r_idle", -1: "r_closed", -2: "r_displaced", -3: "r_memory"}


class Conn:
    def __init__(self, task, ip, now):
        self.task = task
        self.ip = ip
        self.t0 = now
        self.phase = HEAD
        self.got = 0  # bytes of the request received so far
        self.buf = None  # its request buffer, from the shared pool
        self.sock = None  # its socket (meter.web.live asks it whether the client has gone)
        self.turn = False  # holds one of the MAX_HANDLERS turns
        self.deadline = time.ticks_add(now, HEAD_MS)

    def set(self, phase, ms):
        self.phase = phase
        self.deadline = time.ticks_add(time.ticks_ms(), ms)


class Server:
    """Serves a microdot app on (host, port) under the limits above."""

    def __init__(self, app, host, port, ssl=None, max_conn=MAX_CONN, streamed=()):
        """streamed: the paths whose POST body the handler reads itself
        (req.stream, a wire.Body), whatever its length."""
        self.app = app
        self.streamed = streamed
        # A handler that runs out of memory is answered 503 (try again), as
        # a request refused at admission is; never microdot's 500.
        app.errorhandler(MemoryError)(_no_memory)
        self.host = host
        self.port = port
        self.ssl = ssl
        self.scheme = "https" if ssl else "http"
        self.max_conn = max_conn
        self.conns = []
        self.peeking = []
        self.handling = 0
        # Request buffers, allocated once while the heap is tidy: a request
        # is read into one, never grown piece by piece.
        self._bufs = memory.net_buffers()
        self._srv = None
        self._reaper = None
        self.closed = False
        self.stats = {"accepted": 0, "served": 0, "refused": 0, "evicted": 0, "timeouts": 0,
                      "rejected": 0}

    async def start(self):
        if self.ssl:
            self._srv = await asyncio.start_server(self._accept, self.host, self.port,
                                                   backlog=2, ssl=self.ssl)
        else:
            self._srv = await asyncio.start_server(self._accept, self.host, self.port, backlog=2)
        self._reaper = asyncio.create_task(self._reap())

    async def close(self, grace_ms=CLOSE_MS):
        """Stop accepting, close the listener, let requests already in their
        handlers finish and be answered (a state change that has started is
        completed, and its client hears so), at most grace_ms, then cancel
        every connection (requests still arriving, event streams)."""
        self.closed = True
        srv = self._srv
        self._srv = None
        if srv is not None:
            srv.close()
            await srv.wait_closed()
        t0 = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), t0) < grace_ms:
            if not any(c.phase in (HANDLE, WRITE) for c in self.conns):
                break
            await asyncio.sleep_ms(10)
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for t in self.peeking[:]:
            t.cancel()
        for c in self.conns[:]:
            c.task.cancel()
        # let the cancelled connections run their clean-up (close sockets)
        for _ in range(20):
            if not self.conns and not self.peeking:
                break
            await asyncio.sleep_ms(10)

    async def _reap(self):
        while True:
            await asyncio.sleep_ms(200)
            now = time.ticks_ms()
            for c in self.conns[:]:
                if time.ticks_diff(now, c.deadline) > 0:
                    self.stats["timeouts"] += 1
                    c.task.cancel()

    def upload(self, conn, ms):
        """A handler starts reading a streamed body: the connection is no
        longer "sending its request" (never evicted), gives its handler
        turn back (an upload takes minutes) and gets ms to finish."""
        conn.set(UPLOAD, ms)
        self._release(conn)

    def _release(self, conn):
        if conn.turn:
            conn.turn = False
            self.handling -= 1

    def _free(self):
        return len(self.conns) < self.max_conn and bool(self._bufs)

    def _evict(self, victim):
        """Drop a connection that is still sending its request: its slot and
        its request buffer are free at once (it is suspended in a read, and
        the cancellation ends it there, so it never touches the buffer
        again)."""
        self.stats["evicted"] += 1
        self.conns.remove(victim)
        if victim.buf is not None:
            self._bufs.append(victim.buf)
            victim.buf = None
        victim.task.cancel()
        # Nothing may lead from one connection to another: an evictor that
        # held its victim (its task, frame, socket, its own victim) kept a
        # chain of dead ones, 23 KB under a flood (tests/mpy/test_web.py).
        victim.task = None

    def _peek_now(self, writer):
        """Bytes the client has sent already, read into the shared peek
        buffer (0: none yet, -1: closed or failed)."""
        try:
            n = writer.s.readinto(_PEEK)
        except Exception:
            return -1
        if n is None:
            return 0
        return n if n else -1

    async def _accept(self, reader, writer):
        self.stats["accepted"] += 1
        try:
            # short of heap for a moment (a page or a publish in flight):
            # wait for it before the request is looked at (meter/memory.py)
            await memory.wait_room()
        except asyncio.CancelledError:
            pass  # the server closes: judged below
        now = time.ticks_ms()
        # What the client has sent already (a real one sends its request with
        # the connection; TLS needs its handshake first, so not there).
        n = 0 if self.ssl else self._peek_now(writer)
        if n == 0 and not self.ssl and not admission.choose(self.conns, now, False,
                                                            self._free(), self.max_conn):
            # Nothing from this client yet and no place for an idle one: most
            # likely its request is a moment or a round trip behind the
            # connection. Look again for up to PEEK_MS; at most MAX_PEEK
            # newcomers look at a time (sockets are scarce): a newer one ends
            # the oldest one's wait, which takes a last look a loop turn later.
            me = asyncio.current_task()
            self.peeking.append(me)
            if len(self.peeking) > MAX_PEEK:
                self.peeking.pop(0).cancel()
            try:
                while n == 0 and time.ticks_diff(time.ticks_ms(), now) < PEEK_MS:
                    # at once a few times (localhost, a wired LAN), then calmly
                    await asyncio.sleep_ms(0 if time.ticks_diff(time.ticks_ms(), now) < 5 else 10)
                    n = self._peek_now(writer)
            except asyncio.CancelledError:
                # a newer newcomer took its place (or the server closes): a
                # last look a loop turn later (its request may be just behind)
                if not self.closed:
                    try:
                        await asyncio.sleep_ms(0)
                    except asyncio.CancelledError:
                        pass
                n = self._peek_now(writer) or -2
            finally:
                if me in self.peeking:
                    self.peeking.remove(me)
            now = time.ticks_ms()
        # (no await from here until the peeked bytes are copied)
        d = None
        if not self.closed and n >= 0:
            # (TLS: the request comes after the handshake; judged as if it were there)
            d = admission.choose(self.conns, now, n > 0 or bool(self.ssl), self._free(),
                                 self.max_conn)
            # the heap is asked only for one that would get a slot: room() may
            # collect, which a flood of refused newcomers must not cause each time
            if d is not None and not memory.room():
                d, n = None, -3
        if d is None:
            self.stats["refused"] += 1
            # why: request there but no slot for it / nothing sent / closed /
            # a newer newcomer ended its wait / short of heap
            k = _WHY.get(n, "r_busy")
            self.stats[k] = self.stats.get(k, 0) + 1
            refuse(writer)
            return
        if d is not True:
            self._evict(d)
            d = None  # (see _evict)
        bufs = self._bufs  # the pool, even if the server closes meanwhile
        buf = bufs.pop()
        if n:
            memoryview(buf)[:n] = memoryview(_PEEK)[:n]
        conn = Conn(asyncio.current_task(), peer_ip(writer.get_extra_info("peername")), now)
        conn.got = n
        conn.buf = buf
        conn.sock = writer.s
        self.conns.append(conn)
        try:
            await self._serve(conn, reader, writer, buf)
        except asyncio.CancelledError:
            pass
        except OSError:  # reset or broken by the client: nothing to report
            self.stats["broken"] = self.stats.get("broken", 0) + 1
        except Exception as e:  # a client must never take the server down
            log.exc("web: connection failed", e)
        finally:
            if conn in self.conns:
                self.conns.remove(conn)
            if conn.buf is not None:  # (an evicted one has given it back)
                bufs.append(buf)
                conn.buf = None
            try:
                await writer.aclose()  # does not yield: safe while cancelled
            except Exception:
                pass

    async def _serve(self, conn, reader, writer, buf):
        try:
            end = await read_head(reader, conn, buf)
            if end is None:
                return  # closed without a request
            hlen, start = end
            method, url, version, headers = parse_head(memoryview(buf)[:hlen])
            if "Transfer-Encoding" in headers:
                raise Reject(501)
            n = 0
            stream = None
            if "Content-Length" in headers:
                cl = headers["Content-Length"]
                if not cl.isdigit() or len(cl) > 9:
                    raise Reject(400)
                n = int(cl)
            elif method == "POST":
                raise Reject(411)
            if method == "POST" and url.split("?", 1)[0] in self.streamed:
                # read by its handler (the bytes that came with the head first)
                stream = Body(reader, buf, start, conn.got, n)
            elif n > MAX_BODY:
                raise Reject(413)
            elif conn.got < start + n:
                conn.set(BODY, BODY_MS)
                mv = memoryview(buf)
                while conn.got < start + n:
                    k = await reader.readinto(mv[conn.got:start + n])
                    if k == 0:
                        return  # the client went away
                    conn.got += k or 0
            body = b"" if stream else bytes(memoryview(buf)[start:start + n])
        except Reject as r:
            # answered with one non-blocking send: a bad request never holds
            # a slot while its answer drains
            self.stats["rejected"] += 1
            send_now(writer, error_bytes(r.status))
            return
        # At most MAX_HANDLERS requests are handled and answered at once: the
        # pages' memory is bounded whatever the number of clients.
        conn.set(HANDLE, HANDLER_MS)
        while self.handling >= MAX_HANDLERS:
            await asyncio.sleep_ms(5)
        self.handling += 1
        conn.turn = True
        try:
            try:
                req = Request(self.app, (conn.ip, 0), method, url, version, headers, body=body,
                              stream=stream, sock=(reader, writer), scheme=self.scheme)
            except (ValueError, UnicodeError, IndexError):  # e.g. a bad %-escape in the query
                self.stats["rejected"] += 1
                send_now(writer, error_bytes(400))
                return
            stream = None
            if req.content_length > MAX_BODY:  # streamed: microdot's own cap (16 KB) is not ours
                req.max_content_length = req.content_length
            req.g.conn = conn
            req.g.server = self
            res = await self.app.dispatch_request(req)
            req = None
            if conn.phase == STREAM:  # a stream sets its own deadlines, holds no turn
                self._release(conn)
            else:
                conn.set(WRITE, WRITE_MS)
            self.stats["served"] += 1
            await respond(res, writer, buf)
        finally:
            self._release(conn)


async def _no_memory(req, exc):
    memory.failed()
    log.warn("web: out of memory in %s" % req.path)
    return Response("busy, try again\n", 503, {"Content-Type": "text/plain; charset=UTF-8",
                                                "Retry-After": "2"})
