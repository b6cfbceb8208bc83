"""The ESP32's security state (secure boot, flash encryption) read from its
eFuses, for `status` and the Web Admin (docs/security.md). Loaded when
asked.

[unverified on hardware] Register addresses and fields from ESP-IDF.
"""

from micropython import const

# ESP32 (classic) eFuse read registers, DR_REG_EFUSE_BASE = 0x3FF5A000
# (ESP-IDF components/soc/esp32/include/soc/soc.h, later
# register/soc/reg_base.h). Fields per ESP-IDF
# components/soc/esp32/register/soc/efuse_reg.h and
# components/hal/esp32/include/hal/efuse_ll.h:
# - EFUSE_BLK0_RDATA0_REG (base + 0x000): EFUSE_RD_FLASH_CRYPT_CNT, bits
#   [26:20] (7 bits; bit 27 is UART_DOWNLOAD_DIS on ESP32 v3). Flash
#   encryption is on when an odd number of these bits is set
#   (esp_flash_encryption_enabled(), esp_flash_encrypt.h).
# - EFUSE_BLK0_RDATA6_REG (base + 0x018): EFUSE_RD_ABS_DONE_0, bit 4, secure
#   boot v1 (efuse_ll_get_secure_boot_v1_en); EFUSE_RD_ABS_DONE_1, bit 5,
#   secure boot v2 (efuse_ll_get_secure_boot_v2_en, ESP32 v3 silicon).
# Other ESP32 family chips have different eFuse maps: see _is_classic_esp32.
_EFUSE_BLK0_RDATA0 = const(0x3FF5A000)
_EFUSE_BLK0_RDATA6 = const(0x3FF5A018)
_FLASH_CRYPT_CNT_SHIFT = const(20)
_FLASH_CRYPT_CNT_MASK = const(0x7F)
_ABS_DONE_0 = const(0x10)
_ABS_DONE_1 = const(0x20)


def security_state(mcu=None):
    """secure_boot, flash_encryption: bool, or None when this chip's eFuses
    cannot tell. mcu: the chip name as in os.uname().machine (tests)."""
    if not _is_classic_esp32(mcu or _machine_name()):
        # Another chip of the family: the registers below mean something
        # else there, so say we cannot tell.
        return {"secure_boot": None, "flash_encryption": None}
    import machine

    mem = machine.mem32
    return decode_efuses(mem[_EFUSE_BLK0_RDATA0], mem[_EFUSE_BLK0_RDATA6])


def decode_efuses(rdata0, rdata6):
    """Security state from EFUSE_BLK0_RDATA0_REG and _RDATA6_REG (ESP32)."""
    cnt = (rdata0 >> _FLASH_CRYPT_CNT_SHIFT) & _FLASH_CRYPT_CNT_MASK
    ones = 0
    while cnt:
        ones += cnt & 1
        cnt >>= 1
    return {
        "secure_boot": bool(rdata6 & (_ABS_DONE_0 | _ABS_DONE_1)),
        "flash_encryption": bool(ones & 1),
    }


def _machine_name():
    import sys

    m = getattr(sys.implementation, "_machine", None)
    if m is None:
        import os

        m = os.uname().machine
    return m


def _is_classic_esp32(machine_name):
    """True for the original ESP32 (not S2/S3/C2/C3/C5/C6/C61/H2/P4).

    MicroPython names the machine "<board> with <MCU>", MCU being "ESP32" on
    the original chip and e.g. "ESP32S3" or "ESP32C3" on the others. Custom
    boards may spell it "ESP32-D0WD", "ESP32-PICO-D4" or "ESP32-S3".
    """
    mcu = machine_name.rsplit(" with ", 1)[-1].upper().replace("-", "").replace("_", "")
    if not mcu.startswith("ESP32"):
        return False
    rest = mcu[5:]
    # A family letter followed by a digit (S3, C6, H2, P4) is another chip;
    # D0WD, PICO, WROVER... are packages and modules of the original one.
    return not (len(rest) >= 2 and rest[0] in "SCHP" and rest[1] in "0123456789")
