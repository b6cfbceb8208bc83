"""meter.text under MicroPython: word wrapping for the 16-column display
and the state words (issue 18)."""

from meter.text import COLS, short, state, wrap, wrap_all


def test_wrap_breaks_on_word_boundaries_only():
    out = wrap("Not available: no TOTP secret provisioned")
    assert out == ["Not available:", "no TOTP secret", "provisioned"], out
    for msg in ("IRREVERSIBLE: all totals and per-phase values are deleted.",
                "Back to 'not configured'. Run Wi-Fi setup again after.",
                "TLS: certificate verify failed; hostname mismatch"):
        lines = wrap(msg)
        assert all(len(l) <= COLS for l in lines), lines
        assert " ".join(lines) == msg, (msg, lines)  # nothing lost, no word split


def test_a_line_that_fits_is_kept_as_written():
    assert wrap("   123 456") == ["   123 456"]
    assert wrap("") == [""]
    assert wrap_all(["TITLE", "", "two words"]) == ["TITLE", "", "two words"]


def test_only_a_word_wider_than_the_screen_is_split():
    assert wrap("IP 192.168.100.200:8080/x") == ["IP", "192.168.100.200:", "8080/x"]


def test_state_words():
    assert [state(True), state(False), state(None), state("not supported")] == \
        ["on", "off", "unknown", "not supported"]
    assert short("Home Assistant discovery") == "HA discov." and short("Local API") == "Local API"
