"""tools/sign.py and tools/bootloader.py, and the firmware against them.

Keys are made by openssl in temporary directories for this module and
thrown away with them. The firmware side runs under the MicroPython unix
port (tests/upy.py): it must accept what openssl signed, which makes
openssl the independent check of meter/otafmt.py's verifier.
"""

import hashlib
import os
import struct
import subprocess
import sys

import pytest

import upy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import bootloader  # noqa: E402
import sign  # noqa: E402
from fwimport import otadata, otafmt  # noqa: E402

SIGN = [sys.executable, os.path.join(ROOT, "tools", "sign.py")]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    k1, k2 = str(d / "k1.pem"), str(d / "k2.pem")
    sign.keygen(k1)
    sign.keygen(k2)
    return k1, k2


def run(*args):
    return subprocess.run(SIGN + list(args), capture_output=True, text=True)


def test_keygen_makes_a_private_3072_bit_key_readable_only_by_its_owner(keys):
    assert os.stat(keys[0]).st_mode & 0o777 == 0o600
    assert len(sign.modulus(keys[0])) == 384


def test_keygen_refuses_a_path_inside_the_repository_and_an_existing_file(keys, tmp_path):
    with pytest.raises(sign.SignError, match="inside the repository"):
        sign.keygen(os.path.join(ROOT, "tools", "k.pem"))
    assert not os.path.exists(os.path.join(ROOT, "tools", "k.pem"))
    r = run("keygen", keys[0])
    assert r.returncode == 1 and "exists already" in r.stderr


def test_pubkey_entry_is_the_modulus_as_the_firmware_reads_it(keys):
    r = run("pubkey", keys[0], "--id", "3")
    assert r.returncode == 0, r.stderr
    key_id, n = r.stdout.strip().rstrip(",").split(": ", 1)
    out = subprocess.run(["openssl", "rsa", "-in", keys[0], "-noout", "-modulus"],
                         capture_output=True, text=True, check=True).stdout
    assert key_id == "3"
    assert eval(n) == bytes.fromhex(out.split("=")[1].strip())  # a bytes literal
    assert run("pubkey", keys[0], "--id", "0").returncode == 1  # 0 = factory


def test_sign_writes_header_signature_payload_exactly(keys, tmp_path):
    img = tmp_path / "img"
    img.write_bytes(b"\x7fELF" + bytes(range(256)) * 10)
    out = tmp_path / "u.bin"
    r = run("sign", keys[0], str(img), str(out), "--version", "1.2.3", "--target", "host",
            "--secver", "2", "--id", "4")
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    payload = img.read_bytes()
    assert data[:64] == (b"MOTA\x01\x04\x40\x00" + struct.pack("<III", 0x010203, 2, len(payload))
                         + b"host" + b"\x00" * 8 + hashlib.sha256(payload).digest())
    assert len(data) == 64 + 384 + len(payload) and data[448:] == payload
    # openssl alone agrees that the 384 bytes sign the header
    sig = tmp_path / "sig"
    sig.write_bytes(data[64:448])
    pub = tmp_path / "pub.pem"
    pub.write_bytes(sign._pubkey_pem(keys[0]))
    hdr = tmp_path / "hdr"
    hdr.write_bytes(data[:64])
    subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(pub), "-signature", str(sig),
                    str(hdr)], check=True, capture_output=True)
    r = run("verify", str(out), "--key", str(pub))
    assert r.returncode == 0 and "version=1.2.3" in r.stdout, r.stderr


def test_verify_refuses_other_key_tampering_and_truncation(keys, tmp_path):
    img = tmp_path / "img"
    img.write_bytes(b"payload" * 100)
    out = tmp_path / "u.bin"
    sign.sign(keys[0], str(img), str(out), "0.2.0", "esp32")
    r = run("verify", str(out), "--key", keys[1])
    assert r.returncode == 1 and "signature check failed (openssl)" in r.stderr
    data = bytearray(out.read_bytes())
    data[10] ^= 1  # header (its version) changed after signing
    out.write_bytes(bytes(data))
    assert "signature check failed" in run("verify", str(out), "--key", keys[0]).stderr
    data[10] ^= 1
    out.write_bytes(bytes(data[:-1]))
    r = run("verify", str(out), "--key", keys[0])
    assert "payload is 699 bytes, the header says 700" in r.stderr
    data[-1] ^= 1
    out.write_bytes(bytes(data))
    assert "SHA-256 does not match" in run("verify", str(out), "--key", keys[0]).stderr
    out.write_bytes(b"PK\x03\x04" + bytes(600))
    assert "not an update file" in run("verify", str(out), "--key", keys[0]).stderr


def test_firmware_verifier_in_cpython_agrees_with_openssl(keys, tmp_path):
    img = tmp_path / "img"
    img.write_bytes(b"x" * 5000)
    out = tmp_path / "u.bin"
    sign.sign(keys[0], str(img), str(out), "0.2.0", "host", key_id=1)
    n1, n2 = sign.modulus(keys[0]), sign.modulus(keys[1])
    assert sign.verify(str(out), keys={1: n1})["length"] == 5000
    with pytest.raises(sign.SignError, match="firmware verifier"):
        sign.verify(str(out), keys={1: n2})
    with pytest.raises(sign.SignError, match="unknown key"):
        sign.verify(str(out), keys={2: n1})


def _install_under_micropython(state, update, modulus, **extra):
    """Feed an update file to meter/ota.py's Updater on the host board's
    slots in `state`, under MicroPython; returns its output."""
    code = """
from meter import ota
from meter.board.otahost import HostOta
o = HostOta(%r)
u = ota.Updater(o, "host", keys={1: %r})
f = open(%r, "rb")
try:
    while True:
        c = f.read(1500)
        if not c:
            break
        u.feed(c)
    print("OK", u.finish())
except ota.UpdateError as e:
    print("REFUSED", e)
""" % (str(state), modulus, str(update))
    return upy.exec_code(code, **extra).strip().splitlines()[-1]  # after the log


