#!/usr/bin/env python3
"""Screenshots of every Web Admin page, at a phone width and a desktop width
(docs/screens/web-*.png), the way tools/screens.py draws the display.

    .venv/bin/python tools/webshots.py [OUTDIR]

Runs the real firmware in the simulator, opens its Web Admin window through
the control socket, logs in (replacing the default password as a new admin
must) and photographs each page in Debian's Chromium, driven by Playwright
(executable_path; its own browser download is never used).
"""

import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from simctl import Sim, free_port  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
# (file name, width, height): a small phone and a laptop.
WIDTHS = (("360", 360, 740), ("desktop", 1280, 800))
PAGES = (("dashboard", "/"), ("energy", "/energy"), ("network", "/network"),
         ("wifi", "/wifi"), ("services", "/services"), ("tokens", "/tokens"),
         ("security", "/security"), ("device", "/device"))
PASSWORD = "screenshots-only"


def shoot(base, out, shots, sim):
    from playwright.sync_api import sync_playwright

    password = "admin"  # the default, replaced at the first login
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for tag, w, h in WIDTHS:
                ctx = b.new_context(viewport={"width": w, "height": h})
                pg = ctx.new_page()
                pg.set_default_timeout(15000)

                def snap(name):
                    path = os.path.join(out, "web-%s-%s.png" % (name, tag))
                    pg.screenshot(path=path, full_page=True)
                    shots.append(path)

                pg.goto(base + "/login")
                snap("login")
                pg.fill("input[name=password]", password)
                pg.click("#login")
                pg.wait_for_load_state()
                if pg.query_selector("#need-code"):  # the default password: the display's code
                    snap("login-code")
                    pg.fill("input[name=password]", password)
                    pg.fill("input[name=code]", sim.login_code())
                    pg.click("#login")
                    pg.wait_for_load_state()
                if pg.url.endswith("/password"):  # the first login: the forced change
                    snap("password-forced")
                    pg.fill("input[name=new]", PASSWORD)
                    pg.fill("input[name=repeat]", PASSWORD)
                    pg.click("#change")
                    pg.wait_for_url("**/login?m=changed")
                    password = PASSWORD
                    pg.fill("input[name=password]", PASSWORD)
                    pg.click("#login")
                    pg.wait_for_load_state()
                for name, path in PAGES:
                    pg.goto(base + path)
                    pg.wait_for_load_state()
                    snap(name)
                ctx.close()
        finally:
            b.close()


def main(argv):
    out = os.path.abspath(argv[0] if argv else os.path.join(ROOT, "docs", "screens"))
    os.makedirs(out, exist_ok=True)
    d = tempfile.mkdtemp(prefix="webshots-")
    shots = []
    port = free_port()
    try:
        with Sim(os.path.join(d, "dev"), "--web-port", str(port), profile="pv") as sim:
            sim.wait_screen("POWER W")
            err = sim.cmd("web", "on")
            if err.get("error"):
                raise SystemExit("web admin did not open: %s" % err["error"])
            sim.wait_for(lambda: sim.cmd("web")["listening"], what="web listening")
            shoot("http://127.0.0.1:%d" % port, out, shots, sim)
            sim.quit()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print("[webshots] %d pictures in %s" % (len(shots), out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
