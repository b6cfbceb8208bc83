"""What goes over the wire for meter.web.server: the request head parsed
under limits, the head read into a request buffer without ever growing it,
a streamed body read as its handler asks (Body), responses gathered into
that buffer with the security headers (respond), the one-send answers for
requests that are refused or malformed, and the Host and Origin checks
both servers apply (request_refusal). No sockets of its own."""

from microdot import Response
from microdot.microdot import NoCaseDict

from meter import log, memory

MAX_HEAD = 1280
MAX_HEADERS = 32
MAX_URL = 512
MAX_BODY = 1024
READ = 512  # bytes read at a time
BUF = MAX_HEAD + 4 + MAX_BODY  # one request: memory.NET_BUF
METHODS = ("GET", "HEAD", "POST")

REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 411: "Length Required", 413: "Payload Too Large",
            414: "URI Too Long", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
            500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
            505: "HTTP Version Not Supported"}

SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; "
     "img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
     "base-uri 'none'"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),  # no-referrer would make browsers send Origin: null
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Connection", "close"),
)

BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
        b"Retry-After: 1\r\nConnection: close\r\n\r\nbusy\n")


class Reject(Exception):
    def __init__(self, status):
        self.status = status


def peer_ip(addr):
    """Client IP as text: the unix port gives a raw sockaddr, the ESP32 a tuple."""
    if isinstance(addr, (tuple, list)):
        return str(addr[0])
    try:
        if len(addr) >= 8 and addr[0] == 2:  # AF_INET sockaddr_in
            return "%d.%d.%d.%d" % (addr[4], addr[5], addr[6], addr[7])
    except TypeError:
        pass
    return "?"


