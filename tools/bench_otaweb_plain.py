"""The baseline of tools/bench_otaweb.py: a plain microdot streaming upload.

    MICROPYPATH=.frozen IMAGE -X heapsize=128k tools/bench_otaweb_plain.py PORT MODE

Runs on the device image (the frozen, pinned microdot from build/lib, the
same binary and heap as the simulator) a microdot app whose
`POST /upload` reads `request.stream` 1 KiB at a time (`read(1024)`, as a
microdot app is written) until Content-Length, and answers
`{"bytes": N, "sha256": HEX or null}`. MODE `discard` drops each chunk,
`sha256` hashes it (the firmware hashes the payload too). The body
streams because `Request.max_body_length` is below it. It serves until
killed.

What it leaves out, and the firmware's upload does: the session, ticket
and admission checks, the signature check, erasing and writing flash and
reading the slot back.
"""

import asyncio
import hashlib
import sys

from microdot import Microdot, Request

CHUNK = 1024
Request.max_body_length = CHUNK  # larger bodies are left in request.stream
Request.max_content_length = 2 * 1024 * 1024  # the slot takes 1.5 MiB

port, mode = int(sys.argv[1]), sys.argv[2]
app = Microdot()


@app.post("/upload")
async def upload(request):
    h = hashlib.sha256() if mode == "sha256" else None
    left = request.content_length
    n = 0
    while left > 0:
        chunk = await request.stream.read(min(CHUNK, left))
        if not chunk:
            break  # the client went away
        if h:
            h.update(chunk)
        n += len(chunk)
        left -= len(chunk)
    return {"bytes": n, "sha256": h.digest().hex() if h else None}


asyncio.run(app.start_server(host="127.0.0.1", port=port))
