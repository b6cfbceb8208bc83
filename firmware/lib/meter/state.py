"""Persistent runtime state that is not configuration.

Counts and marks that must survive a power cut but are not settings, and so
are not blocked by the module lock: PIN and login failure counts, the last
TOTP step used. One small JSON object, rewritten whole as one LogStore
record on each change (atomic like every record); keep values small.
"""

import json

from micropython import const

from meter import log

KIND = const(4)  # the LogStore record kind of a state record


class State:
    def __init__(self, store):
        self.store = store
        self._d = {}
        rec = store.latest()
        if rec is not None:
            try:
                d = json.loads(rec[2])
                if isinstance(d, dict):
                    self._d = d
            except ValueError:
                pass
        if rec is None and not (store.blank or store.formatted):
            # (blank or formatted without a record: new, or the first write
            # was cut, which lost nothing)
            log.warn("state: unreadable, starting from empty")

    def get(self, key, default=None):
        return self._d.get(key, default)

    def set(self, key, value):
        if self._d.get(key) == value:
            return
        d = dict(self._d)
        d[key] = value
        self.store.append_json(KIND, d)
        self._d = d
