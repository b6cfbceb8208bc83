"""Drive the simulator (real firmware on the unix port) from a test."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import sim as simtool  # noqa: E402

import upy  # noqa: E402


def _kib(size):
    size = str(size).lower()
    return int(size[:-1]) * (1024 if size.endswith("m") else 1) if size[-1] in "km" \
        else int(size) // 1024


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# Every Sim made in this process, in order: tests/conftest.py attaches the
# log tails of a failed test's simulators to its report.
MADE = []


class Sim:
    """One simulator process with a control connection."""

    def __init__(self, state, *args, heap=None, profile="const", wait=True, mpy=False,
                 dev=False, script=None, bench_heap=False, service_pty=None, service_s=600,
                 image=None, boot_keys=None, launcher=False):
        self.state = str(state)
        self.port = free_port()
        self.log_path = os.path.join(self.state + ".log")
        self.args = ["--state", self.state, "--control", str(self.port), "--headless",
                     "--profile", profile] + list(args)
        # The device image at the device budget unless told otherwise: mpy
        # runs a .mpy deploy tree (True: build/sim; a str: that tree, built
        # with simtool.build_mpy_tree) on the same 32-bit runtime; dev the
        # sources on the 64-bit port. A heap above the budget is refused:
        # no test passes by being given more memory than the device has.
        self.runtime = simtool.runtime_of(mpy, dev)
        self.tree = mpy if isinstance(mpy, str) else None
        self.heap = heap or simtool.default_heap(self.runtime)
        # bench_heap: tools/bench.py's floor search only (test_memory checks
        # that no test uses it).
        if (self.runtime not in (simtool.DEV, simtool.MPY64) and not bench_heap
                and _kib(self.heap) > _kib(simtool.DEVICE_HEAP)):
            raise ValueError("heap %s is above the device budget %s" % (self.heap,
                                                                          simtool.DEVICE_HEAP))
        self.script = script
        # service_pty: run under tools/sim.py's launcher with a USB port at
        # that path (service mode, tools/flash.py); restarts stay in one Sim.
        self.service = ["--service-pty", str(service_pty), "--service-s", str(service_s)] \
            if service_pty else None
        # launcher: run under tools/sim.py, which restarts the firmware after
        # a reset or an unconfirmed image's crash (the bootloader's loop).
        self.launcher = launcher or bool(service_pty)
        # The device image runs from its app slot, as tools/sim.py's
        # bootloader starts it: image is the build flashed at the first
        # start (default tools/image.py's; test images: image.py --out),
        # boot_keys the PEM keys the bootloader checks signatures with.
        self.image = image
        self.boot_keys = list(boot_keys or ())
        self.proc = None
        self.sock = None
        MADE.append(self)
        self.start(wait)

    def start(self, wait=True):
        os.makedirs(self.state, exist_ok=True)
        self.log = open(self.log_path, "ab")
        cmd = self.argv()
        if self.launcher:
            cmd = [sys.executable, simtool.__file__, "--heap", self.heap] + self.args + \
                (["--dev"] if self.runtime == simtool.DEV else []) + (self.service or [])
            if self.image:
                cmd += ["--image", self.image]
            for k in self.boot_keys:
                cmd += ["--boot-key", k]
        elif self.runtime == simtool.IMAGE:  # the bootloader's part (tools/sim.py)
            simtool.flash_build(self.state, self.image or cmd[0])
            cmd[0] = simtool.boot_slot(self.state, simtool.trusted(self.boot_keys),
                                       log=lambda m: self.log.write(b"[boot] %s\n" % m.encode()))
            self.log.flush()
        self.proc = subprocess.Popen(cmd, env=simtool.env(self.runtime, self.tree),
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=self.launcher)
        if wait:
            self.connect()

    def wait_exit(self, timeout=30):
        """The firmware's exit code once it stopped by itself (3: a reset,
        after which start() is the device's reboot)."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("simulator did not stop within %d s:\n%s" % (timeout, self.output()))
        self._close()
        return rc

    def argv(self):
        return simtool.command(self.args, self.heap, self.runtime, self.script, self.tree)

    def connect(self, timeout=15):
        end = time.time() + timeout
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                self.rfile = self.sock.makefile("rb")
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("simulator exited %s:\n%s" % (self.proc.returncode, self.output()))
                if time.time() > end:
                    raise
                time.sleep(0.02)

    def cmd(self, *words):
        self.sock.sendall((" ".join(str(w) for w in words) + "\n").encode())
        line = self.rfile.readline()
        if not line:
            raise RuntimeError("simulator closed the connection:\n" + self.output())
        return json.loads(line)

    def state_(self):
        return self.cmd("state")

    def screen(self):
        return self.cmd("screen")["lines"]

    def login_code(self, timeout=10):
        """The Web Admin's one-time login code, read off the display (the
        measurement pages show it while one is valid): what the person at
        the device types after a login with the default password."""
        lines = self.wait_for(lambda: (lambda l: l if l[0].strip() == "WEB LOGIN CODE" else None)(
            self.screen()), timeout, "the login code on the display")
        code = lines[2].strip()
        if not (len(code) == 6 and code.isdigit()):
            raise AssertionError("no login code on the display: %s" % lines)
        return code

    def wait_for(self, pred, timeout=10, what="condition"):
        end = time.time() + timeout
        while True:
            v = pred()
            if v:
                return v
            if time.time() > end:
                raise AssertionError("timed out (%s s) waiting for %s; last value %r; screen:\n%s"
                                     "\nlog tail:\n%s" % (
                                         timeout, what, v, "\n".join(self.screen()),
                                         self.output()[-2000:]))
            time.sleep(0.05)

    def wait_screen(self, text, timeout=10):
        """Wait until text is on the screen; returns the screen's lines."""
        def seen():
            lines = self.screen()
            return lines if any(text in line for line in lines) else None

        return self.wait_for(seen, timeout, "%r on screen" % text)

    def tap(self, button, n=1, ms=120):
        """A finger: down for ms, then up for as long. 120 ms, a brisk human
        press: 80 ms left only 20 ms over what the debounce needs (40 ms
        stable plus up to one 20 ms poll) and lost presses on a loaded
        machine, where the display task's polls come late."""
        for _ in range(n):
            self.cmd("tap", button, ms)

    def enter_pin(self, pin):
        """Type a PIN on the PIN screen like a careful user: watch the
        selected digit (row 4) and press UP/DOWN until it shows the wanted
        one, then OK and see the digit masked. A press lost on a loaded
        machine is simply made again, as a person would."""
        start = self.screen()[4].split().count("*")  # digits already entered
        for pos, want in enumerate(pin, start):
            for _ in range(30):
                cells = self.screen()[4].split()
                if len(cells) == 4 and cells[pos] == want:
                    break
                cur = int(cells[pos]) if len(cells) == 4 and cells[pos].isdigit() else 0
                self.tap("up" if (int(want) - cur) % 10 <= 5 else "down")
            else:
                raise AssertionError("cannot set digit %d:\n%s" % (pos, "\n".join(self.screen())))
            self.tap("ok")
            if pos == 3:
                return
            for _ in range(3):
                try:
                    self.wait_for(lambda: self.screen()[4].split()[pos] == "*", timeout=1.5,
                                  what="digit accepted")
                    break
                except AssertionError:
                    self.tap("ok")

    def select(self, label, timeout=5):
        """In a menu: move the cursor to the entry containing label, press OK."""
        lines = self.screen()
        for _ in range(12):  # scroll until the entry is in view
            if any(label in l for l in lines):
                break
            self.tap("down")
            lines = self.screen()
        for _ in range(12):
            lines = self.screen()
            want = [i for i, l in enumerate(lines) if label in l]
            cur = [i for i, l in enumerate(lines) if l.startswith(">")]
            if want and cur and want[0] == cur[0]:
                self.tap("ok")
                return
            self.tap("down" if not cur or not want or want[0] > cur[0] else "up")
        raise AssertionError("cannot select %r:\n%s" % (label, "\n".join(lines)))

    def quit(self, timeout=15):
        """Orderly stop: the firmware saves its counters."""
        try:
            self.cmd("quit")
        except (OSError, RuntimeError):
            pass
        rc = self.proc.wait(timeout)
        self._close()
        return rc

    def kill(self):
        """Power cut."""
        if self.launcher:  # the launcher and the firmware or REPL it runs
            os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._close()

    def _close(self):
        if self.sock:
            self.sock.close()
            self.sock = None
        self.log.close()

    def output(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-5000:]
        except OSError:
            return ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.kill()


