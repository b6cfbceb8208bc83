# The meter's ESP32 board: an out-of-tree board definition of MicroPython
# v1.28.0's esp32 port (make BOARD_DIR=<this folder>, see docs/device-image.md).
set(IDF_TARGET esp32)

# The app descriptor's version and project name: stock MicroPython strips
# them (sdkconfig.base), the OTA updater and `tools/flash.py status` read them.
file(STRINGS ${MICROPY_BOARD_DIR}/../../lib/meter/__init__.py _meter_version
     REGEX "^VERSION = \"[^\"]+\"")
string(REGEX REPLACE "^VERSION = \"([^\"]+)\"" "\\1" PROJECT_VER "${_meter_version}")

# The partition table lives beside this file; IDF wants its path in the
# sdkconfig, and an absolute one is only known here.
file(WRITE ${CMAKE_BINARY_DIR}/sdkconfig.meter_partitions
     "CONFIG_PARTITION_TABLE_CUSTOM=y\nCONFIG_PARTITION_TABLE_CUSTOM_FILENAME=\"${MICROPY_BOARD_DIR}/partitions.csv\"\n")

set(SDKCONFIG_DEFAULTS
    boards/sdkconfig.base
    ${MICROPY_BOARD_DIR}/sdkconfig.board
    ${CMAKE_BINARY_DIR}/sdkconfig.meter_partitions
)

set(MICROPY_FROZEN_MANIFEST ${MICROPY_BOARD_DIR}/manifest.py)
