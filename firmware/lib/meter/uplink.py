"""The cloud uplink (MQTT over mutual TLS): the one object the app holds.

Integration (docs/mqtt.md): install(app) (a feature, meter/app.py)
registers the services, menu entries, task and status line. `up.status` is a short text
for the display (one 16-character line), `up.detail` the long form,
`up.pairing_code()` -> (code, seconds left).

This module is small on purpose: the session code (meter.mqttlink, with
meter.mqtt, umqtt.robust/simple and ssl) is imported only when the uplink
is switched on, and the command code (meter.cloudcmd, with meter.crypto and
hmac) only when a command arrives or the pairing code is shown. A switched-off uplink makes
no connection attempt and costs almost no RAM.
"""

import asyncio
import time

from micropython import const

from meter import log

_EVENTS = const(4)


def install(app):
    """The uplink as a feature (meter/app.py): its services, menu entries,
    task, status-line text and control-socket state."""
    up = app.uplink = Uplink(app)
    for label, key in Uplink.SERVICES:
        app.add_service(label, key)
    for where, label, fn in up.menu_entries():
        app.add_menu(where, label, fn)
    app.spawn("mqtt", up.run)
    app.add_status(50, up.status_text)  # after the Web Admin's countdown (40)
    app.add_state("mqtt", up.snapshot)


class Uplink:
    # (label, settings key) for app.services: the menu's on/off entries
    SERVICES = (("Cloud MQTT", "mqtt.enabled"), ("Home Assistant discovery", "mqtt.ha_discovery"))

    def __init__(self, app):
        self.app = app
        self.board = app.board
        self.id = app.board.serial()
        self.prefix = "meters/" + self.id
        self.status = "off"  # short, for the display
        self.detail = "cloud uplink switched off"  # longer, for the log / Web Admin
        self.connected = False
        self.retry_at = None  # ticks_ms of the next attempt while backing off
        self.stats = {"connects": 0, "failures": 0, "published": 0, "commands": 0,
                      "pings": 0, "handshake_ms": None}
        self.link = None  # meter.mqttlink.Link, once switched on
        self._cmds = None
        self._audited = None
        self.events = []  # what the session publishes on the event topic

    def event(self, d):
        """Queue an event for the cloud (e.g. an update check's result): sent
        by the session when it is online; the newest _EVENTS are kept."""
        self.events.append(d)
        if len(self.events) > _EVENTS:
            self.events.pop(0)

    async def run(self):
        while True:
            if self.app.settings.get("mqtt.enabled"):
                if self.link is None:
                    from meter.mqttlink import Link

                    self.link = Link(self)
                await self.link.run()  # returns when switched off
            self._set("off", "cloud uplink switched off")
            await self.app.settings.changed()  # announced by the store, not polled

    def commands(self):
        """The command handler (meter.cloudcmd), loaded on first use."""
        if self._cmds is None:
            from meter.cloudcmd import Commands

            self._cmds = Commands(self.app, self)
        return self._cmds

    # -- for the display and the menu --------------------------------------------

    def pairing_code(self):
        """(current 6-digit code, seconds left) or (None, why not)."""
        return self.commands().totp.code_now()

    def pairing_lines(self):
        code, left = self.pairing_code()
        if code is None:
            return ["Not available: " + left]  # wrapped on the display
        return ["Code:", "   %s %s" % (code[:3], code[3:]), "valid %d s" % left,
                "Enter it in the", "cloud app."]

    def status_lines(self):
        # each value under its label, wrapped on the display (a TLS error is long)
        lines = ["State:", self.status, "Broker:", self.app.settings.get("mqtt.host") or "-"]
        if self.retry_at is not None and not self.connected:
            left = time.ticks_diff(self.retry_at, time.ticks_ms()) // 1000
            lines.append("retry in %d s" % max(0, left))
        else:
            lines.append("sent %d" % self.stats["published"])
        return lines

    def status_text(self):
        """The status line while the uplink is on and Wi-Fi is up."""
        if self.app.settings.get("mqtt.enabled") and self.board.wifi().status() == "connected":
            return "WiFi+Cloud ok" if self.connected else ("Cloud " + self.status)[:16]
        return None

    def menu_entries(self):
        """(where, label, fn(ui)) for app.menu_entries: the uplink's state
        and the pairing code (showing it is audited)."""
        def screen(title, lines, event=None):
            def show(ui):
                from meter.screens import Info

                if event:
                    self.app.audit.append("menu", event, "shown")
                ui.push(Info(ui, title, lines))
            return show

        return [("communication", "Cloud status", screen("CLOUD MQTT", self.status_lines)),
                ("communication", "Pairing code",
                 screen("PAIRING CODE", self.pairing_lines, "pairing-code"))]

    def snapshot(self):
        """State for the simulator's control socket, the Web Admin, tests."""
        st = dict(self.stats)
        c = self._cmds
        st.update({"status": self.status, "detail": self.detail, "connected": self.connected,
                   "backlog": len(self.link.backlog) if self.link else 0,
                   "totp_accepted": c.totp.accepted if c else 0,
                   "totp_refused": c.totp.refused if c else 0,
                   "retry_in_ms": (None if self.retry_at is None else
                                   max(0, time.ticks_diff(self.retry_at, time.ticks_ms())))})
        return st

    def _set(self, short, detail, level=None):
        if short != self.status or detail != self.detail:
            self.status = short
            self.detail = detail
            (level or log.info)("mqtt: %s (%s)" % (short, detail))
        if short == "online":
            self._audited = None
        elif short.startswith("TLS") and short != self._audited:
            # A refused TLS check is security-relevant: audited once per
            # kind of failure, not on every retry (flash wear).
            self._audited = short
            self.app.audit.append("mqtt", "tls", "refused", detail.split(";")[0])
