// The meter: ESP32-WROOM-32 (4 MiB flash, no PSRAM), ATM90E32AS on SPI,
// SSD1306 128x64, three buttons (docs/hardware.md).
#define MICROPY_HW_BOARD_NAME "Three-phase energy analyzer"
#define MICROPY_HW_MCU_NAME "ESP32"

// No Bluetooth on the meter: its RAM goes to the heap, Wi-Fi and TLS.
#define MICROPY_PY_BLUETOOTH (0)
