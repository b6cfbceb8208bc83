"""ESP-IDF partition tables and image headers, for tools/flash.py.

Written from the formats as ESP-IDF documents them (partition tables:
"Partition Tables", the binary layout of `esp_partition_info_t`; images:
"App Image Format", `esp_image_header_t`), not from its generator:

Partition table, at 0x8000, at most 0xC00 bytes, unused space 0xFF. Each
entry is 32 bytes, little endian:

    u16 magic 0x50AA | u8 type | u8 subtype | u32 offset | u32 size
        | char label[16] (NUL padded) | u32 flags (bit 0 encrypted, bit 1 readonly)

after the entries one MD5 entry: u16 0xEBEB, 14 bytes 0xFF, then the MD5 of
all entries before it.

Image header (bootloader and app alike), 24 bytes: u8 magic 0xE9, u8
segment count, u8 SPI mode, u8 SPI speed/size, u32 entry address, u8 WP
pin, u8 drive settings[3], u16 chip id (ESP32 = 0), ...
"""

import hashlib
import struct

TABLE_OFFSET = 0x8000
TABLE_MAX = 0xC00
BOOTLOADER_OFFSET = 0x1000  # ESP32 (classic): the ROM loads the bootloader here
ENTRY = struct.Struct("<HBBII16sI")
MAGIC = 0x50AA
MD5_MAGIC = 0xEBEB
IMAGE_MAGIC = 0xE9
CHIP_IDS = {"esp32": 0, "esp32s2": 2, "esp32c3": 5, "esp32s3": 9, "esp32c2": 12,
            "esp32c6": 13, "esp32h2": 16, "esp32p4": 18, "esp32c5": 23}
TYPES = {"app": 0x00, "data": 0x01}
SUBTYPES = {
    "app": {"factory": 0x00, "test": 0x20, **{"ota_%d" % i: 0x10 + i for i in range(16)}},
    "data": {"ota": 0x00, "phy": 0x01, "nvs": 0x02, "coredump": 0x03, "nvs_keys": 0x04,
             "efuse": 0x05, "undefined": 0x06, "esphttpd": 0x80, "fat": 0x81,
             "spiffs": 0x82, "littlefs": 0x83},
}
FLAGS = {"encrypted": 1, "readonly": 2}


class TableError(ValueError):
    """A partition table or an image that must not be flashed; says why."""


def _num(s, what):
    try:
        return int(s, 0)
    except ValueError:
        raise TableError("%s: not a number: %r" % (what, s))


def parse_csv(text):
    """Rows of a partition CSV (explicit offsets only, as ours has) as
    dicts: name, type, subtype, offset, size, flags (numbers resolved)."""
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        f = [x.strip() for x in line.split(",")] + [""] * 6
        name, typ, sub, off, size, flags = f[:6]
        where = "line %d (%s)" % (n, name)
        if typ not in TYPES:
            raise TableError(where + ": type must be app or data")
        st = SUBTYPES[typ].get(sub)
        if st is None:
            st = _num(sub, where + " subtype")
        if not off:
            raise TableError(where + ": give the offset explicitly")
        fl = 0
        for word in flags.split(":") if flags else []:
            if word not in FLAGS:
                raise TableError(where + ": unknown flag " + word)
            fl |= FLAGS[word]
        if len(name.encode()) > 15:
            raise TableError(where + ": name longer than 15 bytes")
        rows.append({"name": name, "type": TYPES[typ], "subtype": st,
                     "offset": _num(off, where), "size": _num(size, where), "flags": fl})
    check(rows)
    return rows


