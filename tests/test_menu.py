"""The display and buttons as an installer uses them (issue 3): every flow is
driven through the simulator's buttons and checked on what the screen shows."""

import os
import time

from simctl import Sim, configure

PIN = "1290"
OTHER = "1300"


def boot(tmp_path, *args, **kw):
    sim = Sim(tmp_path / "dev", *args, **kw)
    sim.wait_screen("POWER W")
    return sim


def set_first_pin(sim, pin=PIN):
    sim.tap("ok")
    sim.wait_screen("New PIN:")
    sim.enter_pin(pin)
    sim.wait_screen("Repeat PIN:")
    sim.enter_pin(pin)
    sim.wait_screen("SETTINGS")


def back_to_pages(sim):
    sim.tap("ok", ms=1000)  # long OK: back, up to the pages
    for _ in range(6):
        if "OK:menu" in sim.screen()[6]:
            return
        sim.tap("ok", ms=1000)
    raise AssertionError("\n".join(sim.screen()))


def login(sim, pin=PIN):
    sim.tap("ok")
    sim.wait_screen("Enter PIN:")
    sim.enter_pin(pin)


def test_first_pin_set_twice_with_a_mismatch_and_stored_hashed(tmp_path):
    with boot(tmp_path) as sim:
        sim.tap("ok")
        lines = sim.wait_screen("New PIN:")
        assert lines[0].startswith("SET PIN")
        sim.tap("up", 3)
        assert sim.screen()[4].strip() == "3 _ _ _"  # the digit being set shows
        sim.tap("ok")
        assert sim.screen()[4].strip() == "* 0 _ _"  # entered digits are masked
        sim.enter_pin("200")
        sim.wait_screen("Repeat PIN:")
        sim.enter_pin(OTHER)
        lines = sim.wait_screen("PINs differ")
        assert "New PIN:" in lines[2]
        sim.enter_pin(PIN)
        sim.wait_screen("Repeat PIN:")
        sim.enter_pin(PIN)
        sim.wait_screen("SETTINGS")
        assert sim.quit() == 0
    with open(tmp_path / "dev" / "config.bin", "rb") as f:
        flash = f.read()
    # the PIN never as a value of its own (hex digits of the hash may spell it)
    assert b"ui.pin" in flash and b'"%s"' % PIN.encode() not in flash


def test_pin_asked_at_every_entry_right_and_wrong(tmp_path):
    with boot(tmp_path) as sim:
        set_first_pin(sim)
        back_to_pages(sim)  # leaving ends the session
        login(sim, OTHER)
        lines = sim.wait_screen("Wrong PIN")
        assert "Enter PIN:" in lines[2]
        sim.enter_pin(PIN)
        sim.wait_screen("SETTINGS")
        sim.select("< Back")
        sim.wait_screen("OK:menu")
        login(sim, PIN)
        sim.wait_screen("SETTINGS")


def test_wrong_pins_lock_out_and_the_lock_survives_a_power_cut(tmp_path):
    with boot(tmp_path) as sim:
        set_first_pin(sim)
        back_to_pages(sim)
        login(sim, OTHER)
        sim.wait_screen("Wrong PIN")
        sim.enter_pin(OTHER)
        sim.wait_screen("Wrong PIN")
        sim.enter_pin(OTHER)
        lines = sim.wait_screen("PIN LOCKED")
        assert any(l.startswith("in 30 s") or l.startswith("in 29 s") for l in lines), lines
        sim.kill()  # power cut
    with boot(tmp_path) as sim:
        sim.tap("ok")
        lines = sim.wait_screen("PIN LOCKED")
        wait = int([l for l in lines if l.startswith("in ")][0].split()[1])
        assert 25 <= wait <= 30  # the restart did not end the lock-out
        sim.tap("ok")
        sim.wait_screen("OK:menu")


def test_change_pin_needs_the_current_pin(tmp_path):
    with boot(tmp_path) as sim:
        set_first_pin(sim)
        sim.select("Security")
        sim.select("Change PIN")
        sim.wait_screen("Current PIN:")
        sim.enter_pin(OTHER)
        sim.wait_screen("Wrong PIN")
        sim.enter_pin(PIN)
        sim.wait_screen("New PIN:")
        sim.enter_pin(OTHER)
        sim.wait_screen("Repeat new PIN:")
        sim.enter_pin(OTHER)
        sim.wait_screen("PIN CHANGED")
        sim.tap("ok")
        back_to_pages(sim)
        login(sim, PIN)
        sim.wait_screen("Wrong PIN")
        sim.enter_pin(OTHER)
        sim.wait_screen("SETTINGS")


def restart_holding_up_down(tmp_path):
    """A device with a PIN, switched off and on with UP+DOWN held at start."""
    with boot(tmp_path) as sim:
        set_first_pin(sim)
        assert sim.quit() == 0
    sim = Sim(tmp_path / "dev")
    sim.cmd("press", "up")
    sim.cmd("press", "down")
    lines = sim.wait_screen("Keep holding", timeout=3)
    assert lines[0].startswith("PIN RESET")
    return sim


