"""The Web Admin's page chrome beside web/pages.py: the header's window
countdown, its script, and the site icon.

The countdown is rendered with the seconds left and counted down in the
browser by /static/clock.js (the CSP allows no inline script); a minute
before the window closes a warning appears, since the window cannot be
extended from the browser (it is opened at the device). The colours are
in assets.CSS and meet WCAG AA on the header (tests/test_web_polish.py
checks the computed colours).
"""

from micropython import const

WARN_S = const(60)  # the warning shows from this many seconds before the close

# /favicon.ico: a 16x16 two-colour PNG in an ICO (130 bytes, a yellow bolt on
# the header's navy), so browsers stop logging a 404 on every page.
ICON = b'\x00\x00\x01\x00\x01\x00\x10\x10\x00\x00\x01\x00 \x00l\x00\x00\x00\x16\x00\x00\x00\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x01\x03\x00\x00\x00%=m"\x00\x00\x00\x06PLTE\x1d5W\xff\xd1f\xa7^\xac\xb9\x00\x00\x00!IDATx\xdac`\x80\x80\x04\x06\x86\x03\x0c\x8c\r\x0c\xcc\x0c\x0c\xec\x0f\x10l6\x06\x06\x1e\x06d\x00\x00t\xdf\x03\xe2\xa5\xe2\x94\xf7\x00\x00\x00\x00IEND\xaeB`\x82'

JS = b"""'use strict';
(function () {
  var el = document.getElementById('closes');
  var warn = document.getElementById('closing');
  if (!el) { return; }
  var end = Date.now() + 1000 * parseInt(el.getAttribute('data-s') || '0', 10);
  function mmss(s) { return Math.floor(s / 60) + ':' + ('0' + (s % 60)).slice(-2); }
  function tick() {
    var s = Math.max(0, Math.round((end - Date.now()) / 1000));
    el.textContent = s ? 'Web Admin closes in ' + mmss(s) : 'Web Admin closed';
    el.setAttribute('data-s', String(s));
    if (s <= 60) { el.className = 'soon'; if (warn) { warn.hidden = false; } }
    if (s) { window.setTimeout(tick, 1000); }
  }
  tick();
})();
"""


def countdown(left_s, text):
    """The header's countdown and the (hidden until the last minute) warning."""
    soon = left_s <= WARN_S
    return ("<span id=\"closes\" data-s=\"%d\"%s>Web Admin closes in %s</span>"
            "<script src=\"/static/clock.js\" defer></script>" % (
                left_s, " class=\"soon\"" if soon else "", text))


def warning(left_s):
    return ("<p id=\"closing\" class=\"warn\" role=\"alert\"%s>The Web Admin closes in "
            "less than a minute: save what you are doing. To keep working, open it again in "
            "the device's menu (Settings, Communication, Web Admin).</p>"
            % ("" if left_s <= WARN_S else " hidden"))


def add(web, Response):
    """The routes: the script and the icon (both public, cacheable)."""

    @web.get("/static/clock.js")
    async def clock_js(req):
        return Response(JS, 200, {"Content-Type": "application/javascript; charset=UTF-8"})

    @web.get("/favicon.ico")
    async def favicon(req):
        return Response(ICON, 200, {"Content-Type": "image/x-icon"})
