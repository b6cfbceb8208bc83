# The host image: the MicroPython unix port built 32-bit (the ESP32's object
# and GC block sizes) with the firmware frozen in, as on the device.
# tools/image.py builds it; the simulator and the tests run it.
include("$(PORT_DIR)/variants/standard/manifest.py")
include("../manifest.py", host=True)
