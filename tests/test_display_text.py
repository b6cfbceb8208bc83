"""What a new user reads on the display (issue 18): messages wrapped on word
boundaries and never cut, the PF column header, the same button hints on
every kind of screen, one vocabulary for states, full names on the
confirmations whose menu labels abbreviate. Read from the screen of the
real firmware in the simulator."""

import re

from simctl import Sim
from test_menu import set_first_pin

COLS = 16


def boot(tmp_path, *args, **kw):
    sim = Sim(tmp_path / "dev", *args, **kw)
    sim.wait_screen("POWER W")
    return sim


def words_whole(lines, message):
    """Every word of message appears whole on one screen line, in order."""
    text = [w for line in lines for w in line.split()]
    want = message.split()
    for i in range(len(text) - len(want) + 1):
        if text[i:i + len(want)] == want:
            return True
    return False


def test_pairing_code_message_wraps_on_word_boundaries(tmp_path):
    # The seed's report: "no TOTP secret p / rovisioned" on the pairing screen.
    with boot(tmp_path) as sim:
        set_first_pin(sim)
        sim.select("Communication")
        sim.select("Pairing code")
        lines = sim.wait_screen("PAIRING CODE")
        body = [l.rstrip() for l in lines[1:7]]
        assert words_whole(body, "Not available: no TOTP secret provisioned"), \
            "the message is cut or a word is broken across lines:\n" + "\n".join(lines)
        assert "provisioned" in [w for l in body for w in l.split()], lines
        assert sim.quit() == 0


def test_power_page_has_a_pf_column_header(tmp_path):
    with boot(tmp_path, profile="house") as sim:
        lines = sim.wait_screen("POWER W")
        head = lines[0]
        assert head.rstrip().endswith("PF"), "no PF header on the power page: %r" % head
        # PF is over the power factor column (the last 5 characters of L1..L3)
        for row in lines[1:4]:
            assert re.match(r"L\d .{6}  [ -]\d\.\d\d$", row), row
        assert head.index("PF") >= COLS - 5, head
        assert sim.quit() == 0


def test_every_screen_says_what_holding_ok_does(tmp_path):
    with boot(tmp_path) as sim:
        sim.tap("ok")
        lines = [l.rstrip() for l in sim.wait_screen("New PIN:")]
        assert "hold OK: cancel" in lines, "PIN entry does not say how to cancel:\n" + \
            "\n".join(lines)
        assert lines[7].startswith("UP/DN  OK:next"), lines
        sim.tap("ok", ms=1000)  # hold OK: cancel, back to the pages
        sim.wait_screen("OK:menu")
        set_first_pin(sim)
        lines = sim.screen()
        assert lines[6].rstrip() == "hold OK: back" and lines[7].startswith("UP/DN  OK:select"), \
            "the menu's hints:\n" + "\n".join(lines)
        sim.select("Measurement")
        sim.select("Reset counters")
        lines = [l.rstrip() for l in sim.wait_screen("IRREVERSIBLE")]
        assert "hold OK: cancel" in lines, lines
        sim.tap("ok")  # read: on to the question
        lines = sim.wait_screen("No (hold OK)")
        assert lines[7].startswith("UP/DN  OK:choose"), lines
        sim.tap("ok", ms=1000)  # hold OK: No, back in the menu
        sim.wait_screen("MEASUREMENT")
        assert sim.state_()["counters_uwh"]["imp_t"] > 0  # nothing was reset
        assert sim.quit() == 0


def test_confirmation_shows_the_full_name_of_an_abbreviated_entry(tmp_path):
    with boot(tmp_path) as sim:
        set_first_pin(sim)
        sim.select("Measurement")
        lines = sim.wait_screen("Reset counters")  # 16 columns: the menu abbreviates
        sim.select("Reset counters")
        lines = sim.wait_screen("IRREVERSIBLE")
        assert words_whole(lines, "RESET ENERGY COUNTERS?"), "\n".join(lines)
        assert words_whole(lines, "IRREVERSIBLE: all totals and per-phase values are "
                           "deleted."), "the warning is cut:\n" + "\n".join(lines)
        sim.tap("ok", ms=1000)
        sim.wait_screen("MEASUREMENT")
        sim.tap("ok", ms=1000)
        sim.select("Security")
        sim.select("Reset Web Pass")
        lines = sim.wait_screen("PASSWORD?")
        assert words_whole(lines, "RESET WEB ADMIN PASSWORD?"), "\n".join(lines)
        assert sim.quit() == 0


def test_device_info_uses_the_state_vocabulary(tmp_path):
    # The same words as the Web Admin's Device page (test_web_polish.py):
    # the simulator cannot tell its secure boot state: "unknown", not "n/a".
    with boot(tmp_path) as sim:
        set_first_pin(sim)
        sim.select("Device info")
        lines = [l.strip() for l in sim.wait_screen("DEVICE INFO")]
        assert lines[1].startswith("S/N SIM-"), lines
        assert "Secure boot" in lines and "Flash encryption" in lines, lines
        assert lines[lines.index("Secure boot") + 1] == "unknown", lines
        assert lines[lines.index("Flash encryption") + 1] == "unknown", lines
        assert not any("n/a" in l for l in lines), lines
        assert sim.quit() == 0
