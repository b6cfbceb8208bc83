"""Display task: the public measurement pages and the status line.

Text is drawn on the 8x8 font's grid (16 columns x 8 rows), which the host
board can read back from the pixels. UP/DOWN step through the pages.
"""

import asyncio

from meter.board import BTN_DOWN, BTN_UP

COLS = 16
ROWS = 8
REFRESH_MS = 250
POLL_MS = 30


class Screen:
    """Text-grid drawing on a framebuffer."""

    def __init__(self, display):
        self.d = display
        self.fb = display.fb

    def clear(self):
        self.fb.fill(0)

    def line(self, row, text, inverse=False):
        fb = self.fb
        y = row * 8
        fb.fill_rect(0, y, 128, 8, 1 if inverse else 0)
        fb.text(text[:COLS], 0, y, 0 if inverse else 1)

    def show(self):
        self.d.show()


def _kwh(uwh):
    # 3 decimals, integer arithmetic: no float rounding on billing values.
    wh = uwh // 1000000
    return "%d.%03d" % (wh // 1000, wh % 1000)


def _w(x):
    return "%6d" % round(x) if abs(x) < 999999 else "%6s" % "OVR"


def page_power(s, app):
    lv = app.sampler.live
    s.line(0, "POWER W", True)
    for i, name in enumerate(("L1", "L2", "L3")):
        s.line(1 + i, "%s %s  %5.2f" % (name, _w(lv.p[i]), lv.pf[i]))
    s.line(4, "TOT%s" % _w(lv.p[3]))
    s.line(5, "%.2f Hz" % lv.freq)


def page_vi(s, app):
    lv = app.sampler.live
    s.line(0, "VOLTAGE CURRENT", True)
    for i, name in enumerate(("L1", "L2", "L3")):
        s.line(1 + i, "%s%6.1fV%6.2fA" % (name, lv.v[i], lv.i[i]))
    s.line(4, "PF %5.2f" % lv.pf[3])
    s.line(5, "Q%7dvar" % round(lv.q[3]))


def _energy(s, app, title, base):
    u = app.counters.uwh
    s.line(0, title, True)
    for i, name in enumerate(("L1", "L2", "L3")):
        s.line(1 + i, "%s%14s" % (name, _kwh(u[base + i])))
    s.line(4, "TOT%13s" % _kwh(u[base + 3]))


def page_import(s, app):
    _energy(s, app, "IMPORT kWh", 0)


def page_export(s, app):
    _energy(s, app, "EXPORT kWh", 4)


PAGES = (page_power, page_vi, page_import, page_export)


def status_text(app):
    """The most important problem, else a compact status."""
    if app.sampler.fault:
        return app.sampler.fault
    if app.counters.status == "corrupt":
        return "COUNTERS CORRUPT"
    if app.counters.save_failed:
        return "COUNTER SAVE FAIL"
    if app.settings.status == "corrupt":
        return "SETTINGS CORRUPT"
    w = app.board.wifi().status()
    return "WiFi ok" if w == "connected" else "WiFi " + w


class Ui:
    def __init__(self, app):
        self.app = app
        self.screen = Screen(app.board.display())
        self.buttons = app.board.buttons()
        self.page = 0

    def render(self):
        s = self.screen
        s.clear()
        PAGES[self.page](s, self.app)
        s.line(6, "%d/%d" % (self.page + 1, len(PAGES)))
        s.line(7, status_text(self.app), True)
        s.show()

    async def run(self):
        last = self.buttons.read()
        since = REFRESH_MS
        while True:
            b = self.buttons.read()
            pressed = b & ~last
            last = b
            if pressed & BTN_DOWN:
                self.page = (self.page + 1) % len(PAGES)
                since = REFRESH_MS
            elif pressed & BTN_UP:
                self.page = (self.page - 1) % len(PAGES)
                since = REFRESH_MS
            if since >= REFRESH_MS:
                self.render()
                since = 0
            await asyncio.sleep_ms(POLL_MS)
            since += POLL_MS