PROBE = """
import json
from meter.board.host import HostBoard
from meter.logstore import LogStore
from meter.energy import EnergyCounters
b = HostBoard(["x", "--state", %r, "--headless"] + %r)
s = LogStore(b.partition("counters"))
c = EnergyCounters(s, b, None, 3125)
try:
    vals = [int(x) for x in open(%r + "/ic-truth").read().split()]
except OSError:
    vals = [0] * 8
print(json.dumps({"uwh": c.uwh, "gen": c.generation, "status": c.status,
                  "damaged": s.damaged, "seq": s.seq, "truth": vals[:8],
                  "read": vals[8:] or vals[:8]}))
"""


def probe(state, *board_args):
    """Load the counters from a (stopped) simulator's flash with the
    firmware's own loader; also the simulated IC's truth and what was read
    out of its energy registers (meter/board/icsim.py)."""
    state = str(state)
    code = PROBE % (state, list(board_args), state)
    return json.loads(upy.exec_code(code).strip().splitlines()[-1])


def configure(state, *board_args, **values):
    """Store settings in a simulator's flash through the settings store."""
    upy.exec_code("""
from meter.board.host import HostBoard
from meter.logstore import LogStore
from meter.settings import Settings
b = HostBoard(["x", "--state", %r, "--headless"] + %r)
Settings(LogStore(b.partition("config"))).update(%r, "test")
""" % (str(state), list(board_args), values))
