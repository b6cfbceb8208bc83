# Runs first on the device (the simulator has no boot stage). Keep it tiny:
# anything that can fail here leaves the device without its firmware.
import gc

gc.threshold(4096)  # collect early: the heap is small and fragments
