"""Stand-ins shared by the Web Admin's MicroPython tests (test_web.py,
test_login.py): a fake ticks_ms clock and app.state_."""


class Clock:
    def __init__(self):
        self.t = 1000000

    def __call__(self):
        return self.t

    def advance(self, s):
        self.t += int(s * 1000)


class State:
    """app.state_ stand-in: counts its writes; survives 'reboots' by reuse."""

    def __init__(self):
        self.d = {}
        self.writes = 0

    def get(self, k, default=None):
        return self.d.get(k, default)

    def set(self, k, v):
        self.d[k] = v
        self.writes += 1
