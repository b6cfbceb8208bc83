"""Wi-Fi setup: a temporary WPA2 access point whose password the display
shows, a scan of the networks in range, and the join: once the station has
joined, the credentials are stored and the access point closes. Also the
reset to "not configured".

One WifiSetup lives with the Web Admin's controller for a window (the setup
page is a Web Admin page, and the window's end closes the access point);
meter.web's handle starts it for the menu, meter.web.route_network for the
pages. It is loaded and unloaded with the window (meter.web.MODULES).
"""

import asyncio
import os
import time

from micropython import const

from meter import log
from meter.errors import message

_JOIN_TIMEOUT_MS = const(20000)
_JOIN_POLL_MS = const(250)
_MAX_NETS = const(20)
# Unambiguous characters for the access point's WPA2 password (12 of 31:
# about 59 bits, WPA2 needs 8 to 63 characters).
_AP_CHARS = "abcdefghjkmnpqrstuvwxyz23456789"
_AP_KEY_LEN = const(12)


class WifiSetup:
    def __init__(self, app, ctl):
        self.app = app
        self.ctl = ctl  # the Web Admin controller: its window, its address
        self.ap = None  # (ssid, key) while the setup access point is on
        self.networks = None  # last scan: [{"ssid", "rssi", "auth"}]
        self.join_state = None  # (state, text): joining / joined / failed
        self._join_task = None

    def scan(self):
        """Networks in range (blocking for ~2 s on the ESP32: only on request)."""
        w = self.app.board.wifi()
        try:
            nets = w.scan()
        except Exception as e:  # a driver fault: the page shows "No networks found."
            log.exc("wifi: scan failed", e)
            nets = []
        seen = {}
        for n in nets:
            s = n.get("ssid")
            if s and (s not in seen or n["rssi"] > seen[s]["rssi"]):
                seen[s] = n
        out = sorted(seen.values(), key=lambda n: -n["rssi"])[:_MAX_NETS]
        self.networks = out
        return out

    def start(self, source):
        """Open the setup access point and the Web Admin window. None or why not."""
        app = self.app
        w = app.board.wifi()
        if not w.can_ap:
            return "no access point on this board"
        if not self.ctl.allowed():
            return "Web Admin is off in Services"
        if app.settings.locked:  # joining would store a network: refused anyway
            return "module locked"
        if self.ap is None:
            rnd = os.urandom(_AP_KEY_LEN)
            key = "".join(_AP_CHARS[b % len(_AP_CHARS)] for b in rnd)
            ssid = "Meter-" + app.board.serial()[-4:].upper()
            try:
                w.ap_start(ssid, key)
            except Exception as e:  # a driver fault: the menu says so
                log.exc("wifi: access point failed", e)
                return "access point failed"
            self.ap = (ssid, key)
            app.audit.append(source, "wifi-setup", "start", ssid)
        self.scan()
        err = self.ctl.enable(source)
        if err:
            self.stop(err)
            return err
        return None

    def close(self):
        """The window ends: a join under way is cancelled (it goes back to
        the stored network), the access point closes, the scan is forgotten."""
        if self._join_task is not None:
            self._join_task.cancel()
            self._join_task = None
        self.stop("window closed")
        self.networks = None
        self.join_state = None

    def stop(self, why):
        """Close the access point (joined, or the window ends)."""
        if self.ap is None:
            return
        try:
            self.app.board.wifi().ap_stop()
        except Exception as e:  # a driver fault: logged, the state still says closed
            log.exc("wifi: stopping the access point failed", e)
        self.app.audit.append("system", "wifi-setup", "end", why)
        self.ap = None

    def join(self, ssid, key):
        """Start joining `ssid`; the result lands in join_state. None or why
        not (Locked is raised: refused before leaving the current network)."""
        if not isinstance(ssid, str) or not 0 < len(ssid) <= 32:
            return "Choose a network."
        if not isinstance(key, str) or len(key) > 64 or (key and len(key) < 8):
            return "A Wi-Fi password has 8 to 63 characters (none for an open network)."
        if self.join_state and self.join_state[0] == "joining":
            return "Already joining a network."
        self.app.settings.require_unlocked("web", "wifi-join")
        self.join_state = ("joining", "Joining %s ..." % ssid)
        self._join_task = asyncio.create_task(self._join(ssid, key))
        return None

    def joining(self):
        return bool(self.join_state) and self.join_state[0] == "joining"

    def _rejoin(self, old):
        """Back to the stored network (or none) after a join that does not stay."""
        w = self.app.board.wifi()
        if old[0]:
            w.connect(old[0], old[1])
        else:
            w.disconnect()
        self._join_task = None

    async def _join(self, ssid, key):
        app = self.app
        w = app.board.wifi()
        old = (app.settings.get("wifi.ssid"), app.settings.get("wifi.key"))
        w.connect(ssid, key)
        t0 = time.ticks_ms()
        try:
            while True:
                st = w.status()
                if st == "connected":
                    break
                if st == "failed" or time.ticks_diff(time.ticks_ms(), t0) > _JOIN_TIMEOUT_MS:
                    self.join_state = ("failed", "Could not join %s: wrong password or out of "
                                       "range." % ssid)
                    app.audit.append("web", "wifi-join", "fail", ssid)
                    self._rejoin(old)
                    return
                await asyncio.sleep_ms(_JOIN_POLL_MS)
        except asyncio.CancelledError:
            # the window ended first: not stored, so not kept either (the
            # ESP32 would otherwise stay on a network nobody confirmed)
            app.audit.append("system", "wifi-join", "cancelled", ssid)
            self._rejoin(old)
            raise
        try:
            app.settings.update({"wifi.ssid": ssid, "wifi.key": key}, "web")
        except Exception as e:  # (the task's boundary) e.g. locked meanwhile: not kept
            self.join_state = ("failed", "Joined %s but could not store it: %s"
                               % (ssid, message(e)))
            self._rejoin(old)
            return
        ip = w.ip() or "-"
        self.join_state = ("joined", "Joined %s, IP address %s. The setup access point is "
                           "closed." % (ssid, ip))
        app.audit.append("web", "wifi-join", "ok", ssid)
        self.stop("joined " + ssid)
        self._join_task = None

    def reset(self, source, then_setup):
        """Back to "not configured" and off the network; then_setup: open the
        access point again. None or why not; a refused change raises (a
        UserError: the page's edge turns it into its message)."""
        app = self.app
        app.settings.update({"wifi.ssid": "", "wifi.key": ""}, source)
        app.board.wifi().disconnect()  # (the store audited the change)
        if then_setup:
            return self.start(source)
        return None

    def lines(self):
        """What the display shows while the access point is on."""
        ap = self.ap
        if not ap:
            return None
        return ["WI-FI SETUP", "Join " + ap[0], "Password:", ap[1], "then open",
                self.ctl.address() or "-"]
