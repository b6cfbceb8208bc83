# Runs first on the device (the simulator has no boot stage). Keep it tiny:
# anything that can fail here leaves the device without its firmware.
import gc

gc.threshold(4096)  # collect early: the heap is small and fragments

from meter.buildcfg import DEV_REPL  # noqa: E402

if not DEV_REPL:
    # Production: no Ctrl-C into a REPL while the app runs; the serial REPL
    # opens only in service mode (meter/service.py, docs/flashing.md).
    import micropython

    micropython.kbd_intr(-1)
