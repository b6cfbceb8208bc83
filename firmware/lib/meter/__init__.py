"""Firmware of the three-phase energy analyzer."""

VERSION = "0.1.0"
