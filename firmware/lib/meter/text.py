"""Text for the 16-column display and the words every interface shares.

wrap() breaks a message on word boundaries so that no screen cuts a word in
two ("no TOTP secret p / rovisioned"); every screen that shows a message
(meter.ui's Message, Confirm, Info) goes through it. state() is the one
vocabulary for a yes/no feature whose state may be unknown, used by the
display and the Web Admin alike; kwh() the one energy format.
"""

from micropython import const

COLS = const(16)

ON = "on"
OFF = "off"
UNKNOWN = "unknown"
UNSUPPORTED = "not supported"


def kwh(uwh):
    """Micro-watt-hours as kWh with 3 decimals ("1234.567"), in integer
    arithmetic: no float rounding on billing values. A leaf: the display and
    the Web Admin format energy with it alike."""
    wh = uwh // 1000000
    return "%d.%03d" % (wh // 1000, wh % 1000)


def state(v):
    """True/False/None (the hardware cannot tell) as on/off/unknown; a
    feature a board does not have passes UNSUPPORTED through."""
    if v is None:
        return UNKNOWN
    if v is True:
        return ON
    if v is False:
        return OFF
    return v


# Where 16 columns force a shorter label on the display; the Web Admin and
# every confirmation use the full name.
_SHORT = {"Home Assistant discovery": "HA discov."}


def short(label):
    """The display's label for a name (the name itself when it fits)."""
    return _SHORT.get(label, label)


def wrap(text, cols=COLS):
    """Lines of at most cols characters, broken at spaces. A word longer
    than a line (a serial, an address) is the only thing split mid-word,
    since it cannot fit whole anywhere."""
    out = []
    for para in str(text).split("\n"):
        if len(para) <= cols:  # fits: kept as written (indents, aligned columns)
            out.append(para)
            continue
        line = ""
        for word in para.split(" "):
            if not word:
                continue
            while len(word) > cols:  # only a word wider than the screen
                if line:
                    out.append(line)
                    line = ""
                out.append(word[:cols])
                word = word[cols:]
            if not line:
                line = word
            elif len(line) + 1 + len(word) <= cols:
                line += " " + word
            else:
                out.append(line)
                line = word
        out.append(line)
    return out


def wrap_all(lines, cols=COLS):
    """wrap() over a list of messages (each starts a new line)."""
    out = []
    for t in lines:
        out.extend(wrap(t, cols))
    return out
