"""The display PIN's screens: asking for it at menu entry (or setting the
first one), the lock-out after wrong PINs, changing it, and the start-up
reset of a forgotten one. The PIN rules themselves are meter.pin's
(PinGuard); this module only leads the user through them on the display
stack `ui` (meter.ui), with meter.screens' widgets.
"""

from meter import buttons as btn
from meter.errors import UserError
from meter.screens import Message, PinEntry, refused


class Lockout:
    """Shown while wrong PINs lock entry; goes on to PIN entry when over."""

    def __init__(self, ui, pin, then):
        self.ui = ui
        self.pin = pin
        self.then = then

    def render(self, s):
        wait = self.pin.wait_s()
        if not wait:
            self.ui.pop()
            self.then()
            return
        s.line(0, "PIN LOCKED", True)
        s.line(2, "Too many wrong")
        s.line(3, "PINs. Try again")
        s.line(4, "in %d s" % wait)
        s.line(7, "OK: back", True)

    def event(self, ev):
        if ev in (btn.OK, btn.OK_LONG):
            self.ui.home()


def enter(ui, pin, opened):
    """The Settings entry: the PIN (or a first one), then opened()."""
    def again():
        enter(ui, pin, opened)

    def check(p):
        if pin.check(p):
            ui.stack.pop()
            opened()
        elif pin.wait_s():
            ui.replace(Lockout(ui, pin, again))
        else:
            ui.top().note = "Wrong PIN"

    if pin.wait_s():
        ui.push(Lockout(ui, pin, again))
    elif not pin.is_set():
        _new(ui, pin, "SET PIN", "New PIN:", "Repeat PIN:", opened, push=True)
    else:
        ui.push(PinEntry(ui, "SETTINGS", "Enter PIN:", check))


def _new(ui, pin, title, ask, repeat, done, note="", push=False):
    """A new PIN, typed twice; stored, then done()."""
    def first(p):
        def second(p2):
            ui.stack.pop()
            if p2 != p:
                _new(ui, pin, title, ask, repeat, done, "PINs differ", push=True)
            elif store(ui, pin, p2):
                done()

        ui.replace(PinEntry(ui, title, repeat, second))

    scr = PinEntry(ui, title, ask, first, note)
    if push:
        ui.push(scr)
    else:
        ui.replace(scr)


def store(ui, pin, p):
    """Store PIN p; on refusal (the module lock) say why. True if stored."""
    try:
        pin.set(p, "menu")
        return True
    except UserError as e:
        refused(ui, "PIN NOT SET", e)
        return False


def change(ui, pin, locked):
    """Menu > Security > Change PIN: the current PIN, then a new one twice."""
    if locked:  # say so before asking for three PINs
        ui.push(Message(ui, ["NOT CHANGED", "module locked"]))
        return

    def current(p):
        if not pin.check(p):
            if pin.wait_s():
                ui.home()  # locked out: leave the menu altogether
                ui.enter_settings()
            else:
                ui.top().note = "Wrong PIN"
            return
        _new(ui, pin, "CHANGE PIN", "New PIN:", "Repeat new PIN:",
             lambda: ui.push(Message(ui, ["PIN CHANGED"])))

    ui.push(PinEntry(ui, "CHANGE PIN", "Current PIN:", current))


def reset(ui, pin):
    """The start-up reset of a forgotten PIN (confirmed on the display)."""
    try:
        pin.clear("startup")
    except UserError as e:
        refused(ui, "PIN RESET FAILED", e)
        return
    ui.push(Message(ui, ["PIN RESET", "PIN cleared. Set a new one at next menu entry."]))
