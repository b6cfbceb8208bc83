#!/usr/bin/env python3
"""Flash, provision, inspect and service-wipe a meter over USB.

    tools/flash.py flash     --port P [--bootloader B --table T --firmware F] [--erase]
    tools/flash.py provision --port P [--wifi-ssid S ...] [--client-cert C --client-key K] ...
    tools/flash.py status    --port P [--json]
    tools/flash.py wipe      --port P [--yes]
    tools/flash.py security  [--virt EFUSE_FILE] [--keys DIR] [--yes]

`flash` talks to the ESP32's ROM serial bootloader through esptool's Python
API; `provision`, `status` and `wipe` talk to the firmware's service-mode
REPL through mpremote (the meter must be in service mode: OK+DOWN held 5 s
at start-up, confirmed on the display); `security` burns the eFuses for
flash encryption and Secure Boot V2 with espefuse/espsecure, in production
order. Every failure prints why and exits non-zero. Workflows:
docs/flashing.md.
"""

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import esptable  # noqa: E402
import meterrepl  # noqa: E402

CSV = os.path.join(ROOT, "firmware", "boards", "METER_ESP32", "partitions.csv")
CHIP = "esp32"


class Refused(Exception):
    """A check failed before anything was changed."""


def say(msg):
    print("[flash] " + msg, flush=True)


# -- flash ---------------------------------------------------------------------


