"""The simulator's USB port: a pseudo-terminal that a REPL answers on only
in service mode (tools/sim.py --service-pty PATH).

The device's serial port exists whether or not anyone answers, so PATH (a
symlink to the slave end of a pty pair) exists from the start; while the
firmware meters, nothing reads it. When the firmware enters service mode it
stops and exits with code 4; sim.py then calls `ServicePty.serve()`, which
runs the unix port's REPL (`micropython -i tools/service_repl.py`) on a
second pty pair and relays bytes between the two until the REPL exits (a
restart: `service.end()`) or the service period ends (the REPL is killed,
as the ESP32's timer resets it). Then sim.py restarts the firmware.

Why two pairs: mpremote opens PATH like a serial port; the REPL process
needs its own terminal. Both slaves are raw (no newline translation), as a
UART is. The launcher keeps its own handle on PATH's slave, so a client
closing it does not hang up the line.
"""

import os
import select
import subprocess
import time
import tty

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "service_repl.py")


class ServicePty:
    def __init__(self, link):
        self.link = os.path.abspath(link)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        if os.path.lexists(self.link):
            os.remove(self.link)
        os.symlink(os.ttyname(self.slave), self.link)

    def _drain(self):
        """Bytes a client sent while nobody answered are lost, as on a UART."""
        while select.select([self.master], [], [], 0)[0]:
            os.read(self.master, 4096)

    def serve(self, cmd, env, seconds):
        """Run the REPL process `cmd` (its argv after the interpreter's
        options: SCRIPT SECONDS board-options) on the line for at most
        `seconds`; returns its exit code (None when the period ended)."""
        m, s = os.openpty()
        tty.setraw(s)
        self._drain()
        # Same process group as the launcher: killing the simulator's group
        # (tests/simctl.py) ends the REPL too.
        proc = subprocess.Popen(cmd, stdin=s, stdout=s, stderr=s, env=env)
        os.close(s)
        end = time.monotonic() + seconds
        try:
            while proc.poll() is None and time.monotonic() < end:
                r = select.select([m, self.master], [], [], 0.2)[0]
                for fd in r:
                    try:
                        data = os.read(fd, 4096)
                    except OSError:  # the REPL closed its terminal
                        data = b""
                    if data:
                        os.write(self.master if fd == m else m, data)
            return proc.poll()
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            os.close(m)

    def close(self):
        if os.path.islink(self.link):
            os.remove(self.link)
        os.close(self.master)
        os.close(self.slave)
