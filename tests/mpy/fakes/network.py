"""Fake `network` for tests: one WLAN station whose state tests set.

Status codes are the esp32 port's (ports/esp32/modnetwork.h). Calls are
recorded in `log`; `wlans` holds every WLAN made.
"""

IS_FAKE = True

STA_IF = 0
AP_IF = 1

STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_BEACON_TIMEOUT = 200
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_ASSOC_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204

log = []
wlans = []


def _reset():
    del log[:]
    del wlans[:]


class WLAN:
    def __init__(self, interface_id=STA_IF):
        self.interface_id = interface_id
        self._active = False
        self.state = STAT_IDLE
        self.addr = "0.0.0.0"
        self.cfg = {}
        self.connect_raises = None
        wlans.append(self)
        log.append(("WLAN", interface_id))

    def active(self, v=None):
        if v is None:
            return self._active
        self._active = bool(v)
        log.append(("active", self._active))

    def config(self, **kw):
        self.cfg.update(kw)
        log.append(("config", kw))

    def connect(self, ssid=None, key=None):
        log.append(("connect", ssid, key))
        if self.connect_raises:
            raise self.connect_raises
        # Like the port: the attempt runs in the background.
        self.state = STAT_CONNECTING

    def disconnect(self):
        log.append(("disconnect",))
        self.state = STAT_IDLE

    def status(self, param=None):
        return self.state

    def isconnected(self):
        return self.state == STAT_GOT_IP

    def ipconfig(self, key):
        if key == "addr4":
            return (self.addr, "255.255.255.0")
        raise ValueError(key)

    def ifconfig(self):
        return (self.addr, "255.255.255.0", "0.0.0.0", "0.0.0.0")