def test_startup_up_down_reset_held_long_enough(tmp_path):
    with restart_holding_up_down(tmp_path) as sim:
        sim.wait_screen("RESET PIN?", timeout=8)
        sim.cmd("release", "up")
        sim.cmd("release", "down")
        time.sleep(0.2)  # a finger needs longer than the debounce to come back
        sim.tap("down")  # No -> Yes
        sim.tap("ok")
        sim.wait_screen("PIN cleared")
        sim.tap("ok")
        sim.wait_screen("POWER W")
        sim.tap("ok")
        sim.wait_screen("New PIN:")  # asks to set a new one
        assert sim.quit() == 0
    assert "pin-reset ok" in sim.output()


def test_startup_reset_released_early_aborts(tmp_path):
    with restart_holding_up_down(tmp_path) as sim:
        time.sleep(1.5)
        sim.cmd("release", "up")
        sim.cmd("release", "down")
        sim.wait_screen("Aborted")
        sim.tap("ok")
        sim.wait_screen("POWER W")
        login(sim, PIN)  # the PIN is still set
        sim.wait_screen("SETTINGS")


def test_counter_reset_cancelled_then_confirmed(tmp_path):
    with boot(tmp_path) as sim:
        sim.wait_for(lambda: sim.state_()["counters_uwh"]["imp_t"] > 0, what="energy")
        set_first_pin(sim)
        sim.select("Measurement")
        sim.select("Reset counters")
        sim.wait_screen("IRREVERSIBLE")  # the whole warning first
        sim.tap("ok")
        lines = sim.wait_screen("No (hold OK)")
        assert lines[5].startswith("  No")  # No is preselected
        sim.tap("ok")
        sim.wait_screen("MEASUREMENT")
        st = sim.state_()
        assert st["generation"] == 0 and st["counters_uwh"]["imp_t"] > 0
        sim.select("Reset counters")
        sim.wait_screen("IRREVERSIBLE")
        sim.tap("ok")
        sim.wait_screen("No (hold OK)")
        sim.tap("down")
        sim.tap("ok")
        sim.wait_screen("COUNTERS RESET")
        st = sim.state_()
        assert st["generation"] == 1
        assert st["counters_uwh"]["imp_t"] < 3125 * 320  # 0, plus at most a tick
        assert sim.quit() == 0
    assert "counter-reset ok" in sim.output()


def test_wifi_reset_and_device_info(tmp_path):
    configure(tmp_path / "dev", **{"wifi.ssid": "HomeNet", "wifi.key": "secret-key"})
    with boot(tmp_path) as sim:
        sim.wait_screen("WiFi ok")
        set_first_pin(sim)
        sim.select("Device info")
        lines = sim.wait_screen("DEVICE INFO")
        assert lines[1].startswith("S/N SIM-") and "Firmware 0.1.0" in lines[2]
        assert lines[3].strip() == "Secure boot" and lines[4].strip() == "unknown", lines
        sim.tap("ok")
        sim.select("Communication")
        sim.select("Network")
        sim.select("Wi-Fi")
        sim.select("Status")
        assert "HomeNet" in sim.wait_screen("WI-FI STATUS")[2]
        sim.tap("ok")
        sim.select("Reset Wi-Fi")
        sim.wait_screen("RESET WI-FI?")
        sim.tap("down")
        sim.tap("ok")
        sim.wait_screen("Not configured")
        sim.tap("ok")
        back_to_pages(sim)
        sim.wait_screen("WiFi not set")
        assert sim.quit() == 0
    with Sim(tmp_path / "dev") as sim:  # stays reset after a restart
        sim.wait_screen("WiFi not set")


def test_nonsense_input_never_traps_the_user(tmp_path):
    with boot(tmp_path) as sim:
        for _ in range(3):  # all buttons at once
            for b in ("up", "down", "ok"):
                sim.cmd("press", b)
            time.sleep(0.3)
            for b in ("up", "down", "ok"):
                sim.cmd("release", b)
        sim.wait_screen("1/4     OK:menu")
        for _ in range(20):  # contact bounce: 5 ms blips (each sample sees
            sim.cmd("tap", "ok", 5)  # the edges between, so never a press)
        # A blip taken for OK would have opened SET PIN, where DOWN changes
        # a digit: the next page shows only if none was.
        sim.tap("down")
        sim.wait_screen("2/4     OK:menu")
        sim.tap("up")
        sim.wait_screen("1/4     OK:menu")
        set_first_pin(sim)
        sim.select("Security")
        sim.wait_screen("SECURITY")
        sim.cmd("press", "ok")  # hold OK for long: the stimulus, not a wait
        time.sleep(20)
        sim.cmd("release", "ok")
        # one long press went back one level (a repeating one would have gone
        # on to the pages); the UI still answers
        sim.wait_screen("SETTINGS")
        sim.tap("down")
        assert "SETTINGS" in sim.screen()[0], sim.screen()
        st = sim.state_()
        assert not any(st["restarts"].values()), st["restarts"]
        back_to_pages(sim)
        login(sim, PIN)
        sim.wait_screen("SETTINGS")
        assert sim.quit() == 0
