"""SNTP client (RFC 4330): one query, as an asyncio coroutine that never
blocks the loop.

    sec, us = await sntp.query("pool.ntp.org")   # Unix time (1970 epoch)

Why not micropython-lib's `ntptime`: it blocks the loop in recv() for up
to its timeout (1 s), checks nothing in the reply, and returns the port's
own epoch (2000 on the ESP32). Here the UDP socket is non-blocking and
polled every POLL_MS with asyncio sleeps, so metering, the display and the
watchdog run on meanwhile, and the whole wait is bounded by `timeout_ms`.

A reply is used only if it is one (RFC 4330 section 5):
- at least 48 bytes and its origin timestamp echoes our transmit
  timestamp, which is a random 64-bit nonce (our clock may be unset, and a
  blind spoofer must guess it); other packets are ignored and the wait
  goes on (a genuine reply may still come);
- from a server (mode 4), synchronised (leap indicator not 3, stratum
  1..15; stratum 0 is a "kiss-o'-death" such as RATE: back off), with a
  non-zero transmit time not before 2025 (older than this firmware: a
  server with a wrong clock). An echoing reply that fails these is final.
Anything else raises SntpError with a message for the log.

Name resolution: `socket.getaddrinfo` blocks the whole loop in MicroPython
(on the ESP32 lwIP's resolver waits for the DNS reply, seconds when none
comes). An IPv4 literal is parsed locally without any DNS query, so give
one to avoid it; `address()` lets a caller resolve once and reuse.

Integers only: the ESP32 port's floats are single precision, far too
coarse for a Unix time.
"""

import asyncio
import os
import socket
import struct
import time

from micropython import const

from meter import netaddr

NTP_PORT = const(123)
TIMEOUT_MS = const(2000)
POLL_MS = const(20)
_PACKET = const(48)
_MODE_CLIENT = const(3)
_MODE_SERVER = const(4)
_VERSION = const(4)
# Seconds from 1900-01-01 (NTP) to 1970-01-01 (Unix); above the small-int
# range of a 32-bit port, so not a const().
_NTP_TO_UNIX = 2208988800
_ERA = 1 << 32
_MIN_UNIX = 1735689600  # 2025-01-01, as the board's time_valid()


class SntpError(Exception):
    pass


def address(server, port=NTP_PORT):
    """The socket address of `server` (a name or an IPv4 literal) for
    connect(). BLOCKS the loop while a name is resolved (see the module
    docstring); a literal needs no DNS."""
    try:
        a = netaddr.resolve(server, port, socket.SOCK_DGRAM)
    except OSError as e:
        raise SntpError("%s: name not resolved (%s)" % (server, _errno(e)))
    if a is None:
        raise SntpError("%s: no IPv4 address" % server)
    return a


async def query(server, port=NTP_PORT, timeout_ms=TIMEOUT_MS, addr=None):
    """Ask one server for the time: returns (seconds, microseconds), Unix
    time at the moment this returns. `server` is a name or an IPv4 literal;
    `addr`, from address(server), skips the resolution. Raises SntpError."""
    if addr is None:
        addr = address(server, port)
    nonce = os.urandom(8)
    req = bytearray(_PACKET)
    req[0] = _VERSION << 3 | _MODE_CLIENT  # leap indicator 0
    req[40:48] = nonce  # transmit timestamp
    buf = bytearray(_PACKET)  # a longer reply (extension fields, MAC) is cut to this
    ignored = None
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError as e:  # e.g. all of lwIP's sockets in use
        raise SntpError("%s: no socket (%s)" % (server, _errno(e)))
    try:
        s.setblocking(False)
        try:
            # A connected UDP socket only takes datagrams from that address
            # (kernel / lwIP filter), before the nonce is even looked at.
            s.connect(addr)
            t1 = time.ticks_ms()
            s.send(req)
        except OSError as e:
            raise SntpError("%s: cannot send (%s)" % (server, _errno(e)))
        deadline = time.ticks_add(t1, timeout_ms)
        while True:
            try:
                n = s.readinto(buf)  # None: nothing yet (non-blocking)
            except OSError as e:  # e.g. ECONNREFUSED from an ICMP "port unreachable"
                raise SntpError("%s: %s" % (server, _errno(e)))
            if n is None:
                left = time.ticks_diff(deadline, time.ticks_ms())
                if left <= 0:
                    why = "no reply" if ignored is None else "no valid reply (ignored: %s)" % ignored
                    raise SntpError("%s: %s within %d ms" % (server, why, timeout_ms))
                await asyncio.sleep_ms(min(POLL_MS, left))
                continue
            rtt_ms = time.ticks_diff(time.ticks_ms(), t1)
            if n < _PACKET:
                ignored = "short packet (%d bytes)" % n
            elif buf[24:32] != nonce:
                ignored = "reply to another request (origin timestamp)"
            else:
                return _time(server, buf, rtt_ms)
    finally:
        s.close()


def _time(server, b, rtt_ms):
    """(s, us) from a reply that echoes our nonce, or SntpError: the
    server itself answered, so waiting for another reply is pointless."""
    li = b[0] >> 6
    mode = b[0] & 7
    stratum = b[1]
    if mode != _MODE_SERVER:
        raise SntpError("%s: not a server reply (mode %d)" % (server, mode))
    if li == 3:
        raise SntpError("%s: not synchronised (leap indicator 3)" % server)
    if stratum == 0:
        # the reference id holds the ASCII kiss code (RATE, DENY, RSTR...)
        kiss = "".join(chr(c) for c in b[12:16] if 32 < c < 127) or "?"
        raise SntpError("%s: kiss-o'-death %s (stratum 0)" % (server, kiss))
    if stratum > 15:
        raise SntpError("%s: not synchronised (stratum %d)" % (server, stratum))
    rx_s, rx_f, tx_s, tx_f = struct.unpack_from("!IIII", b, 32)
    if tx_s == 0 and tx_f == 0:
        raise SntpError("%s: reply without a transmit time" % server)
    # Time at the server's transmit plus half the network delay: the round
    # trip measured here minus the time the server held the request
    # (RFC 4330 section 5, without needing our own clock).
    held_us = (tx_s - rx_s) * 1000000 + ((tx_f - rx_f) * 1000000 >> 32)
    # Clamped to the round trip: a server's receive time may be unset.
    delay_us = min(max(rtt_ms * 1000 - held_us, 0), rtt_ms * 1000)
    us = ((tx_f * 1000000) >> 32) + delay_us // 2
    # NTP seconds wrap in 2036: with the top bit clear the time is in the
    # next era (RFC 4330 section 3), good until 2104.
    if tx_s < 0x80000000:
        tx_s += _ERA
    unix = tx_s - _NTP_TO_UNIX + us // 1000000
    if unix < _MIN_UNIX:
        raise SntpError("%s: time before 2025 (%d): server clock wrong" % (server, unix))
    return unix, us % 1000000


def _errno(e):
    c = e.args[0] if e.args else None
    # OSError(111) on sockets; the unix port's getaddrinfo says it in words
    return "errno %d" % c if isinstance(c, int) else str(c or repr(e))