def check(rows, flash_size=4 * 1024 * 1024):
    """Alignment, overlaps, the flash size: refuse what could not boot."""
    end = TABLE_OFFSET + 0x1000
    for r in sorted(rows, key=lambda r: r["offset"]):
        align = 0x10000 if r["type"] == TYPES["app"] else 0x1000
        if r["offset"] % align:
            raise TableError("%s: offset 0x%x not %d KiB aligned" % (r["name"], r["offset"],
                                                                    align // 1024))
        if r["offset"] < end:
            raise TableError("%s: overlaps what comes before it" % r["name"])
        end = r["offset"] + r["size"]
    if end > flash_size:
        raise TableError("table ends at 0x%x, beyond the %d MiB flash" % (end, flash_size >> 20))


def to_binary(rows):
    """The table as the bootloader reads it, padded to TABLE_MAX with 0xFF."""
    body = b"".join(ENTRY.pack(MAGIC, r["type"], r["subtype"], r["offset"], r["size"],
                               r["name"].encode(), r["flags"]) for r in rows)
    body += struct.pack("<H", MD5_MAGIC) + b"\xff" * 14 + hashlib.md5(body).digest()
    if len(body) > TABLE_MAX:
        raise TableError("too many partitions")
    return body + b"\xff" * (TABLE_MAX - len(body))


def from_binary(data):
    """Rows of a binary table; refuses a bad magic or MD5."""
    rows = []
    for i in range(0, min(len(data), TABLE_MAX), 32):
        chunk = data[i:i + 32]
        magic = struct.unpack_from("<H", chunk)[0] if len(chunk) >= 2 else 0xFFFF
        if magic == MD5_MAGIC:
            if hashlib.md5(data[:i]).digest() != chunk[16:32]:
                raise TableError("partition table: MD5 does not match its entries")
            return rows
        if magic == 0xFFFF:
            break
        if magic != MAGIC or len(chunk) < 32:
            raise TableError("partition table: bad entry at byte %d" % i)
        _, typ, sub, off, size, label, flags = ENTRY.unpack(chunk)
        rows.append({"name": label.rstrip(b"\0").decode(errors="replace"), "type": typ,
                     "subtype": sub, "offset": off, "size": size, "flags": flags})
    raise TableError("partition table: no MD5 entry (not a table, or truncated)")


def find(rows, typ, subtype):
    for r in rows:
        if r["type"] == TYPES[typ] and r["subtype"] == SUBTYPES[typ][subtype]:
            return r
    return None


def image_chip(data, what):
    """The chip id in an ESP image header; refuses anything else."""
    if len(data) < 24 or data[0] != IMAGE_MAGIC:
        raise TableError("%s: not an ESP image (no 0xE9 header)" % what)
    return struct.unpack_from("<H", data, 12)[0]


def check_image(data, what, chip):
    cid = image_chip(data, what)
    if cid != CHIP_IDS[chip]:
        names = {v: k for k, v in CHIP_IDS.items()}
        raise TableError("%s: built for %s (chip id %d), not %s" % (
            what, names.get(cid, "an unknown chip"), cid, chip))


def plan(bootloader, table, firmware, rows, otadata=None, chip="esp32"):
    """Check everything against the table and return [(offset, bytes, what)]
    in flashing order; raises TableError before anything is written."""
    check_image(bootloader, "bootloader", chip)
    check_image(firmware, "firmware", chip)
    if len(bootloader) > TABLE_OFFSET - BOOTLOADER_OFFSET:
        raise TableError("bootloader: %d bytes, does not fit below the table at 0x%x" % (
            len(bootloader), TABLE_OFFSET))
    slots = [r for r in rows if r["type"] == TYPES["app"]]
    if not slots:
        raise TableError("partition table: no app partition")
    slot = find(rows, "app", "ota_0") or find(rows, "app", "factory") or slots[0]
    small = min(r["size"] for r in slots)
    if len(firmware) > small:
        raise TableError("firmware: %d bytes, larger than the smallest app slot (%d bytes): "
                         "an update could not fit" % (len(firmware), small))
    out = [(BOOTLOADER_OFFSET, bootloader, "bootloader"), (TABLE_OFFSET, table, "partition table")]
    ota = find(rows, "data", "ota")
    if ota:
        # Erased otadata (all 0xFF) boots the first OTA slot, as ESP-IDF's
        # ota_data_initial.bin does.
        data = otadata if otadata is not None else b"\xff" * ota["size"]
        if len(data) > ota["size"]:
            raise TableError("otadata: larger than its partition")
        out.append((ota["offset"], data, "otadata"))
    out.append((slot["offset"], firmware, "firmware (%s)" % slot["name"]))
    return out


def synthetic_image(size, chip="esp32", seed=b"meter"):
    """A small well-formed image for tests: header with the chip id, one
    segment of pseudo-random bytes (the ESP32 firmware cannot be built here)."""
    head = struct.pack("<BBBBIBBBBHB", IMAGE_MAGIC, 1, 2, 0x20, 0x40080000, 0xEE, 0, 0, 0,
                       CHIP_IDS[chip], 0) + b"\0" * 9
    # One segment (a multiple of 4 bytes), then zero padding so that the
    # checksum byte (0xEF xor every segment byte) ends on a 16-byte boundary.
    seg_len = max(4, (size - len(head) - 8 - 16) // 4 * 4)
    seg = bytearray()
    block = hashlib.sha256(seed).digest()
    while len(seg) < seg_len:
        block = hashlib.sha256(block).digest()
        seg += block
    seg = bytes(seg[:seg_len])
    out = head + struct.pack("<II", 0x3F400020, seg_len) + seg
    check = 0xEF
    for b in seg:
        check ^= b
    out += b"\0" * (15 - len(out) % 16)
    return out + bytes([check])
