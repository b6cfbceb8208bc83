"""The automatic update check (meter/otafetch.py) on the 32-bit device image
at the device's 128 KiB heap, against a local HTTPS update server.

The server is Python's http.server behind ssl with a throwaway PKI made by
openssl (tests/pki.py, the MQTT tests' helper) under tests/.tmp: its
certificate is for broker.test, localhost and 127.0.0.1, signed by
server-ca; other-ca is the wrong CA. It serves manifests and an update
file built with tools/image.py (version 1.1.0 of the device image, signed
with a throwaway key by tools/sign.py); some routes misbehave on purpose
(stall, cut the connection, lie about size or hash).

The firmware side is tests/mpy/fetchmain.py on build/image/micropython,
writing the host board's slot files; the result is checked from here with
the simulator's bootloader (tools/bootloader.py): which slot boots and
whether its image checks.
"""

import hashlib
import http.server
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import bootloader  # noqa: E402
import image as imagetool  # noqa: E402
import sign  # noqa: E402

import pki as pkimod  # noqa: E402

N, N1 = "1.0.0", "1.1.0"
HEAP = "128k"  # the device budget
DRIVER = os.path.join(ROOT, "tests", "mpy", "fetchmain.py")


class Lab:
    """PKI, update file, key and the HTTPS server's routes."""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *a):
        pass

    def do_GET(self):
        lab = self.server.lab
        lab.hits[self.path] = lab.hits.get(self.path, 0) + 1
        route = lab.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        kind, body = route[0], route[1]
        if kind == "drop-once" and lab.hits[self.path] > 1:
            kind = "file"
        self.send_response(200)
        if kind != "no-length":
            length = route[2] if kind == "length" else len(body)
            self.send_header("Content-Length", str(length))
        self.end_headers()
        if kind == "trickle":  # a little, often: every read succeeds
            for i in range(0, len(body), 64):
                if lab.release.wait(0.1):
                    return
                self.wfile.write(body[i:i + 64])
                self.wfile.flush()
            return
        if kind in ("stall", "drop-once"):
            self.wfile.write(body[:200000])
            self.wfile.flush()
            if kind == "stall":
                lab.release.wait(60)  # hold the connection open, silent
            self.connection.shutdown(2)  # cut: no close_notify, no rest
            return
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.fail("openssl missing: `python3 tools/dev.py test` installs it")
    d = os.path.join(ROOT, "tests", ".tmp", "otafetch-%d" % os.getpid())
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    # throwaway; tools/sign.py refuses private keys inside the repository
    keys = tmp_path_factory.mktemp("otakey")
    srv = None
    try:  # the test PKI's private keys go, whatever fails
        lb = Lab()
        lb.dir = d
        lb.pki = pkimod.make(os.path.join(d, "pki"), "device")
        lb.key = str(keys / "k1.pem")
        sign.keygen(lb.key)
        lb.modulus = sign.modulus(lb.key)
        img = imagetool.variant(str(keys / "n1"), N1, trust=[lb.key])[0]
        lb.file = os.path.join(d, "n1.bin")
        sign.sign(lb.key, img, lb.file, N1, "host")
        with open(lb.file, "rb") as f:
            lb.data = f.read()
        lb.sha = hashlib.sha256(lb.data).hexdigest()
        srv = https_server(lb)
        yield lb
    finally:
        stop_server(srv)
        shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(str(keys), ignore_errors=True)


def https_server(lb):
    """The update server for lab lb (its pki, data and routes), serving on
    a free port of 127.0.0.1 (lb.port) until stop_server()."""
    lb.routes = {}
    lb.hits = {}
    lb.release = threading.Event()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(lb.pki.path("broker.crt"), lb.pki.path("broker.key"))
    s = Server(("127.0.0.1", 0), Handler)
    s.socket = ctx.wrap_socket(s.socket, server_side=True)
    s.lab = lb
    lb.port = s.server_address[1]
    threading.Thread(target=s.serve_forever, daemon=True).start()
    return s  # serving: shutdown() would wait forever for a loop never started


def stop_server(srv):
    if srv is not None:
        srv.lab.release.set()
        srv.shutdown()
        srv.server_close()


def manifest(lab, version=N1, size=None, sha=None, url="/fw/n1.bin"):
    return json.dumps({"version": version, "url": url,
                       "size": len(lab.data) if size is None else size,
                       "sha256": sha or lab.sha}).encode()


def serve(lab, prefix, man, file_route=None):
    """Routes under /<prefix>: the manifest host.json and, if given, the
    file at the manifest's URL. Returns the server URL for the device."""
    lab.routes["/%s/host.json" % prefix] = ("file", man)
    if file_route:
        lab.routes["/fw/%s.bin" % prefix] = file_route
    return "https://broker.test:%d/%s" % (lab.port, prefix)