def test_openssl_signed_update_installs_on_the_firmware_and_boots(keys, tmp_path):
    """End to end without the device image: factory flash a dummy program,
    sign a second one with openssl, install it with the firmware's updater
    under MicroPython, boot it with tools/bootloader.py, roll back."""
    state = tmp_path / "state"
    v1 = tmp_path / "v1"
    v1.write_text("#!/bin/sh\necho firmware 1\n")
    assert bootloader.factory_install(str(state), str(v1), "0.1.0") is True
    assert bootloader.factory_install(str(state), str(v1), "0.1.0") is False
    exe = bootloader.boot(str(state), log=lambda m: None)
    assert subprocess.run([exe], capture_output=True, text=True).stdout == "firmware 1\n"
    assert (state / "ota-running").read_text() == "0\n"

    v2 = tmp_path / "v2"
    v2.write_text("#!/bin/sh\necho firmware 2\n" + "# padding\n" * 900)
    upd = tmp_path / "u.bin"
    sign.sign(keys[0], str(v2), str(upd), "0.2.0", "host")
    n = sign.modulus(keys[0])
    assert _install_under_micropython(state, upd, n).strip() == "OK 0.2.0"
    trusted = {1: n}
    exe = bootloader.boot(str(state), keys=trusted, log=lambda m: None)
    assert subprocess.run([exe], capture_output=True, text=True).stdout == "firmware 2\n"
    assert (state / "ota-running").read_text() == "1\n"
    od = otadata.Otadata(bootloader.FileDev(str(state / "otadata.bin"), 0x2000))
    assert od.slot_state(1) == otadata.PENDING_VERIFY
    # reset before the self-test confirmed it: back to firmware 1
    exe = bootloader.boot(str(state), keys=trusted, log=lambda m: None)
    assert subprocess.run([exe], capture_output=True, text=True).stdout == "firmware 1\n"
    assert od.slot_state(1) == otadata.ABORTED
    # the same file once more, now it is the other key's signature
    sign.sign(keys[1], str(v2), str(upd), "0.2.0", "host")
    out = _install_under_micropython(state, upd, n)
    assert out.strip() == "REFUSED signature check failed: damaged or not an official update"


def _dummy_state(tmp_path):
    state = tmp_path / "state"
    img = tmp_path / "img"
    img.write_bytes(b"#!/bin/sh\necho hi\n")
    bootloader.factory_install(str(state), str(img), "0.1.0")
    return state


def test_bootloader_factory_install_layout_exact(tmp_path):
    state = _dummy_state(tmp_path)
    s0 = (state / "ota_0.bin").read_bytes()
    assert len(s0) == 0x180000 and (state / "otadata.bin").read_bytes() == b"\xff" * 0x2000
    payload = b"#!/bin/sh\necho hi\n"
    assert s0[:len(payload)] == payload and set(s0[len(payload):0x17F000]) == {0xFF}
    rec = s0[0x17F000:]
    assert otafmt.parse_header(rec)[:5] == (0, 0x000100, 0, len(payload), "host")
    assert rec[64:448] == bytes(384) and set(rec[448:]) == {0xFF}


def test_bootloader_skips_a_damaged_slot_and_fails_with_none(tmp_path):
    state = _dummy_state(tmp_path)
    od = otadata.Otadata(bootloader.FileDev(str(state / "otadata.bin"), 0x2000))
    od.set_boot(1)  # otadata says slot 1, which holds nothing
    msgs = []
    exe = bootloader.boot(str(state), log=msgs.append)
    assert exe.endswith("slot-0") and "ota_1: no image" in msgs[0]
    with open(state / "ota_0.bin", "r+b") as f:  # a bit flips in slot 0
        f.write(b"X")
    with pytest.raises(bootloader.BootError, match="no bootable image: .*SHA-256 mismatch"):
        bootloader.boot(str(state), log=msgs.append)


def test_bootloader_refuses_a_signature_from_an_untrusted_key(keys, tmp_path):
    state = _dummy_state(tmp_path)
    img = tmp_path / "v2"
    img.write_bytes(b"#!/bin/sh\necho 2\n")
    upd = tmp_path / "u.bin"
    sign.sign(keys[1], str(img), str(upd), "0.2.0", "host")
    n1, n2 = sign.modulus(keys[0]), sign.modulus(keys[1])
    assert _install_under_micropython(state, upd, n2).strip() == "OK 0.2.0"
    msgs = []
    exe = bootloader.boot(str(state), keys={1: n1}, log=msgs.append)
    assert exe.endswith("slot-0") and "ota_1: signature check failed" in msgs[0]


def test_bootloader_partition_sizes_are_the_partition_table():
    sizes = {}
    with open(os.path.join(ROOT, "firmware", "boards", "METER_ESP32", "partitions.csv")) as f:
        for line in f:
            cols = [c.strip() for c in line.split("#")[0].split(",")]
            if len(cols) >= 5:
                sizes[cols[0]] = int(cols[4], 16)
    assert (bootloader.OTADATA_SIZE, bootloader.SLOT_SIZE) == (sizes["otadata"], sizes["ota_0"])
    assert sizes["ota_1"] == sizes["ota_0"]


def test_image_larger_than_a_slot_is_refused_by_factory_install(tmp_path):
    img = tmp_path / "big"
    img.write_bytes(b"\0" * (0x180000 - 4096 + 1))
    with pytest.raises(bootloader.BootError, match="a slot holds at most 1568768"):
        bootloader.factory_install(str(tmp_path / "s"), str(img), "0.1.0")
