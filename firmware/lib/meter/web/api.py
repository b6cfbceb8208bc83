"""The local API's routes: a microdot app behind meter.web.server, built
while the API service is on (meter.api loads and drops it; docs/api.md).

Every request must be addressed to an IP literal and must not come from
another site's page (meter.web.server.request_refusal, strict: an Origin
other than our own or a cross-site Sec-Fetch-Site is refused on every
route), so neither a DNS-rebinding page nor a page the admin visits can use
it. Read-only. Every route needs `Authorization: Bearer <token>` with an active
token except GET /api/v1 (a bare answer: which API this is) and POST
/api/v1/pair (asks for a token). A live stream checks its token before
every event, so revoking or deleting the token ends it within a second.
"""

import asyncio
import json
import time

from microdot import Microdot, Response

from meter import VERSION
from meter.tokens import ACTIVE, PENDING, TokenError, check_name, well_formed
from meter.web.server import STREAM, WRITE_MS, request_refusal

MAX_CONN = 2  # fewer than the Web Admin's 5: they share the request buffers (server.POOL)
MAX_STREAMS = 2
STREAM_EVENTS = 3600  # one an hour's worth (1 s apart); the app then reconnects
JSON = {"Content-Type": "application/json"}


def _err(status, text, headers=None):
    h = {"Content-Type": "application/json"}
    if headers:
        h.update(headers)
    return Response({"error": text}, status, h)


def _unauthorized(text):
    # RFC 6750: the scheme, and invalid_token when one was sent
    return _err(401, text, {"WWW-Authenticate": "Bearer realm=\"meter\"" + (
        "" if text == "token required" else ", error=\"invalid_token\"")})


def build(api):
    """The microdot app; api is the meter.api.Api handle."""
    fw = api.app
    web = Microdot()

    def live():
        lv = fw.sampler.live
        return {"v": lv.v, "i": lv.i, "p": lv.p, "pf": lv.pf, "freq": lv.freq,
                "fault": fw.sampler.fault}

    @web.before_request
    async def gate(req):
        """The token check, for every route but the two open ones."""
        req.g.token = None
        why = request_refusal(req, True)
        if why:
            api.app.audit.refused("api", why, "from %s" % req.g.conn.ip)
            return _err(400, "bad Host header") if why == "host" else _err(
                403, "cross-origin request refused")
        path = req.path
        if path in ("/api/v1", "/api/v1/pair"):
            return None
        auth = req.headers.get("Authorization")
        ip = req.g.conn.ip
        if auth is None:
            return _unauthorized("token required")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        if token is None or not well_formed(token):
            api.app.audit.refused("api", "token", "malformed from %s" % ip)
            return _unauthorized("malformed token")
        t = api.store().find(token)
        if t is None or t.state != ACTIVE:
            why = "unknown token" if t is None else (
                "token not confirmed yet" if t.state == PENDING else "token revoked")
            api.app.audit.refused("api", "token", "%s from %s" % (why, ip))
            return _unauthorized(why)
        req.g.token = t
        return None

    @web.get("/api/v1")
    async def hello(req):
        return Response({"api": "meter", "version": 1}, 200, JSON)

    @web.post("/api/v1/pair")
    async def pair(req):
        ip = req.g.conn.ip
        if not api.pairing_open():
            api.app.audit.refused("api", "token-request", "window closed, from %s" % ip)
            return _err(403, "pairing is possible only while the Web Admin is open: enable it "
                        "at the device (Settings > Communication > Web Admin)")
        # A malformed request is refused before the rate limit takes one, so
        # that it uses up nothing of the budget real apps pair with (an empty
        # budget is answered first: a flood costs no parsing).
        wait = api.pair_allowed(take=False)
        if wait:
            api.app.audit.refused("api", "token-request", "rate limit, from %s" % ip)
            return _err(429, "too many pairing requests; try again in %d s" % wait,
                        {"Retry-After": str(wait)})
        if not (req.content_type or "").startswith("application/json"):
            # (also what keeps a cross-site form or text/plain POST out)
            api.app.audit.refused("api", "token-request", "not JSON, from %s" % ip)
            return _err(415, "expected Content-Type: application/json")
        try:
            body = json.loads(req.body) if req.body else None
        except (ValueError, UnicodeError):
            body = None
        if not isinstance(body, dict):
            api.app.audit.refused("api", "token-request", "bad body, from %s" % ip)
            return _err(400, "expected a JSON object like {\"name\": \"Anna's phone\"}")
        try:
            check_name(body.get("name"))
        except TokenError as e:
            api.app.audit.refused("api", "token-request", "%s, from %s" % (str(e)[:40], ip))
            return _err(e.status, str(e))
        api.pair_allowed()  # takes one (there is one: no await since the look)
        store = api.store()
        try:
            token, t = store.request(body.get("name"), ip)
        except TokenError as e:
            api.app.audit.refused("api", "token-request", "%s, from %s" % (str(e)[:40], ip))
            return _err(e.status, str(e))
        return Response({"token": token, "id": t.id, "name": t.name, "state": t.state,
                         "expires_s": store.remaining_s(t),
                         "next": "Log in to the Web Admin and confirm this app under Tokens. "
                                 "Keep the token: it is not shown again."}, 201, JSON)

    @web.get("/api/v1/token")
    async def whoami(req):
        t = req.g.token
        return Response({"id": t.id, "name": t.name, "state": t.state}, 200, JSON)

    @web.get("/api/v1/live")
    async def api_live(req):
        return Response(live(), 200, JSON)

    @web.get("/api/v1/energy")
    async def energy(req):
        from meter.energy import NAMES

        c = fw.counters
        return Response({"uwh": dict(zip(NAMES, c.uwh)), "generation": c.generation}, 200, JSON)

    @web.get("/api/v1/device")
    async def device(req):
        b = fw.board
        return Response({"serial": b.serial(), "firmware": VERSION, "board": b.name}, 200, JSON)

    @web.get("/api/v1/live/stream")
    async def stream(req):
        srv = req.g.server
        if sum(1 for c in srv.conns if c.phase == STREAM) >= MAX_STREAMS:
            return _err(503, "too many live streams (at most %d)" % MAX_STREAMS,
                        {"Retry-After": "5"})
        req.g.conn.set(STREAM, WRITE_MS)
        return Response(LiveStream(req.g.conn, req.g.token.id, api, live), 200,
                        {"Content-Type": "text/event-stream; charset=UTF-8"})

    @web.errorhandler(404)
    async def not_found(req):
        return _err(404, "not found")

    @web.errorhandler(405)
    async def not_allowed(req):
        return _err(405, "method not allowed")

    return web


class LiveStream:
    """Server-sent events, one a second, while the token stays active: its
    state is asked before every event, so a revoked or deleted token gets a
    last `revoked` event and the stream ends."""

    def __init__(self, conn, token_id, api, live):
        self.conn = conn
        self.id = token_id
        self.api = api
        self.live = live
        self.n = 0
        self.done = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.done or self.n >= STREAM_EVENTS:
            raise StopAsyncIteration
        if self.n:
            await asyncio.sleep_ms(1000)
        self.conn.deadline = time.ticks_add(time.ticks_ms(), WRITE_MS)
        if not self.api.store().is_active(self.id):
            self.done = True
            return b"event: revoked\ndata: {\"error\": \"token revoked\"}\n\n"
        self.n += 1
        data = b"data: " + json.dumps(self.live()).encode() + b"\n\n"
        return (b"retry: 5000\n" + data) if self.n == 1 else data

    async def aclose(self):
        pass
