# The firmware manifest: what every image of the meter freezes into flash.
#
# Included by METER_ESP32/manifest.py (the device) and host/manifest.py (the
# 32-bit unix image the simulator and the tests run). Frozen bytecode runs
# from flash: its code, constants and names never take GC heap, which is what
# lets the Web Admin, the local API and the uplink open on a 96 KiB heap.
#
# options.host: also freeze the host board (simulated IC, PNG output), which
# the device leaves out. The pinned device libraries come from build/lib
# (`tools/deps.py install`, checked against device-libs.toml); files that
# device-libs.toml marks host_only stay out of the device image.
#
# options.overlay: a directory whose files replace the firmware's of the same
# path (tools/image.py --out builds test images: another version, trusted
# test keys, a deliberately broken start or self-test). Product images
# have none.
options.defaults(host=False, overlay=None)

import os
import tomllib

_ROOT = os.path.abspath(os.path.join(os.getcwd(), "..", ".."))
_LIB = os.path.join(_ROOT, "firmware", "lib")
_DEPS = os.path.join(_ROOT, "build", "lib")
_HOST_ONLY = ("meter/board/host.py", "meter/board/hostbtn.py", "meter/board/hostterm.py",
              "meter/board/icsim.py",
              "meter/board/png.py", "meter/board/hostwifi.py")

with open(os.path.join(_ROOT, "device-libs.toml"), "rb") as _f:
    _pins = tomllib.load(_f)
_dep_host_only = {p for lib in _pins["lib"] for p in lib.get("host_only", ())}


def _tree(base, skip):
    """Every .py under base, as paths relative to it, minus skip."""
    out = []
    for d, dirs, files in os.walk(base):
        dirs.sort()
        for f in sorted(files):
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(d, f), base).replace(os.sep, "/")
                if rel not in skip:
                    out.append(rel)
    return out


if not os.path.isdir(_DEPS):
    raise Exception("build/lib is missing: run `python3 tools/deps.py install` first")

# The pinned libraries first: the firmware's shims (ussl, warnings) sit beside them.
for _rel in _tree(_DEPS, () if options.host else _dep_host_only):
    module(_rel, base_path=_DEPS)


def _base(rel, base):
    if options.overlay and os.path.exists(os.path.join(options.overlay, rel)):
        return options.overlay
    return base


for _rel in _tree(_LIB, () if options.host else _HOST_ONLY):
    module(_rel, base_path=_base(_rel, _LIB))

# The entry points. On the ESP32 a frozen boot.py/main.py runs in place of
# any file of that name (shared/runtime/pyexec.c, pyexec_file_if_exists), so
# nothing on the writable filesystem can replace the firmware's start.
module("boot.py", base_path=_base("boot.py", os.path.join(_ROOT, "firmware")))
module("main.py", base_path=_base("main.py", os.path.join(_ROOT, "firmware")))
