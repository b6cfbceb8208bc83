"""The Web Admin's Firmware page (meter.web.site routes its four requests
here, loading this module at the first of them): what runs,
what the other app slot holds, the last update's result, and the upload
of an update file, streamed into the updater (meter/otaupload.py) as it
arrives, never held whole (docs/web.md, "Firmware"). Two requests, so that
the password is asked again and the file needs no form encoding:
1. POST /firmware/ticket (form: csrf, password, size): what can refuse
   before a byte is sent (an update running, the lock, an image on trial,
   the size), then the password (the login's check and throttle). Answer
   {"ticket"}: good once, for this session, for TICKET_MS.
2. POST /firmware/upload?t=TICKET, the raw file as the body, streamed
   (site.STREAMED) into an update Job (meter/otastatus.py: on the display).
   Answer {"version", "restart_s"}, then the device restarts; or {"error"}.
GET /api/firmware is what the page's script (/static/fw.js) polls.
"""

import asyncio
import time

from microdot import Response
from micropython import const

from meter import log, passwd
from meter.crypto import compare_digest
from meter.settings import Locked
from meter.web import auth, chrome

TICKET_MS = const(60000)
RESTART_S = const(20)  # what the page announces: a restart and the Wi-Fi join
_ANSWER_MS = const(1000)  # the answer reaches the browser before the restart
_UPLOAD_MS = const(930000)  # the server's deadline: Upload's own 15 min and a margin
RESUME_MIN_S = const(120)  # the reopened window at least: to log in, read the result


class Firmware:
    """The window's upload state (ctl.firmware): the one ticket, the upload
    running (the window's timer waits for it), the last one's result."""

    def __init__(self):
        self.ticket = None  # (ticket, session, expires at ticks_ms)
        self.up = None  # the Upload being read
        self.result = None  # {"state", "why", "version", "got", "total"}
        self.closing = None  # why the window closes under an upload


def _state(ctl):  # made on first use: a window without uploads holds nothing
    if ctl.firmware is None:
        ctl.firmware = Firmware()
    return ctl.firmware


def _err(status, why):  # the refusals the page's script shows
    return Response({"error": why}, status)


def _refusal(fw, act=False):
    """(status, why) when no update may start now, or None. act: an update
    is asked for (a refusal by the module lock is audited)."""
    from meter import otastatus

    why = otastatus.busy(fw)
    if why:
        return 409, "Not now: %s." % why
    try:
        if act:
            fw.settings.require_unlocked("web", "firmware update")
        elif fw.settings.locked:
            raise Locked()
    except Locked:
        return 423, "The module is locked: unlock it on the Security page to update the firmware."
    if fw.ota_trial:
        return 409, ("The running firmware is still checking itself after its update (at most "
                     "2 minutes): try again once it has confirmed itself.")
    return None


def _max(fw):
    """The largest update file the slot takes (bytes)."""
    from meter.otafmt import max_size  # (not meter.otaupload: the updater loads with it)

    return max_size(fw.board.ota())


async def ticket(req):
    """The password again, for a one-time upload ticket (JSON)."""
    ctl = req.g.ctl
    fw = ctl.app
    f = chrome.form(req)
    r = _refusal(fw, True)
    size, room = f.get("size", ""), _max(fw)
    if r is None and (not size.isdigit() or int(size) == 0):
        r = 400, "Choose the update file first."
    elif r is None and int(size) > room:
        r = 413, ("The file is too large (%s bytes; the update slot takes at most %d)."
                  % (size, room))
    if r is not None:
        return _err(*r)
    verdict, wait = await ctl.check_login(req.g.conn.ip, passwd.USER, f.get("password", ""))
    if verdict != "ok":
        fw.audit.append("web", "ota update", "refused", "password")
        return _err({"fail": 403, "code": 403, "badcode": 403, "busy": 503}.get(verdict, 429),
                    ctl.verdict_text(verdict, wait, "Wrong password."))
    t = auth.new_id()
    _state(ctl).ticket = (t, req.g.sess, time.ticks_add(time.ticks_ms(), TICKET_MS))
    return {"ticket": t, "ms": TICKET_MS}


def _take(st, t, sess):
    """The ticket t for this session, used up; False if it is not the one."""
    tk = st.ticket
    if tk is None or not t or not compare_digest(t.encode(), tk[0].encode()):
        return False
    st.ticket = None
    return tk[1] is sess and time.ticks_diff(tk[2], time.ticks_ms()) > 0


