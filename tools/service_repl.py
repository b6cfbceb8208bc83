# Runs under the MicroPython unix port as the simulator's service-mode REPL
# (tools/servicepty.py starts it with `micropython -i`): starts the service
# period, then the REPL follows. argv: SECONDS, then the board's options.
import sys

from meter import board, service

_SECONDS = int(sys.argv.pop(1))
service.begin(_SECONDS, board.load())
