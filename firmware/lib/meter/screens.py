"""The display's toolkit: the generic screens (messages, questions,
read-only lines, menus, PIN entry). It knows nothing of the application:
meter.ui stacks the screens, meter.menu, meter.home and the features fill
them. Loaded when the first of them is shown, not for the measurement pages
(heap at start-up).

A screen has render(s) (s: meter.ui.Grid, the 16x8 text grid) and
event(ev) (meter.buttons). Its `ui` is the display's stack: push(), pop(),
home(), top(), cancel_pin().

Every message goes through meter.text.wrap (word boundaries) and scrolls
with UP/DOWN when it is longer than its rows, so no screen cuts a word or
drops a line. The bottom rows say what the buttons do, in the same words
everywhere: "UP/DN", "OK:<what>", and "hold OK: back" / "hold OK: cancel"
(a choice that a long OK also makes says "(hold OK)").
"""

from meter import buttons as btn
from meter import log
from meter.errors import UserError, message
from meter.text import wrap, wrap_all

def refused(ui, title, e):
    """The display's edge of the one error type (meter.errors): a
    UserError's own words under `title`, wrapped; anything else is a
    fault (the display task's boundary, meter.ui): logged, and the user
    reads "internal error"."""
    if not isinstance(e, UserError):
        log.exc("ui: " + title, e)
    ui.push(Message(ui, [title, message(e)]))


def _text(s, lines, top, rows, off):
    """lines in rows top.. (rows of them) from line off; when they do not
    fit, the last row says UP/DOWN scroll. Returns the clamped offset."""
    if len(lines) > rows:
        rows -= 1
        off = max(0, min(off, len(lines) - rows))
        s.line(top + rows, "UP/DN: more %d/%d" % (off // rows + 1, (len(lines) + rows - 1) // rows))
    else:
        off = 0
    for i, text in enumerate(lines[off:off + rows]):
        s.line(top + i, text)
    return off


def _scroll(scr, ev):
    if ev == btn.DOWN:
        scr.off += 1
    elif ev == btn.UP:
        scr.off = max(0, scr.off - 1)


class Message:
    """A title and a message (wrapped); OK (or a long OK) continues with
    then()."""

    def __init__(self, ui, lines, then=None):
        self.ui = ui
        self.lines = lines
        self.then = then
        self.off = 0

    def render(self, s):
        title = wrap(self.lines[0])
        for i, text in enumerate(title):
            s.line(i, text, True)
        self.off = _text(s, wrap_all(self.lines[1:]), len(title), 7 - len(title), self.off)
        s.line(7, "OK: continue", True)

    def event(self, ev):
        if ev in (btn.OK, btn.OK_LONG):
            self.ui.pop()
            if self.then:
                self.then()
        else:
            _scroll(self, ev)


class Confirm:
    """A question with No/Yes; No is selected first. OK chooses, a long OK
    is No. A question too long for the rows above the choice is shown whole
    first ("OK: continue"), then asked with its title."""

    ROWS = 5  # of text above the choice

    def __init__(self, ui, lines, on_yes, yes="Yes"):
        self.ui = ui
        self.lines = lines
        self.on_yes = on_yes
        self.yes_label = yes
        self.yes = False
        self.off = 0
        self.reading = len(self._text()[1]) > self.ROWS

    def _text(self):
        title = wrap(self.lines[0])
        return title, title + wrap_all(self.lines[1:])

    def render(self, s):
        title, text = self._text()
        if self.reading:
            for i in range(len(title)):
                s.line(i, title[i], True)
            self.off = _text(s, text[len(title):], len(title), 6 - len(title), self.off)
            s.line(6, "hold OK: cancel")
            s.line(7, "OK: continue", True)
            return
        if len(text) > self.ROWS:
            text = title  # read in full already: the title reminds
        for i, t in enumerate(text[:self.ROWS]):
            s.line(i, t, i < len(title))
        s.line(5, "  No (hold OK)", not self.yes)
        s.line(6, "  " + self.yes_label, self.yes)
        s.line(7, "UP/DN  OK:choose", True)

    def event(self, ev):
        if ev == btn.OK_LONG:
            self.ui.pop()
        elif self.reading:
            if ev == btn.OK:
                self.reading = False
            else:
                _scroll(self, ev)
        elif ev in (btn.UP, btn.DOWN):
            self.yes = not self.yes
        elif ev == btn.OK:
            self.ui.pop()
            if self.yes:
                self.on_yes()


class Info:
    """Read-only lines (a function, so values stay current; wrapped, UP/DOWN
    scroll); OK goes back."""

    def __init__(self, ui, title, lines_fn):
        self.ui = ui
        self.title = title
        self.lines_fn = lines_fn
        self.off = 0

    def render(self, s):
        s.line(0, self.title, True)
        self.off = _text(s, wrap_all(self.lines_fn()), 1, 6, self.off)
        s.line(7, "OK: back", True)

    def event(self, ev):
        if ev in (btn.OK, btn.OK_LONG):
            self.ui.pop()
        else:
            _scroll(self, ev)


class Menu:
    """A list of (label, action) entries; action() does the entry's job."""

    def __init__(self, ui, title, items_fn):
        self.ui = ui
        self.title = title
        self.items_fn = items_fn  # a function: entries appear as features do
        self.sel = 0

    def items(self):
        return self.items_fn() + [("< Back", self.ui.pop)]

    def render(self, s):
        items = self.items()
        self.sel = min(self.sel, len(items) - 1)
        s.line(0, self.title, True)
        top = max(0, self.sel - 4)
        for row, (label, _) in enumerate(items[top:top + 5]):
            sel = top + row == self.sel
            s.line(1 + row, (">" if sel else " ") + label, sel)
        s.line(6, "hold OK: back")
        s.line(7, "UP/DN  OK:select", True)

    def event(self, ev):
        items = self.items()
        if ev == btn.DOWN:
            self.sel = (self.sel + 1) % len(items)
        elif ev == btn.UP:
            self.sel = (self.sel - 1) % len(items)
        elif ev == btn.OK:
            items[self.sel][1]()
        elif ev == btn.OK_LONG:
            self.ui.pop()


class PinEntry:
    """Four digits: UP/DOWN change the selected one, OK moves on. Digits
    already entered show as '*'. A long OK cancels."""

    def __init__(self, ui, title, prompt, done, note=""):
        self.ui = ui
        self.title = title
        self.prompt = prompt
        self.done = done
        self.note = note
        self.reset()

    def reset(self):
        self.digits = [0, 0, 0, 0]
        self.pos = 0

    def render(self, s):
        s.line(0, self.title, True)
        if self.note:  # why it asks again ("Wrong PIN", "PINs differ")
            s.line(1, self.note)
        s.line(2, self.prompt)
        cells = []
        for i in range(4):
            if i < self.pos:
                cells.append("*")
            elif i == self.pos:
                cells.append(str(self.digits[i]))
            else:
                cells.append("_")
        s.line(4, "    " + " ".join(cells))
        s.line(5, "    " + "  " * self.pos + "^")
        s.line(6, "hold OK: cancel")
        s.line(7, "UP/DN  OK:next", True)

    def event(self, ev):
        if ev == btn.UP:
            self.digits[self.pos] = (self.digits[self.pos] + 1) % 10
        elif ev == btn.DOWN:
            self.digits[self.pos] = (self.digits[self.pos] - 1) % 10
        elif ev == btn.OK:
            self.pos += 1
            if self.pos == 4:
                pin = "".join(str(d) for d in self.digits)
                self.reset()
                self.note = ""
                self.done(pin)
        elif ev == btn.OK_LONG:
            self.ui.cancel_pin()
