# Firmware entry point, on the device and in the simulator alike.
from meter import app

app.main()
