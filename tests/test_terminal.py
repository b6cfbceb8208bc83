"""The simulator in a real terminal (issue 18): tmux is the terminal
emulator, at the classic 80x24, at full size and too small; what the
person sees is read back with `tmux capture-pane`. The simulator is started
as `tools/dev.py sim` starts it (tools/sim.py, which tells the firmware its
terminal's size)."""

import os
import shutil
import subprocess
import sys
import time

import pytest

from simctl import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIM = os.path.join(ROOT, "tools", "sim.py")


class Term:
    """One tmux server of its own (-L) with one window of cols x rows."""

    def __init__(self, tmp_path, cols, rows):
        if not shutil.which("tmux"):
            pytest.fail("tmux missing: `python3 tools/dev.py test` installs it")
        self.sock = "meter-test-%d-%d" % (os.getpid(), free_port())
        self.state = str(tmp_path / "dev")
        cmd = [sys.executable, SIM, "--state", self.state, "--web-port", str(free_port()),
               "--api-port", str(free_port())]
        self.tmux("new-session", "-d", "-x", str(cols), "-y", str(rows), "-s", "t",
                  " ".join(cmd))

    def tmux(self, *args):
        return subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True,
                              timeout=10)

    def lines(self):
        return self.tmux("capture-pane", "-p", "-t", "t").stdout.split("\n")

    def wait(self, text, timeout=20):
        end = time.time() + timeout
        while True:
            lines = self.lines()
            if any(text in line for line in lines):
                return lines
            if time.time() > end:
                raise AssertionError("%r not in the terminal:\n%s" % (text, "\n".join(lines)))
            time.sleep(0.2)

    def alive(self):
        return self.tmux("has-session", "-t", "t").returncode == 0

    def close(self):
        self.tmux("kill-server")


@pytest.fixture
def term(tmp_path, request):
    cols, rows = request.param
    t = Term(tmp_path, cols, rows)
    yield t
    t.close()


@pytest.mark.parametrize("term", [(80, 24)], indirect=True)
def test_80x24_shows_the_display_readable_and_keys_work(term):
    lines = term.wait("POWER W")
    top = lines.index("+----------------+  the simulated display as text;")
    box = lines[top + 1:top + 9]
    assert box[0].startswith("|POWER W       PF|"), "\n".join(lines)
    assert all(len(line) <= 80 for line in lines), "a line wrapped"
    assert all(l.startswith("|") and l[17:18] == "|" for l in box), "\n".join(lines)
    assert lines[top + 9] == "+----------------+", "\n".join(lines)
    assert top == 0, "the picture scrolled:\n" + "\n".join(lines)
    assert not any("\ufffd" in line for line in lines), "broken characters:\n" + "\n".join(lines)
    assert any(line.startswith("UP: w/") for line in lines), "no key help"
    term.tmux("send-keys", "-t", "t", "Enter")  # OK: the menu asks for a new PIN
    lines = term.wait("New PIN:")
    assert lines[0].startswith("+---") and lines[1].startswith("|SET PIN"), "\n".join(lines)
    term.tmux("send-keys", "-t", "t", "q")
    end = time.time() + 15
    while term.alive():
        assert time.time() < end, "q did not quit the simulator"
        time.sleep(0.2)
    with open(os.path.join(term.state, "log.txt")) as f:  # the log goes to its file
        log = f.read()
    assert "stopped; counters saved" in log, log


@pytest.mark.parametrize("term", [(130, 34)], indirect=True)
def test_full_size_terminal_shows_the_pixels(term):
    lines = term.wait("UP: w/")
    assert lines[32].startswith("UP: w/"), "\n".join(lines)
    assert any(ch in "".join(lines[:32]) for ch in "\u2580\u2584\u2588"), "no half blocks"
    assert all(len(line) <= 130 for line in lines)


@pytest.mark.parametrize("term", [(40, 10)], indirect=True)
def test_too_small_terminal_says_the_size_needed(term):
    lines = term.wait("needs at least")
    text = " ".join(l.strip() for l in lines)
    assert "This terminal is 40x10" in text and "128x33" in text, text
    assert "the simulated display needs at least 54x12" in text, "cut or broken words: " + text
