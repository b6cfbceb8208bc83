"""The automatic update check: a manifest over HTTPS, then the signed file
streamed into the updater (meter/ota.py). docs/ota.md, "Automatic updates".

One Fetcher makes one check at a time, `check_now(source)`, never while
`busy()` (a user in the Settings menu, an update running); a failure
starts an exponential back-off with jitter (meter/backoff.py, the count
kept in the runtime state so a restart does not shorten it), whose wait
`backoff.wait_s()` tells. The schedule (a check every `update.interval_h`
hours, spread) is meter/otaauto.py's, which makes a Fetcher only for a
check and lets it go afterwards.

One check:
1. GET `<update.server>/<target>.json` (meter/httpget.py: TLS verified
   against files/update-ca.crt, host name checked): a small JSON manifest
   {"version", "url", "size", "sha256"}.
2. Not newer than the running version: nothing to do ("up to date").
3. Otherwise GET the file and feed it, as it arrives, into an ota.Updater
   through one buffer: the download is never held in RAM. The manifest
   is held to what it promised: the Content-Length, a running count and
   the SHA-256 of the whole file must match it, and the file's signed
   version must be the manifest's, all before finish() switches the boot
   slot. The updater's own checks (signature, target, version, slot size)
   come on top: the manifest only says where to look, the signature
   decides what is installed.
4. on_installed(version) is called (the App restarts: ota.restart()).

Every check is audited as `ota check` under its source (auto, cloud, ...)
with "from -> to: result"; the updater audits its own start and outcome.
Errors are UpdateError, worded for the user.
"""

import asyncio
import hashlib
import json
from binascii import unhexlify

from micropython import const

from meter import SECURITY_VERSION, VERSION, httpget, log, memory, ota, otafmt
from meter.backoff import Backoff, jitter
from meter.ota import UpdateError

_BUF = const(2048)  # the one buffer of a check: response header, manifest, file chunks
_MANIFEST_MAX = const(512)
# Free heap a check asks for before it starts (meter/memory.py room()): it
# holds about 12.5 KB while it downloads (TLS context and connection, its
# buffer, the updater's block buffer) and the signature check allocates
# about 5 KB more for a moment. Short of that it waits for a later try
# rather than end in a MemoryError.
_NEED = const(20 * 1024)
_BUSY = "the Settings menu is in use: try again later"

class SettingsConfig:
    """The fetcher's view of the settings store and the provisioned files:
    get("update.server") (base URL: the manifest is <server>/<target>.json),
    get("update.ip") (dialled instead of resolving the server's name, "" =
    resolve), both with the store's defaults (meter/settings.py), and
    get("update.ca"): the file update-ca.crt, or None."""

    def __init__(self, settings, files):
        self.settings = settings
        self.files = files

    def get(self, key):
        if key == "update.ca":
            try:
                with open(self.files + "/update-ca.crt", "rb") as f:
                    return f.read()
            except OSError:
                return None
        return self.settings.get(key)


class _Ram:
    """Back-off count kept in RAM when no state store is given."""

    def __init__(self):
        self.d = {}

    def get(self, key, default=None):
        return self.d.get(key, default)

    def set(self, key, value):
        self.d[key] = value


# The class attributes a caller (a test, a benchmark) may override per
# instance: Fetcher(..., timeout_ms=2000).
_TUNABLE = ("retry_min_s", "retry_max_s", "timeout_ms", "total_ms")