def parse_head(head):
    """(method, url, version, headers) from the request head (bytes-like,
    without the blank line), or raise Reject with the status to answer."""
    try:
        text = str(head, "utf-8")
    except UnicodeError:
        raise Reject(400)
    lines = text.split("\r\n") if "\r\n" in text else text.split("\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise Reject(400)
    method, url, version = parts
    if not method or not method.isalpha() or not method.isupper():
        raise Reject(400)
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise Reject(505 if version.startswith("HTTP/") else 400)
    if method not in METHODS:
        raise Reject(405)
    if len(url) > MAX_URL:
        raise Reject(414)
    if not url.startswith("/"):
        raise Reject(400)
    for c in url:
        if not "!" <= c <= "~":
            raise Reject(400)
    if len(lines) - 1 > MAX_HEADERS:
        raise Reject(431)
    headers = NoCaseDict()
    for line in lines[1:]:
        i = line.find(":")
        if i <= 0:
            raise Reject(400)
        name = line[:i]
        if " " in name or "\t" in name or len(name) > 64:
            raise Reject(400)
        value = line[i + 1:].strip()
        for c in value:
            if c < " " and c != "\t":
                raise Reject(400)
        if name in headers:
            if name.lower() in ("content-length", "host", "cookie", "origin", "transfer-encoding"):
                raise Reject(400)  # ambiguous: smuggling or confusion
            continue
        headers[name] = value
    return method, url, version[5:], headers


class Out:
    """microdot writes the status line, every header and every body chunk
    with its own awrite(). This gathers them into the connection's buffer
    and sends it when full, so a page sent in many small pieces (chrome.page
    streams its parts) goes out in few sends and is never one big string.
    live=True (event streams): the head and each event are sent at once."""

    def __init__(self, writer, buf, live):
        self.w = writer
        self.buf = buf
        self.n = 0
        self.live = live
        self.body = False
        self.sent = False

    async def awrite(self, data):
        n, buf = self.n, self.buf
        k = len(data)
        if n + k > len(buf):
            await self._flush()
            n = 0
        if k > len(buf):
            self.sent = True
            self.w.write(data)
            await self.w.drain()
        else:
            buf[n:n + k] = data
            self.n = n + k
            if self.live and (self.body or data == b"\r\n"):
                self.body = True  # the head is complete: send it, then each event
                await self._flush()

    async def _flush(self):
        if self.n:
            self.sent = True
            self.w.write(memoryview(self.buf)[:self.n])
            self.n = 0
            await self.w.drain()

    async def aclose(self):
        await self._flush()


async def respond(res, writer, buf):
    """Send a microdot response with the security headers, gathered in buf."""
    if res is Response.already_handled:
        return
    h = res.headers
    for k, v in SECURITY_HEADERS:
        if k not in h:
            h[k] = v
    if res.status_code in REASONS and res.reason is None:
        res.reason = REASONS[res.status_code]
    # The request has been parsed out of buf: its bytes are the response's
    # send buffer now (no allocation per response). An event stream is sent
    # event by event; anything else in buffer-sized sends.
    out = Out(writer, buf, getattr(res.body, "__anext__", None) is not None)
    try:
        await res.write(out)
        await out.aclose()
    except MemoryError:
        # Nothing sent yet (a page up to one buffer is sent whole at the
        # end): answer 503 instead. Else the page is cut short; either way
        # it is counted, and the connection closes.
        memory.failed()
        if not out.sent:
            send_now(writer, BUSY)
        log.warn("web: out of memory answering %d" % res.status_code)


class Body:
    """A request body that its handler reads as it goes (the firmware
    upload: up to 1.5 MiB, never held whole): readinto(mv) hands out first
    the bytes that arrived with the head (buf[start:got]), then reads the
    socket, never past Content-Length (then 0, as at the end of a stream).
    None: woken without data (TLS), ask again."""

    def __init__(self, reader, buf, start, got, length):
        self.r = reader
        self.buf = buf
        self.i = start
        self.end = min(got, start + length)  # the body bytes already in buf
        self.left = length  # not handed out yet

    def spare(self):
        """The part of the connection's request buffer that a request head
        never reaches (1 KiB): a handler may read the body into it, so that
        an upload allocates no buffer of its own. Gone once the response
        is written into the buffer."""
        return memoryview(self.buf)[MAX_HEAD + 4:]

    async def readinto(self, mv):
        n = min(len(mv), self.left)
        if n <= 0:
            return 0
        k = self.end - self.i
        if k > 0:
            k = min(k, n)
            mv[:k] = memoryview(self.buf)[self.i:self.i + k]
            self.i += k
        else:
            k = await self.r.readinto(mv[:n])
            if not k:
                return k  # 0: the client went away; None: nothing yet
        self.left -= k
        return k


async def read_head(reader, conn, buf):
    """Reads the request head into buf (conn.got bytes are there already).
    Returns (length of the head, where the body starts), or None if the
    client closed first; Reject(431) if the head does not fit MAX_HEAD."""
    mv = memoryview(buf)
    limit = MAX_HEAD + 4
    seen = 0
    while True:
        got = conn.got
        if got:
            i = buf.find(b"\r\n\r\n", max(0, seen - 3), got)
            if i >= 0:
                return i, i + 4
            i = buf.find(b"\n\n", max(0, seen - 1), got)
            if i >= 0:
                return i, i + 2
            if got >= limit:
                raise Reject(431)
            seen = got
        k = await reader.readinto(mv[got:min(got + READ, limit)])
        if k is None:
            continue  # woken without data
        if not k:
            if got:
                raise Reject(400)
            return None
        conn.got = got + k


def error_bytes(status):
    text = REASONS.get(status, "error")
    return ("HTTP/1.0 %d %s\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: %d\r\n"
            "X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\nConnection: close"
            "\r\n\r\n%s\n" % (status, text, len(text) + 1, text)).encode()


def send_now(writer, data):
    """One non-blocking send (whatever fits), then close: never waits."""
    s = writer.s
    try:
        s.write(data)
    except Exception:
        pass
    try:
        s.close()
    except Exception:
        pass


def refuse(writer):
    """Answer 503 without waiting, close."""
    send_now(writer, BUSY)


def host_ok(host):
    """Only an IP literal or localhost as Host: a DNS name pointing at the
    device (DNS rebinding) is refused."""
    if not host or len(host) > 64:
        return False
    if host.startswith("["):
        i = host.find("]")
        if i < 0:
            return False
        rest = host[i + 1:]
        return rest == "" or (rest[0] == ":" and rest[1:].isdigit())
    name, _, port = host.partition(":")
    if port and not port.isdigit():
        return False
    if name == "localhost":
        return True
    parts = name.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not p.isdigit() or len(p) > 3 or int(p) > 255:
            return False
    return True


def request_refusal(req, strict):
    """The Host and Origin checks of both servers, in one place: None if the
    request may go on, "host" (answer 400: not addressed to an IP literal, a
    DNS-rebinding page) or "origin" (answer 403: sent by another site).

    A POST must carry this server's own Origin (browsers send one on every
    POST; a missing or "null" one is refused; a GET changes nothing, and
    the browser keeps its answer from another site's page). strict (the
    local API, used by apps, never by pages): any request that a browser
    marks as coming from another origin is refused, GET included: a present
    Origin must be our own, and Sec-Fetch-Site, if sent, must be
    same-origin or none (apps send neither)."""
    h = req.headers
    host = h.get("Host", "")
    if not host_ok(host):
        return "host"
    origin = h.get("Origin")
    if (origin is not None) if strict else req.method == "POST":
        if origin != "%s://%s" % (req.scheme, host):
            return "origin"
    if strict and h.get("Sec-Fetch-Site", "none") not in ("same-origin", "none"):
        return "origin"
    return None
