"""tools/deps.py and device-libs.toml; the ussl shim against a real TLS peer.

The install tests share build/cache (filled by `tools/deps.py install`, from
the package index the first time) and install into temporary trees; the
tampering tests work on a copy of the cache. The download path is tested
against a local fake index (PEP 691 JSON) so that it needs no network.
"""

import hashlib
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import tomllib

import pytest

import upy

ROOT = upy.ROOT
DEPS = os.path.join(ROOT, "tools", "deps.py")
MANIFEST = os.path.join(ROOT, "device-libs.toml")
CACHE = os.path.join(ROOT, "build", "cache")

sys.path.insert(0, os.path.join(ROOT, "tools"))
import deps  # noqa: E402

# The design card's libraries, with the sha256 each sdist was checked against.
PINNED = {
    "microdot": ("2.7.0", "e11f39f0f5564bb5db69f728902740ed592d632ae7a03e24ca3a88cd59ad2f53"),
    "micropython-umqtt.simple": (
        "1.3.4", "b6a2520239e3992c63a7de9370ee9b3d9d27819a90359c521f1c0f7ccab8d12f"),
    "micropython-umqtt.robust": (
        "1.0", "22a1b8c8e1128281efb13b3020927d07e33c5b747869da2cd77d37983a9ea002"),
    "micropython-hmac": (
        "3.4.2.post3", "e0fb5bad648c8b5a5838e958ea74ad3cc50872264f98fccc0a0b124550c2af0b"),
}


def run_deps(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, DEPS, *args], capture_output=True, text=True,
                          timeout=300, env=e, cwd=ROOT)


@pytest.fixture(scope="module")
def cache():
    """build/cache holding every pinned sdist (downloads once if needed)."""
    r = run_deps("install")
    assert r.returncode == 0, r.stderr
    return CACHE


def tree(d):
    out = {}
    for dp, _, fns in os.walk(d):
        for fn in fns:
            p = os.path.join(dp, fn)
            out[os.path.relpath(p, d)] = open(p, "rb").read()
    return out


# ------------------------------------------------------------------ manifest

def test_manifest_well_formed():
    with open(MANIFEST, "rb") as f:
        data = tomllib.load(f)
    libs, _ = deps.load_manifest(MANIFEST)  # the tool's own validation
    assert data["schema"] == 1
    assert {lib["name"]: (lib["version"], lib["sha256"]) for lib in libs} == PINNED
    dests = [d for lib in libs for d in lib["files"].values()]
    assert len(dests) == len(set(dests))
    assert all(d.endswith(".py") for d in dests)
    for lib in libs:
        assert lib["sdist"].endswith(lib["version"] + ".tar.gz")
        for src in lib["files"]:
            assert src.startswith(lib["sdist"][:-len(".tar.gz")] + "/")
    # CPython-only microdot modules and type stubs stay out of the device tree.
    for bad in ("asgi", "wsgi", "jinja"):
        assert "microdot/%s.py" % bad not in dests
    assert {"hmac.py", "umqtt/simple.py", "umqtt/robust.py", "microdot/__init__.py",
            "microdot/microdot.py"} <= set(dests)


@pytest.mark.parametrize("edit, why", [
    (('"microdot/helpers.py"', '"../helpers.py"'), "bad destination path"),
    (('"microdot/helpers.py"', '"/abs/helpers.py"'), "bad destination path"),
    (('"microdot/helpers.py"', '"hmac.py"'), "comes from both"),
    (("e11f39f0f5564bb5db69f7", "E11F39F0F5564BB5DB69F7"), "64 lowercase hex"),
    (('version = "2.7.0"', 'version = "2.7.1"'), "containing the version"),
    (("schema = 1", "schema = 2"), "schema = 1"),
    (('license = "MIT"', 'licence = "MIT"'), "lacks 'license'"),
])
def test_manifest_validation_rejects(tmp_path, edit, why):
    text = open(MANIFEST).read()
    assert edit[0] in text
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(deps.DepsError, match=why):
        deps.load_manifest(str(bad))
    r = run_deps("verify", "--manifest", str(bad))
    assert r.returncode == 1 and why in r.stderr


# ------------------------------------------------------------------ install / verify

