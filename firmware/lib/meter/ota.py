"""Firmware update: a signed update file streamed into the inactive app slot.

Loaded only when an update starts (never at start-up). The file
(meter/otafmt.py) arrives in chunks of any size from any source:
feed(chunk) ... finish(), or cancel(). Memory stays constant whatever the
file size: one 4 KiB block buffer and the 448-byte record (header and
signature), allocated once.

The header and signature are checked before the first erase; the payload is
hashed as it is written block by block; finish() checks length and hash,
reads the slot back, writes the slot record and calls set_boot(). Nothing
before set_boot() touches otadata or the running slot, so any failure,
cancel or power cut leaves the running firmware booting. Every outcome is
audited; every refusal raises UpdateError, its message for the user. One
update at a time. Details: docs/ota.md.
"""

import hashlib

from micropython import const

from meter import SECURITY_VERSION, VERSION, log, otafmt
from meter.errors import UserError

_BLOCK = const(4096)
_REC = const(448)  # otafmt.RECORD_LEN

_INSTALLED = "installed"
_current = [None]  # the update in progress, or _INSTALLED


class UpdateError(UserError):
    """An update was refused or failed; str() says why, for the user."""


def busy():
    """True while an update runs, and after one was installed (until the
    restart)."""
    return _current[0] is not None


def current():
    """The Updater writing now, or None."""
    u = _current[0]
    return None if u is _INSTALLED else u


