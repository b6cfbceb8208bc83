"""The device image (issue 11): the host image is 32-bit with the firmware
frozen in, and what the ESP32 build reads (board manifest, sdkconfig,
partition table, cmake file) is checked here, since ESP-IDF cannot run on
this machine: the manifests are evaluated by MicroPython's own manifest
code against the pinned source, as the ESP32 build would."""

import os
import re
import subprocess
import sys
import tarfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOARD = os.path.join(ROOT, "firmware", "boards", "METER_ESP32")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import image  # noqa: E402
from simctl import simtool  # noqa: E402


@pytest.fixture(scope="module")
def built():
    return image.build()


def _frozen_files(manifest, port):
    """The (target path) list a port's build would freeze from manifest."""
    src = image.source()
    sys.path.insert(0, os.path.join(src, "tools"))
    try:
        import manifestfile
    finally:
        sys.path.pop(0)
    m = manifestfile.ManifestFile(manifestfile.MODE_FREEZE, {
        "MPY_DIR": src, "MPY_LIB_DIR": os.path.join(src, "lib", "micropython-lib"),
        "PORT_DIR": os.path.join(src, "ports", port), "BOARD_DIR": os.path.dirname(manifest)})
    m.execute(manifest)
    return {f.target_path for f in m.files()}


def test_host_image_is_32_bit_with_the_firmware_frozen_in(built):
    r = subprocess.run([built, "-X", "heapsize=128k", "-c",
                        "import sys, meter, meter.app, meter.web.site, microdot, umqtt.robust\n"
                        "print(sys.maxsize, meter.VERSION, meter.app.__file__,"
                        " meter.web.site.__file__)"],
                       env=dict(os.environ, MICROPYPATH=".frozen"), capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    maxsize, version, app_file, pages_file = r.stdout.split()
    assert int(maxsize) == 2 ** 31 - 1  # a 32-bit build, like the ESP32
    # frozen modules carry their path inside the image, not a file system path
    assert app_file == "meter/app.py" and pages_file == "meter/web/site.py"
    assert version == re.search(r'VERSION = "([^"]+)"', open(
        os.path.join(ROOT, "firmware", "lib", "meter", "__init__.py")).read()).group(1)


def test_device_manifest_freezes_the_firmware_and_not_the_host_board():
    files = _frozen_files(os.path.join(BOARD, "manifest.py"), "esp32")
    for want in ("main.py", "boot.py", "meter/app.py", "meter/board/esp32.py",
                 "meter/board/base.py", "meter/board/esp32wifi.py", "meter/board/esp32time.py",
                 "meter/web/server.py", "umqtt/simple.py", "umqtt/robust.py", "hmac.py",
                 "microdot/microdot.py", "ussl.py", "ssl.py", "_boot.py", "asyncio/core.py"):
        assert want in files, want
    for unwanted in ("meter/board/host.py", "meter/board/icsim.py", "meter/board/png.py",
                     "meter/board/hostwifi.py", "meter/board/hostbtn.py",
                     "microdot/test_client.py"):
        assert unwanted not in files, unwanted
    # nothing frozen twice (the port's own umqtt would shadow the pinned one)
    assert not any(f.startswith("umqtt/") and f not in ("umqtt/simple.py", "umqtt/robust.py")
                   for f in files), sorted(files)


def test_host_manifest_adds_the_host_board():
    files = _frozen_files(os.path.join(ROOT, "firmware", "boards", "host", "manifest.py"), "unix")
    assert {"meter/board/host.py", "meter/board/icsim.py", "main.py",
            "meter/app.py"} <= files


def test_sdkconfig_keeps_rollback_and_the_app_version():
    lines = {ln.split("=")[0]: ln.split("=", 1)[1] for ln in
             open(os.path.join(BOARD, "sdkconfig.board")).read().splitlines()
             if ln and not ln.startswith("#")}
    assert lines["CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE"] == "y"
    assert lines["CONFIG_APP_EXCLUDE_PROJECT_VER_VAR"] == "n"
    assert lines["CONFIG_APP_EXCLUDE_PROJECT_NAME_VAR"] == "n"
    assert lines["CONFIG_ESPTOOLPY_FLASHSIZE_4MB"] == "y"


def test_cmake_reads_the_version_and_the_partition_table():
    cmake = open(os.path.join(BOARD, "mpconfigboard.cmake")).read()
    assert "${MICROPY_BOARD_DIR}/partitions.csv" in cmake
    assert "set(MICROPY_FROZEN_MANIFEST ${MICROPY_BOARD_DIR}/manifest.py)" in cmake
    # the REGEX cmake applies to meter/__init__.py finds the version
    regex = re.search(r'REGEX "([^"]+\\"[^"]+)"', cmake)
    init = open(os.path.join(ROOT, "firmware", "lib", "meter", "__init__.py")).read()
    assert re.search(r'^VERSION = "[^"]+"', init, re.M)
    assert regex is not None


def test_partition_table_has_two_app_slots_that_hold_the_image(built):
    rows = [ln.split(",") for ln in open(os.path.join(BOARD, "partitions.csv"))
            if ln.strip() and not ln.startswith("#")]
    table = {r[0].strip(): (r[1].strip(), int(r[3], 16), int(r[4], 16)) for r in rows}
    assert table["ota_0"][2] == table["ota_1"][2] == 0x180000
    assert table["otadata"][2] == 0x2000
    end = 0
    for name, (kind, off, size) in sorted(table.items(), key=lambda kv: kv[1][1]):
        assert off >= end, name  # no overlap
        end = off + size
    assert end <= 4 * 1024 * 1024
    # the simulator's slots hold the host image like the device's hold its own
    assert os.path.getsize(built) < table["ota_0"][2] - 4096


def test_a_clone_made_elsewhere_finds_the_pinned_source(tmp_path):
    """CI's clean clone may sit in a temporary directory, far from
    ../shared: the image build looks beside the repository it was cloned
    from too, so that it needs no network."""
    if not os.path.isdir(image.SHARED):
        pytest.skip("no ../shared/micropython beside this checkout either")
    clone = tmp_path / "elsewhere" / "clone"
    subprocess.run(["git", "clone", "-q", ROOT, str(clone)], check=True)
    out = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, 'tools'); "
                          "import image; print(image.SHARED)"], cwd=str(clone),
                         capture_output=True, text=True, check=True).stdout.strip()
    assert os.path.realpath(out) == os.path.realpath(image.SHARED), out