async def upload(req):
    """The file, streamed into the updater (JSON answer; then the restart)."""
    ctl = req.g.ctl
    fw = ctl.app
    st = _state(ctl)
    if not _take(st, req.args.get("t"), req.g.sess):
        return _err(403, "The upload was not authorised: the password step was missing, used "
                    "or too long ago. Enter the password and upload again.")
    r = _refusal(fw, True)
    if r is not None:
        return _err(*r)
    from meter import otastatus
    from meter.ota import UpdateError
    from meter.otaupload import Upload

    job = otastatus.Job(fw, "web:" + passwd.USER)
    n = req.content_length
    try:
        up = Upload(fw.board.ota(), fw.board.name, n, audit=fw.audit, settings=fw.settings,
                    source=job.source, progress=job.progress)
    except UpdateError as e:
        job.failed(e)
        return _err(e.status, str(e))
    st.up = up
    st.closing = None
    st.result = res = {"state": "receiving", "why": None, "version": None, "total": n}
    req.g.server.upload(req.g.conn, _UPLOAD_MS)  # no longer evictable, no handler turn held
    try:
        v = await up.run(req.stream, buf=req.stream.spare())  # no buffer of its own
    except UpdateError as e:
        job.failed(e)
        res.update(state="failed", why=str(e))
        return _err(e.status, str(e))
    except asyncio.CancelledError:  # the window closed (or the server's deadline)
        why = st.closing or "the upload was cancelled"
        job.failed(why)
        res.update(state="failed", why=why)
        raise
    except Exception as e:  # a fault: logged; the user gets words, never the exception
        log.exc("web: upload failed", e)
        job.failed("internal error")
        res.update(state="failed", why="internal error")
        return _err(500, "Internal error: nothing was installed.")
    finally:
        st.up = None
    res.update(state="installed", version=v)
    # the window opens again after the restart, for the rest of its time
    fw.state_.set("web.resume", max(ctl.remaining_s(), RESUME_MIN_S))
    job.installed(v, _ANSWER_MS)
    return {"version": v, "restart_s": RESTART_S}


async def api(req):
    """The update state the page's script polls (JSON)."""
    from meter import otastatus

    ctl = req.g.ctl
    out = otastatus.status(ctl.app)
    st = ctl.firmware
    if st is not None and st.result is not None:
        out["upload"] = dict(st.result, got=st.up.got if st.up else None)
    out["max"] = _max(ctl.app)
    return out


def last_text(last, running):
    """The last update's result in words, or None."""
    if not last:
        return None
    r = last.get("result")
    frm, to = last.get("from"), last.get("to") or "?"
    if r == "installed":
        if to == running:  # restarted into it: its self-test decides
            return "Updated from %s to %s: it is checking itself." % (frm, to)
        return "Installed %s; the device restarts into it." % to
    if r == "confirmed":
        return "Updated from %s to %s: it started and confirmed itself." % (frm, to)
    if r == "rolled back":
        return "Update to %s failed: it did not start, so the device went back to %s." % (to, frm)
    return "Not updated (%s): %s." % (to, last.get("why") or "failed")


async def page(req):
    """What runs, the other slot, the last update, and the upload form."""
    from meter import otastatus

    ctl = req.g.ctl
    fw = ctl.app
    s = otastatus.status(fw)
    room = _max(fw)
    esc = chrome.esc
    o = s.get("other") or {}
    trial = 1 if s.get("trial") else 0
    run = "%s%s" % (s["version"], " (checking itself)" if trial else "")
    rows = (("Running", run, "fw-version"), ("From slot", s.get("slot"), "fw-slot"),
            ("State", "checking itself (self-test, at most 2 minutes)" if trial else {
                None: "factory start", "valid": "confirmed"}.get(s.get("state"), s.get("state")),
             "fw-state"),
            ("Other slot", "%s: %s" % (o.get("slot"), o.get("version") or "empty"), "fw-other"),
            ("Other slot's state", o.get("state") or "-", "fw-other-state"),
            ("Last update", last_text(s.get("last"), s["version"]) or "none", "fw-last"),
            ("Largest update file", "%d bytes" % room, "fw-max"))
    busy = _refusal(fw)
    return chrome.page(req, "Firmware", [
        "<table>", ["<tr><th class=\"l\">%s</th><td class=\"l\" id=\"%s\">%s</td></tr>"
                    % (k, i, esc(v)) for k, v, i in rows], "</table>",
        "<h2>Update</h2><p class=\"small\">A signed update file (.bin) for this device. It is "
        "checked before anything is written and again before it is started; then the device "
        "restarts into it (metering pauses for the restart only) and checks itself, or goes "
        "back to this version. Do not remove power while it installs.</p>",
        chrome.note("warn", busy[1], "fw-busy") if busy else "",
        "<form id=\"fw-form\" method=\"post\" action=\"/firmware/ticket\" data-max=\"%d\" "
        "data-restart=\"%d\" data-trial=\"%d\">%s" % (room, RESTART_S, trial,
                                                       chrome.csrf_field(req)),
        "<label>Update file <input type=\"file\" id=\"fw-file\" accept=\".bin,"
        "application/octet-stream\"></label><label>Your password <input type=\"password\" "
        "name=\"password\" id=\"fw-pass\" autocomplete=\"current-password\"></label>"
        "<button id=\"fw-upload\" disabled>Upload and install</button> <button type=\"button\" "
        "id=\"fw-cancel\" hidden>Cancel</button></form>"
        "<p><progress id=\"fw-bar\" max=\"100\" value=\"0\" hidden></progress> "
        "<span id=\"fw-sent\"></span> <span id=\"fw-dev\"></span></p>"
        "<p id=\"fw-msg\" role=\"status\"></p><noscript>"
        + chrome.note("err", "The upload needs JavaScript.", "fw-nojs")
        + "</noscript><script src=\"/static/fw.js\" defer></script>"])
