"""Security/audit log: a small persistent ring of security events.

Each event is one LogStore record: when (Unix time, or 0 while the clock is
unknown), source (menu, web, mqtt, api, system), event, outcome and a short
detail. The ring keeps at least `capacity()` of the newest events; older ones
are dropped a whole flash block at a time. Appends are atomic like every
LogStore record, so a power cut never leaves a half-written event.
"""

import struct
import time

from meter import log

KIND = 3
MAX_FIELD = 96  # bytes per text field: events stay small and bounded
REFUSED_EVERY_MS = 60000


class AuditLog:
    def __init__(self, store, clock):
        self.store = store
        self.clock = clock  # board: time(), time_valid()
        self._refused = {}  # "source event" -> [count since the last record, its ticks]
        if store.damaged:
            log.warn("audit: %d damaged block(s) skipped" % store.damaged)

    def append(self, source, event, outcome="ok", detail=""):
        """Record one event. Never raises: losing the audit trail must not
        take a security action down with it, but it is logged."""
        t = self.clock.time() if self.clock.time_valid() else 0
        parts = []
        for f in (source, event, outcome, detail):
            b = str(f).encode()
            if len(b) > MAX_FIELD:
                n = MAX_FIELD
                while n and (b[n] & 0xC0) == 0x80:  # not inside a character
                    n -= 1
                b = b[:n]
            parts.append(b.replace(b"\x00", b"?"))
        payload = struct.pack("<I", t) + b"\x00".join(parts)
        try:
            self.store.append(KIND, payload)
        except Exception as e:
            log.exc("audit append failed", e)
        log.info("audit %s %s %s %s" % (source, event, outcome, detail))

    def refused(self, source, event, detail):
        """A refusal anyone on the network can cause (a forged form, a bad
        token, a pairing flood): recorded at most once per REFUSED_EVERY_MS
        for each source and event, with the count since the last record, so
        that a flood cannot wear out the flash or flush the ring."""
        key = source + " " + event
        r = self._refused.get(key)
        if r is None:
            r = self._refused[key] = [0, None]
        r[0] += 1
        now = time.ticks_ms()
        if r[1] is None or time.ticks_diff(now, r[1]) >= REFUSED_EVERY_MS:
            self.append(source, event, "refused", "%s (%d)" % (detail, r[0]))
            r[0] = 0
            r[1] = now

    def events(self, limit=None):
        """Events oldest first, as (seq, time, source, event, outcome, detail)."""
        out = []
        for seq, kind, payload in self.store.records():
            if kind != KIND or len(payload) < 4:
                continue
            t = struct.unpack_from("<I", payload)[0]
            f = bytes(payload[4:]).decode().split("\x00")
            while len(f) < 4:
                f.append("")
            out.append((seq, t, f[0], f[1], f[2], f[3]))
            if limit is not None and len(out) > limit:
                out.pop(0)
        return out

    def capacity(self):
        return self.store.capacity(4 + 4 * 12)
