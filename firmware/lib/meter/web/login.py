"""The Web Admin's password check: throttle, presence code, PBKDF2, in the
order that keeps an attacker's guesses bounded and lets the owner in
(docs/security.md, "Brute force" and "Presence code").

check() answers (verdict, seconds):
- "wait": this client's own wait is running: refused unchecked;
- "hold": the overall wait (failures from many clients, the hourly bucket)
  is running: refused unchecked, and a code is shown on the device's
  display: with it the owner gets past this wait (not past its own);
- "codewait": too many wrong codes lately (presence bucket): refused
  unchecked;
- "badcode": the code was wrong: a failed login;
- "code": the default password was right, but a login with it also needs
  the code now shown on the display (first use, after Reset Web Password):
  no session, and nothing counted (everyone knows that password);
- "busy": another password is being checked;
- "fail": wrong user or password; "ok".
The code is checked before the password, so that it costs no hash, and a
right code is used up only by a login that succeeds.
"""

from meter.crypto import compare_digest
from meter import passwd


async def check(ctl, client, user, password, code=None):
    t = ctl.throttle
    pr = ctl.presence
    own, overall = t.waits(client)
    if own:
        return "wait", own
    bypass = False
    if code:
        r = pr.check(code)
        if r is False:
            wait = t.fail(client)
            ctl.app.audit.append("web", "login", "fail", "%s, code, %d s" % (client, wait))
            return "badcode", wait
        if r is not True:
            return "codewait", r
        bypass = True
    if overall and not bypass:
        pr.issue()  # the owner may read it at the device
        return "hold", overall
    if ctl.verifying:
        return "busy", 1
    ctl.verifying = True
    try:
        if not isinstance(user, str) or not isinstance(password, str):
            user, password = "", ""
        stored = ctl.app.settings.get("web.pass")
        user_ok = compare_digest(user.encode(), passwd.USER.encode())
        pass_ok = await passwd.verify(stored, password)
    finally:
        ctl.verifying = False
    if user_ok and pass_ok:
        if passwd.is_default(stored) and not bypass:
            pr.issue()
            return "code", 0
        if bypass:
            pr.use()
        t.success(client)
        return "ok", 0
    wait = t.fail(client)  # stored (or deferred: auth.Throttle) before the answer
    ctl.app.audit.append("web", "login", "fail", "%s, %d s" % (client, wait))
    return "fail", wait


def verdict_text(verdict, wait, wrong):
    """The message for a refused re-entered password (counter reset,
    password change)."""
    if verdict in ("wait", "hold", "codewait"):
        return "Too many failed logins. Try again in %d s." % wait
    if verdict == "busy":
        return "Another password is being checked. Try again in a moment."
    return "%s You can try again in %d s." % (wrong, wait) if wait else wrong
