"""The host board: the simulator's hardware, for the MicroPython unix port.

- metering IC: IcSim, the ATM90E32AS modelled at register level;
- display: a framebuffer drawn in the terminal (half blocks; in a terminal
  smaller than 128x33 its character grid: meter/board/hostterm.py) and
  readable as text and PNG through the control socket;
- buttons: keys (w/s/enter, arrows) or the control socket;
- partitions: files in the state directory, with NOR-flash rules; the
  app slots and otadata too (ota(), meter/board/otahost.py);
- Wi-Fi: simulated below the board interface (HostWifi): networks in
  range with their keys (DIR/wifi-sim.json overrides the default list), a
  join that succeeds only with the right key, and the setup access point;
- the Web Admin listens on 127.0.0.1, port --web-port (default 8080).

Options (sys.argv): --state DIR (keeps the simulated flash; default a fresh
temporary directory, so two instances can run side by side), --profile NAME,
--control PORT (line-based JSON control socket on 127.0.0.1), --headless
(no terminal drawing or keys), --fault MODE, --truth (the IC keeps its
reference energy in DIR/ic-truth), --flash-delay-us N (slow flash),
--encrypted-flash (erased flash reads as noise, as with ESP32 flash
encryption on), --web-port N (the Web Admin's port), --api-port N (the
local API's port, default 8081), --term COLSxROWS (the terminal's size,
from tools/sim.py).
"""

import io
import json
import os
import sys
import time

import framebuf
from micropython import const

from meter.board.base import BTN_DOWN, BTN_OK, BTN_UP, Board
from meter.board.flashfile import FilePartition
from meter.board.hostbtn import HostButtons
from meter.board.hostwifi import HostWifi

W = 128
H = 64
PARTITIONS = {"counters": 64 * 1024, "config": 16 * 1024, "audit": 16 * 1024,
              "state": 16 * 1024, "tokens": 16 * 1024}
_BTN = {"up": BTN_UP, "down": BTN_DOWN, "ok": BTN_OK}
_REPLY = const(2048)  # largest control-socket reply (the state snapshot is ~1.2 KB)


def _opts(argv):
    o = {"state": None, "profile": "house", "control": 0, "headless": False,
         "fault": None, "truth": False, "flash_delay_us": 0, "encrypted_flash": False,
         "web_port": 8080, "api_port": 8081, "term": None}
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in ("--headless", "--truth", "--encrypted-flash"):
            o[a[2:].replace("-", "_")] = True
        elif a.startswith("--") and i + 1 < len(argv):
            key = a[2:].replace("-", "_")
            if key not in o:
                raise SystemExit("unknown option " + a)
            v = argv[i + 1]
            o[key] = int(v) if key in ("control", "flash_delay_us", "web_port",
                                              "api_port") else v
            i += 1
        else:
            raise SystemExit("unknown option " + a)
        i += 1
    return o