class Updater:
    def __init__(self, ota, target, keys=None, audit=None, settings=None,
                 source="web", progress=None, version=VERSION,
                 secver=SECURITY_VERSION):
        """ota: the board's OTA partitions (board.ota()); target: "esp32" or
        "host"; keys: key id -> modulus (default meter/otakeys.py);
        progress(bytes_received, total or None) after each chunk."""
        self.audit = audit
        self.source = source
        if _current[0] is _INSTALLED:
            self._refuse("an update is installed and waits for the restart")
        if _current[0] is not None:
            self._refuse("another update is in progress")
        if settings is not None:
            try:  # audited there as "locked refused" (docs/ota.md, "Module lock")
                settings.require_unlocked(source, "firmware update")
            except ValueError:
                raise UpdateError("module locked: unlock it to update the firmware")
        if ota.running_state() == "pending-verify":
            # The other slot is the way back until this image confirms
            # itself: overwriting it would leave nothing to roll back to.
            self._refuse("the running firmware has not passed its self-test yet")
        if keys is None:
            from meter.otakeys import KEYS as keys
        self.keys = keys
        self.target = target
        self.version = otafmt.version_code(version)
        self.secver = secver
        self.progress = progress
        self.slot = ota.next_update()
        self.blocks = self.slot.ioctl(4, None)
        self.capacity = (self.blocks - 1) * _BLOCK  # last block: the record
        self._rec = bytearray(_REC)
        self._buf = bytearray(_BLOCK)
        self._got = 0  # file bytes received
        self.length = None  # payload length, once the header is checked
        self._sha = None
        self._blk = 0
        self._fill = 0
        _current[0] = self
        self._log("start", "ok", "from " + otafmt.version_text(self.version))

    # -- stream ----------------------------------------------------------------

    def feed(self, chunk):
        """Take the next piece of the file (any size); UpdateError ends
        the update."""
        self._live()
        try:
            self._feed(memoryview(chunk))
        except Exception as e:
            self._failed(e)
        if self.progress:
            self.progress(self._got, None if self.length is None else _REC + self.length)

    def _feed(self, mv):
        i = 0
        end = len(mv)
        while i < end:
            if self.length is None:  # header and signature
                n = min(_REC - self._got, end - i)
                self._rec[self._got:self._got + n] = mv[i:i + n]
                self._got += n
                i += n
                if self._got == _REC:
                    self._check_record()
                continue
            left = self.length - (self._got - _REC)
            if left <= 0:
                raise UpdateError("the file is longer than its header says")
            n = min(_BLOCK - self._fill, end - i, left)
            self._buf[self._fill:self._fill + n] = mv[i:i + n]
            self._fill += n
            self._got += n
            i += n
            if self._fill == _BLOCK:
                self._write_block()

    def finish(self):
        """Check everything and switch the boot slot; returns the new
        version ("1.2.3"). The caller restarts (restart())."""
        self._live()
        try:
            if self.length is None:
                raise UpdateError("the file is truncated (%d bytes, no complete header)"
                                  % self._got)
            got = self._got - _REC
            if got < self.length:
                raise UpdateError("the file is truncated (%d of %d bytes)" % (got, self.length))
            if self._fill:
                self._write_block()
            if self._sha.digest() != self._head[5]:
                raise UpdateError("checksum mismatch: the file is damaged")
            self._verify_slot()
            self._write_record()
            self.slot.set_boot()
        except Exception as e:
            self._failed(e)
        # Until the restart: another update would overwrite the slot that
        # otadata now points at.
        _current[0] = _INSTALLED
        v = otafmt.version_text(self._head[1])
        self._log("installed", "ok", "%s -> %s" % (otafmt.version_text(self.version), v))
        return v

    def cancel(self, why="cancelled"):
        """Stop here (the caller's choice, or its source broke off). The
        slot keeps a partial image that nothing boots."""
        if _current[0] is self:
            _current[0] = None
            self._log("update", "cancelled", why)

    def offered(self):
        """The file's signed version code once its header was checked, else
        None (the update check compares it with its manifest)."""
        return self._head[1] if self.length is not None else None

    # -- steps -----------------------------------------------------------------

    def _check_record(self):
        rec = self._rec
        head = otafmt.parse_header(rec)  # FormatError: not an update file
        key_id, version, secver, length, target, _ = head
        key = self.keys.get(key_id)
        if key is None:
            raise UpdateError("signed with an unknown key (id %d)" % key_id)
        mv = memoryview(rec)
        if not otafmt.signature_ok(mv[:otafmt.HEAD_LEN], mv[otafmt.HEAD_LEN:], key):
            raise UpdateError("signature check failed: damaged or not an official update")
        if target != self.target:
            raise UpdateError("the file is for another device (%s, this is %s)"
                              % (target, self.target))
        if secver < self.secver:
            raise UpdateError("security version %d is older than the running %d"
                              % (secver, self.secver))
        if version <= self.version:
            raise UpdateError("version %s is not newer than the running %s" % (
                otafmt.version_text(version), otafmt.version_text(self.version)))
        if not 0 < length <= self.capacity:
            raise UpdateError("the image does not fit the update slot (%d bytes, at most %d)" % (
                length, self.capacity))
        self._head = head
        self.length = length
        self._sha = hashlib.sha256()

    def _write_block(self):
        buf = self._buf
        self._sha.update(memoryview(buf)[:self._fill])
        for i in range(self._fill, _BLOCK):  # the last block's tail: erased
            buf[i] = 0xFF
        self.slot.ioctl(6, self._blk)
        self.slot.writeblocks(self._blk, buf, 0)
        self._blk += 1
        self._fill = 0

    def _verify_slot(self):
        h = hashlib.sha256()
        left = self.length
        buf = self._buf
        b = 0
        while left > 0:
            self.slot.readblocks(b, buf, 0)
            n = min(left, _BLOCK)
            h.update(memoryview(buf)[:n])
            left -= n
            b += 1
        if h.digest() != self._head[5]:
            raise UpdateError("the written image reads back wrong (flash fault)")

    def _write_record(self):
        last = self.blocks - 1  # 448 bytes: a multiple of 16 (encrypted flash)
        self.slot.ioctl(6, last)
        self.slot.writeblocks(last, self._rec, 0)

    # -- outcome ---------------------------------------------------------------

    def _live(self):
        if _current[0] is not self:
            raise UpdateError("this update has ended")

    def _failed(self, e):
        _current[0] = None
        if isinstance(e, (UpdateError, otafmt.FormatError)):
            msg = str(e)
        elif isinstance(e, OSError):
            msg = "flash error %s: the update was not installed" % e
        else:
            msg = "update failed: %r" % e
        self._log("update", "failed", msg)
        raise UpdateError(msg)

    def _refuse(self, msg):
        self._log("update", "refused", msg)
        raise UpdateError(msg)

    def _log(self, event, outcome, detail):
        if self.audit is not None:
            self.audit.append(self.source, "ota " + event, outcome, detail)
        else:
            log.info("ota %s %s %s" % (event, outcome, detail))


async def install(updater, reader, chunk=1024):
    """Feed an asyncio stream (reader.read(n)) to its end, then finish."""
    try:
        while True:
            data = await reader.read(chunk)
            if not data:
                break
            updater.feed(data)
    except UpdateError:
        raise
    except Exception as e:  # the source broke off
        updater.cancel("source failed: %r" % e)
        raise UpdateError("the transfer broke off: %r" % e)
    return updater.finish()


def restart(app, version):
    """After finish(): counters saved, the restart audited, then reset into
    the new image (it boots PENDING_VERIFY: meter/selftest.py)."""
    app.sampler.flush()
    app.audit.append("system", "ota restart", "ok", version)
    app.board.reset()
