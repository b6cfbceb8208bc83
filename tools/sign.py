#!/usr/bin/env python3
"""Make and check signed firmware update files (docs/ota.md).

    python3 tools/sign.py keygen KEY.pem
    python3 tools/sign.py pubkey KEY.pem --id N        # entry for meter/otakeys.py
    python3 tools/sign.py sign KEY.pem IMAGE OUT --version X.Y.Z --target esp32|host
                               [--secver N] [--id N]
    python3 tools/sign.py verify FILE (--key KEY.pem | --firmware-keys)

RSA-3072, PKCS#1 v1.5 signature over SHA-256 of the 64-byte header, which
holds the payload's SHA-256. The private-key work is done by the openssl
command-line tool (no Python crypto package is installed in .venv); the
file layout comes from the firmware's own meter/otafmt.py. `verify --key`
checks with openssl, independently of the firmware's verifier;
`verify --firmware-keys` checks exactly as the device does, with the keys
built into the firmware (meter/otakeys.py).

The private key never enters the repository: keygen refuses a path inside
it. Keep it offline; tests make throwaway keys in temporary directories.
"""

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fwimport import ROOT, otafmt  # noqa: E402

BITS = 3072


class SignError(Exception):
    pass


def _openssl(*args, data=None):
    r = subprocess.run(["openssl", *args], input=data, capture_output=True)
    if r.returncode != 0:
        raise SignError("openssl %s failed: %s" % (args[0], r.stderr.decode().strip()))
    return r.stdout


def _inside_repo(path):
    p = os.path.realpath(path)
    return p == ROOT or p.startswith(ROOT + os.sep)


def keygen(path):
    if _inside_repo(path):
        raise SignError("refusing to write a private key inside the repository: " + path)
    if os.path.exists(path):
        raise SignError("exists already: " + path)
    old = os.umask(0o077)  # the key file is created 0600
    try:
        _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:%d" % BITS,
                 "-out", path)
    finally:
        os.umask(old)


def modulus(key_path):
    """The RSA modulus (384 bytes) of a private or public PEM key."""
    for extra in ([], ["-pubin"]):
        try:
            out = _openssl("rsa", *extra, "-in", key_path, "-noout", "-modulus").decode()
        except SignError:
            continue
        n = bytes.fromhex(out.strip().split("=", 1)[1])
        if len(n) != otafmt.SIG_LEN:
            raise SignError("%s is a %d-bit key; updates need RSA-%d"
                            % (key_path, len(n) * 8, BITS))
        return n
    raise SignError("not an RSA key: " + key_path)


def pubkey_entry(key_path, key_id):
    if not 1 <= key_id <= 255:
        raise SignError("key id must be 1..255 (0 marks a factory image)")
    return "    %d: %r,\n" % (key_id, modulus(key_path))


def sign(key_path, image, out, version, target, secver=0, key_id=1):
    with open(image, "rb") as f:
        payload = f.read()
    head = otafmt.pack_header(key_id, otafmt.version_code(version), secver, len(payload),
                              target, hashlib.sha256(payload).digest())
    sig = _openssl("dgst", "-sha256", "-sign", key_path, data=head)
    if len(sig) != otafmt.SIG_LEN:
        raise SignError("signature is %d bytes; updates need RSA-%d" % (len(sig), BITS))
    with open(out, "wb") as f:
        f.write(head + sig + payload)
    return head


def verify(path, key_path=None, keys=None):
    """Check a file; returns its header fields as a dict, raises SignError
    saying what is wrong. key_path: check with openssl against that key;
    keys: {id: modulus}, check with the firmware's verifier."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        key_id, version, secver, length, target, sha = otafmt.parse_header(data)
    except otafmt.FormatError as e:
        raise SignError(str(e))
    head = data[:otafmt.HEAD_LEN]
    sig = data[otafmt.HEAD_LEN:otafmt.RECORD_LEN]
    payload = data[otafmt.RECORD_LEN:]
    if len(payload) != length:
        raise SignError("payload is %d bytes, the header says %d" % (len(payload), length))
    if hashlib.sha256(payload).digest() != sha:
        raise SignError("payload SHA-256 does not match the header")
    if key_path:
        with tempfile.TemporaryDirectory() as d:
            pub, s = os.path.join(d, "pub.pem"), os.path.join(d, "sig")
            with open(pub, "wb") as f:
                f.write(_pubkey_pem(key_path))
            with open(s, "wb") as f:
                f.write(sig)
            try:
                _openssl("dgst", "-sha256", "-verify", pub, "-signature", s, data=head)
            except SignError:
                raise SignError("signature check failed (openssl)")
    if keys is not None:
        if key_id not in keys:
            raise SignError("signed with an unknown key (id %d)" % key_id)
        if not otafmt.signature_ok(head, sig, keys[key_id]):
            raise SignError("signature check failed (firmware verifier)")
    return {"key_id": key_id, "version": otafmt.version_text(version), "secver": secver,
            "length": length, "target": target, "sha256": sha.hex()}


def _pubkey_pem(key_path):
    try:
        return _openssl("pkey", "-in", key_path, "-pubout")
    except SignError:
        return _openssl("pkey", "-pubin", "-in", key_path, "-pubout")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("keygen")
    p.add_argument("key")
    p = sub.add_parser("pubkey")
    p.add_argument("key")
    p.add_argument("--id", type=int, default=1)
    p = sub.add_parser("sign")
    p.add_argument("key")
    p.add_argument("image")
    p.add_argument("out")
    p.add_argument("--version", required=True)
    p.add_argument("--target", required=True, choices=("esp32", "host"))
    p.add_argument("--secver", type=int, default=0)
    p.add_argument("--id", type=int, default=1)
    p = sub.add_parser("verify")
    p.add_argument("file")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--key")
    g.add_argument("--firmware-keys", action="store_true")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "keygen":
            keygen(a.key)
            print("private key written to %s (keep it out of the repository)" % a.key)
        elif a.cmd == "pubkey":
            sys.stdout.write(pubkey_entry(a.key, a.id))
        elif a.cmd == "sign":
            sign(a.key, a.image, a.out, a.version, a.target, a.secver, a.id)
            print("%s: %s %s signed with key %d" % (a.out, a.target, a.version, a.id))
        else:
            keys = None
            if a.firmware_keys:
                from meter.otakeys import KEYS as keys
            info = verify(a.file, a.key, keys)
            print("OK " + " ".join("%s=%s" % kv for kv in info.items()))
    except (SignError, otafmt.FormatError, OSError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
