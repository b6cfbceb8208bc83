"""The ESP32's Wi-Fi driver (network.WLAN): the station the firmware joins
with, and the access point of the Wi-Fi setup (meter/web). The board
(meter/board/esp32.py) builds it on first use of wifi().

[unverified on hardware] Written against MicroPython's network.WLAN docs.
"""

from micropython import const

from meter.board.base import Wifi

_WPA2_PSK = const(3)  # wifi_auth_mode_t, for firmware without network.AUTH_WPA2_PSK


class Esp32Wifi(Wifi):
    """The Wi-Fi station, never blocking: attempts are started, not awaited.

    Beyond the board interface (`status()`, `ip()`): `connect(ssid, key)`
    stores the credentials and starts an attempt; `connect()` starts another
    with the stored ones (after "failed"); `disconnect()` forgets them.
    For the Wi-Fi setup (meter/web): `scan()` lists the networks in range
    (blocks for about 2 s: the port's scan is synchronous), and
    `ap_start(ssid, key)` / `ap_stop()` / `ap_active()` / `ap_ip()` run a
    WPA2-PSK access point on the AP interface beside the station.
    The driver retries `reconnects` times after a drop or a failure and then
    gives up, so that a wrong password shows as "failed" and not as
    "connecting" for ever; the caller decides when to try again.
    """

    can_ap = True

    def __init__(self, network, log=print, reconnects=5):
        self._net = network
        self._ap = None  # the setup access point's WLAN while it runs
        self._log = log
        self._wlan = network.WLAN(network.STA_IF)
        self._reconnects = reconnects
        self._ssid = None
        self._key = None
        self._error = False

    def connect(self, ssid=None, key=None):
        if ssid is not None:
            self._ssid = ssid
            self._key = key
        if not self._ssid:
            return False
        w = self._wlan
        net = self._net
        try:
            if not w.active():
                w.active(True)
            try:
                w.config(reconnects=self._reconnects)
            except (ValueError, TypeError, OSError):
                pass  # firmware without the option: retries for ever
            if w.status() in (net.STAT_CONNECTING, net.STAT_GOT_IP):
                w.disconnect()  # connect() while connecting raises on ESP32
            w.connect(self._ssid, self._key)
        except OSError as e:
            self._error = True
            self._log("wifi: could not start a connection: %r" % (e,))
            return False
        self._error = False
        return True

    def disconnect(self):
        self._ssid = self._key = None
        self._error = False
        w = self._wlan
        try:
            if w.active():
                w.disconnect()
        except OSError:
            pass

    def status(self):
        w = self._wlan
        net = self._net
        s = w.status()
        if s == net.STAT_GOT_IP:
            return "connected"
        if not self._ssid:
            return "not configured"
        if self._error:
            return "failed"
        if s == net.STAT_CONNECTING:
            return "connecting"
        # STAT_IDLE (nothing under way, e.g. the interface was switched off)
        # or a driver error code (no AP, wrong password, ...) after the
        # retries ran out.
        return "failed"

    def ip(self):
        w = self._wlan
        if not w.isconnected():
            return None
        try:
            addr = w.ipconfig("addr4")[0]
        except (AttributeError, ValueError, TypeError):
            addr = w.ifconfig()[0]  # firmware before network.ipconfig
        if not addr or addr == "0.0.0.0":
            return None
        return addr

    def scan(self):
        w = self._wlan
        if not w.active():
            w.active(True)
        out = []
        for e in w.scan():  # (ssid, bssid, channel, RSSI, security, hidden)
            try:
                ssid = e[0].decode()
            except UnicodeError:
                continue
            if ssid and not e[5]:
                out.append({"ssid": ssid, "rssi": e[3], "auth": _AUTH.get(e[4], "secured")})
        return out

    def ap_start(self, ssid, key):
        if not 8 <= len(key) <= 63:
            raise ValueError("WPA2 needs a key of 8 to 63 characters")
        net = self._net
        ap = self._ap = net.WLAN(net.AP_IF)
        ap.active(True)
        wpa2 = getattr(net, "AUTH_WPA2_PSK", _WPA2_PSK)  # a constant, not a capability probe
        try:
            ap.config(ssid=ssid, key=key, security=wpa2)
        except (ValueError, TypeError, OSError):  # firmware before the new names
            ap.config(essid=ssid, password=key, authmode=wpa2)
        self._log("wifi: setup access point %s on" % ssid)

    def ap_stop(self):
        ap = self._ap
        if ap is not None:
            try:
                ap.active(False)
            except OSError:
                pass
            self._ap = None

    def ap_active(self):
        ap = self._ap
        return ap is not None and ap.active()

    def ap_ip(self):
        ap = self._ap
        if ap is None:
            return None
        try:
            return ap.ipconfig("addr4")[0]
        except (AttributeError, ValueError, TypeError):
            return ap.ifconfig()[0]


# network.WLAN.scan() security codes (esp32 port: wifi_auth_mode_t)
_AUTH = {0: "open", 1: "WEP", 2: "WPA", 3: "WPA2", 4: "WPA/WPA2", 5: "WPA2-Enterprise",
         6: "WPA3", 7: "WPA2/WPA3"}
