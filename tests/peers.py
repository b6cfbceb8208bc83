"""pytest fixtures for the real peers the tests drive (registered by
conftest.py): Debian's Chromium through Playwright (executable_path; never
`playwright install`), and mosquitto with mutual TLS and a test PKI made by
openssl at test time. `python3 tools/dev.py test` installs all of them, so a
missing one fails the tests instead of skipping them."""

import os
import shutil

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the test module."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian chromium missing: `python3 tools/dev.py test` installs it")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def new_page(browser, base):
    """A page in a fresh context, collecting console errors and page errors
    in `page.problems`; `page.base` is the site's base URL. Close it with
    page.context.close()."""
    ctx = browser.new_context()
    pg = ctx.new_page()
    pg.set_default_timeout(10000)
    pg.problems = []
    pg.on("console", lambda m: pg.problems.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.problems.append(str(e)))
    pg.base = base
    return pg


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The test PKI (CAs, broker, device and cloud certificates)."""
    import pki as pkimod
    from mqttlab import SERIAL, have_mosquitto

    missing = [w for w, ok in (("mosquitto", have_mosquitto()), ("openssl", shutil.which("openssl")))
               if not ok]
    if missing:
        pytest.fail("missing %s: `python3 tools/dev.py test` installs it" % ", ".join(missing))
    return pkimod.make(str(tmp_path_factory.mktemp("pki")), SERIAL)


@pytest.fixture(scope="module")
def broker(pki, tmp_path_factory):
    """mosquitto with TLS and require_certificate, for the test module."""
    from mqttlab import Mosquitto

    b = Mosquitto(pki, str(tmp_path_factory.mktemp("broker")))
    yield b
    b.close()
