"""`tools/flash.py security`: flash encryption and Secure Boot V2 on an
ESP32 (classic, v3.0 silicon) with espsecure and espefuse, in production
order (ESP-IDF, "Host-based security workflows"):

1. keys on the host: the flash-encryption key and the RSA-3072 signing key
   (an existing key file is reused: one per batch, kept offline);
2. flash encryption: the key into BLOCK1 (espefuse read- and
   write-protects it), FLASH_CRYPT_CONFIG, FLASH_CRYPT_CNT = 127 (an odd
   count that can never be made even again: release mode), no download-mode
   encryption, decryption or cache, no JTAG, no ROM BASIC;
3. Secure Boot V2: the public key's digest into BLOCK2, ABS_DONE_1;
4. lock-down, last: UART_DOWNLOAD_DIS, then write-protect FLASH_CRYPT_CNT.
   On the ESP32 both sit under the same write-protect bit (WR_DIS bit 2),
   so UART_DOWNLOAD_DIS must be burned first and both go in one espefuse
   call: after it nothing reaches the ROM loader over UART any more.

The release images are signed (Secure Boot V2) and then encrypted at their
offsets by the build, with these keys, and written before step 4: the plan
prints those commands; it does not run them. After step 4 esptool cannot
erase the chip: the service-centre wipe is a firmware function (flash.py
wipe). `--virt FILE` runs the eFuse steps against espefuse's virtual eFuses
(kept in FILE), after marking the virtual chip as v3.0 silicon, so that the
order is tested; on a real port every step needs a typed confirmation.
"""

import json
import os
import subprocess
import sys

PY = sys.executable


def steps(efuse, keys):
    fe = os.path.join(keys, "flash-encryption-key.bin")
    sb = os.path.join(keys, "secure-boot-signing-key.pem")
    return [
        ("keys", "flash encryption key (256 bits; keep it offline)",
         None if os.path.exists(fe) else
         [PY, "-m", "espsecure", "generate-flash-encryption-key", fe]),
        ("keys", "Secure Boot V2 signing key (RSA-3072; keep it offline)",
         None if os.path.exists(sb) else
         [PY, "-m", "espsecure", "generate-signing-key", "--version", "2", "--scheme",
          "rsa3072", sb]),
        ("flash encryption", "key into BLOCK1 (read- and write-protected)",
         efuse + ["burn-key", "flash_encryption", fe]),
        ("flash encryption", "FLASH_CRYPT_CONFIG 0xF, FLASH_CRYPT_CNT 127 (on, release mode)",
         efuse + ["burn-efuse", "FLASH_CRYPT_CONFIG", "0xF", "FLASH_CRYPT_CNT", "127"]),
        ("flash encryption", "no download-mode encrypt/decrypt/cache, no JTAG, no ROM BASIC",
         efuse + ["burn-efuse", "DISABLE_DL_ENCRYPT", "1", "DISABLE_DL_DECRYPT", "1",
                  "DISABLE_DL_CACHE", "1", "JTAG_DISABLE", "1", "CONSOLE_DEBUG_DISABLE", "1"]),
        ("secure boot v2", "digest of the signing key into BLOCK2",
         efuse + ["burn-key-digest", sb]),
        ("secure boot v2", "enable it (ABS_DONE_1)", efuse + ["burn-efuse", "ABS_DONE_1", "1"]),
        ("lock-down", "UART download off, then FLASH_CRYPT_CNT write-protected (one call)",
         efuse + ["burn-efuse", "UART_DOWNLOAD_DIS", "1", "write-protect-efuse",
                  "FLASH_CRYPT_CNT"]),
    ]


IMAGES = """Images (the build, with the keys above; before the lock-down step):
  espsecure sign-data --version 2 --keyfile KEYS/secure-boot-signing-key.pem \\
      --output bootloader.signed.bin bootloader.bin          (and the app image)
  espsecure encrypt-flash-data --keyfile KEYS/flash-encryption-key.bin \\
      --address 0x1000 --output bootloader.enc bootloader.signed.bin
      (each binary at its own offset: 0x8000 table, 0x10000 app, ...)
  esptool --port PORT write-flash --force 0x1000 bootloader.enc 0x8000 ... """

# What the chip must read afterwards (espefuse summary --format json).
EXPECT = {"FLASH_CRYPT_CNT": 127, "FLASH_CRYPT_CONFIG": 15, "DISABLE_DL_ENCRYPT": True,
          "DISABLE_DL_DECRYPT": True, "DISABLE_DL_CACHE": True, "JTAG_DISABLE": True,
          "ABS_DONE_1": True, "UART_DOWNLOAD_DIS": True}
WR_DIS_FLASH_CRYPT_CNT = 1 << 2


def summary(efuse):
    r = subprocess.run(efuse + ["summary", "--format", "json"], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("espefuse summary failed: " + (r.stderr or r.stdout)[-500:])
    text = r.stdout
    return {k: v["value"] for k, v in json.loads(text[text.index("{"):]).items()}


def main(a):
    if bool(a.virt) == bool(a.port):
        print("[security] give either --port (a real chip) or --virt EFUSE_FILE")
        return 2
    if a.yes and not a.virt:
        print("[security] --yes only with --virt: burning real eFuses is confirmed by hand")
        return 2
    efuse = [PY, "-m", "espefuse", "--chip", "esp32", "--do-not-confirm"]
    efuse += ["--virt", "--path-efuse-file", a.virt] if a.virt else ["--port", a.port]
    os.makedirs(a.keys, mode=0o700, exist_ok=True)
    plan = steps(efuse, a.keys)
    if a.virt:  # a virtual chip starts as v0.0; Secure Boot V2 needs v3.0 silicon
        plan.insert(0, ("virtual chip", "mark it as ESP32 v3.0 silicon",
                        efuse + ["burn-efuse", "CHIP_VER_REV1", "1", "CHIP_VER_REV2", "1"]))
    print("Security plan for %s (irreversible on a real chip):" % (a.port or "virtual eFuses"))
    for i, (phase, what, cmd) in enumerate(plan, 1):
        print("  %2d. [%s] %s%s" % (i, phase, what, "" if cmd else " (exists: reused)"))
    print(IMAGES)
    if not a.yes:
        if input("Type BURN to go ahead: ").strip() != "BURN":
            print("[security] not confirmed; nothing burned")
            return 2
    for i, (phase, what, cmd) in enumerate(plan, 1):
        if cmd is None:
            continue
        print("[security] %d. %s" % (i, what), flush=True)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0 or "A fatal error occurred" in r.stdout + r.stderr:
            print("[security] step %d failed; stopped here (steps before it are burned):\n%s"
                  % (i, (r.stdout + r.stderr).strip()[-1500:]))
            return 1
    got = summary(efuse)
    bad = {k: got.get(k) for k, v in EXPECT.items() if got.get(k) != v}
    if not got.get("WR_DIS", 0) & WR_DIS_FLASH_CRYPT_CNT:
        bad["WR_DIS"] = got.get("WR_DIS")
    if bad:
        print("[security] the chip does not read as expected: %s" % bad)
        return 1
    print("[security] done: flash encryption (release), Secure Boot V2, UART download off")
    return 0
