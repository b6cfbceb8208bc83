"""Service mode: the serial REPL for the service centre, opened only by
someone at the device.

A production image keeps the REPL off while it meters (meter/buildcfg.py).
Service mode is entered by physical presence: OK+DOWN held for HOLD_MS on
the start-up screen (distinct from UP+DOWN, the PIN reset), then confirmed
on the display. The app then stops (counters saved, audited) and the board
opens the REPL for PERIOD_S: on the ESP32 main.py returns to the REPL with
Ctrl-C on again and a timer that resets the device when the period ends;
on the host tools/sim.py starts the unix port's REPL on a pseudo-terminal
(tools/servicepty.py) and restarts the firmware when the period ends. A
restart ends service mode either way.

tools/flash.py drives the session over mpremote: `service.call(name, ...)`
runs one command of meter/servicecmd.py or meter/wipe.py and prints one
line `@@{json}`. Each command checks active() first: on a development image
(REPL open without service mode) they refuse too.

This module is loaded only when OK+DOWN is held at start-up or in the
service session, never by a metering start-up (heap).
"""

import json
import time

from micropython import const

from meter.board.base import BTN_DOWN, BTN_OK, BTN_UP
from meter.errors import UserError

HOLD_MS = const(5000)
PERIOD_S = const(600)  # service mode ends by itself after 10 minutes
EXIT_CODE = const(4)  # App.quit code: "open the service REPL" (main.py, tools/sim.py)
MARK = "@@"  # prefix of the one result line tools/flash.py reads

_until = None  # ticks_ms when service mode ends; None = not in service mode
_board = None


class ServiceError(UserError):
    """A service command was refused; the message says why."""


# -- entering it: the start-up screen ----------------------------------------


class Hold:
    """Start-up screen while OK+DOWN is held: counts HOLD_MS down, then asks
    for confirmation; releasing early aborts. The UI's Confirm and Message
    screens are passed in (no import of meter.ui from here)."""

    def __init__(self, ui, app, confirm, message):
        self.ui = ui
        self.app = app
        self.confirm = confirm
        self.message = message
        self.done = False  # held long enough: waits for the release

    def render(self, s):
        b = self.ui.buttons
        ui = self.ui
        s.line(0, "SERVICE MODE", True)
        if self.done:
            # The question comes once the buttons are up, so that letting go
            # of them cannot answer it.
            if b.stable:
                s.line(2, "Release the")
                s.line(3, "buttons now")
                return
            ui.pop()
            if self.app.settings.locked:  # see begin(): say it before anyone agrees
                lines = ["SERVICE MODE?", "Module LOCKED:", "settings, keys", "are ERASED.",
                         "Counters kept."]
            else:
                lines = ["SERVICE MODE?", "Metering stops;", "USB service for",
                         "%d min, then" % (PERIOD_S // 60), "restart."]
            app = self.app
            ui.push(self.confirm(ui, lines, lambda: request(ui, app), "Yes, service"))
            return
        held = b.held_ms(BTN_OK | BTN_DOWN) if not b.stable & BTN_UP else 0
        if not held:
            ui.pop()
            ui.push(self.message(ui, ["SERVICE MODE", "Aborted."]))
            return
        left = HOLD_MS - held
        if left <= 0:
            self.done = True
            ui.dirty = True
            return
        s.line(2, "Keep holding")
        s.line(3, "OK+DOWN: %d s" % ((left + 999) // 1000))
        s.line(5, "Release = abort")

    def event(self, ev):
        pass


def request(ui, app):
    """Confirmed on the display: audit it, show it, stop the app (its
    orderly stop saves the counters); main.py then opens the REPL."""
    app.audit.append("display", "service-mode", "ok", "entered, %d s" % PERIOD_S)
    ui.push(Screen())
    app.quit(code=EXIT_CODE)


class Screen:
    """Shown while the app stops for service mode."""

    def render(self, s):
        s.line(0, "SERVICE MODE", True)
        s.line(2, "Metering off")
        s.line(3, "USB service")
        s.line(4, "open %d min" % (PERIOD_S // 60))
        s.line(7, "Restart = end", True)

    def event(self, ev):
        pass


# -- the session ---------------------------------------------------------------


def begin(seconds, board_):
    """Start the service period (the ESP32 board's service_repl();
    tools/service_repl.py on the host), before the REPL opens, on board_.

    A REPL can do anything, so it must never open on a locked meter's
    configuration: the module lock promises that nobody changes it (or
    reads its secrets) without the password, and service mode needs none.
    So a locked meter is wiped here first (meter/wipe.py; audited; counters
    and audit log kept): the service centre's cure for a forgotten lock
    password, and no way around the lock. The display said so before the
    person confirmed (Hold)."""
    global _until, _board
    _board = board_
    try:
        from meter.servicecmd import Device

        if Device(board()).settings.locked:
            from meter.wipe import wipe

            wipe(board(), "module locked at service entry")
    except Exception as e:  # never a REPL on a meter that is still locked
        print("service mode: the locked meter could not be wiped (%s); restarting" % e)
        board().reset()
    _until = time.ticks_add(time.ticks_ms(), seconds * 1000)
    print("SERVICE MODE for %d s: tools/flash.py status|provision|wipe" % seconds)


def active():
    return _until is not None and time.ticks_diff(_until, time.ticks_ms()) > 0


def left_s():
    return max(0, time.ticks_diff(_until, time.ticks_ms()) // 1000) if _until is not None else 0


def require():
    if not active():
        raise ServiceError("not in service mode (hold OK+DOWN for 5 s at start-up)")


def board():
    # set by begin(); not built here: this module sits below the board
    # package (meter/board/esp32svc.py calls begin), never above it
    if _board is None:
        raise ServiceError("service mode was not started on this board")
    return _board


def call(name, *args):
    """Run one service command and print its result as one `@@{json}` line:
    {"ok": result} or {"error": message}. Never raises (the REPL stays)."""
    try:
        require()
        if name == "wipe":
            from meter.wipe import wipe

            fn = wipe
        else:
            from meter import servicecmd

            fn = servicecmd.COMMANDS[name]
        r = fn(board(), *args)
        if name == "status":  # the session is this module's (servicecmd does not import it)
            r["service_left_s"] = left_s()
        out = {"ok": r}
    except Exception as e:  # every refusal goes back to the host as text
        out = {"error": str(e) or type(e).__name__}
    print(MARK + json.dumps(out))


def end():
    """Leave service mode now: audited, then a restart (the host's launcher
    restarts the firmware; the ESP32 resets)."""
    from meter.servicecmd import Device

    Device(board()).audit.append("usb", "service-mode", "ok", "ended")
    board().reset()
