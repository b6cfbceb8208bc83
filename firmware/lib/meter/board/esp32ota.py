"""The ESP32's A/B app slots for firmware updates (meter/ota.py), built on
first use of the board's ota() and dropped again by forget_ota(): the
start-up check is their only user in normal running.

[unverified on hardware] Written against MicroPython's esp32.Partition docs.
"""

from micropython import const

_SUBTYPE_DATA_OTA = const(0x00)  # otadata
_SUBTYPE_OTA_0 = const(0x10)


class Esp32Ota:
    """The app slots: esp32.Partition itself (ESP-IDF writes otadata and
    checks the image in set_boot()); the state of the running image is read
    from otadata with meter/otadata.py, which MicroPython does not expose."""

    def running(self):
        import esp32

        return esp32.Partition(esp32.Partition.RUNNING)

    def next_update(self):
        return self.running().get_next_update()

    def mark_app_valid_cancel_rollback(self):
        import esp32

        try:
            esp32.Partition.mark_app_valid_cancel_rollback()
            return True
        except OSError:  # -261: this build has no rollback
            return False

    @property
    def otadata(self):
        """otadata through meter/otadata.py (None without one): what the
        firmware reports about a rollback (meter/otastatus.py)."""
        import esp32

        from meter.otadata import Otadata

        found = esp32.Partition.find(esp32.Partition.TYPE_DATA, _SUBTYPE_DATA_OTA)
        return Otadata(found[0]) if found else None

    def running_state(self):
        import esp32

        from meter.otadata import STATE_NAMES, Otadata

        found = esp32.Partition.find(esp32.Partition.TYPE_DATA, _SUBTYPE_DATA_OTA)
        slot = self.running().info()[1] - _SUBTYPE_OTA_0
        if not found or not 0 <= slot < 2:  # no otadata, or a factory app
            return None
        st = Otadata(found[0]).slot_state(slot)
        return None if st == 0xFFFFFFFF else STATE_NAMES[st]
