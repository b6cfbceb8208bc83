"""Socket addresses: the one place that resolves a host name and reads the
address back, for the uplink (meter/mqttlink.py) and the clock
(meter/sntp.py).

`socket.getaddrinfo` BLOCKS the whole loop in MicroPython (on the ESP32
lwIP's resolver waits for the DNS reply, seconds when none comes): callers
resolve once and keep the result; an IPv4 literal needs no DNS query.
The device's network is IPv4 only.
"""

import socket


def is_ipv4(s):
    """True for a dotted IPv4 literal ("192.168.1.10")."""
    p = s.split(".")
    return len(p) == 4 and all(x.isdigit() and 0 <= int(x) <= 255 for x in p)


def resolve(host, port, socktype=0):
    """The socket address (for connect()/sendto()) of host's first IPv4
    address, or None if it has none. Blocks while a name is resolved;
    getaddrinfo's OSError goes to the caller, who words it."""
    for ai in socket.getaddrinfo(host, port, 0, socktype):
        if ai[0] == socket.AF_INET:
            return ai[-1]
    return None


def ip(addr):
    """The dotted IPv4 address in a socket address from resolve(). Ports
    differ: the ESP32's (lwIP) is a tuple (ip, port), the unix port's a raw
    sockaddr_in (family, port, then the 4 address bytes)."""
    if isinstance(addr, tuple):
        return addr[0]
    return "%d.%d.%d.%d" % (addr[4], addr[5], addr[6], addr[7])