def test_source_with_a_wrong_hash_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "shared"
    fake.mkdir()
    with tarfile.open(fake / image.MP_TARBALL, "w:gz") as t:
        t.add(__file__, arcname="micropython-%s/README" % image.MP_VERSION)
    monkeypatch.setattr(image, "SHARED", str(fake))
    monkeypatch.setattr(image, "SRC", str(tmp_path / "src"))
    with pytest.raises(image.ImageError, match="sha256"):
        image.source()
    assert not (tmp_path / "src").exists()


def test_the_image_is_built_from_the_patched_source(built):
    """Our fixes to MicroPython (firmware/boards/patches, docs/device-image.md)
    are in the tree the image is built from: each one reverses cleanly."""
    ps = image.patches()
    assert [n for n, _ in ps] == ["pairheap-stale-child-last.patch"], ps
    for name, path in ps:
        r = subprocess.run(["patch", "-p1", "--reverse", "--dry-run", "--batch", "-d",
                            image.SRC, "-i", path], capture_output=True, text=True)
        assert r.returncode == 0, (name, r.stdout, r.stderr)


# Finished asyncio tasks must be garbage: a coroutine that has returned
# still holds its locals. Unpatched, a task the queue once ran keeps a stale
# pointer to its last child (pairheap child_last), and a task that then
# sleeps for long keeps that child, finished, and all it held: in the
# simulator a Web Admin window's 22 KB after it closed, 1 window in 4 on a
# loaded machine. 40 long sleepers each leave behind about 80 bytes of their
# own; the 160 finished tasks hold 2 KB each.
STALE_TASKS = """
import asyncio, gc, random
random.seed(7)
async def sleeper(ms):
    await asyncio.sleep_ms(ms)
    await asyncio.sleep_ms(1000000)
async def finished(ms):
    buf = bytearray(2000)
    await asyncio.sleep_ms(ms)
    buf[0] = 1
async def main():
    await asyncio.sleep_ms(0)
    gc.collect()
    base = gc.mem_alloc()
    for r in range(40):
        asyncio.create_task(sleeper(random.randint(0, 5)))
        for _ in range(4):
            asyncio.create_task(finished(random.randint(0, 8)))
        await asyncio.sleep_ms(random.randint(0, 4))
    for _ in range(40):  # every finished task has run to its end
        await asyncio.sleep_ms(1)
    gc.collect()
    print(gc.mem_alloc() - base)
asyncio.run(main())
"""


def test_finished_tasks_are_garbage_however_the_queue_ran_them(built, tmp_path):
    script = tmp_path / "stale.py"
    script.write_text(STALE_TASKS)
    env = dict(os.environ, MICROPYPATH=".frozen")
    r = subprocess.run([built, "-X", "heapsize=" + simtool.DEVICE_HEAP, str(script)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    held = int(r.stdout.split()[-1])
    # 40 x 80 B of sleepers plus slack; a single finished task kept is 2 KB
    assert held < 40 * 80 + 1500, "finished tasks kept: %d bytes held" % held

