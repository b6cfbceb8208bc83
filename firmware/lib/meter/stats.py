"""Latency statistics in constant memory: a 1 ms histogram up to 255 ms.

Median and p99 come from the histogram (exact to the millisecond below
255 ms, "255+" above); max is exact.
"""


class Lateness:
    def __init__(self):
        self.big = [0] * 256
        self.n = 0
        self.max = 0

    def add(self, ms):
        if ms < 0:
            ms = 0
        if ms > self.max:
            self.max = ms
        i = ms if ms < 255 else 255
        self.big[i] += 1
        self.n += 1

    def percentile(self, p):
        if not self.n:
            return 0
        want = (self.n * p + 99) // 100
        seen = 0
        for i in range(256):
            seen += self.big[i]
            if seen >= want:
                return i
        return 255

    def summary(self):
        return {"n": self.n, "median": self.percentile(50), "p99": self.percentile(99),
                "max": self.max}

    def clear(self):
        for i in range(256):
            self.big[i] = 0
        self.n = 0
        self.max = 0
