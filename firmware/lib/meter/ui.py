"""The display task: a stack of screens over the measurement pages.

It knows nothing of the application: App (through meter.home) passes in
the panel, the buttons, the bottom screen (the public measurement pages),
the root menu, the PIN guard and the audit log. The bottom of the stack is
always that home screen; the menu sits above it once the PIN was entered
(meter.pinflow). The menu session ends when the user leaves to the pages,
or after IDLE_MS without a button press.

Buttons in the menu: UP/DOWN move, OK selects, a long OK goes back. In PIN
entry UP/DOWN change the selected digit and OK moves to the next one. Every
screen says so in the same words at the bottom (meter.screens).
"""

import asyncio
import time

from micropython import const

from meter import buttons as btn
from meter import log

REFRESH_MS = const(250)
IDLE_MS = const(60000)
_W = const(128)  # panel width in pixels; a row is 8 pixels high
_COLS = const(16)


class Grid:
    """The 16x8 text grid on a panel's framebuffer."""

    def __init__(self, panel):
        self.d = panel
        self.fb = panel.fb

    def clear(self):
        self.fb.fill(0)

    def line(self, row, text, inverse=False):
        fb = self.fb
        y = row * 8
        fb.fill_rect(0, y, _W, 8, 1 if inverse else 0)
        fb.text(text[:_COLS], 0, y, 0 if inverse else 1)

    def show(self):
        self.d.show()


class Ui:
    """home(ui) -> the bottom screen; menu(ui) -> the root menu, opened
    after the PIN; pin() -> the PIN guard (meter.pin, built when first
    needed); first(ui) -> a screen shown once over home at start (None:
    none). `buttons` is the debounced meter.buttons.Buttons."""

    def __init__(self, panel, buttons, home, menu, pin, audit, first=None):
        self.screen = Grid(panel)
        self.buttons = buttons
        self.menu = menu
        self._pin = pin
        self.audit = audit
        self.stack = [home(self)]
        # the start-up screen: never left for idleness (it ends itself)
        self.first = first(self) if first is not None else None
        if self.first is not None:
            self.stack.append(self.first)
        self.session = False
        self.last_input = time.ticks_ms()
        self.dirty = True

    @property
    def pin(self):
        return self._pin()

    # navigation
    def push(self, scr):
        self.stack.append(scr)
        self.dirty = True

    def pop(self):
        if len(self.stack) > 1:
            self.stack.pop()
        if len(self.stack) == 1:
            self.end_session()
        self.dirty = True

    def replace(self, scr):
        """The top screen gives way to scr (a step of a flow)."""
        self.stack.pop()
        self.push(scr)

    def home(self):
        del self.stack[1:]
        self.end_session()
        self.dirty = True

    def end_session(self):
        if self.session:
            self.session = False
            self.audit.append("menu", "session-end", "ok")

    def cancel_pin(self):
        # Back out of PIN entry: to the menu if we are in a session (change
        # PIN), else to the pages.
        if self.session:
            from meter.screens import Menu

            while not isinstance(self.stack[-1], Menu):
                self.stack.pop()
            self.dirty = True
        else:
            self.home()

    def top(self):
        return self.stack[-1]

    # the Settings entry
    def enter_settings(self):
        from meter import pinflow  # loaded when someone wants the menu

        pinflow.enter(self, self.pin, self.open_menu)

    def open_menu(self):
        self.session = True
        self.audit.append("menu", "session-start", "ok")
        self.push(self.menu(self))

    # the task
    def render(self):
        s = self.screen
        s.clear()
        self.top().render(s)
        s.show()
        self.dirty = False

    async def run(self):
        since = 0
        while True:
            ev = self.buttons.poll()
            now = time.ticks_ms()
            if ev:
                self.last_input = now
                try:
                    self.top().event(ev)
                except Exception as e:  # the UI's boundary: a fault must not kill it
                    from meter.screens import refused

                    self.home()
                    refused(self, "ERROR", e)  # logged; the user reads "internal error"
                self.dirty = True
            elif len(self.stack) > 1 and time.ticks_diff(now, self.last_input) > IDLE_MS:
                if self.top() is self.first:
                    pass
                elif self.first is not None and self.first not in self.stack:
                    self.first = None  # it has ended: let it go (heap)
                else:
                    self.home()  # idle: leave the menu, end the session
            if self.dirty or since >= REFRESH_MS:
                self.render()
                since = 0
            await asyncio.sleep_ms(btn.POLL_MS)
            since += btn.POLL_MS
