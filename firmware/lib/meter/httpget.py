"""A small HTTPS GET client for the update check (meter/otafetch.py).

Only what fetching a manifest and an update file needs: one GET per
connection (HTTP/1.0, "Connection: close", so no chunked bodies and the end
of the body is the end of the stream), TLS always, the server certificate
verified against one configured CA and the host name checked (mbedTLS does
both when verify_mode is CERT_REQUIRED and server_hostname is given).

Non-blocking in the one asyncio loop: asyncio.open_connection() does the
TCP connect and the TLS handshake without blocking (only a DNS look-up
would block, hence `ip`: dial this address and still check the name).
Every step (connect, request, each read) is bounded by a timeout, so a
server that stalls costs at most that long. The response is read into the
caller's buffer, never into new bytes objects, so a download of any size
runs in the caller's one buffer.

Errors are UpdateError (meter/ota.py) worded for the user; what went wrong
with TLS is told apart where mbedTLS's message allows (wrong CA, wrong
name, expired).
"""

import asyncio

from micropython import const

from meter.ota import UpdateError

_HEAD_MAX = const(1024)  # the response header must fit the first buffer fill


def split_url(url):
    """(host, port, path) of an https:// URL; UpdateError when it is not
    one this client can ask (no spaces or line breaks: they would end up in
    the request line)."""
    if not isinstance(url, str) or not url.startswith("https://"):
        raise UpdateError("the update server must be an https:// URL (%r)" % (url,))
    for c in " \r\n\t":
        if c in url:
            raise UpdateError("the update URL contains a space or line break")
    rest = url[8:]
    i = rest.find("/")
    hostport, path = (rest, "/") if i < 0 else (rest[:i], rest[i:])
    host, port = hostport, 443
    j = hostport.rfind(":")
    if j >= 0:
        host = hostport[:j]
        try:
            port = int(hostport[j + 1:])
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            raise UpdateError("the update URL has a bad port (%s)" % hostport)
    if not host:
        raise UpdateError("the update URL has no host name")
    return host, port, path


def context(ca):
    """A client SSLContext that verifies against `ca` (DER or one PEM
    block)."""
    import ssl

    import ussl

    if not ca:
        raise UpdateError("no update server CA provisioned (update-ca.crt)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED  # PROTOCOL_TLS_CLIENT alone verifies nothing here
    try:
        ctx.load_verify_locations(cadata=ussl._der(ca, "update server CA"))
    except (ValueError, OSError) as e:  # not a certificate mbedTLS can parse
        raise UpdateError("the update server CA is unusable: %s" % e)
    return ctx


def describe(e, what, timeout_ms):
    """UpdateError for an exception raised while talking to the server."""
    if isinstance(e, UpdateError):
        return e
    if isinstance(e, asyncio.TimeoutError):
        return UpdateError("the %s stalled (no data for %d s)" % (what, timeout_ms // 1000))
    msg = str(e)
    if isinstance(e, ValueError):  # mbedTLS verify flags, as the port words them
        for needle, text in (
                ("not correctly signed", "certificate is not from the configured CA"),
                ("does not match", "certificate is for another host name"),
                ("has expired", "certificate has expired (or the clock is wrong)"),
                ("in the future", "certificate is not valid yet (or the clock is wrong)")):
            if needle in msg:
                return UpdateError("the update server's " + text)
        return UpdateError("the update server's certificate was not accepted: "
                           + " / ".join(l for l in msg.split("\n") if l))
    if isinstance(e, EOFError):
        return UpdateError("the %s closed the connection" % what)
    if isinstance(e, OSError):
        code = e.args[0] if e.args else 0
        if code == 111:
            return UpdateError("the update server refused the connection")
        # EPIPE, ECONNRESET, ECONNABORTED; mbedTLS: close notify, EOF,
        # receive failed, connection reset
        if code in (32, 104, 103, -0x7880, -0x7280, -0x4C, -0x50):
            return UpdateError("the %s cut the connection" % what)
        if code in (-2, -3, -202):
            return UpdateError("the update server's name was not found (DNS)")
        if code in (110, 113, 101, 118, 116):
            return UpdateError("the update server is unreachable (errno %d)" % code)
        if isinstance(code, int) and code < 0:
            return UpdateError("TLS error with the %s (mbedTLS -0x%04x)" % (what, -code))
        return UpdateError("network error with the %s: %s" % (what, msg))
    return UpdateError("the %s failed: %r" % (what, e))


async def _readinto(r, mv):
    while True:
        n = await r.readinto(mv)
        if n is not None:  # None: TLS wants more bytes first
            return n


class Response:
    """An open GET response: status, length (Content-Length or None), and
    readinto(mv) for the body; close() always."""

    def __init__(self, r, w, timeout_ms):
        self.r = r
        self.w = w
        self.timeout_ms = timeout_ms
        self.status = 0
        self.length = None

    async def readinto(self, mv):
        """Next body bytes into mv (a memoryview); 0 at the end. Each read
        is bounded by the timeout."""
        return await asyncio.wait_for_ms(_readinto(self.r, mv), self.timeout_ms)

    async def close(self):
        try:
            self.w.close()
            await asyncio.wait_for_ms(self.w.wait_closed(), 1000)
        except Exception:  # closing a broken connection: nothing to save
            pass


async def get(url, ctx, buf, ip="", timeout_ms=20000, agent="meter"):
    """GET url; returns (Response, body_start, body_end): the first body
    bytes are buf[body_start:body_end] (read together with the header).
    Raises UpdateError (describe()) on any failure, the connection closed."""
    host, port, path = split_url(url)
    resp = None
    try:
        r, w = await asyncio.wait_for_ms(
            asyncio.open_connection(ip or host, port, ssl=ctx, server_hostname=host),
            timeout_ms)
        resp = Response(r, w, timeout_ms)
        w.write(("GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: %s\r\nConnection: close\r\n\r\n"
                 % (path, host, agent)).encode())
        await asyncio.wait_for_ms(w.drain(), timeout_ms)  # drives the handshake
        mv = memoryview(buf)
        n = 0
        end = -1
        while end < 0:
            if n >= min(len(buf), _HEAD_MAX):
                raise UpdateError("the update server's response header is too long")
            k = await resp.readinto(mv[n:min(len(buf), _HEAD_MAX)])
            if not k:
                raise UpdateError("the update server closed the connection before answering")
            n += k
            end = bytes(mv[:n]).find(b"\r\n\r\n")
        _parse_head(resp, bytes(mv[:end]))
        return resp, end + 4, n
    except BaseException as e:
        if resp is not None:
            await resp.close()
        if isinstance(e, asyncio.CancelledError):
            raise
        raise describe(e, "update server", timeout_ms)


def _parse_head(resp, head):
    lines = head.split(b"\r\n")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise UpdateError("the update server did not answer in HTTP")
    try:
        resp.status = int(parts[1])
    except ValueError:
        raise UpdateError("the update server did not answer in HTTP")
    for line in lines[1:]:
        i = line.find(b":")
        if i < 0:
            continue
        name = line[:i].strip().lower()
        value = line[i + 1:].strip()
        if name == b"content-length":
            try:
                resp.length = int(value)
            except ValueError:
                raise UpdateError("the update server sent a bad Content-Length")
        elif name == b"transfer-encoding" and value.lower() != b"identity":
            raise UpdateError("the update server sent a chunked body to an HTTP/1.0 request")
