"""The update check's parts that need no server (meter/otafetch.py,
meter/httpget.py): its view of the settings, URLs, the manifest, the
schedule and back-off, and the refusals before any network. The check
against a real HTTPS server is tests/test_otafetch.py.
"""

import sys

_HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
if _HERE + "/fakes" not in sys.path:
    sys.path.insert(0, _HERE + "/fakes")

import asyncio  # noqa: E402

from test_ota import KEYS, Audit, factory, host  # noqa: E402
from upytest import raises, tmpdir  # noqa: E402

from meter import httpget, ota, otafetch  # noqa: E402
from meter.backoff import spread  # noqa: E402
from meter.board.flashfile import FilePartition  # noqa: E402
from meter.logstore import LogStore  # noqa: E402
from meter.otafetch import Fetcher, SettingsConfig, _Ram as Store  # noqa: E402  (state in RAM)
from meter.settings import Settings  # noqa: E402

HEAP = "512k"
SHA = "ab" * 32


class Cfg:
    def __init__(self, **kw):
        self.d = {"update.server": "", "update.ip": "", "update.ca": None}
        self.d.update({k.replace("_", "."): v for k, v in kw.items()})

    def get(self, key):
        return self.d[key]


def fetcher(cfg=None, o=None, **kw):
    kw.setdefault("keys", KEYS)
    kw.setdefault("audit", Audit())
    kw.setdefault("version", "0.1.0")
    return Fetcher(cfg or Cfg(), o or host(tmpdir()), "host", **kw)


def test_settings_config_reads_the_store_the_defaults_and_the_ca_file():
    d = tmpdir()
    s = Settings(LogStore(FilePartition(d + "/config", 16384)))
    s.update({"update.server": "https://updates.test/meter"}, "test")
    c = SettingsConfig(s, d)
    assert c.get("update.server") == "https://updates.test/meter"
    # keys not set: the store's defaults
    assert c.get("update.ip") == "" and c.get("update.interval_h") == 24
    assert c.get("update.ca") is None, "no CA file: None (the check says so)"
    with open(d + "/update-ca.crt", "wb") as f:
        f.write(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    assert c.get("update.ca").startswith(b"-----BEGIN CERTIFICATE-----")


def test_urls_are_https_only_and_cannot_smuggle_header_lines():
    assert httpget.split_url("https://u.test/a/b.json") == ("u.test", 443, "/a/b.json")
    assert httpget.split_url("https://u.test:8443") == ("u.test", 8443, "/")
    for bad, why in (("http://u.test/x", "https://"), ("https://u.test/x y", "space"),
                     ("https://u.test/x\r\nHost: evil", "line break"),
                     ("https://u.test:99999/x", "bad port"), ("https://:443/x", "no host"),
                     (None, "https://")):
        e = raises(ota.UpdateError, httpget.split_url, bad)
        assert why in str(e), (bad, str(e))


def test_manifest_parsing():
    man = b'{"version": "1.2.3", "url": "/fw/x.bin", "size": 5000, "sha256": "%s"}' % SHA
    v, url, size, sha = otafetch._parse_manifest(man, "https://u.test:8443/meter")
    assert v == 0x010203 and size == 5000 and sha == bytes([0xAB] * 32)
    assert url == "https://u.test:8443/fw/x.bin", "a path is on the update server itself"
    for body, why in ((b"[1]", "not valid"), (b'{"version": "1.2"}', "not valid"),
                      (b'{"version": "1.2.3", "url": "/x", "size": 100, "sha256": "%s"}' % SHA,
                       "no valid size"),
                      (b'{"version": "1.2.3", "url": "/x", "size": "9", "sha256": "%s"}' % SHA,
                       "no valid size"),
                      (b'{"version": "1.2.3", "url": "/x", "size": 5000, "sha256": "zz"}',
                       "not valid")):
        e = raises(ota.UpdateError, otafetch._parse_manifest, body, "https://u.test")
        assert why in str(e), (body, str(e))


def test_schedule_spreads_checks_and_backs_off_with_jitter():
    for _ in range(200):
        w = spread(3600000)
        assert 3600000 <= w <= 4500000, w
    f = fetcher()
    for fails, lo, hi in ((1, 30, 60), (2, 60, 120), (3, 120, 240), (30, 10800, 21600)):
        for _ in range(50):
            s = f._retry_s(fails)
            assert lo <= s <= hi, (fails, s)
    assert f._retry_s(0) == 0


def test_a_failed_check_backs_off_and_a_restart_does_not_shorten_it():
    st = Store()
    a = Audit()
    f = fetcher(Cfg(), audit=a, state=st)
    e = raises(ota.UpdateError, asyncio.run, f.check_now("cloud"))
    assert str(e) == "no update server configured", str(e)
    assert a.events[-1] == ("cloud", "ota check", "failed",
                            "0.1.0 -> ?: no update server configured"), a.events
    assert st.get("ota_fails") == 1 and 30 <= f.backoff.wait_s() <= 60
    g = fetcher(Cfg(), state=st)  # after a restart: the stored count waits again
    assert 30 <= g.backoff.wait_s() <= 60, g.backoff.wait_s()


def test_missing_ca_is_refused_before_any_connection():
    f = fetcher(Cfg(update_server="https://127.0.0.1:9/meter"))
    e = raises(ota.UpdateError, asyncio.run, f.check_now())
    assert "no update server CA provisioned" in str(e), str(e)


def test_module_lock_refuses_the_automatic_update():
    d = tmpdir()
    o = host(d)
    factory(o)
    a = Audit()
    s = Settings(LogStore(FilePartition(d + "/config", 16384)), a)
    s.set_lock({"lock.on": True, "lock.hash": "x"}, "web", "lock")
    f = fetcher(Cfg(update_server="https://u.test"), o, settings=s, audit=a)
    man = (0x000200, "https://u.test/x.bin", 5000, bytes(32))
    e = raises(ota.UpdateError, asyncio.run, f._download("auto", man))
    assert str(e) == "module locked: unlock it to update the firmware", str(e)
    assert ("auto", "locked", "refused", "firmware update") in a.events, a.events
    assert not ota.busy() and o.otadata.boot_slot() == 0


def test_a_file_larger_than_the_slot_is_refused_before_downloading():
    o = host(tmpdir())
    f = fetcher(Cfg(update_server="https://u.test"), o)
    room = (o.next_update().ioctl(4, None) - 1) * 4096 + 448
    man = (0x000200, "https://u.test/x.bin", room + 1, bytes(32))
    e = raises(ota.UpdateError, asyncio.run, f._download("auto", man))
    assert "does not fit the update slot" in str(e), str(e)
    assert not ota.busy()


def test_unusable_ca_is_refused_with_a_clear_reason():
    pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    for ca in (b"not a certificate", pem, pem * 2):  # garbage, a bad body, two blocks
        e = raises(ota.UpdateError, httpget.context, ca)
        assert "the update server CA is unusable" in str(e), (ca, str(e))
