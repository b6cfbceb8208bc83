"""The cloud uplink's session code, imported only once the uplink is on.

`Link(up).run()` connects, keeps the session and reconnects until the
uplink is switched off (then it returns); `up` is the meter.uplink.Uplink
facade, which holds the state the UI reads. Split from uplink.py so that a
switched-off uplink costs almost no RAM (docs/mqtt.md, "Memory").

- connects to settings `mqtt.host` (the name the server certificate must
  carry; `mqtt.ip`, when set, is dialled instead of resolving the name) on
  `mqtt.port` with TLS only: CERT_REQUIRED against `files/mqtt-ca.crt`,
  client certificate `files/mqtt-client.crt` + key `files/mqtt-client.key`
  (P-256). Missing files or a failed check stop there with a clear status;
  there is no plaintext path.
- last will `offline` (retained) on `meters/<serial>/status`; on connect it
  publishes `online` (retained), the device info with the firmware version
  (retained), the energy counters (retained), the backlog of readings kept
  during the outage, and Home Assistant discovery when `mqtt.ha_discovery`
  is on; then telemetry and counters every `mqtt.interval_s`.
- keepalive `mqtt.keepalive_s`: PINGREQ when the link was quiet for most
  of that either way; no PINGRESP in time ends the session.
- the MQTT protocol is micropython-lib umqtt.robust, driven from asyncio
  by meter.mqtt (it never touches the socket, so it never blocks);
  reconnects with exponential back-off (1 s doubling to 300 s) and jitter
  (a random half of the delay), as asyncio sleeps, never robust's own
  sleeping reconnect loop: nothing here blocks the loop except the TLS
  handshake's arithmetic steps and, without `mqtt.ip`, the DNS look-up
  (docs/mqtt.md gives the measured stalls).
- commands on `meters/<serial>/cmd`, replies on `meters/<serial>/reply`
  (meter.cloudcmd: TOTP, single use, throttled, audited).
"""

import asyncio
import json
import time

from micropython import const

from meter import VERSION, log, mqtt, netaddr
from meter.backoff import jitter
from meter.energy import NAMES
from meter.mqtttls import describe, tls_context

CA_FILE = "mqtt-ca.crt"
CERT_FILE = "mqtt-client.crt"
KEY_FILE = "mqtt-client.key"

_BACKOFF_MIN_S = const(1)
_BACKOFF_MAX_S = const(300)
_STABLE_S = const(30)  # a session that lasted this long resets the back-off
_TICK_MS = const(250)
_CMD_QUEUE = const(4)  # commands waiting to run; more are dropped (TOTP allows ~2 a step)
_BACKLOG_MAX = const(60)  # rows of (t, P total W, import total Wh, export total Wh)


class SetupError(Exception):
    def __init__(self, short, detail):
        super().__init__(short)
        self.short = short
        self.detail = detail


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