def run(lab, tmp_path, server, ca="server-ca.crt", ip="127.0.0.1", timeout=120, **extra):
    """fetchmain.py on the device image; returns (result dict, state dir)."""
    state = str(tmp_path / "dev")
    os.makedirs(state, exist_ok=True)
    args = {"state": state, "server": server, "ip": ip, "ca": lab.pki.path(ca),
            "keys": {"1": lab.modulus.hex()}, "version": N}
    args.update(extra)
    exe = imagetool.IMAGE
    env = dict(os.environ, MICROPYPATH=".frozen")
    path = str(tmp_path / "args.json")
    with open(path, "w") as f:
        json.dump(args, f)
    p = subprocess.run([exe, "-X", "heapsize=" + HEAP, DRIVER, path],
                       capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    for line in p.stdout.splitlines():
        if line.startswith("@@RESULT "):
            return json.loads(line[9:]), state
    raise AssertionError("fetchmain.py gave no result (exit %d):\n%s\n%s"
                         % (p.returncode, p.stdout[-3000:], p.stderr[-3000:]))


def assert_untouched(r, state):
    assert bootloader._otadata(state).boot_slot() == 0, (
        "after a refused or failed update the running slot must still boot: %r" % r)


# ------------------------------------------------------------------------------ tests


def test_newer_version_is_found_downloaded_and_installed(lab, tmp_path):
    url = serve(lab, "good", manifest(lab, url="/fw/good.bin"), ("file", lab.data))
    r, state = run(lab, tmp_path, url, measure=True, source="cloud")
    assert r.get("ok") == N1, "N+1 must install: %r" % {k: r[k] for k in r if k != "audit"}
    assert bootloader._otadata(state).boot_slot() == 1, "set_boot() must select slot 1"
    head = bootloader.check_slot(state, 1, keys={1: lab.modulus})
    assert head is not None
    events = [tuple(e[1:4]) for e in r["audit"]]
    assert ("cloud", "ota start", "ok") in events and ("cloud", "ota installed", "ok") in events
    assert r["audit"][-1][1:] == ["cloud", "ota check", "ok", "%s -> %s: installed" % (N, N1)]
    m = r["mem"]
    assert m["bytes"] == len(lab.data) and m["samples"] >= 3, m
    kib_s = m["bytes"] / 1024 / max(m["ms"], 1) * 1000
    print("\nOTA download: %d bytes in %d ms = %.0f KiB/s; heap free at start %d B, "
          "lowest during %d B, largest free block at least %d B (%d samples, 128 KiB heap)"
          % (m["bytes"], m["ms"], kib_s, m["base_free"], m["min_free"], m["largest_min"],
             m["samples"]))


def test_not_newer_version_is_ignored_without_downloading(lab, tmp_path):
    url = serve(lab, "same", manifest(lab, version=N, url="/fw/same.bin"), ("file", lab.data))
    r, state = run(lab, tmp_path, url)
    assert "error" not in r and r["ok"] is None, r
    assert lab.hits.get("/fw/same.bin") is None, "a version not newer must not be downloaded"
    assert r["audit"][-1][1:] == ["cloud", "ota check", "ok",
                                  "%s: up to date (server offers %s)" % (N, N)], r["audit"]
    assert_untouched(r, state)


def test_wrong_ca_is_refused(lab, tmp_path):
    url = serve(lab, "ca", manifest(lab, url="/fw/ca.bin"), ("file", lab.data))
    r, state = run(lab, tmp_path, url, ca="other-ca.crt")
    assert "not from the configured CA" in r.get("error", ""), r
    assert lab.hits.get("/ca/host.json") is None, "no request may pass an unverified TLS session"
    assert_untouched(r, state)


def test_wrong_host_name_is_refused(lab, tmp_path):
    serve(lab, "name", manifest(lab, url="/fw/name.bin"), ("file", lab.data))
    # dialled at 127.0.0.1 as configured, but the certificate is for broker.test
    url = "https://wrong.test:%d/name" % lab.port
    r, state = run(lab, tmp_path, url)
    assert "for another host name" in r.get("error", ""), r
    assert lab.hits.get("/name/host.json") is None
    assert_untouched(r, state)


@pytest.mark.parametrize("case", ["size-small", "size-big", "hash", "no-length-longer"])
def test_manifest_that_lies_is_refused(lab, tmp_path, case):
    n = len(lab.data)
    prefix = "lie-" + case
    route = ("file", lab.data)
    if case == "size-small":  # the server's Content-Length gives it away
        man = manifest(lab, size=n - 4096, url="/fw/%s.bin" % prefix)
        want = "the server's file is %d bytes, its manifest says %d" % (n, n - 4096)
    elif case == "size-big":
        man = manifest(lab, size=n + 4096, url="/fw/%s.bin" % prefix)
        want = "the server's file is %d bytes, its manifest says %d" % (n, n + 4096)
    elif case == "hash":
        man = manifest(lab, sha="00" * 32, url="/fw/%s.bin" % prefix)
        want = "does not match its manifest's SHA-256"
    else:  # no Content-Length: the running count catches the extra bytes
        man = manifest(lab, size=n - 4096, url="/fw/%s.bin" % prefix)
        route = ("no-length", lab.data)
        want = "longer than its manifest says"
    url = serve(lab, prefix, man, route)
    r, state = run(lab, tmp_path, url)
    assert want in r.get("error", ""), r
    assert_untouched(r, state)
    assert r["audit"][-1][3] == "failed", r["audit"]


def test_server_that_stalls_times_out(lab, tmp_path):
    url = serve(lab, "stall", manifest(lab, url="/fw/stall.bin"), ("stall", lab.data))
    t0 = time.monotonic()
    r, state = run(lab, tmp_path, url, tune={"timeout_ms": 2000})
    assert "the download stalled (no data for 2 s)" in r.get("error", ""), r
    assert time.monotonic() - t0 < 60
    assert_untouched(r, state)


def test_server_that_trickles_is_cut_off_by_the_total_limit(lab, tmp_path):
    url = serve(lab, "trickle", manifest(lab, url="/fw/trickle.bin"), ("trickle", lab.data))
    r, state = run(lab, tmp_path, url, tune={"timeout_ms": 2000, "total_ms": 3000})
    assert "the download took longer than 3 s" in r.get("error", ""), r
    assert_untouched(r, state)
    assert ("cloud", "ota update", "cancelled") in [tuple(e[1:4]) for e in r["audit"]], r["audit"]


def test_settings_menu_in_use_refuses_check_now(lab, tmp_path):
    # (the periodic check's schedule, its back-off and the retry after a cut
    # are meter/otaauto.py's: tests/mpy/test_otajob.py, tests/test_ota_auto.py)
    url = serve(lab, "busy", manifest(lab, url="/fw/busy.bin"), ("file", lab.data))
    flag = tmp_path / "in-menu"
    flag.write_text("1")  # busy() is True while this file exists
    r, state = run(lab, tmp_path, url, busy=str(flag))
    assert "Settings menu is in use" in r.get("error", ""), r
    assert lab.hits.get("/busy/host.json") is None
    assert_untouched(r, state)


@pytest.mark.parametrize("case", ["not-json", "http-url", "short-hash", "huge"])
def test_bad_manifest_is_refused_with_a_clear_reason(lab, tmp_path, case):
    body, want = {
        "not-json": (b"<html>hello</html>", "the update manifest is not valid"),
        "http-url": (manifest(lab, url="http://broker.test/fw/n1.bin"),
                     "must be an https:// URL"),
        "short-hash": (manifest(lab, sha="abcd"), "sha256 is not 64 hex digits"),
        "huge": (b" " * 600 + manifest(lab), "the update manifest is too large"),
    }[case]
    url = serve(lab, "bad-" + case, body)
    r, state = run(lab, tmp_path, url)
    assert want in r.get("error", ""), r
    assert r["audit"][-1][1:4] == ["cloud", "ota check", "failed"], r["audit"]
    assert_untouched(r, state)


def test_short_heap_defers_the_check_instead_of_a_memory_error(lab, tmp_path):
    url = serve(lab, "short", manifest(lab, url="/fw/short.bin"), ("file", lab.data))
    r, state = run(lab, tmp_path, url, leave_free=12000)
    assert r["mem"]["base_free"] < 14000, r["mem"]
    assert r.get("error") == "not enough memory for the update check now", r
    assert lab.hits.get("/short/host.json") is None, "no connection on a short heap"
    assert r["audit"][-1][1:4] == ["cloud", "ota check", "failed"], r["audit"]
    assert_untouched(r, state)


def test_upload_path_on_the_device_image_installs_and_reports_its_speed(lab, tmp_path):
    """meter/otaupload.py on the 32-bit image at 128 KiB: the update file as
    a request body over TCP (the Web Admin's page will hand it the same
    stream)."""
    import socket

    state = str(tmp_path / "dev")
    os.makedirs(state)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    args = {"state": state, "mode": "upload", "port": port, "length": len(lab.data),
            "keys": {"1": lab.modulus.hex()}, "version": N, "measure": True, "server": "",
            "ca": ""}
    path = str(tmp_path / "args.json")
    with open(path, "w") as f:
        json.dump(args, f)
    p = subprocess.Popen([imagetool.IMAGE, "-X", "heapsize=" + HEAP, DRIVER, path],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, MICROPYPATH=".frozen"), cwd=ROOT)
    try:
        line = p.stdout.readline()
        assert line.startswith("@@LISTENING"), line + p.stderr.read()
        c = socket.create_connection(("127.0.0.1", port), timeout=60)
        c.sendall(lab.data)
        assert c.recv(16) == b"done"
        c.close()
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    r = json.loads([x for x in out.splitlines() if x.startswith("@@RESULT ")][0][9:])
    assert r.get("ok") == N1, r
    assert bootloader._otadata(state).boot_slot() == 1
    assert bootloader.check_slot(state, 1, keys={1: lab.modulus}) is not None
    m = r["mem"]
    print("\nOTA upload: %d bytes in %d ms = %.0f KiB/s; heap free at start %d B, lowest "
          "during %d B, largest free block at least %d B (128 KiB heap)"
          % (m["bytes"], m["ms"], m["bytes"] / 1024 / max(m["ms"], 1) * 1000, m["base_free"],
             m["min_free"], m["largest_min"]))
