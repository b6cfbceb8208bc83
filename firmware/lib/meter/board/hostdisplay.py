"""The simulator's display (meter/board/host.py): a framebuffer drawn in the
terminal (meter/board/hostterm.py) and readable as text and PNG through the
control socket.
"""

import sys

import framebuf

W = 128
H = 64


class HostDisplay:
    def __init__(self, terminal, size=None):
        self.buf = bytearray(W * H // 8)
        self.fb = framebuf.FrameBuffer(self.buf, W, H, framebuf.MONO_VLSB)
        self.terminal = terminal
        self._shown = bytearray(len(self.buf))
        self.frames = 0
        self.mode = None
        if terminal:
            from meter.board import hostterm

            self.size = hostterm.parse(size)
            self.mode = hostterm.mode(self.size)
            sys.stdout.write("\x1b[2J\x1b[?25l")
            if self.mode == hostterm.SMALL:
                sys.stdout.write(hostterm.too_small(self.size))

    def show(self):
        if self._shown == self.buf:
            return
        self._shown[:] = self.buf
        self.frames += 1
        if self.terminal:
            self._draw()

    def _draw(self):
        from meter.board import hostterm

        if self.mode != hostterm.SMALL:
            cells = self.cells() if self.mode == hostterm.TEXT else None
            sys.stdout.write(hostterm.frame(self.fb.pixel, self.mode, cells))

    def cells(self):
        from meter.board import hostterm

        return hostterm.cells(self._shown)

    def text(self):
        """What the shown frame says, as 8 lines of 16 characters (inverted
        cells read as the same character)."""
        return ["".join(ch for ch, _ in row) for row in self.cells()]

    def png(self, path, scale=4):
        from meter.board.png import write_mono

        write_mono(path, self._shown, W, H, scale)
