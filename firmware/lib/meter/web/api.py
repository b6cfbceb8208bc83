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

import json

from microdot import Microdot, Response

from meter import VERSION
from meter.tokens import ACTIVE, PENDING, TokenError, check_name, well_formed
from meter.web import live as livestream
from meter.web.wire import request_refusal

MAX_CONN = 2  # fewer than the Web Admin's 5: they share the request buffers (server.POOL)
MAX_STREAMS = 2
STREAM_EVENTS = 3600  # one an hour's worth (1 s apart); the app then reconnects
JSON = {"Content-Type": "application/json"}
_REVOKED = b"event: revoked\ndata: {\"error\": \"token revoked\"}\n\n"


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
        return livestream.values(fw)

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
        # The token's state is asked before every event: a revoked or
        # deleted token gets a last `revoked` event and the stream ends.
        tid = req.g.token.id
        r = livestream.stream(req, MAX_STREAMS, live, lambda: api.store().is_active(tid),
                              STREAM_EVENTS, 5000, _REVOKED)
        if r is None:
            return _err(503, "too many live streams (at most %d)" % MAX_STREAMS,
                        {"Retry-After": "5"})
        return r

    @web.errorhandler(404)
    async def not_found(req):
        return _err(404, "not found")

    @web.errorhandler(405)
    async def not_allowed(req):
        return _err(405, "method not allowed")

    return web

