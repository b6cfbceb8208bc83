#!/usr/bin/env python3
"""Install and check the pinned device libraries (device-libs.toml).

    python tools/deps.py install [--cache DIR] [--dest DIR] [--manifest FILE]
    python tools/deps.py verify  [--cache DIR] [--dest DIR] [--manifest FILE]

install: for every library in the manifest, make sure its sdist is in the
    cache (default build/cache), downloading it from the package index when
    it is missing; check the sha256 of EVERY archive against the manifest
    before opening ANY of them; then extract exactly the listed files into a
    fresh tree and swap it in as the destination (default build/lib). A stamp
    next to the destination (build/lib.stamp.json) records what was installed,
    so a second run with nothing changed does no work.
verify: check that every cached archive has the pinned sha256 and that the
    destination holds exactly the listed files, byte for byte as in the
    archives (no file missing, changed or extra). Never touches the network.

Exit status 0 on success; 1 with a message naming the problem otherwise.

The index is the one pip is configured with (PIP_INDEX_URL / `pip config`
index-url, then extra-index-url), falling back to pip's default; files are
looked up with the PEP 691 JSON simple API. CPython standard library only.
"""

import argparse
import hashlib
import json
import os
import posixpath
import re
import shutil
import ssl
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = os.path.join(ROOT, "device-libs.toml")
CACHE = os.path.join(ROOT, "build", "cache")
DEST = os.path.join(ROOT, "build", "lib")
STAMP_VERSION = 1
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"


class DepsError(Exception):
    """A failure to report to the user (no traceback)."""


