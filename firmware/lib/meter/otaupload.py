"""A firmware file uploaded over HTTP (the Web Admin's Firmware page),
streamed into the updater (meter/ota.py). docs/ota.md, "Upload".

The page handler knows the request's Content-Length before it reads the
body. Upload(...) is made first and refuses, before a single byte is read
or written, a length the update slot cannot take (TooLarge: HTTP 413), no
length (NoLength: 411) and a length too short to be an update file; the
updater's own up-front refusals (module lock, another update, an image
still on trial) come with it. run(stream) then reads exactly that many
bytes, each read bounded by a timeout and the whole by TOTAL_MS, into one
buffer and feeds them to the updater, which checks the header and signature before its first erase.
Whatever ends it early (the client gone, a stall, cancel() from the page)
cancels the updater: the slot keeps a partial image that nothing boots,
the boot slot and the running firmware stay as they were.

Kept out of meter/web so that any HTTP layer can use it (the page, the
tests, a later local API).
"""

import asyncio
import time

from micropython import const

from meter import otafmt
from meter.otafmt import max_size  # noqa: F401 (the page and the tests name it here)
from meter.ota import UpdateError, Updater

_CHUNK = const(1024)
_TIMEOUT_MS = const(20000)  # a browser that sends nothing for this long is gone
# The whole body: a 1.5 MiB file at 2 KiB/s (a very poor Wi-Fi link) still
# fits; anything slower holds the updater (and the page's connection) for
# nothing.
TOTAL_MS = const(900000)


class TooLarge(UpdateError):
    status = 413


class NoLength(UpdateError):
    status = 411


class Upload:
    def __init__(self, ota_parts, target, length, audit=None, source="web", progress=None,
                 **updater_kw):
        """length: the request's Content-Length (None: not given). Raises
        UpdateError (status 411/413/400) before anything is written."""
        room = max_size(ota_parts)
        if length is None or not isinstance(length, int) or length < 0:
            self._refuse(audit, source, NoLength("the upload needs a Content-Length"))
        if length > room:
            self._refuse(audit, source, TooLarge(
                "the file is too large (%d bytes; the update slot takes at most %d)"
                % (length, room)))
        if length <= otafmt.RECORD_LEN:
            self._refuse(audit, source, UpdateError(
                "not an update file (%d bytes, too short)" % length))
        self.length = length
        self.got = 0
        self.updater = Updater(ota_parts, target, audit=audit, source=source,
                               progress=progress, **updater_kw)

    @staticmethod
    def _refuse(audit, source, e):
        if audit is not None:
            audit.append(source, "ota update", "refused", str(e))
        raise e

    async def run(self, stream, timeout_ms=_TIMEOUT_MS, total_ms=TOTAL_MS, buf=None):
        """Read the body (an asyncio stream: readinto() into one buffer), feed
        it, finish(). Each read waits at most timeout_ms, the whole body at
        most total_ms. buf: the buffer to read into (the connection's own,
        which the HTTP layer keeps anyway); else one is made. Returns the
        installed version; raises UpdateError with the installed firmware
        untouched."""
        mv = memoryview(bytearray(_CHUNK) if buf is None else buf)
        end = time.ticks_add(time.ticks_ms(), total_ms)
        try:
            while self.got < self.length:
                want = min(len(mv), self.length - self.got)
                left = time.ticks_diff(end, time.ticks_ms())
                if left <= 0:
                    raise UpdateError("the upload took longer than %d min"
                                      % (total_ms // 60000))
                n = await asyncio.wait_for_ms(_readinto(stream, mv[:want]),
                                              min(timeout_ms, left))
                data = mv[:n]
                if not data:
                    raise UpdateError("the upload broke off at %d of %d bytes"
                                      % (self.got, self.length))
                self.got += len(data)
                self.updater.feed(data)
        except BaseException as e:
            self.cancel("upload: %s" % (str(e) or repr(e)))
            if isinstance(e, (UpdateError, asyncio.CancelledError)):
                raise
            if isinstance(e, asyncio.TimeoutError):
                if time.ticks_diff(end, time.ticks_ms()) <= 0:
                    raise UpdateError("the upload took longer than %d min"
                                      % (total_ms // 60000))
                raise UpdateError("the upload stalled (nothing for %d s)" % (timeout_ms // 1000))
            if isinstance(e, MemoryError):  # never the bare exception to a user
                raise UpdateError("the device ran short of memory; nothing was installed, "
                                  "try again")
            raise UpdateError("the upload broke off at %d of %d bytes (%s)"
                              % (self.got, self.length, e))
        return self.updater.finish()

    def cancel(self, why="cancelled"):
        """The client is gone or the page gave up: nothing is installed."""
        self.updater.cancel(why)


async def _readinto(stream, mv):
    while True:
        n = await stream.readinto(mv)
        if n is not None:  # None: nothing yet (a TLS record not complete)
            return n