class Fetcher:
    # Tuning, as class attributes rather than const(): tests pass shorter
    # ones as keywords (a per-instance override).
    retry_min_s = 60  # back-off after a failure: 1 min doubling ...
    retry_max_s = 21600  # ... to 6 h (with jitter)
    timeout_ms = 20000  # connect, request, and each read of a response
    total_ms = 900000  # a whole download (a server that trickles)

    def __init__(self, cfg, ota_parts, target, audit=None, state=None, settings=None,
                 progress=None, busy=None, on_installed=None, on_result=None, keys=None,
                 version=VERSION, secver=SECURITY_VERSION, **tune):
        """cfg.get(key) as SettingsConfig's; ota_parts: board.ota();
        target: board name; progress(bytes, total) while a file is written;
        busy(): None, or why no check may start now (True: the Settings
        menu is in use); on_installed(version); on_result(source, outcome,
        detail) after each check's audit record."""
        for k, v in tune.items():
            if k not in _TUNABLE:
                raise TypeError("unknown tuning " + k)
            setattr(self, k, v)
        self.cfg = cfg
        self.ota = ota_parts
        self.target = target
        self.audit = audit
        self.settings = settings
        self.progress = progress
        self.busy = busy
        self.on_installed = on_installed
        self.on_result = on_result
        self.source = None  # who asked for the check that runs (or ran last)
        self.keys = keys
        self.version = otafmt.version_code(version)
        self.secver = secver
        self.backoff = Backoff(state or _Ram(), "ota_fails", self._retry_s)
        self.checking = False
        self.last = None  # (source, outcome, detail) of the last check
        self._buf = None
        self._ctx = None

    # -- on demand -------------------------------------------------------------

    async def check_now(self, source="cloud"):
        """One check. Returns the installed version ("1.1.0", the boot slot
        switched: restart), or None when nothing newer is offered. Raises
        UpdateError (the reason, for the user; a retry is scheduled)."""
        if self.checking:
            raise UpdateError("an update check is already running")
        why = self.busy() if self.busy is not None else None
        if why:
            raise UpdateError(_BUSY if why is True else why)
        self.checking = True
        self.source = source
        frm = otafmt.version_text(self.version)
        to = ["?"]
        try:
            if not memory.room(_NEED):
                raise MemoryError
            # One buffer per check, not per service: a check runs once a
            # day, and 2 KiB held in between is heap the pages need.
            self._buf = bytearray(_BUF)
            man = await self._manifest()
            to[0] = otafmt.version_text(man[0])
            if man[0] <= self.version:
                self.backoff.clear()
                self._audit(source, "ok", "%s: up to date (server offers %s)" % (frm, to[0]))
                return None
            v = await self._download(source, man)
            self.backoff.clear()
            self._audit(source, "ok", "%s -> %s: installed" % (frm, v))
        except BaseException as e:
            if isinstance(e, MemoryError):
                e = UpdateError("not enough memory for the update check now")
            if isinstance(e, UpdateError):
                self.backoff.fail()
                self._audit(source, "failed", "%s -> %s: %s" % (frm, to[0], e))
            elif isinstance(e, asyncio.CancelledError):  # the service stopped
                self._audit(source, "cancelled", "%s -> %s" % (frm, to[0]))
            else:  # a fault: logged at the task boundary, retried as a failure
                self.backoff.fail()
                self._audit(source, "failed", "%s -> %s: internal error" % (frm, to[0]))
            raise e
        finally:
            self.checking = False
            self._buf = None
            self._ctx = None
        if self.on_installed is not None:
            self.on_installed(v)
        return v

    # -- back-off --------------------------------------------------------------

    def _retry_s(self, fails):
        if not fails:
            return 0
        s = min(self.retry_min_s << min(fails - 1, 16), self.retry_max_s)
        return max(1, jitter(s * 1000) // 1000)

    # -- the two requests ------------------------------------------------------

    def _ip(self, url):
        server = httpget.split_url(self.cfg.get("update.server"))[0]
        return self.cfg.get("update.ip") if httpget.split_url(url)[0] == server else ""

    async def _get(self, url):
        return await httpget.get(url, self._ctx, self._buf, self._ip(url), self.timeout_ms,
                                 "meter/" + otafmt.version_text(self.version))

    async def _manifest(self):
        """(version code, url, size, sha256 bytes) from the manifest."""
        server = self.cfg.get("update.server")
        if not server:
            raise UpdateError("no update server configured")
        url = server.rstrip("/") + "/" + self.target + ".json"
        self._ctx = httpget.context(self.cfg.get("update.ca"))
        resp, a, n = await self._get(url)
        mv = memoryview(self._buf)
        try:
            if resp.status != 200:
                raise UpdateError("the update server answered %d for the manifest" % resp.status)
            want = resp.length
            if want is not None and want > _MANIFEST_MAX:
                raise UpdateError("the update manifest is too large (%d bytes)" % want)
            while want is None or n - a < want:
                if n - a > _MANIFEST_MAX:
                    raise UpdateError("the update manifest is too large")
                try:
                    k = await resp.readinto(mv[n:a + _MANIFEST_MAX + 1])
                except Exception as e:
                    if want is None and n > a:  # no length given: the end is the end
                        break
                    raise httpget.describe(e, "update server", self.timeout_ms)
                if not k:
                    break
                n += k
            if want is not None and n - a != want:
                raise UpdateError("the update manifest broke off (%d of %d bytes)" % (n - a, want))
        finally:
            await resp.close()
        return _parse_manifest(bytes(mv[a:n]), server)

    async def _download(self, source, man):
        version, url, size, sha = man
        room = otafmt.max_size(self.ota)
        if size > room:
            raise UpdateError("the update (%d bytes) does not fit the update slot (at most %d)"
                              % (size, room))
        u = ota.Updater(self.ota, self.target, keys=self.keys, audit=self.audit,
                        settings=self.settings, source=source, progress=self.progress,
                        version=otafmt.version_text(self.version), secver=self.secver)
        try:
            await asyncio.wait_for_ms(self._stream(u, url, size, sha, version), self.total_ms)
        except BaseException as e:
            u.cancel(str(e) or repr(e))  # no-op when the updater ended it itself
            if isinstance(e, asyncio.TimeoutError):
                raise UpdateError("the download took longer than %d s" % (self.total_ms // 1000))
            if isinstance(e, UpdateError) or isinstance(e, asyncio.CancelledError):
                raise
            raise httpget.describe(e, "download", self.timeout_ms)
        return u.finish()  # length, hash, read-back, slot record, set_boot

    async def _stream(self, u, url, size, sha, version):
        """The file into the updater, held to the manifest; everything but
        finish()."""
        resp, a, n = await self._get(url)
        mv = memoryview(self._buf)
        try:
            if resp.status != 200:
                raise UpdateError("the update server answered %d for the file" % resp.status)
            if resp.length is not None and resp.length != size:
                raise UpdateError("the server's file is %d bytes, its manifest says %d"
                                  % (resp.length, size))
            h = hashlib.sha256()
            got = 0
            chunk = mv[a:n]
            while True:
                k = len(chunk)
                if got + k > size:
                    raise UpdateError("the file is longer than its manifest says (%d bytes)" % size)
                if k:
                    h.update(chunk)
                    u.feed(chunk)
                    checked = got < otafmt.RECORD_LEN <= got + k
                    got += k
                    if checked and u.offered() != version:
                        raise UpdateError("the file is version %s, its manifest says %s" % (
                            otafmt.version_text(u.offered()), otafmt.version_text(version)))
                if got == size:
                    break
                k = await resp.readinto(mv)
                if not k:
                    raise UpdateError("the download broke off at %d of %d bytes" % (got, size))
                chunk = mv[:k]
            if resp.length is None:  # no length given: more bytes would be a lie
                try:
                    k = await resp.readinto(mv)
                except Exception:  # the end of the stream, however the server closed it
                    k = 0
                if k:
                    raise UpdateError("the file is longer than its manifest says (%d bytes)"
                                      % size)
            if h.digest() != sha:
                raise UpdateError("the file does not match its manifest's SHA-256")
        except UpdateError:
            raise
        except Exception as e:  # a read that stalled or broke: the outer
            raise httpget.describe(e, "download", self.timeout_ms)  # timeout is the total's
        finally:
            await resp.close()

    def _audit(self, source, outcome, detail):
        self.last = (source, outcome, detail)
        if self.audit is not None:
            self.audit.append(source, "ota check", outcome, detail)
        else:
            log.info("ota check %s %s %s" % (source, outcome, detail))
        if self.on_result is not None:
            self.on_result(source, outcome, detail)


def _parse_manifest(body, server):
    try:
        m = json.loads(body)
        version = otafmt.version_code(m["version"])
        url = m["url"]
        size = m["size"]
        sha = unhexlify(m["sha256"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise UpdateError("the update manifest is not valid (%s)" % (e.args[0] if e.args else e))
    if not isinstance(size, int) or size <= otafmt.RECORD_LEN:
        raise UpdateError("the update manifest gives no valid size")
    if len(sha) != 32:
        raise UpdateError("the update manifest's sha256 is not 64 hex digits")
    if isinstance(url, str) and url.startswith("/"):  # on the update server itself
        host, port, _ = httpget.split_url(server)
        url = "https://%s:%d%s" % (host, port, url)
    httpget.split_url(url)  # an https URL, or UpdateError
    return version, url, size, sha
