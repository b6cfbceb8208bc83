"""The simulator's display in a terminal, sized to the terminal.

tools/sim.py passes the terminal's size (--term COLSxROWS). The 128x64
display needs 128 columns x 33 rows at full size (a half block per two
pixels, plus the key line). Scaled down any further, its 8x8 characters
stop being readable, so a smaller terminal (the classic 80x24) shows the
display as what it is made of: its 16x8 character grid, read back from the
pixels, inverted rows in reverse video, in a frame (54x12 with the key
line). Below that the simulator says which size it needs instead of
drawing a wrapped, unreadable picture. Every line is cleared to its end and
the last one ends without a newline, so nothing wraps or scrolls.
"""

import sys

import framebuf
from micropython import const

from meter.board.base import BTN_DOWN, BTN_OK, BTN_UP

FULL = "full"
TEXT = "text"
SMALL = "small"

_W = const(128)
_H = const(64)
_KEYS = "UP: w/\u2191  DOWN: s/\u2193  OK: enter  UP+DOWN 6 s: b  quit: q"
# (columns, rows) each mode needs: the picture plus the key line
NEED = {FULL: (_W, _H // 2 + 1), TEXT: (len(_KEYS), 12)}
# half blocks: upper pixel bit 0, lower bit 1
_HALF = " \u2580\u2584\u2588"


def parse(size):
    """'COLSxROWS' -> (cols, rows); None when not given or not a size."""
    try:
        c, r = size.lower().split("x")
        return int(c), int(r)
    except (AttributeError, ValueError):
        return None


def mode(size):
    """The largest drawing that fits the terminal (full when unknown)."""
    if size is None:
        return FULL
    for m in (FULL, TEXT):
        if size[0] >= NEED[m][0] and size[1] >= NEED[m][1]:
            return m
    return SMALL


def too_small(size):
    w, h = NEED[TEXT]
    fw, fh = NEED[FULL]
    from meter.text import wrap  # on word boundaries at this terminal's width

    msg = ("This terminal is %dx%d: the simulated display needs at least %dx%d (%dx%d at "
           "full size). Resize it and restart the simulator; it keeps running meanwhile "
           "(q quits)." % (size[0], size[1], w, h, fw, fh))
    return "\x1b[H\x1b[2J" + "\r\n".join(wrap(msg, max(8, size[0] - 1)))


def frame(px, m, cells=None):
    """The picture as one string of terminal output. px: fb.pixel; cells
    (TEXT): rows of (character, inverse) read back from the pixels."""
    out = ["\x1b[H"]
    if m == TEXT:
        out.append("+----------------+  the simulated display as text;\x1b[K\r\n")
        for r, row in enumerate(cells):
            out.append("|")
            inv = False
            for ch, i in row:
                if i != inv:
                    out.append("\x1b[7m" if i else "\x1b[27m")
                    inv = i
                out.append(ch)
            out.append("\x1b[27m|" if inv else "|")
            out.append(" a 128x33 terminal shows pixels" if r == 0 else "")
            out.append("\x1b[K\r\n")
        out.append("+----------------+\x1b[K\r\n\x1b[K\r\n")
    else:
        for y in range(0, _H, 2):
            row = []
            for x in range(_W):
                row.append(_HALF[px(x, y) | (px(x, y + 1) << 1)])
            out.append("".join(row))
            out.append("\x1b[K\r\n")
    out.append(_KEYS + "\x1b[K")  # no newline: the last row never scrolls
    return "".join(out)


def cells(buf):
    """A MONO_VLSB 128x64 frame as 8 rows of 16 (character, inverse), read
    back from the pixels (text drawn on the 8x8 grid; "?" for anything
    else): the control socket's `screen` and the TEXT drawing."""
    glyphs = _glyphs()
    rows = []
    for page in range(_H // 8):
        row = []
        for col in range(_W // 8):
            i = page * _W + col * 8
            cell = bytes(buf[i:i + 8])
            ch = glyphs.get(cell)
            inv = False
            if ch is None:
                ch = glyphs.get(bytes(b ^ 0xFF for b in cell))
                inv = ch is not None
            row.append((ch or "?", inv))
        rows.append(row)
    return rows


_glyph_map = {}


def _glyphs():
    if not _glyph_map:
        b = bytearray(8)
        f = framebuf.FrameBuffer(b, 8, 8, framebuf.MONO_VLSB)
        for c in range(32, 127):
            f.fill(0)
            f.text(chr(c), 0, 0, 1)
            _glyph_map.setdefault(bytes(b), chr(c))
    return _glyph_map


async def keys(board, restore):
    """Keys in the terminal for the host board's buttons: w/up = UP, s/down
    = DOWN, enter/space/o = OK (a short press each), b = hold UP+DOWN 6 s,
    q = quit. restore: where to leave what puts the terminal back."""
    import asyncio
    import termios

    fd = 0
    old = termios.tcgetattr(fd)
    termios.setraw(fd)
    restore.append(lambda: termios.tcsetattr(fd, termios.TCSANOW, old))
    reader = asyncio.StreamReader(getattr(sys.stdin, "buffer", sys.stdin))
    esc = b""
    while True:
        ch = await reader.read(1)
        if not ch:
            return
        if isinstance(ch, str):
            ch = ch.encode()
        if esc or ch == b"\x1b":
            esc += ch
            if len(esc) < 3:
                continue
            ch = {b"\x1b[A": b"w", b"\x1b[B": b"s"}.get(esc, b"")
            esc = b""
        k = ch.lower()
        if k in (b"q", b"\x03"):
            fn = board._commands.get("quit")  # the app's, as the control socket's quit
            if fn:
                fn([])
            return
        mask = {b"w": BTN_UP, b"s": BTN_DOWN, b"o": BTN_OK, b" ": BTN_OK,
                b"\r": BTN_OK, b"\n": BTN_OK}.get(k)
        hold = 120
        if k == b"b":
            mask, hold = BTN_UP | BTN_DOWN, 6000
        if mask:
            b = board.btn
            b.set(b.level | mask)
            await asyncio.sleep_ms(hold)
            b.set(b.level & ~mask)

