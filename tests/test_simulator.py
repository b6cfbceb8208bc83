"""The simulator as a user sees it: screen, buttons, counters, bad state."""

import os
import time

from simctl import Sim, configure, probe

PAGES = ("POWER W", "VOLTAGE CURRENT", "IMPORT kWh", "EXPORT kWh")


def test_boots_and_shows_live_values_and_pages(tmp_path):
    with Sim(tmp_path / "dev") as sim:
        sim.wait_screen("POWER W")
        # const profile: L1 +1000 W, L2 +2000 W, L3 -1500 W
        lines = sim.wait_for(lambda: (lambda l: l if "1000" in l[1] else None)(sim.screen()),
                             what="live power")
        assert lines[1].startswith("L1") and "1000" in lines[1]
        assert "2000" in lines[2] and "-1500" in lines[3]
        assert "1500" in lines[4]  # total
        assert lines[7].strip() == "WiFi not set"
        for title in PAGES[1:] + PAGES[:1]:
            sim.cmd("tap", "down")
            sim.wait_screen(title)
        sim.cmd("tap", "up")
        sim.wait_screen("EXPORT kWh")
        png = str(tmp_path / "export.png")
        sim.cmd("png", png)
        with open(png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_counters_move_and_persist_across_restart(tmp_path):
    state = tmp_path / "dev"
    with Sim(state) as sim:
        sim.wait_for(lambda: sim.state_()["counters_uwh"]["imp_a"] > 0
                     and sim.state_()["counters_uwh"]["exp_c"] > 0, what="import and export")
        s1 = sim.state_()
        assert s1["counters_uwh"]["exp_c"] > 0 and s1["counters_uwh"]["exp_a"] == 0
        assert sim.quit() == 0
    with Sim(state) as sim:
        s2 = sim.state_()
        for k, v in s1["counters_uwh"].items():
            assert s2["counters_uwh"][k] >= v, k
        sim.wait_screen("POWER W")  # after the start-up screen
        sim.cmd("tap", "down")
        sim.cmd("tap", "down")
        lines = sim.wait_screen("IMPORT kWh")
        assert sim.quit() == 0


def test_two_instances_side_by_side(tmp_path):
    with Sim(tmp_path / "a") as a, Sim(tmp_path / "b", profile="idle") as b:
        # each meters its own profile: a's house load soon outruns b's idle one
        a.wait_for(lambda: a.state_()["counters_uwh"]["imp_t"] > 0, what="energy a")
        a.wait_for(lambda: b.state_()["counters_uwh"]["imp_t"] < a.state_()["counters_uwh"]["imp_t"],
                   what="a (house) ahead of b (idle)")


def test_corrupt_counter_file_is_reported_and_kept(tmp_path):
    state = tmp_path / "dev"
    os.makedirs(state)
    junk = bytes(range(256)) * 16
    with open(state / "counters.bin", "wb") as f:
        f.write(junk * 16)  # full partition, nothing valid
    # A save policy that would write at every 100 ms tick at full load (the
    # control below shows it does): the corrupt store gets none of them.
    fast = {"meter.tick_ms": 100, "energy.save_min_ms": 0}
    configure(tmp_path / "control", **fast)
    with Sim(tmp_path / "control", profile="full") as sim:
        sim.wait_for(lambda: sim.state_()["saves"] >= 5, what="the control's saves")
    configure(state, **fast)
    with Sim(state, profile="full") as sim:
        sim.wait_screen("COUNTERS CORRUPT")
        sim.cmd("lateness-reset")
        st = sim.wait_for(lambda: (lambda s: s if s["lateness_ms"]["n"] >= 10 else None)(
            sim.state_()), what="ten metering ticks")
        assert st["counters_status"] == "corrupt" and st["saves"] == 0, st
        assert st["counters_uwh"]["imp_t"] > 0  # metering went on, in RAM
        assert sim.quit() == 0
    with open(state / "counters.bin", "rb") as f:
        assert f.read() == junk * 16  # nothing overwritten by defaults
    assert "counter store unreadable" in sim.output()


def test_truncated_counter_file_loads_last_good_state(tmp_path):
    state = tmp_path / "dev"
    os.makedirs(state)
    configure(state, **{"meter.tick_ms": 100, "energy.save_min_ms": 0})
    with Sim(state, profile="full") as sim:
        sim.wait_for(lambda: sim.state_()["saves"] > 25, what="saves")
        assert sim.quit() == 0
    keep = 20 * 96 + 50  # 20 whole records and a torn 21st
    with open(state / "counters.bin", "r+b") as f:
        f.truncate(keep)
        f.seek(0)
        head = f.read()
    p = probe(state)
    assert p["status"] == "ok" and p["seq"] == 20 and p["damaged"] == 1
    with Sim(state, profile="idle") as sim:
        st = sim.state_()
        assert st["counters_status"] == "ok"
        assert st["counters_uwh"]["imp_t"] == p["uwh"][3] > 0
        sim.wait_screen("WiFi not set")
        assert sim.quit() == 0
    with open(state / "counters.bin", "rb") as f:
        assert f.read(keep) == head  # the damaged block was left alone


def test_missing_settings_file_means_defaults_and_no_error(tmp_path):
    state = tmp_path / "dev"
    with Sim(state) as sim:
        assert sim.state_()["settings_status"] == "new"
        assert sim.quit() == 0
    os.remove(state / "config.bin")
    with Sim(state) as sim:
        assert sim.state_()["settings_status"] == "new"
        sim.wait_screen("WiFi not set")


def test_corrupt_settings_file_is_reported(tmp_path):
    state = tmp_path / "dev"
    os.makedirs(state)
    with open(state / "config.bin", "wb") as f:
        f.write(b"\x17\x5a" + b"\x00" * 200 + b"\xff" * (16 * 1024 - 202))
    with Sim(state) as sim:
        sim.wait_screen("SETTINGS CORRUPT")
        assert sim.state_()["settings_status"] == "corrupt"


def test_ic_garbage_and_silence_are_shown_and_count_nothing(tmp_path):
    with Sim(tmp_path / "dev") as sim:
        sim.wait_for(lambda: sim.state_()["counters_uwh"]["imp_t"] > 0, what="energy")
        for mode, text in (("garbage", "IC"), ("silent", "IC")):
            sim.cmd("fault", mode)
            sim.wait_for(lambda: sim.state_()["fault"], what="fault reported")
            before = sim.state_()["counters_uwh"]
            time.sleep(1.5)
            st = sim.state_()
            assert st["fault"] and st["fault"].startswith(text), st["fault"]
            sim.wait_screen(st["fault"][:16])
            # garbage never turns into energy; a silent IC adds nothing at all
            grown = st["counters_uwh"]["imp_t"] - before["imp_t"]
            if mode == "silent":
                assert grown == 0, (before, st)
            else:
                assert grown < 3125 * 320, (before, st)
            sim.cmd("fault", "none")
            sim.wait_for(lambda: sim.state_()["fault"] is None, what="recovery")
            sim.wait_screen("WiFi not set")
        assert sim.quit() == 0
    assert "meter: IC" in sim.output()


def test_ic_absent_at_start_is_shown_and_retried(tmp_path):
    with Sim(tmp_path / "dev", "--fault", "silent") as sim:
        st = sim.wait_for(lambda: sim.state_()["fault"], what="fault")
        sim.wait_screen(st[:16])
        assert sim.state_()["counters_uwh"]["imp_t"] == 0
        sim.cmd("fault", "none")
        sim.wait_for(lambda: sim.state_()["counters_uwh"]["imp_t"] > 0, timeout=15,
                     what="metering after the IC answers")


def test_deploy_tree_runs_within_memory_budget(tmp_path):
    """The .mpy deploy tree (the firmware as files instead of frozen) meters
    and draws on the 32-bit runtime at the device budget: the frozen image
    is what ships, but the tree stays usable for development on a board."""
    import simctl

    out, n = simctl.simtool.build_mpy_tree(str(tmp_path / "tree"))
    assert n > 20
    with Sim(tmp_path / "dev", mpy=out) as sim:
        sim.wait_screen("POWER W")
        sim.wait_for(lambda: sim.state_()["counters_uwh"]["imp_t"] > 0, what="energy")
        sim.cmd("tap", "down")
        sim.wait_screen("VOLTAGE CURRENT")
        assert sim.quit() == 0
    assert "MemoryError" not in sim.output()
