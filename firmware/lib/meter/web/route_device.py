"""The Web Admin's Device page: serial, firmware, board, the chip's
security state, the connection (meter.web.site mounts app())."""

from microdot import Microdot

from meter import VERSION
from meter.text import UNSUPPORTED, state
from meter.web import chrome


def app():
    a = Microdot()
    a.get("/device")(device)
    return a


async def device(req):
    b = req.g.ctl.app.board
    sec = b.security_state()
    rows = (("Serial number", b.serial()), ("Firmware", VERSION), ("Board", b.name),
            ("Secure boot", state(sec.get("secure_boot", UNSUPPORTED))),
            ("Flash encryption", state(sec.get("flash_encryption", UNSUPPORTED))),
            ("Connection", "HTTPS" if req.scheme == "https" else "plain HTTP (not encrypted)"))
    return chrome.page(req, "Device", ["<table>", [
        "<tr><th class=\"l\">%s</th><td class=\"l\" id=\"dev%d\">%s</td></tr>"
        % (k, i, chrome.esc(v)) for i, (k, v) in enumerate(rows)], "</table>"])
