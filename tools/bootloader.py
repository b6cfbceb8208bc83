"""The simulator's bootloader: pick the app slot as the ESP32 would, start it.

The launcher (tools/sim.py) calls, before each start of the firmware:

    import bootloader
    bootloader.factory_install(state_dir, "build/image/micropython", "0.1.0")
    exe = bootloader.boot(state_dir)       # path of the executable to run

factory_install() flashes the image into ota_0 the first time (no bootable
image yet) and does nothing later (force=True flashes it again). boot()
applies ESP-IDF's bootloader rules to DIR/otadata.bin with the firmware's
own meter/otadata.py: an image still PENDING_VERIFY (started, never
confirmed) becomes ABORTED and the other slot starts; a NEW one becomes
PENDING_VERIFY. It then checks the chosen slot's image, as the ESP32's
bootloader checks the app image: the slot record (the update file's header
and signature, written by meter/ota.py into the slot's last 4 KiB) must
parse, the payload's length must fit and its SHA-256 match; with `keys`
({id: modulus}) the signature must verify too, except for a factory record
(key id 0, flashed over USB). A slot that fails is skipped for the other
one, as ESP-IDF's bootloader does; with neither, BootError.

The payload is copied to DIR/boot/slot-N (mode 0755) and the slot's index
written to DIR/ota-running, which the host board reads (meter/board/
otahost.py) to know which slot it runs from.
"""

import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fwimport import otadata, otafmt  # noqa: E402

BLOCK = 4096
OTADATA_SIZE = 0x2000  # firmware/boards/METER_ESP32/partitions.csv
SLOT_SIZE = 0x180000
LABELS = ("ota_0", "ota_1")
FACTORY_KEY = 0
RUNNING_FILE = "ota-running"


class BootError(Exception):
    pass


class FileDev:
    """A partition file (as meter/board/flashfile.py keeps them) with the
    block protocol meter/otadata.py uses: made erased (0xFF) when missing,
    programs AND into the old bytes as NOR flash does."""

    def __init__(self, path, size):
        self.path = path
        self.size = size
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(b"\xff" * size)

    def readblocks(self, block, buf, offset=0):
        with open(self.path, "rb") as f:
            f.seek(block * BLOCK + offset)
            data = f.read(len(buf))
        data += b"\xff" * (len(buf) - len(data))
        buf[:] = data

    def writeblocks(self, block, buf, offset=0):
        addr = block * BLOCK + (offset or 0)
        old = bytearray(len(buf))
        self.readblocks(block, old, offset or 0)
        with open(self.path, "r+b") as f:
            f.seek(addr)
            f.write(bytes(a & b for a, b in zip(old, bytes(buf))))

    def ioctl(self, op, arg=None):
        if op == 4:
            return self.size // BLOCK
        if op == 5:
            return BLOCK
        if op == 6:
            with open(self.path, "r+b") as f:
                f.seek(arg * BLOCK)
                f.write(b"\xff" * BLOCK)
        return 0


def _otadata(state_dir):
    return otadata.Otadata(FileDev(os.path.join(state_dir, "otadata.bin"), OTADATA_SIZE))


def _slot_path(state_dir, i):
    return os.path.join(state_dir, LABELS[i] + ".bin")


def check_slot(state_dir, i, keys=None):
    """(header fields, payload) of the image in slot i; BootError says why
    it cannot boot."""
    path = _slot_path(state_dir, i)
    if not os.path.exists(path):
        raise BootError("%s: empty" % LABELS[i])
    with open(path, "rb") as f:
        f.seek(SLOT_SIZE - BLOCK)
        rec = f.read(otafmt.RECORD_LEN)
        try:
            key_id, version, secver, length, target, sha = otafmt.parse_header(rec)
        except otafmt.FormatError as e:
            raise BootError("%s: no image (%s)" % (LABELS[i], e))
        if length > SLOT_SIZE - BLOCK:
            raise BootError("%s: image length %d does not fit" % (LABELS[i], length))
        f.seek(0)
        payload = f.read(length)
    if hashlib.sha256(payload).digest() != sha:
        raise BootError("%s: image SHA-256 mismatch (damaged or half-written)" % LABELS[i])
    if keys is not None and key_id != FACTORY_KEY:
        if not otafmt.signature_ok(rec[:otafmt.HEAD_LEN], rec[otafmt.HEAD_LEN:],
                                   keys.get(key_id, b"")):
            raise BootError("%s: signature check failed (key id %d)" % (LABELS[i], key_id))
    return {"key_id": key_id, "version": otafmt.version_text(version), "secver": secver,
            "length": length, "target": target}, payload


def boot(state_dir, keys=None, log=None):
    """Run the bootloader's rules and return the path of the executable to
    start (see the module doc)."""
    log = log or (lambda msg: print("[boot] " + msg, file=sys.stderr))
    od = _otadata(state_dir)
    first = od.boot()  # rollback rule; NEW -> PENDING_VERIFY
    why = []
    for i in (first, first ^ 1):
        try:
            info, payload = check_slot(state_dir, i, keys)
        except BootError as e:
            why.append(str(e))
            log(str(e) + ("; trying the other slot" if i == first else ""))
            continue
        boot_dir = os.path.join(state_dir, "boot")
        os.makedirs(boot_dir, exist_ok=True)
        exe = os.path.join(boot_dir, "slot-%d" % i)
        tmp = exe + ".tmp"
        with open(tmp, "wb") as f:
            f.write(payload)
        os.chmod(tmp, 0o755)
        os.replace(tmp, exe)
        with open(os.path.join(state_dir, RUNNING_FILE), "w") as f:
            f.write("%d\n" % i)
        state = otadata.STATE_NAMES.get(od.slot_state(i), "?")
        log("%s: firmware %s (%s)" % (LABELS[i], info["version"], state))
        return exe
    raise BootError("no bootable image: " + "; ".join(why))


def factory_install(state_dir, image_path, version, target="host", force=False):
    """Flash `image_path` into ota_0 with a factory record (key id 0, no
    signature) and blank otadata, as a factory flash does; only when no
    slot holds a bootable image, unless force. Returns True if it wrote."""
    os.makedirs(state_dir, exist_ok=True)
    if not force:
        for i in (0, 1):
            try:
                check_slot(state_dir, i)
                return False
            except BootError:
                pass
    with open(image_path, "rb") as f:
        payload = f.read()
    if len(payload) > SLOT_SIZE - BLOCK:
        raise BootError("image is %d bytes; a slot holds at most %d" % (
            len(payload), SLOT_SIZE - BLOCK))
    head = otafmt.pack_header(FACTORY_KEY, otafmt.version_code(version), 0, len(payload),
                              target, hashlib.sha256(payload).digest())
    path = _slot_path(state_dir, 0)
    FileDev(path, SLOT_SIZE)
    with open(path, "r+b") as f:
        f.write(payload + b"\xff" * (SLOT_SIZE - BLOCK - len(payload)))
        f.write(head + b"\x00" * otafmt.SIG_LEN + b"\xff" * (BLOCK - otafmt.RECORD_LEN))
    FileDev(_slot_path(state_dir, 1), SLOT_SIZE)
    with open(os.path.join(state_dir, "otadata.bin"), "wb") as f:
        f.write(b"\xff" * OTADATA_SIZE)
    return True
