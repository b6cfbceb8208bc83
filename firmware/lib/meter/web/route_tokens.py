"""The Web Admin's Tokens page (docs/api.md): the app tokens with their
state, name, when and from where they were asked for; confirm (an explicit
second step showing what is being allowed), revoke, delete.

meter.web.site mounts app(); the session, CSRF and Origin checks of its
gate apply to every route here. Confirm, revoke and delete ask the module lock
(the token store calls Settings.require_unlocked): Locked is not caught
here, the Web Admin's error handler answers it (HTTP 423).
"""

from microdot import Microdot

from meter.web import chrome


# meter.tokens loads with the store, at the first use of this page, not
# with every window (it stays loaded with the store afterwards).
ACTIVE, PENDING = "active", "pending"


def app():
    a = Microdot()
    a.get("/tokens")(tokens)
    a.get("/tokens/confirm")(confirm_get)
    a.post("/tokens/confirm")(confirm_post)
    a.post("/tokens/revoke")(revoke_post)
    a.post("/tokens/delete")(delete_post)
    return a


def button(req, action, id_, label, cls=""):
    return ("<form method=\"post\" action=\"/tokens/%s\">%s<input type=\"hidden\" name=\"id\" "
            "value=\"%s\"><button id=\"%s-%s\"%s>%s</button></form>"
            % (action, chrome.csrf_field(req), chrome.esc(id_), action, chrome.esc(id_),
               " class=\"danger\"" if cls else "", label))


def tokens_page(req, msg="", status=200):
    fw = req.g.ctl.app
    api = fw.api
    store = api.store()
    store.expire()
    esc = chrome.esc
    rows = []
    for t in store.tokens:
        acts = []
        if t.state == PENDING:
            acts.append("<a href=\"/tokens/confirm?id=%s\" id=\"confirm-%s\">Confirm&hellip;"
                        "</a>" % (chrome.esc(t.id), chrome.esc(t.id)))
        elif t.state == ACTIVE:
            acts.append(button(req, "revoke", t.id, "Revoke", "danger"))
        acts.append(button(req, "delete", t.id, "Delete", "danger"))
        state = t.state
        if t.state == PENDING:
            state += " (expires in %d s)" % store.remaining_s(t)
        rows.append("<tr id=\"tok-%s\"><td class=\"l\">%s</td><td class=\"l\">%s</td>"
                    "<td class=\"l\">%s</td><td class=\"l\">%s</td><td class=\"l\">%s</td>"
                    "<td class=\"l\">%s</td></tr>"
                    % (esc(t.id), esc(t.name), esc(state), chrome.utc(t.t), esc(t.ip),
                       chrome.utc(t.t_ok), "".join(acts)))
    from meter.tokens import MAX_PENDING, MAX_TOKENS

    on = fw.settings.get("api.enabled")
    intro = ("<p>Apps read live values, energy counters and device information from the "
             "local API with a token of their own, which an admin confirms here. Tokens "
             "give read access only. The Local API service is <strong id=\"api-state\">"
             "%s</strong> (Services). An app can ask for a token only while this Web Admin "
             "window is open.</p><p class=\"small\">At most %d tokens (%d waiting for "
             "confirmation); an unconfirmed request expires after %d s; a revoked token "
             "stays listed until deleted.</p>"
             % ("on" if on else "off", MAX_TOKENS, MAX_PENDING, store.pending_s()))
    if not rows:
        return chrome.page(req, "App tokens", [msg, intro, "<p id=\"no-tokens\">No tokens.</p>"],
                           status)
    # Sent row by row (chrome.page): up to MAX_TOKENS rows never become one string.
    return chrome.page(req, "App tokens", [
        msg, intro, "<table id=\"tokens\"><tr><th class=\"l\">App</th><th class=\"l\">"
        "State</th><th class=\"l\">Asked for (UTC)</th><th class=\"l\">From</th>"
        "<th class=\"l\">Confirmed (UTC)</th><th></th></tr>", rows, "</table>"], status)


def act(req, fn, done):
    from meter.tokens import TokenError

    f = chrome.form(req)
    id_ = f.get("id", "")
    store = req.g.ctl.app.api.store()
    t = store.get(id_)
    try:
        fn(store, id_)  # Locked propagates: the error handler answers 423
    except TokenError as e:
        return tokens_page(req, chrome.note("err", "Not done: %s." % e), e.status)
    return tokens_page(req, chrome.note("ok", done % (t.name if t else id_)))


async def tokens(req):
    return tokens_page(req)


async def confirm_get(req):
    store = req.g.ctl.app.api.store()
    t = store.get(req.args.get("id", "") if req.args else "")
    if t is None or t.state != PENDING:
        why = "No such pending token (a request expires after %d s)." % store.pending_s()
        return tokens_page(req, chrome.note("err", why), 404)
    body = (chrome.note("warn", "Allow the app below to read live values, energy counters and "
                        "device information from now on? Confirm only an app you have just paired "
                        "yourself.", "allow")
            + "<table><tr><th class=\"l\">App</th><td class=\"l\" id=\"c-name\">%s</td></tr>"
            "<tr><th class=\"l\">Asked for (UTC)</th><td class=\"l\">%s</td></tr>"
            "<tr><th class=\"l\">From</th><td class=\"l\" id=\"c-ip\">%s</td></tr></table>"
            % (chrome.esc(t.name), chrome.utc(t.t), chrome.esc(t.ip))
            + "<form method=\"post\" action=\"/tokens/confirm\">" + chrome.csrf_field(req)
            + "<input type=\"hidden\" name=\"id\" value=\"%s\">" % chrome.esc(t.id)
            + "<button id=\"do-confirm\">Confirm token</button> "
            "<a href=\"/tokens\" id=\"cancel\">Cancel</a></form>")
    return chrome.page(req, "Confirm app token?", body)


async def confirm_post(req):
    return act(req, lambda s, i: s.confirm(i, "web"), "Confirmed: %s can read data now.")


async def revoke_post(req):
    return act(req, lambda s, i: s.revoke(i, "web"), "Revoked: %s is refused from now on.")


async def delete_post(req):
    return act(req, lambda s, i: s.delete(i, "web"), "Deleted: %s.")