def test_verify_passes_after_install(cache):
    r = run_deps("verify")
    assert r.returncode == 0, r.stderr
    for lib in deps.load_manifest(MANIFEST)[0]:
        with open(os.path.join(cache, lib["sdist"]), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == lib["sha256"]


def test_install_verify_and_idempotence(cache, tmp_path):
    dest = str(tmp_path / "lib")
    r = run_deps("install", "--cache", cache, "--dest", dest)
    assert r.returncode == 0, r.stderr
    assert run_deps("verify", "--cache", cache, "--dest", dest).returncode == 0
    libs, _ = deps.load_manifest(MANIFEST)
    assert set(tree(dest)) == {d for lib in libs for d in lib["files"].values()}
    assert b"import ussl" in open(os.path.join(dest, "umqtt", "simple.py"), "rb").read()

    # Second run: stamp says up to date, nothing is rewritten.
    before = {p: os.stat(os.path.join(dest, p)).st_mtime_ns for p in tree(dest)}
    r = run_deps("install", "--cache", cache, "--dest", dest)
    assert r.returncode == 0 and "up to date" in r.stderr, r.stderr
    assert before == {p: os.stat(os.path.join(dest, p)).st_mtime_ns for p in tree(dest)}

    # A changed file and a stray file are caught by verify and fixed by install.
    with open(os.path.join(dest, "hmac.py"), "ab") as f:
        f.write(b"\n# local edit\n")
    open(os.path.join(dest, "stray.py"), "w").write("x = 1\n")
    r = run_deps("verify", "--cache", cache, "--dest", dest)
    assert r.returncode == 1
    assert "hmac.py: differs" in r.stderr and "stray.py: in" in r.stderr, r.stderr
    r = run_deps("install", "--cache", cache, "--dest", dest)
    assert r.returncode == 0 and "installed" in r.stderr, r.stderr
    assert "stray.py" not in tree(dest)
    assert run_deps("verify", "--cache", cache, "--dest", dest).returncode == 0


@pytest.mark.parametrize("victim", ["microdot-2.7.0.tar.gz",
                                    "micropython-hmac-3.4.2.post3.tar.gz"])
def test_tampered_cache_is_refused(cache, tmp_path, victim):
    bad_cache = tmp_path / "cache"
    shutil.copytree(cache, bad_cache)
    data = bytearray((bad_cache / victim).read_bytes())
    data[len(data) // 2] ^= 0x01
    (bad_cache / victim).write_bytes(bytes(data))
    dest = tmp_path / "lib"

    r = run_deps("install", "--cache", str(bad_cache), "--dest", str(dest))
    assert r.returncode == 1
    assert "SHA256 MISMATCH for %s" % victim in r.stderr, r.stderr
    assert "nothing was extracted" in r.stderr
    # Every archive is checked before any is opened: not even the good ones
    # (microdot comes first in the manifest) were extracted.
    assert not dest.exists()
    assert not os.path.exists(str(dest) + ".stamp.json")
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".new-")]
    # The tampered file is left for inspection, not silently replaced.
    assert (bad_cache / victim).read_bytes() == bytes(data)

    r = run_deps("verify", "--cache", str(bad_cache), "--dest", str(dest))
    assert r.returncode == 1 and "SHA256 MISMATCH for %s" % victim in r.stderr


# ------------------------------------------------------------------ download (fake index)

class _Index:
    """A local PEP 691 index serving `files` {filename: bytes}, listing `listed` hashes."""

    def __init__(self, libs, files, listed):
        by_project = {}
        for lib in libs:
            by_project.setdefault(deps._normalise(lib["name"]), []).append({
                "filename": lib["sdist"], "url": "../../files/" + lib["sdist"],
                "hashes": {"sha256": listed[lib["sdist"]]}})
        self.requests = []
        index = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                index.requests.append((self.path, self.headers.get("Accept")))
                parts = self.path.strip("/").split("/")
                if parts[0] == "simple" and len(parts) == 2 and parts[1] in by_project:
                    body = json.dumps({"meta": {"api-version": "1.0"}, "name": parts[1],
                                       "files": by_project[parts[1]]}).encode()
                    ctype = deps.JSON_ACCEPT
                elif parts[0] == "files" and parts[1] in files:
                    body, ctype = files[parts[1]], "application/octet-stream"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d/simple/" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def _fake_index(cache, corrupt=None, list_wrong=None):
    libs, _ = deps.load_manifest(MANIFEST)
    files = {lib["sdist"]: open(os.path.join(cache, lib["sdist"]), "rb").read()
             for lib in libs}
    listed = {lib["sdist"]: lib["sha256"] for lib in libs}
    if corrupt:
        files[corrupt] = files[corrupt] + b"\0"
    if list_wrong:
        listed[list_wrong] = "0" * 64
    return _Index(libs, files, listed)


def _index_env(index):
    return {"PIP_INDEX_URL": index.url, "PIP_EXTRA_INDEX_URL": ""}


def test_download_from_configured_index(cache, tmp_path):
    index = _fake_index(cache)
    try:
        c, dest = tmp_path / "cache", tmp_path / "lib"
        r = run_deps("install", "--cache", str(c), "--dest", str(dest), env=_index_env(index))
        assert r.returncode == 0, r.stderr
        assert sorted(os.listdir(c)) == sorted(os.listdir(cache))
        assert run_deps("verify", "--cache", str(c), "--dest", str(dest)).returncode == 0
        # The JSON simple API was asked for, by normalised project name.
        assert ("/simple/micropython-umqtt-simple/", deps.JSON_ACCEPT) in index.requests
    finally:
        index.close()


def test_download_with_wrong_hash_is_not_kept(cache, tmp_path):
    victim = "micropython-umqtt.robust-1.0.tar.gz"
    index = _fake_index(cache, corrupt=victim)
    try:
        c, dest = tmp_path / "cache", tmp_path / "lib"
        r = run_deps("install", "--cache", str(c), "--dest", str(dest), env=_index_env(index))
        assert r.returncode == 1
        assert "SHA256 MISMATCH for %s downloaded" % victim in r.stderr, r.stderr
        assert victim not in os.listdir(c) and not [p for p in os.listdir(c) if "part" in p]
        assert not dest.exists()
    finally:
        index.close()


