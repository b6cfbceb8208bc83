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
