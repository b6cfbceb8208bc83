"""What every board shares: the button bits, and base classes that give
each optional capability a default, so that the firmware asks a board
plainly instead of probing it with hasattr() (issue 17).

A leaf module: it imports nothing of the firmware, so the boards import it
and the package's loader (meter/board/__init__.py) imports the boards
without a circle.
"""

from micropython import const

BTN_UP = const(1)
BTN_DOWN = const(2)
BTN_OK = const(4)


class Buttons:
    """What a board's buttons() returns. The debouncer (meter/buttons.py)
    samples read() every 20 ms; edges() tells it that the level moved in
    between, so a glitch shorter than a sample period (mains interference
    repeats every 20 ms) never looks stable. Both are called in the UI's
    hot path: they must not allocate."""

    def read(self):
        """Bitmask of the buttons held now."""
        raise NotImplementedError

    def edges(self):
        """Bitmask of the buttons whose level changed since the last call,
        then clear. The default is for a board that cannot see between
        reads: 0, and only the sampled levels count."""
        return 0


class Board:
    """The optional members of a board (meter/board/__init__.py lists the
    required ones), with what a board without the capability means."""

    # the Web Admin's address (meter/web): every interface, port 80
    http_bind = ("0.0.0.0", 80)
    # the local API's address (meter/api.py): every interface, its port 8081
    api_bind = ("0.0.0.0", 8081)
    # True when the board has add_command(name, fn): fn(args) -> JSON-able
    # (or a coroutine giving one) on a control channel (the simulator's
    # control socket). Ask this, so that a board without one builds nothing.
    commands = False

    def forget_ota(self):
        """Drop the app-slot objects until ota() is asked again (the start-up
        check is their only user in normal running)."""
        self._ota = None


class Wifi:
    """The Wi-Fi station's optional members. A radio that can also run the
    setup access point of the Wi-Fi setup (meter/web) sets `can_ap` and has
    ap_start(ssid, key), ap_stop(), ap_active() and ap_ip(); ask can_ap
    before calling them (no method stubs: each costs RAM on every board)."""

    can_ap = False

    def scan(self):
        """The networks in range: [{"ssid", "rssi", "auth"}]."""
        return []