def test_index_listing_other_hash_is_refused(cache, tmp_path):
    victim = "microdot-2.7.0.tar.gz"
    index = _fake_index(cache, list_wrong=victim)
    try:
        c = tmp_path / "cache"
        r = run_deps("install", "--cache", str(c), "--dest", str(tmp_path / "lib"),
                     env=_index_env(index))
        assert r.returncode == 1 and "index" in r.stderr and victim in r.stderr, r.stderr
        assert not any(p[0] == "/files/" + victim for p in index.requests)
    finally:
        index.close()


# ------------------------------------------------------------------ ussl shim, real TLS peer

def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(d, name):
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", name + ".key", "-out", name + ".crt", "-days", "2",
             "-subj", "/CN=" + name, cwd=d)


def _make_leaf(d, name, ca, san=None):
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name, cwd=d)
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:%s\n" % san if san else "basicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
             "-CAcreateserial", "-out", name + ".crt", "-days", "2", "-extfile", ext, cwd=d)
    _openssl("x509", "-in", name + ".crt", "-outform", "DER", "-out", name + ".der", cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("the openssl command is needed to make test certificates")
    d = str(tmp_path_factory.mktemp("pki"))
    _make_ca(d, "ca")
    _make_ca(d, "otherca")
    _openssl("x509", "-in", "ca.crt", "-outform", "DER", "-out", "ca.der", cwd=d)
    _make_leaf(d, "broker.test", "ca", san="broker.test")
    _make_leaf(d, "meter-0001", "ca")
    return d


class _Broker:
    """Just enough MQTT over mutual TLS: CONNACK each CONNECT, record the bytes."""

    def __init__(self, pki):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(pki, "broker.test.crt"),
                            os.path.join(pki, "broker.test.key"))
        ctx.load_verify_locations(os.path.join(pki, "ca.crt"))
        ctx.verify_mode = ssl.CERT_REQUIRED
        self.ctx = ctx
        self.sessions = []  # (client CN, bytes received) or ("error", message)
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(4)
        self.ls.settimeout(30)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            try:
                c.settimeout(20)
                s = self.ctx.wrap_socket(c, server_side=True)
                cn = dict(x[0] for x in s.getpeercert()["subject"])["commonName"]
                got = self._recv_exact(s, 2)  # CONNECT: type, remaining length (< 128)
                got += self._recv_exact(s, got[1])
                s.sendall(b"\x20\x02\x00\x00")  # CONNACK, accepted
                while True:
                    b = s.recv(4096)
                    if not b:
                        break
                    got += b
                self.sessions.append((cn, got))
                s.close()
            except Exception as e:  # noqa: BLE001 - recorded for the test to see
                self.sessions.append(("error", repr(e)))
                c.close()

    @staticmethod
    def _recv_exact(s, n):
        b = b""
        while len(b) < n:
            chunk = s.recv(n - len(b))
            if not chunk:
                raise OSError("connection closed")
            b += chunk
        return b

    def close(self):
        self.ls.close()


CLIENT = """
from umqtt.simple import MQTTClient
d = %(dir)r + "/"
def rd(n):
    with open(d + n, "rb") as f:
        return f.read()
params = {"cadata": rd(%(ca)r), "server_hostname": %(host)r,
          "cert": rd("meter-0001.crt"), "key": rd("meter-0001.key")}
c = MQTTClient("meter-0001", "127.0.0.1", %(port)d, ssl=True, ssl_params=params)
c.connect()
c.publish(b"meters/meter-0001/state", b"hello over tls")
c.disconnect()
print("PUBLISHED")
"""


@pytest.mark.parametrize("ca", ["ca.crt", "ca.der"])
def test_umqtt_over_ussl_mutual_tls(cache, pki, ca):
    broker = _Broker(pki)
    try:
        out = upy.exec_code(CLIENT % {"dir": pki, "ca": ca, "host": "broker.test",
                                      "port": broker.port})
        assert "PUBLISHED" in out
        for _ in range(100):
            if broker.sessions:
                break
            threading.Event().wait(0.05)
        cn, got = broker.sessions[0]
        assert cn == "meter-0001", broker.sessions
        assert got[0] == 0x10 and b"MQTT" in got and b"hello over tls" in got
    finally:
        broker.close()


@pytest.mark.parametrize("ca, host, why", [
    ("otherca.crt", "broker.test", "not correctly signed by the trusted CA"),  # wrong CA
    ("ca.crt", "other.test", "does not match"),                                # wrong name
])
def test_ussl_rejects_unverified_server(cache, pki, ca, host, why):
    broker = _Broker(pki)
    try:
        r = upy.run(["-c", CLIENT % {"dir": pki, "ca": ca, "host": host,
                                     "port": broker.port}])
        out = r.stdout + r.stderr
        assert r.returncode != 0 and "PUBLISHED" not in out, out
        assert why in out, out
        assert not [s for s in broker.sessions if s[0] != "error"]
    finally:
        broker.close()