class HostBoard(Board):
    name = "host"
    commands = True  # the control socket (--control) takes add_command()'s

    def __init__(self, argv):
        o = self.opts = _opts(argv)
        if o["state"] is None:
            o["state"] = "/tmp/meter-sim-" + "".join("%02x" % b for b in os.urandom(4))
        self.files = o["state"]
        try:
            os.mkdir(self.files)
        except OSError:
            pass
        self._parts = {}
        self._ota = None
        self._ic = None
        self._display = None
        self.btn = HostButtons()
        self._wifi = HostWifi(self.files + "/wifi-sim.json")
        # the Web Admin's address (meter/web): loopback only, never exposed
        self.http_bind = ("127.0.0.1", o["web_port"])
        self.api_bind = ("127.0.0.1", o["api_port"])  # the local API (meter/api.py)
        self._commands = {}
        self.interactive = not o["headless"] and _isatty()
        if self.interactive:  # the terminal shows the display: log to a file
            from meter import log

            log.quiet = True
            log.to_file(self.files + "/log.txt")

    # -- hardware ------------------------------------------------------------

    def meter_spi(self):
        if self._ic is None:
            from meter.board.icsim import IcSim

            truth = self.files + "/ic-truth" if self.opts["truth"] else None
            self._ic = IcSim(profile=self.opts["profile"], truth_path=truth)
            if self.opts["fault"]:
                self._ic.set_fault(self.opts["fault"])
        return self._ic

    def display(self):
        if self._display is None:
            self._display = HostDisplay(self.interactive, self.opts["term"])
        return self._display

    def buttons(self):
        return self.btn

    def partition(self, label):
        p = self._parts.get(label)
        if p is None:
            p = FilePartition(self.files + "/" + label + ".bin", PARTITIONS[label],
                              delay_us=self.opts["flash_delay_us"],
                              erased_noise=self.opts["encrypted_flash"])
            self._parts[label] = p
        return p

    def ota(self):
        """The app slots (meter/board/otahost.py), built on first use."""
        o = self._ota
        if o is None:
            from meter.board.otahost import HostOta

            o = self._ota = HostOta(self.files, delay_us=self.opts["flash_delay_us"])
        return o

    def wifi(self):
        return self._wifi

    def time(self):
        return int(time.time()) + _EPOCH_OFFSET

    def time_valid(self):
        return True

    def watchdog(self, timeout_ms):
        return HostWatchdog(timeout_ms)

    def reset(self):
        # tools/sim.py restarts the firmware on this exit code, as a reboot.
        sys.exit(3)

    def service_repl(self, seconds):
        # tools/sim.py opens the REPL on a pty (tools/servicepty.py) on this code.
        sys.exit(4)

    def slots(self):
        return {"running": "host", "next": None, "otadata": None, "ota_seq": None}

    def serial(self):
        path = self.files + "/serial"
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            s = "SIM-" + "".join("%02X" % b for b in os.urandom(4))
            with open(path, "w") as f:
                f.write(s)
            return s

    def security_state(self):
        return {"secure_boot": None, "flash_encryption": None}

    # -- simulator services --------------------------------------------------

    def add_command(self, name, fn):
        """Expose fn(args) -> JSON-able on the control socket (used by the
        app for state/quit)."""
        self._commands[name] = fn

    def services(self):
        s = []
        if self.opts["control"]:
            s.append(("control", self._control_server))
        if self.interactive:
            s.append(("keys", self._keys))
        return s

    async def _keys(self):
        # only in a terminal (never headless): its code loads with the terminal's
        from meter.board import hostterm

        await hostterm.keys(self, _restore)

    async def _control_server(self):
        import asyncio

        srv = await asyncio.start_server(self._client, "127.0.0.1", self.opts["control"])
        try:
            while True:
                await asyncio.sleep(3600)
        finally:
            srv.close()

    async def _client(self, reader, writer):
        # Replies are serialised into one buffer allocated per client, not
        # built as strings: the control socket must keep answering on a
        # fragmented heap at the device budget (it is how tests watch it).
        buf = bytearray(_REPLY)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    out = await self._command(line.decode().split())
                except Exception as e:
                    out = {"error": repr(e)}
                w = _Reply(buf)
                try:
                    json.dump(out, w)
                except (MemoryError, ValueError) as e:
                    w = _Reply(buf)
                    json.dump({"error": repr(e)}, w)
                w.write(b"\n")
                writer.write(memoryview(buf)[:w.n])
                await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()

    async def _command(self, words):
        import asyncio

        if not words:
            return {"error": "empty"}
        cmd, args = words[0], words[1:]
        if cmd in ("press", "release", "tap"):
            mask = _BTN[args[0]]
            b = self.btn
            if cmd == "release":
                b.set(b.level & ~mask)
            else:
                b.set(b.level | mask)
                if cmd == "tap":  # a finger: down, then up for as long
                    await b.tap(mask, int(args[1]) if len(args) > 1 else 120)
            return {"ok": True}
        if cmd == "screen":
            return {"lines": self.display().text()}
        if cmd == "png":
            self.display().png(args[0])
            return {"ok": True}
        if cmd == "fault":
            self.meter_spi().set_fault(None if args[0] == "none" else args[0])
            return {"ok": True}
        fn = self._commands.get(cmd)
        if fn is None:
            return {"error": "unknown command " + cmd}
        r = fn(args)
        if isinstance(r, _COROUTINE):  # an async command
            r = await r
        return r


_restore = []  # what puts the terminal back (hostterm.keys adds to it)


_COROUTINE = type((lambda: (yield))())  # what an async command returns (a generator)


class _Reply(io.IOBase):
    def __init__(self, buf):
        self.buf, self.n = buf, 0

    def write(self, data):
        k = len(data)
        if self.n + k > len(self.buf):
            raise ValueError("reply too long")
        self.buf[self.n:self.n + k] = data
        self.n += k
        return k


def restore_terminal():
    while _restore:
        _restore.pop()()
    if _isatty():
        sys.stdout.write("\x1b[?25h\n")


def _isatty():
    try:
        import termios

        termios.tcgetattr(0)
        return True
    except Exception:
        return False


# The unix port counts from 1970, the ESP32 from 2000: normalise to 1970.
_EPOCH_OFFSET = 0 if time.gmtime(0)[0] == 1970 else 946684800


class HostWatchdog:
    """Counts the resets a real watchdog would have done (loop stalled)."""

    def __init__(self, timeout_ms):
        self.timeout = timeout_ms
        self.last = time.ticks_ms()
        self.would_reset = 0

    def feed(self):
        now = time.ticks_ms()
        if time.ticks_diff(now, self.last) > self.timeout:
            self.would_reset += 1
            from meter import log  # the log, not over the terminal's display

            log.warn("watchdog: fed after %d ms (device would reset)" % time.ticks_diff(now, self.last))
        self.last = now


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