def _read(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise Refused("%s: cannot read %s: %s" % (what, path, e.strerror))


def flash_plan(a):
    """Check the images and the table; returns [(offset, data, what)]."""
    rows = esptable.parse_csv(open(a.csv).read())
    want = esptable.to_binary(rows)
    table = want
    if a.table:
        table = _read(a.table, "partition table")
        given = esptable.from_binary(table)
        if given != rows or table[:len(want)] != want[:len(table)]:
            raise Refused("partition table %s does not match %s (the firmware's layout); "
                          "regenerate it or pass --csv" % (a.table, os.path.relpath(a.csv)))
    otadata = _read(a.otadata, "otadata") if a.otadata else None
    return esptable.plan(_read(a.bootloader, "bootloader"), table,
                         _read(a.firmware, "firmware"), rows, otadata, CHIP)


def cmd_flash(a):
    from esptool.cmds import (attach_flash, detect_chip, erase_flash, reset_chip, run_stub,
                              verify_flash, write_flash)

    plan = flash_plan(a)
    for off, data, what in plan:
        say("0x%06x  %7d bytes  %s" % (off, len(data), what))
    esp = None
    try:
        esp = detect_chip(a.port, a.baud, connect_mode=a.before, connect_attempts=a.attempts)
        if esp.CHIP_NAME.replace("-", "").lower() != CHIP:
            raise Refused("the device is an %s; these images are for %s" % (esp.CHIP_NAME, CHIP))
        esp = run_stub(esp)
        attach_flash(esp)
        if a.erase:
            say("erasing the whole flash")
            erase_flash(esp)
        pairs = [(off, data) for off, data, _ in plan]
        write_flash(esp, pairs, flash_size="keep", compress=True)
        verify_flash(esp, pairs)
        say("written and verified; resetting")
        reset_chip(esp, "hard-reset")
    finally:
        if esp is not None:
            esp._port.close()  # esptool's API leaves closing the port to the caller
    return 0


# -- status, provision, wipe (service-mode REPL) --------------------------------


def _status(a):
    return meterrepl.call(a.port, "status", timeout=a.timeout)


def cmd_status(a):
    st = _status(a)
    if a.json:
        print(json.dumps(st, indent=1, sort_keys=True))
        return 0
    sec = st["security"]
    slots = st["slots"]
    rows = [
        ("firmware", "%s (%s build; REPL %s)" % (st["version"], st["build"], st["repl"])),
        ("serial", st["serial"]),
        ("slots", "running %s, next %s, otadata %s" % (slots["running"], slots["next"],
                                                        slots["otadata"])),
        ("flash encryption", _tri(sec["flash_encryption"])),
        ("secure boot", _tri(sec["secure_boot"])),
        ("module lock", st["lock"]),
        ("settings", "%s; PIN %s, web password %s" % (
            st["settings_status"], "set" if st["pin_set"] else "not set",
            "set" if st["web_password_set"] else "factory default")),
        ("counters", "%s, import %.3f kWh, export %.3f kWh" % (
            st["counters_status"], st["counters_uwh"]["imp_t"] / 1e9,
            st["counters_uwh"]["exp_t"] / 1e9)),
        ("provisioned", json.dumps(st["provisioned"], sort_keys=True)),
        ("free heap", "%d bytes (service session)" % st["heap_free"]),
        ("service mode", "%d s left" % st["service_left_s"]),
    ]
    for k, v in rows:
        print("%-17s %s" % (k + ":", v))
    return 0


def _tri(v):
    return {True: "on", False: "off", None: "unknown (this board cannot tell)"}[v]


def _provision_input(a):
    """Read and check everything on the host first: (settings, files, new totp?)."""
    import pkicheck

    settings = {}
    for key, val in (("wifi.ssid", a.wifi_ssid), ("wifi.key", a.wifi_key),
                     ("mqtt.host", a.mqtt_host), ("mqtt.ip", a.mqtt_ip),
                     ("mqtt.port", a.mqtt_port), ("device.name", a.name),
                     ("update.server", a.update_server), ("update.ip", a.update_ip),
                     ("update.interval_h", a.update_interval_h)):
        if val is not None:
            settings[key] = val
    if a.mqtt_enable:
        settings["mqtt.enabled"] = True
    if a.update_enable:
        settings["update.enabled"] = True
    files = {}
    if a.mqtt_ca:
        files["mqtt-ca.crt"] = pkicheck.read_text(a.mqtt_ca, "MQTT broker CA")
        pkicheck.certificates(files["mqtt-ca.crt"], "MQTT broker CA")
    if a.update_ca:
        files["update-ca.crt"] = pkicheck.read_text(a.update_ca, "update server CA")
        pkicheck.certificates(files["update-ca.crt"], "update server CA")
    if bool(a.client_cert) != bool(a.client_key):
        raise Refused("give the client certificate and its key together")
    if a.client_cert:
        cert = pkicheck.read_text(a.client_cert, "client certificate")
        key = pkicheck.read_text(a.client_key, "client key")
        pkicheck.key_matches(cert, key)
        files["mqtt-client.crt"] = cert
        files["mqtt-client.key"] = key
    if a.ntp_server:
        files["ntp.server"] = a.ntp_server.strip() + "\n"
    return settings, files


def cmd_provision(a):
    import pkicheck

    try:
        settings, files = _provision_input(a)
        st = _status(a)  # in service mode? locked?
        new_totp = False
        if a.totp_secret is not None or "totp.secret" not in st["provisioned"]["files"]:
            secret, new_totp = pkicheck.totp_secret(a.totp_secret)
            files["totp.secret"] = secret + "\n"
    except pkicheck.PkiError as e:
        raise Refused(str(e))
    if st["lock"] == "locked":
        raise Refused("the meter's module lock is on: unlock it (Web Admin, Security) first; "
                      "a forgotten lock password needs `flash.py wipe`")
    if not settings and not files:
        raise Refused("nothing to provision (see --help)")
    done = meterrepl.call(a.port, "provision", settings, files, timeout=a.timeout)
    say("provisioned: " + ", ".join(done))
    if new_totp:
        # Printed once, here: the meter keeps the secret, nobody else does.
        print(pkicheck.otpauth_uri(secret, st["serial"]))
    if not a.stay:
        meterrepl.restart(a.port, timeout=a.timeout)
        say("service mode ended; the meter restarts with these settings")
    return 0


def cmd_wipe(a):
    st = _status(a)
    say("meter %s: module lock %s; counters and audit log are kept" % (st["serial"], st["lock"]))
    if not a.yes:
        got = input("Erase ALL configuration, secrets, PIN, passwords, app tokens and the "
                    "module lock of %s? Type its serial to confirm: " % st["serial"])
        if got.strip() != st["serial"]:
            raise Refused("not confirmed; nothing changed")
    res = meterrepl.call(a.port, "wipe", timeout=a.timeout)
    say("wiped: %s; files %s" % (", ".join(res["erased"]), ", ".join(res["files"]) or "-"))
    if not a.stay:
        meterrepl.restart(a.port, timeout=a.timeout)
        say("the meter restarts into first-time setup")
    return 0


def cmd_security(a):
    import secplan

    return secplan.main(a)


# -- command line ----------------------------------------------------------------


def parser():
    p = argparse.ArgumentParser(prog="flash.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def dev(name, help_):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--port", required=True, help="serial device of the meter")
        s.add_argument("--timeout", type=float, default=20.0,
                       help="seconds to wait for the meter's answer (default 20)")
        return s

    f = sub.add_parser("flash", help="write bootloader, table, otadata, firmware (esptool)")
    f.add_argument("--port", required=True, help="serial device, or socket://host:port")
    f.add_argument("--bootloader", required=True)
    f.add_argument("--firmware", required=True, help="the app image (goes to ota_0)")
    f.add_argument("--table", help="partition table binary (default: made from --csv)")
    f.add_argument("--otadata", help="otadata image (default: erased, boots ota_0)")
    f.add_argument("--csv", default=CSV, help="partition CSV the firmware is built for")
    f.add_argument("--erase", action="store_true", help="erase the whole chip first")
    f.add_argument("--baud", type=int, default=460800)
    f.add_argument("--before", default="default-reset",
                   choices=["default-reset", "usb-reset", "no-reset"])
    f.add_argument("--attempts", type=int, default=3, help="connection attempts")

    s = dev("status", "firmware, slots, security, lock, counters (service mode)")
    s.add_argument("--json", action="store_true")

    v = dev("provision", "settings and secrets through the firmware's checks (service mode)")
    for opt in ("wifi-ssid", "wifi-key", "mqtt-host", "mqtt-ip", "name", "update-server",
                "update-ip", "ntp-server", "totp-secret"):
        v.add_argument("--" + opt)
    v.add_argument("--mqtt-port", type=int)
    v.add_argument("--mqtt-enable", action="store_true", help="switch the cloud uplink on")
    v.add_argument("--mqtt-ca", help="PEM: the CA that signed the broker's certificate")
    v.add_argument("--client-cert", help="PEM: the meter's client certificate")
    v.add_argument("--client-key", help="PEM: its EC P-256 private key (unencrypted)")
    v.add_argument("--update-ca", help="PEM: the CA of the update server")
    v.add_argument("--update-interval-h", type=int, help="hours between update checks")
    v.add_argument("--update-enable", action="store_true",
                   help="switch the automatic update check on")
    v.add_argument("--stay", action="store_true", help="stay in service mode afterwards")

    w = dev("wipe", "service-centre factory wipe (service mode)")
    w.add_argument("--yes", action="store_true", help="do not ask (scripts)")
    w.add_argument("--stay", action="store_true", help="stay in service mode afterwards")

    c = sub.add_parser("security", help="flash encryption + Secure Boot V2 eFuses, in order")
    c.add_argument("--port", help="serial device (not with --virt)")
    c.add_argument("--virt", metavar="EFUSE_FILE",
                   help="run against espefuse's virtual eFuses kept in this file")
    c.add_argument("--keys", default="keys", help="directory for the generated keys")
    c.add_argument("--yes", action="store_true", help="do not ask (with --virt only)")
    return p


COMMANDS = {"flash": cmd_flash, "status": cmd_status, "provision": cmd_provision,
            "wipe": cmd_wipe, "security": cmd_security}


def main(argv=None):
    a = parser().parse_args(argv)
    try:
        return COMMANDS[a.cmd](a)
    except (Refused, esptable.TableError) as e:
        say("refused: %s" % e)
        return 2
    except meterrepl.DeviceError as e:
        say("error: %s" % e)
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except Exception as e:  # esptool, serial and OS errors: name them, no traceback
        say("error: %s: %s" % (type(e).__name__, e))
        return 1


if __name__ == "__main__":
    sys.exit(main())
