"""Build options that the image build sets (tools/build.py, tools/image.py).

DEV_REPL: a development image keeps the serial REPL open beside the app
(Ctrl-C interrupts it, as stock MicroPython). A production image (False,
the default here, so that a forgotten option fails safe) switches Ctrl-C
off in boot.py, resets instead of falling through to the REPL when the app
ends, and opens the REPL only in service mode (meter/service.py,
docs/flashing.md). `tools/flash.py status` reports which kind runs.
"""

DEV_REPL = False
