"""The local API for apps (docs/api.md): the handle that is always loaded.

install(app) registers the service "Local API" (settings key api.enabled,
off by default) and, on the simulator, the `api` control command, and
starts the supervised task `api`, which opens the API's port while the
service is on and closes it (every connection and live stream with it)
when it is switched off. The routes (meter.web.api), the HTTP layer
(meter.web.server) and microdot are loaded only while the API is on; the
Web Admin's pages, sessions and password code never are.

Also here, because the API and the Web Admin's Tokens page share them: the
token store (meter.tokens, loaded on first use), the pairing rate limit and
the rate-limited audit of refusals.
"""

import asyncio
import gc
import sys
import time

from meter import log

SERVICE_KEY = "api.enabled"
WATCH_MS = 500
# The pairing rate limit: a bucket of PAIR_BURST requests, one more every
# PAIR_REFILL_MS, for all clients together.
PAIR_BURST = 3
PAIR_REFILL_MS = 20000
MODULES = ("meter.web.api",)
# Loaded by the Web Admin too: dropped only when neither uses them.
SHARED = ("meter.web.server", "meter.web.admission", "meter.web.wire", "meter.web.live",
          "microdot", "microdot.microdot", "microdot.helpers")


def install(app):
    """Attach the local API to the firmware (a feature: meter/app.py)."""
    a = Api(app)
    app.api = a
    app.add_service("Local API", SERVICE_KEY)
    app.add_command("api", a.command)
    app.spawn("api", a.run)  # started by App.run, cancelled with the rest
    return a


class Api:
    def __init__(self, app):
        self.app = app
        self.server = None
        self.port = None
        self.error = None
        self._store = None
        self._bucket = PAIR_BURST
        self._bucket_at = time.ticks_ms()
        self.heap_on = None  # heap in use right after the API opened

    def bind(self):
        return self.app.board.api_bind

    # -- the token store, shared with the Web Admin's Tokens page ------------------

    def store(self):
        if self._store is None:
            from meter.logstore import LogStore
            from meter.tokens import TokenStore

            app = self.app
            self._store = TokenStore(LogStore(app.board.partition("tokens")), app.settings,
                                     app.audit, app.board)
        return self._store

    # -- pairing --------------------------------------------------------------------

    def pairing_open(self):
        """Pairing needs someone at the device: the Web Admin window is open."""
        return self.app.web.active()

    def pair_allowed(self, take=True):
        """Take one from the bucket (take=False: only look); 0 if allowed,
        else seconds to wait."""
        now = time.ticks_ms()
        gained = time.ticks_diff(now, self._bucket_at) // PAIR_REFILL_MS
        if gained:
            self._bucket = min(PAIR_BURST, self._bucket + gained)
            self._bucket_at = time.ticks_add(self._bucket_at, gained * PAIR_REFILL_MS)
        if self._bucket >= PAIR_BURST:
            self._bucket_at = now
        if self._bucket <= 0:
            return max(1, (PAIR_REFILL_MS - time.ticks_diff(now, self._bucket_at)) // 1000 + 1)
        if take:
            self._bucket -= 1
        return 0

    # -- the service ----------------------------------------------------------------

    async def run(self):
        """Supervised: keeps the port open exactly while the service is on."""
        try:
            while True:
                on = self.app.settings.get(SERVICE_KEY)
                if on and self.server is None and self.error is None:
                    await self._start()
                elif not on and (self.server is not None or self.error is not None):
                    await self._stop("service off")
                    self.error = None
                await self.app.settings.changed()  # announced by the store, not polled
        finally:
            if self.server is not None:
                await self._stop("stopped")

    async def _start(self):
        try:
            from meter.web import api as routes
            from meter.web import server
        except MemoryError as e:
            log.exc("api: cannot load", e)
            self.error = "out of memory"
            self._unload()
            return
        host, port = self.bind()
        srv = server.Server(routes.build(self), host, port, max_conn=routes.MAX_CONN)
        try:
            await srv.start()
        except OSError as e:
            log.exc("api: cannot listen on %s:%d" % (host, port), e)
            self.error = "port %d busy" % port
            srv = None
            self._unload()
            return
        self.server = srv
        self.port = port
        srv = None
        self._share(True)
        self.app.audit.append("system", "api", "on", "port %d" % port)
        log.info("api: listening on %s:%d" % (host, port))
        gc.collect()
        self.heap_on = gc.mem_alloc()

    async def _stop(self, why):
        srv = self.server
        self.server = None
        if srv is not None:
            await srv.close()
            srv = None
            self.app.audit.append("system", "api", "off", why)
            log.info("api: closed (%s)" % why)
        self._share(False)
        self._unload()

    def _share(self, on):
        """Tell the Web Admin to keep the shared modules while the API runs
        (dropping them would load a second copy at its next window)."""
        keep = getattr(sys.modules.get("meter.web"), "KEEP", None)
        if keep is not None:
            for m in SHARED:
                if on:
                    keep.add(m)
                else:
                    keep.discard(m)

    def _unload(self):
        from meter.web import unload

        names = list(MODULES)
        if not self.app.web.active() and self.app.web.ctl is None:
            names.extend(SHARED)
        unload(names)

    # -- the simulator's control socket -----------------------------------------------

    def command(self, args):
        """`api` (status), `api tokens` (loads the store), `api on|off`
        (the service switch, through the settings choke point)."""
        if args and args[0] in ("on", "off"):
            try:
                self.app.settings.update({SERVICE_KEY: args[0] == "on"}, "control")
            except Exception as e:
                return {"error": str(e)}
            return {"error": None}
        gc.collect()
        srv = self.server
        st = self.store() if args and args[0] == "tokens" or self._store else None
        out = {"enabled": self.app.settings.get(SERVICE_KEY), "listening": srv is not None,
               "port": self.port, "error": self.error, "pairing_open": self.pairing_open(),
               "conns": len(srv.conns) if srv else 0, "stats": srv.stats if srv else None,
               "heap_used": gc.mem_alloc(), "heap_on": self.heap_on,
               "audit_writes": self.app.audit.store.writes,
               "modules": [m for m in MODULES + SHARED if m in sys.modules]}
        if st is not None:
            st.expire()
            out["tokens"] = [[t.id, t.name, t.state] for t in st.tokens]
            out["store_writes"] = st.store.writes
        return out
