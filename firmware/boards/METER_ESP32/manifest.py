# The device image of the meter (ESP32-WROOM, 4 MiB flash, no PSRAM).
#
# Not the port's boards/manifest.py: that one also freezes micropython-lib's
# umqtt and a networking bundle, and the meter carries its own pinned umqtt
# (device-libs.toml). What the port itself needs stays: its modules
# (_boot.py mounts the filesystem), asyncio, and micropython-lib's ssl
# wrapper over the built-in tls module (meter/ussl.py uses ssl.SSLContext).
freeze("$(PORT_DIR)/modules")
include("$(MPY_DIR)/extmod/asyncio")
require("ssl")
include("../manifest.py")
