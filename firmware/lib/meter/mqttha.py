"""Home Assistant MQTT discovery: the config message of every entity the
meter offers (energy counters, power), published by meter/mqttlink.py when
`mqtt.ha_discovery` is on (and emptied when it is switched off).
"""

from meter import VERSION
from meter.energy import NAMES

HA_PREFIX = "homeassistant"
_LABELS = {"imp": "Import", "exp": "Export"}


def configs(dev_id, topic):
    """(topic, payload dict) of every discovery message, one at a time (a
    generator: the dicts are not all held at once). topic(leaf): the
    meter's own topic for leaf."""
    dev = {"identifiers": [dev_id], "name": "Energy meter " + dev_id,
           "manufacturer": "meter-firmware", "model": "3-phase analyzer",
           "sw_version": VERSION}
    for obj, cfg in _sensors(dev_id, topic):
        cfg["availability_topic"] = topic("status")
        cfg["device"] = dev
        yield "%s/sensor/%s/%s/config" % (HA_PREFIX, dev_id, obj), cfg


def _sensors(dev_id, topic):
    for n in NAMES:
        kind, ph = n.split("_")
        yield (n, {
            "name": "%s %s" % (_LABELS[kind], "total" if ph == "t" else "L%d" % ("abc".index(ph) + 1)),
            "unique_id": "%s_%s" % (dev_id, n), "state_topic": topic("energy"),
            "value_template": "{{ (value_json.%s / 1000000000) | round(6) }}" % n,
            "unit_of_measurement": "kWh", "device_class": "energy",
            "state_class": "total_increasing"})
    for i, ph in enumerate(("L1", "L2", "L3", "total")):
        yield ("p_" + "abct"[i], {
            "name": "Power " + ph, "unique_id": "%s_p_%s" % (dev_id, "abct"[i]),
            "state_topic": topic("telemetry"),
            "value_template": "{{ value_json.p[%d] }}" % i, "unit_of_measurement": "W",
            "device_class": "power", "state_class": "measurement"})