class Link:
    def __init__(self, up):
        self.up = up
        self.app = up.app
        self.board = up.board
        self.settings = up.app.settings
        self.id = up.id
        self.stats = up.stats
        self.backlog = []
        self.backlog_dropped = 0
        self._addr = None  # resolved address of mqtt.host (cached)
        self._addr_fails = 0
        self._last_sample = None
        self._ha_sent = False
        self._ha_cleared = False

    def topic(self, leaf):
        return self.up.prefix + "/" + leaf

    def _set(self, short, detail, level=None):
        self.up._set(short, detail, level)

    def _target(self):
        s = self.settings
        return (s.get("mqtt.host"), s.get("mqtt.ip"), s.get("mqtt.port"))

    def _not_ready(self):
        s = self.settings
        if not s.get("mqtt.enabled"):
            return "off", "cloud uplink switched off"
        if not s.get("mqtt.host"):
            return "no broker set", "settings: mqtt.host is empty"
        if self.board.wifi().status() != "connected":
            return "no WiFi", "waiting for Wi-Fi"
        if not self.board.time_valid():
            return "no clock", "waiting for the clock: certificates cannot be checked"
        return None

    def _now(self):
        return self.board.time() if self.board.time_valid() else None

    # -- the task -----------------------------------------------------------------

    async def run(self):
        """Until the uplink is switched off (then returns)."""
        backoff = _BACKOFF_MIN_S
        while True:
            why = self._not_ready()
            if why:
                self._set(*why)
                self.up.retry_at = None
                if why[0] == "off":
                    return
                await self._idle(1000)
                continue
            self._set("connecting", "connecting to %s:%d" % (self.settings.get("mqtt.host"),
                                                             self.settings.get("mqtt.port")))
            try:
                conn = await self._connect()
            except SetupError as e:
                self._set(e.short, e.detail, log.error)
                await self._idle(5000)
                continue
            except Exception as e:
                self.stats["failures"] += 1
                self._addr_fails += 1
                short, detail = describe(e)
                await self._back_off(backoff, short, detail)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                continue
            self._addr_fails = 0
            started = time.ticks_ms()
            reason = None
            try:
                reason = await self._session(conn)
            except Exception as e:
                reason = e
            finally:
                self.up.connected = False
                await conn.close(polite=reason is None)
            if reason is None:  # switched off or reconfigured: no back-off
                continue
            if time.ticks_diff(time.ticks_ms(), started) > _STABLE_S * 1000:
                backoff = _BACKOFF_MIN_S
            if isinstance(reason, (EOFError, OSError)):  # the link broke mid-session
                short, detail = "connection lost", "connection to the broker lost (%r)" % (reason,)
            else:
                short, detail = describe(reason)
            self.stats["failures"] += 1
            await self._back_off(backoff, short, detail)
            backoff = min(backoff * 2, _BACKOFF_MAX_S)

    async def _back_off(self, backoff, short, detail):
        ms = jitter(backoff * 1000)
        self._set(short, "%s; retry in %d s" % (detail, (ms + 999) // 1000), log.warn)
        self.up.retry_at = time.ticks_add(time.ticks_ms(), ms)
        await self._idle(ms)
        self.up.retry_at = None

    async def _idle(self, ms):
        """Sleep up to ms in short steps: keep the backlog, and stop early
        when the uplink is switched off."""
        end = time.ticks_add(time.ticks_ms(), ms)
        s, on = self.settings, self.settings.get("mqtt.enabled")
        seen = s.seq  # the switch is read again only after a stored change
        while True:
            left = time.ticks_diff(end, time.ticks_ms())
            if left <= 0 or s.seq != seen and s.get("mqtt.enabled") != on:
                return
            if on:
                self._sample_backlog()
            await asyncio.sleep_ms(min(left, _TICK_MS))

    def _sample_backlog(self):
        now = time.ticks_ms()
        if self._last_sample is not None and time.ticks_diff(
                now, self._last_sample) < self.settings.get("mqtt.interval_s") * 1000:
            return
        self._last_sample = now
        t = self._now()
        if t is None:
            return
        u = self.app.counters.uwh
        lv = self.app.sampler.live
        p = round(lv.p[3]) if self.app.sampler.live_ok else None
        self.backlog.append((t, p, u[3] // 1000000, u[7] // 1000000))
        if len(self.backlog) > _BACKLOG_MAX:
            self.backlog.pop(0)
            self.backlog_dropped += 1

    async def _connect(self):
        s = self.settings
        files = self.board.files + "/"
        ca = _read(files + CA_FILE)
        cert = _read(files + CERT_FILE)
        key = _read(files + KEY_FILE)
        if not ca:
            raise SetupError("no CA cert", "no broker CA provisioned (%s)" % CA_FILE)
        if not cert or not key:
            raise SetupError("no client cert", "no client certificate/key provisioned "
                             "(%s, %s): not connecting without one" % (CERT_FILE, KEY_FILE))
        try:
            ctx = tls_context(ca, cert, key)
        except ValueError as e:
            raise SetupError("bad cert/key", "provisioned TLS files unusable: %s" % e)
        host, ip, port = self._target()
        addr = self._address(host, ip, port)
        t0 = time.ticks_ms()
        conn = await mqtt.open_session(addr, port, host, ctx, self.id,
                                       s.get("mqtt.keepalive_s"), self.topic("status"), b"offline")
        self.stats["handshake_ms"] = time.ticks_diff(time.ticks_ms(), t0)
        return conn

    def _address(self, host, ip, port):
        """The address to dial. With mqtt.ip nothing is resolved; otherwise
        the name is resolved once (getaddrinfo blocks the loop: see
        docs/mqtt.md) and again only after 3 failed attempts."""
        if ip:
            if not netaddr.is_ipv4(ip):
                raise SetupError("bad broker IP", "settings: mqtt.ip is not an IPv4 address")
            return ip
        if netaddr.is_ipv4(host):
            return host
        if self._addr is None or self._addr_fails >= 3:
            a = netaddr.resolve(host, port)  # IPv4 only, as mqtt.ip
            if a is None:
                raise OSError(-2)  # reported as "DNS failed"
            self._addr = netaddr.ip(a)
            self._addr_fails = 0
        return self._addr

    # -- one session ------------------------------------------------------------------

    async def _session(self, conn):
        """Returns None when ended on purpose (switched off, reconfigured);
        raises on a broken link."""
        s = self.settings
        self.up.connected = True
        self.stats["connects"] += 1
        target = self._target()
        self._set("online", "connected to %s:%d" % (target[0], target[2]))
        cmd = self.topic("cmd").encode()
        # Commands run here in the session loop, not in the receiving task:
        # a lock command hashes a password for about a second on the ESP32,
        # and meanwhile the receiver must go on reading (PINGRESPs).
        cmds = []

        async def on_msg(topic, payload):
            if topic == cmd:
                if len(cmds) < _CMD_QUEUE:
                    cmds.append(payload)
                else:
                    log.warn("mqtt: command dropped, %d waiting" % len(cmds))

        try:
            await conn.subscribe(cmd, 1)  # the SUBACK is awaited (bounded)
            conn.start(on_msg)  # from here umqtt gets every packet received
            await self._announce(conn)
            next_pub = time.ticks_add(time.ticks_ms(), s.get("mqtt.interval_s") * 1000)
            seen = -1  # the store's change count: switches are read after a change
            while True:
                await asyncio.sleep_ms(_TICK_MS)
                if conn.dead is not None:
                    raise conn.dead
                changed, seen = s.seq != seen, s.seq
                if changed and not s.get("mqtt.enabled"):
                    await conn.publish(self.topic("status"), b"offline", True)
                    self._set("off", "cloud uplink switched off")
                    return None
                if changed and self._target() != target:
                    log.info("mqtt: broker settings changed: reconnecting")
                    return None
                while cmds:
                    await self._on_command(conn, cmds.pop(0))
                ev = self.up.events
                while ev:  # e.g. an update check's result (meter/otaauto.py)
                    await self._pub(conn, "event", json.dumps(ev.pop(0)))
                if changed and s.get("mqtt.ha_discovery") != self._ha_sent:
                    await self._discovery(conn, not self._ha_sent)
                now = time.ticks_ms()
                if time.ticks_diff(now, next_pub) >= 0:
                    next_pub = time.ticks_add(now, s.get("mqtt.interval_s") * 1000)
                    await self._telemetry(conn)
                await self._keepalive(conn)
        finally:
            self.up.connected = False

    async def _keepalive(self, conn):
        ka = self.settings.get("mqtt.keepalive_s") * 1000
        now = time.ticks_ms()
        if conn.ping_sent is not None:  # cleared by the PINGRESP
            if time.ticks_diff(now, conn.ping_sent) > max(5000, ka // 2):
                raise mqtt.MqttError("no PINGRESP in time", "no ping answer")
            return
        # Quiet either way for most of the keepalive: ask the broker (this
        # also finds a link that died without a reset).
        if (time.ticks_diff(now, conn.last_tx) >= ka * 3 // 4
                or time.ticks_diff(now, conn.last_rx) >= ka * 3 // 4):
            self.stats["pings"] += 1
            await conn.ping()

    async def _on_command(self, conn, payload):
        """A message on the command topic (umqtt has acked it: QoS 1);
        payload None when it was too large to hold."""
        self.stats["commands"] += 1
        reply = await self.up.commands().handle(payload)
        await self._pub(conn, "reply", json.dumps(reply))

    # -- what is published ------------------------------------------------------------

    async def _pub(self, conn, leaf, msg, retain=False):
        await conn.publish(self.topic(leaf), msg, retain)
        self.stats["published"] += 1

    async def _announce(self, conn):
        s = self.settings
        await self._pub(conn, "status", "online", True)
        locked = s.locked
        # Locked: nothing new about the configuration (the device info and
        # the discovery messages carry it); what the broker retains from
        # before the lock stays visible.
        if not locked:
            await self._pub(conn, "info", json.dumps({
                "fw": VERSION, "board": self.board.name, "serial": self.id,
                "interval_s": s.get("mqtt.interval_s"),
                "ha_discovery": s.get("mqtt.ha_discovery")}), True)
        await self._energy(conn)  # current counters, first thing after every (re)connect
        if self.backlog:
            rows = self.backlog
            await self._pub(conn, "backlog", json.dumps({
                "fields": ["t", "p_w", "imp_t_wh", "exp_t_wh"], "rows": rows,
                "dropped": self.backlog_dropped}))
            self.backlog = []
            self.backlog_dropped = 0
        self._ha_sent = False
        if locked:
            self._ha_sent = s.get("mqtt.ha_discovery")  # as retained: nothing to send
        elif s.get("mqtt.ha_discovery"):
            await self._discovery(conn, True)
        elif not self._ha_cleared:
            # Off: entities announced before a reboot may still be retained
            # on the broker; remove them once per boot.
            await self._discovery(conn, False)
        if not locked:
            self._ha_cleared = True
        await self._telemetry(conn)

    async def _energy(self, conn):
        c = self.app.counters
        d = dict(zip(NAMES, c.uwh))  # one synchronous copy: a consistent set
        d["t"] = self._now()
        d["gen"] = c.generation
        d["status"] = c.status
        await self._pub(conn, "energy", json.dumps(d), True)

    async def _telemetry(self, conn):
        smp = self.app.sampler
        d = {"t": self._now()}
        if smp.live_ok:
            lv = smp.live
            d.update({"v": [round(x, 2) for x in lv.v], "i": [round(x, 3) for x in lv.i],
                      "p": [round(x, 1) for x in lv.p], "q": [round(x, 1) for x in lv.q],
                      "s": [round(x, 1) for x in lv.s], "pf": [round(x, 3) for x in lv.pf],
                      "f": round(lv.freq, 2)})
        if smp.fault:
            d["fault"] = smp.fault
        await self._pub(conn, "telemetry", json.dumps(d))
        await self._energy(conn)
        self._last_sample = time.ticks_ms()

    def discovery_configs(self):
        """(topic, payload) of every Home Assistant discovery message
        (meter/mqttha.py), one at a time."""
        from meter import mqttha

        return mqttha.configs(self.id, self.topic)

    async def _discovery(self, conn, on):
        """Announce (on) or remove (off: empty retained payloads) the
        Home Assistant entities."""
        try:
            for topic, cfg in self.discovery_configs():
                await conn.publish(topic, json.dumps(cfg) if on else b"", True)
                self.stats["published"] += 1
        finally:
            # needed once per connection or switch: its module goes back
            # until then (meter/memory.py)
            from meter.memory import unload

            unload(("meter.mqttha",))
        self._ha_sent = on
