"""A small SNTP server for tests: an asyncio task on 127.0.0.1 whose
answers the test chooses (a good reply or one of the ways a reply is bad).

Its clock is `unix` (Unix seconds, may have a fraction in `frac_us`) at
construction and runs on with ticks_ms, so the time a client should arrive
at is known: `now_us()`. Every request is kept in `requests` as
(ticks_ms, bytes).
"""

import asyncio
import os
import socket
import struct
import time

NTP_TO_UNIX = 2208988800

# mode -> what the server sends back
GOOD = "good"
WRONG_ORIGIN = "wrong-origin"  # origin timestamp not the request's transmit
SPOOF_THEN_GOOD = "spoof-then-good"  # a wrong-origin packet first, then a good one
LI3 = "li3"  # leap indicator 3: clock not synchronised
KOD = "kod"  # stratum 0, kiss code RATE
STRATUM16 = "stratum16"
MODE3 = "mode3"  # a client packet, not a server reply
ZERO_TX = "zero-tx"  # transmit timestamp 0
SHORT = "short"  # only 40 bytes
SILENT = "silent"  # no reply at all
HELD = "held"  # a good reply sent `held_ms` after the request came (stamped honestly)


class Server:
    def __init__(self, unix=1795322355, frac_us=500000, mode=GOOD):
        self.mode = mode
        self.held_ms = 200
        self.requests = []
        self._base_us = unix * 1000000 + frac_us
        self._t0 = time.ticks_ms()
        self.sock, self.port = _bind()
        self._task = None

    def now_us(self):
        """The server's Unix time now, in microseconds."""
        return self._base_us + time.ticks_diff(time.ticks_ms(), self._t0) * 1000

    def start(self):
        self._task = asyncio.create_task(self._run())
        return self

    def close(self):
        if self._task:
            self._task.cancel()
        self.sock.close()

    def _stamp(self):
        us = self.now_us()
        s = us // 1000000 + NTP_TO_UNIX
        f = (us % 1000000) * (1 << 32) // 1000000
        return s & 0xFFFFFFFF, f  # the seconds wrap in 2036 (era 1)

    def packet(self, req, rx, li=0, mode=4, stratum=2, ref=b"GPS\x00", origin=None, tx=None):
        p = bytearray(48)
        p[0] = li << 6 | 4 << 3 | mode
        p[1] = stratum
        p[2] = 6  # poll
        p[3] = 0xEC  # precision
        p[12:16] = ref
        p[16:24] = struct.pack("!II", *rx)  # reference time
        p[24:32] = req[40:48] if origin is None else origin
        p[32:40] = struct.pack("!II", *rx)
        p[40:48] = struct.pack("!II", *(tx or self._stamp()))
        return p

    async def _run(self):
        while True:
            try:
                req, addr = self.sock.recvfrom(256)
            except OSError:  # EAGAIN: nothing yet
                await asyncio.sleep_ms(2)
                continue
            self.requests.append((time.ticks_ms(), req))
            rx = self._stamp()
            m = self.mode
            if m == SILENT:
                continue
            if m == HELD:
                asyncio.create_task(self._later(req, rx, addr))
                continue
            for p in self.replies(req, rx):
                self.sock.sendto(p, addr)

    async def _later(self, req, rx, addr):
        await asyncio.sleep_ms(self.held_ms)
        self.sock.sendto(self.packet(req, rx), addr)

    def replies(self, req, rx):
        m = self.mode
        bad_origin = bytes(b ^ 0xFF for b in req[40:48])
        if m == GOOD:
            return [self.packet(req, rx)]
        if m == WRONG_ORIGIN:
            return [self.packet(req, rx, origin=bad_origin)]
        if m == SPOOF_THEN_GOOD:
            # the spoofer's time is ten years off: taking it would show
            return [self.packet(req, rx, origin=bad_origin, tx=(100, 0)),
                    self.packet(req, rx)]
        if m == LI3:
            return [self.packet(req, rx, li=3)]
        if m == KOD:
            return [self.packet(req, rx, stratum=0, ref=b"RATE")]
        if m == STRATUM16:
            return [self.packet(req, rx, stratum=16)]
        if m == MODE3:
            return [self.packet(req, rx, mode=3)]
        if m == ZERO_TX:
            return [self.packet(req, rx, tx=(0, 0))]
        if m == SHORT:
            return [self.packet(req, rx)[:40]]
        raise ValueError(m)


def _bind():
    """A non-blocking UDP socket on 127.0.0.1 and its port (the unix port's
    sockets have no getsockname(): try random ports)."""
    for _ in range(50):
        port = 20000 + int.from_bytes(os.urandom(2), "big") % 40000
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
        except OSError:
            s.close()
            continue
        s.setblocking(False)
        return s, port
    raise OSError("no free UDP port")


def free_port():
    """A UDP port on 127.0.0.1 with nobody listening (bound, then closed)."""
    s, port = _bind()
    s.close()
    return port