def log(msg):
    print("[deps] " + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- manifest

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _safe_relpath(p, what):
    """A normalised relative POSIX path with no '..' and no absolute part."""
    if not isinstance(p, str) or not p or p.startswith("/") or "\\" in p:
        raise DepsError("manifest: bad %s path %r" % (what, p))
    norm = posixpath.normpath(p)
    if norm != p or norm == "." or norm.split("/")[0] == "..":
        raise DepsError("manifest: bad %s path %r (must be normalised, relative, "
                        "without '..')" % (what, p))
    return p


def load_manifest(path):
    """Parse and validate the manifest; return its list of libraries."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        data = tomllib.loads(raw.decode("utf-8"))
    except OSError as e:
        raise DepsError("cannot read manifest %s: %s" % (path, e))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise DepsError("manifest %s is not valid TOML: %s" % (path, e))
    if data.get("schema") != 1:
        raise DepsError("manifest %s: expected schema = 1" % path)
    libs = data.get("lib")
    if not isinstance(libs, list) or not libs:
        raise DepsError("manifest %s: no [[lib]] entries" % path)
    seen_dest, seen_sdist = {}, set()
    for lib in libs:
        for key in ("name", "version", "sdist", "sha256", "license"):
            if not isinstance(lib.get(key), str) or not lib[key]:
                raise DepsError("manifest: library %r lacks %r" % (lib.get("name"), key))
        unknown = set(lib) - {"name", "version", "sdist", "sha256", "license", "files",
                              "host_only"}
        if unknown:
            raise DepsError("manifest: library %r has unknown keys %s"
                            % (lib["name"], sorted(unknown)))
        if not _HEX64.match(lib["sha256"]):
            raise DepsError("manifest: library %r: sha256 must be 64 lowercase hex digits"
                            % lib["name"])
        sd = lib["sdist"]
        if "/" in sd or not sd.endswith(".tar.gz") or lib["version"] not in sd:
            raise DepsError("manifest: library %r: sdist %r must be a .tar.gz file name "
                            "containing the version" % (lib["name"], sd))
        if sd in seen_sdist:
            raise DepsError("manifest: sdist %r listed twice" % sd)
        seen_sdist.add(sd)
        files = lib.get("files")
        if not isinstance(files, dict) or not files:
            raise DepsError("manifest: library %r has no files" % lib["name"])
        for src, dst in files.items():
            _safe_relpath(src, "archive")
            _safe_relpath(dst, "destination")
            if dst in seen_dest:
                raise DepsError("manifest: destination %r comes from both %r and %r"
                                % (dst, seen_dest[dst], lib["name"]))
            seen_dest[dst] = lib["name"]
        host_only = lib.get("host_only", [])
        if not isinstance(host_only, list) or not set(host_only) <= set(files.values()):
            raise DepsError("manifest: library %r: host_only must list destinations "
                            "of its own files" % lib["name"])
    return libs, hashlib.sha256(raw).hexdigest()


# ---------------------------------------------------------------- hashing

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def check_archive(lib, cache):
    """Return the path of lib's cached sdist after checking its sha256.

    Raises DepsError if it is missing or does not match the manifest."""
    path = os.path.join(cache, lib["sdist"])
    if not os.path.isfile(path):
        raise DepsError("%s is not in the cache %s" % (lib["sdist"], cache))
    got = sha256_file(path)
    if got != lib["sha256"]:
        raise DepsError(
            "SHA256 MISMATCH for %s: the manifest pins %s but the cached file %s has %s. "
            "Refusing to use it; nothing was extracted. If you did not expect this, "
            "investigate; otherwise delete the file and run install again to re-download."
            % (lib["sdist"], lib["sha256"], path, got))
    return path


# ---------------------------------------------------------------- download

def _pip_config():
    """pip's effective configuration as {key: value} (`pip config list`)."""
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                             capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    conf = {}
    for line in out.splitlines():
        m = re.match(r"^([^=]+)=(.*)$", line.strip())
        if m:
            v = m.group(2).strip()
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
                v = v[1:-1]
            conf[m.group(1).strip()] = v
    return conf


def _first(conf, name):
    # pip's precedence: environment, then the install section, then global.
    for key in (":env:." + name, "install." + name, "global." + name):
        if conf.get(key):
            return conf[key]
    return None


def index_urls():
    """Index URLs to try, as pip would use them, plus an SSL context."""
    conf = _pip_config()
    primary = os.environ.get("PIP_INDEX_URL") or _first(conf, "index-url")
    if not primary:
        try:
            from pip._internal.models.index import PyPI
            primary = PyPI.simple_url
        except ImportError:
            raise DepsError("cannot tell which package index to use: pip is not "
                            "available and PIP_INDEX_URL is not set")
    extra = (os.environ.get("PIP_EXTRA_INDEX_URL") or _first(conf, "extra-index-url") or "")
    urls = [primary] + extra.split()
    # The JSON simple API is served over HTTP(S); local file:// indexes are skipped.
    urls = [u for u in urls if u.startswith(("https://", "http://"))]
    cafile = os.environ.get("PIP_CERT") or _first(conf, "cert")
    ctx = ssl.create_default_context(cafile=cafile if cafile and os.path.exists(cafile)
                                     else None)
    return urls, ctx


def _get(url, ctx, accept=None, timeout=120):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    return urllib.request.urlopen(req, timeout=timeout, context=ctx)


def _normalise(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def find_file_url(lib, urls, ctx):
    """The download URL of lib's sdist, via the PEP 691 JSON simple API."""
    problems = []
    for base in urls:
        page = base.rstrip("/") + "/" + _normalise(lib["name"]) + "/"
        try:
            with _get(page, ctx, accept=JSON_ACCEPT) as r:
                ctype = r.headers.get("Content-Type", "")
                body = r.read()
            if JSON_ACCEPT not in ctype:
                problems.append("%s: not a JSON simple API response (%s)" % (page, ctype))
                continue
            data = json.loads(body)
        except Exception as e:  # noqa: BLE001 - any failure: try the next index
            problems.append("%s: %s" % (page, e))
            continue
        for f in data.get("files", []):
            if f.get("filename") == lib["sdist"]:
                listed = f.get("hashes", {}).get("sha256")
                if listed and listed != lib["sha256"]:
                    raise DepsError(
                        "SHA256 MISMATCH for %s: the manifest pins %s but the index %s "
                        "lists %s. Refusing to download it." % (lib["sdist"], lib["sha256"],
                                                                 page, listed))
                return urllib.parse.urljoin(page, f["url"]).split("#")[0]
        problems.append("%s: no file %s" % (page, lib["sdist"]))
    raise DepsError("cannot find %s on the package index:\n  %s"
                    % (lib["sdist"], "\n  ".join(problems) or "no HTTP(S) index configured"))


def download(lib, cache, urls, ctx):
    """Download lib's sdist into the cache, keeping it only if its sha256 matches."""
    url = find_file_url(lib, urls, ctx)
    log("downloading %s" % lib["sdist"])
    os.makedirs(cache, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=".part-")
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, _get(url, ctx) as r:
            for chunk in iter(lambda: r.read(1 << 16), b""):
                h.update(chunk)
                out.write(chunk)
        got = h.hexdigest()
        if got != lib["sha256"]:
            raise DepsError("SHA256 MISMATCH for %s downloaded from the index: the manifest "
                            "pins %s but the file has %s. Refusing it; it was not kept."
                            % (lib["sdist"], lib["sha256"], got))
        os.replace(tmp, os.path.join(cache, lib["sdist"]))
    except DepsError:
        raise
    except Exception as e:  # noqa: BLE001
        raise DepsError("download of %s failed: %s" % (lib["sdist"], e))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ---------------------------------------------------------------- extraction

def read_members(lib, archive):
    """{destination: bytes} for lib's listed files, read from its (checked) archive."""
    out = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for src, dst in lib["files"].items():
                try:
                    m = tar.getmember(src)
                except KeyError:
                    raise DepsError("%s has no file %s (listed in the manifest)"
                                    % (lib["sdist"], src))
                if not m.isreg():
                    raise DepsError("%s: %s is not a regular file (link or directory); "
                                    "refusing it" % (lib["sdist"], src))
                out[dst] = tar.extractfile(m).read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DepsError("cannot read %s: %s" % (archive, e))
    return out


def expected_tree(libs, cache):
    """Check every archive first, then read every listed file: {dest: bytes}."""
    archives = [check_archive(lib, cache) for lib in libs]
    tree = {}
    for lib, archive in zip(libs, archives):
        tree.update(read_members(lib, archive))
    return tree


def actual_tree(dest):
    """{relative path: bytes} of every file under dest."""
    tree = {}
    for dirpath, dirnames, filenames in os.walk(dest):
        for fn in filenames:
            p = os.path.join(dirpath, fn)
            rel = os.path.relpath(p, dest).replace(os.sep, "/")
            with open(p, "rb") as f:
                tree[rel] = f.read()
    return tree


def stamp_path(dest):
    return os.path.normpath(dest) + ".stamp.json"


def _stamp(manifest_hash, tree):
    return {"version": STAMP_VERSION, "manifest_sha256": manifest_hash,
            "files": {k: hashlib.sha256(v).hexdigest() for k, v in sorted(tree.items())}}


def up_to_date(dest, manifest_hash):
    """True if the stamp matches the manifest and dest matches the stamp."""
    try:
        with open(stamp_path(dest)) as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        return False
    if stamp.get("version") != STAMP_VERSION or stamp.get("manifest_sha256") != manifest_hash:
        return False
    try:
        return _stamp(manifest_hash, actual_tree(dest))["files"] == stamp.get("files")
    except OSError:
        return False


def write_tree(dest, tree):
    """Build the tree beside dest, then swap it in (no half-installed state)."""
    dest = os.path.normpath(dest)
    parent = os.path.dirname(dest) or "."
    os.makedirs(parent, exist_ok=True)
    new = tempfile.mkdtemp(dir=parent, prefix=".new-" + os.path.basename(dest) + "-")
    try:
        for rel, data in sorted(tree.items()):
            p = os.path.join(new, *rel.split("/"))
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(data)
        old = None
        if os.path.lexists(dest):
            old = tempfile.mkdtemp(dir=parent, prefix=".old-" + os.path.basename(dest) + "-")
            os.rmdir(old)
            os.rename(dest, old)
        os.rename(new, dest)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if os.path.exists(new):
            shutil.rmtree(new, ignore_errors=True)


# ---------------------------------------------------------------- commands

def cmd_install(args):
    libs, mhash = load_manifest(args.manifest)
    if up_to_date(args.dest, mhash):
        log("device libraries up to date in %s" % args.dest)
        return
    missing = [lib for lib in libs
               if not os.path.isfile(os.path.join(args.cache, lib["sdist"]))]
    if missing:
        urls, ctx = index_urls()
        for lib in missing:
            download(lib, args.cache, urls, ctx)
    tree = expected_tree(libs, args.cache)  # every sha256 checked before any extraction
    write_tree(args.dest, tree)
    with open(stamp_path(args.dest), "w") as f:
        json.dump(_stamp(mhash, tree), f, indent=1, sort_keys=True)
    log("installed %d files from %d libraries into %s"
        % (len(tree), len(libs), args.dest))


def cmd_verify(args):
    libs, _ = load_manifest(args.manifest)
    problems = []
    archives = {}
    for lib in libs:
        try:
            archives[lib["sdist"]] = check_archive(lib, args.cache)
        except DepsError as e:
            problems.append(str(e))
    if not os.path.isdir(args.dest):
        problems.append("%s does not exist: run `tools/deps.py install`" % args.dest)
    elif not problems:
        want = {}
        for lib in libs:
            want.update(read_members(lib, archives[lib["sdist"]]))
        have = actual_tree(args.dest)
        for rel in sorted(set(want) | set(have)):
            if rel not in have:
                problems.append("%s: missing from %s" % (rel, args.dest))
            elif rel not in want:
                problems.append("%s: in %s but not from the manifest" % (rel, args.dest))
            elif have[rel] != want[rel]:
                problems.append("%s: differs from the pinned archive" % rel)
    if problems:
        raise DepsError("verify failed:\n  " + "\n  ".join(problems))
    log("verified %d libraries in %s and %s" % (len(libs), args.cache, args.dest))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=("install", "verify"))
    ap.add_argument("--manifest", default=MANIFEST, help="default: device-libs.toml")
    ap.add_argument("--cache", default=CACHE, help="download cache (default build/cache)")
    ap.add_argument("--dest", default=DEST, help="install tree (default build/lib)")
    args = ap.parse_args(argv)
    try:
        (cmd_install if args.command == "install" else cmd_verify)(args)
    except DepsError as e:
        log("ERROR: " + str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
