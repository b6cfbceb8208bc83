"""The simulator's Wi-Fi (meter/board/host.py): simulated below the board
interface, with the same API as the ESP32's driver (meter/board/esp32wifi.py).
"""

import json

from meter.board.base import Wifi

# Networks the simulated station finds: (ssid, rssi dBm, auth, key). "sim"
# and HomeNet are the networks the tests use.
SIM_NETWORKS = (
    ("HomeNet", -48, "WPA2", "secret-key"),
    ("sim", -55, "open", ""),
    ("Neighbour-5G", -71, "WPA2", "not-yours-1"),
    ("CafeGuest", -83, "open", ""),
)


class HostWifi(Wifi):
    """Simulated Wi-Fi, the same API as the esp32 board's: a station that
    joins one of the networks in range (SIM_NETWORKS, or the list in
    `sim_path`, JSON [[ssid, rssi, auth, key], ...]) only with its key (any
    key for an open one), and an access point for the Wi-Fi setup.

    `connect(ssid, key)` joins or fails at once ("failed": unknown network or
    wrong key), `disconnect()` forgets the credentials, `scan()` lists the
    networks, `ap_start(ssid, key)` / `ap_stop()` / `ap_active()` /
    `ap_ip()` run the access point."""

    can_ap = True

    def __init__(self, sim_path=None):
        self._ssid = None
        self._key = ""
        self._ok = False
        self._ap = None
        self._nets = SIM_NETWORKS
        if sim_path:
            try:
                with open(sim_path) as f:
                    self._nets = tuple(tuple(n) for n in json.load(f))
            except (OSError, ValueError):
                pass

    def connect(self, ssid=None, key=None):
        if ssid is not None:
            self._ssid = ssid
            self._key = key or ""
        if not self._ssid:
            return False
        self._ok = False
        for name, _, auth, k in self._nets:
            if name == self._ssid and (auth == "open" or k == self._key):
                self._ok = True
        return True

    def disconnect(self):
        self._ssid = None
        self._ok = False

    def status(self):
        if not self._ssid:
            return "not configured"
        return "connected" if self._ok else "failed"

    def ip(self):
        return "127.0.0.1" if self._ssid and self._ok else None

    def scan(self):
        return [{"ssid": n[0], "rssi": n[1], "auth": n[2]} for n in self._nets]

    def ap_start(self, ssid, key):
        if not 8 <= len(key) <= 63:
            raise ValueError("WPA2 needs a key of 8 to 63 characters")
        self._ap = (ssid, key)

    def ap_stop(self):
        self._ap = None

    def ap_active(self):
        return self._ap is not None

    def ap_ip(self):
        return "192.168.4.1" if self._ap else None
