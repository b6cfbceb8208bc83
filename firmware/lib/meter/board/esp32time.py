"""The ESP32's clock service, the time-sync policy over meter/sntp.py: SNTP
once Wi-Fi is connected, then every board.ntp_resync_ms; on failure retry
after board.ntp_retry_ms, doubling (with jitter) up to ntp_retry_max_ms, so
that a fleet does not hammer a server that is down or says RATE. Loaded
when the board's time service starts (meter/board/esp32.py time_sync()).

The server is NTP_SERVER unless `ntp.server` in the board's files names
another (a name or, to avoid a blocking DNS look-up, an IPv4 address).
"""

from micropython import const

NTP_SERVER = "pool.ntp.org"
NTP_FILE = "ntp.server"
RESOLVE_AFTER = const(3)  # failed syncs in a row before the name is looked up again (blocking)


def server(files):
    """The server to ask: the first line of `files`/ntp.server, else
    NTP_SERVER. Read at every sync, so a new file needs no restart."""
    try:
        with open(files + "/" + NTP_FILE) as f:
            s = f.readline(80).strip()
    except (OSError, UnicodeError):
        s = ""
    return s or NTP_SERVER


async def run(board):
    """Keep board's RTC set; board.ntp_synced / ntp_error say how it went.
    Never returns."""
    import asyncio

    from meter import sntp
    from meter.backoff import jitter

    retry = board.ntp_retry_ms
    fails = 0
    na = None  # (server, resolved address): DNS once, not hourly
    while True:
        if board.wifi().status() != "connected":
            await asyncio.sleep_ms(board.ntp_wifi_poll_ms)
            continue
        name = board.ntp_server()
        try:
            if na is None or na[0] != name:
                # Blocks the loop for a name (see meter/sntp.py): once,
                # then again only after RESOLVE_AFTER failures in a row.
                na = (name, sntp.address(name, board.ntp_port))
            sec, us = await sntp.query(name, board.ntp_port, board.ntp_timeout_ms, na[1])
        except sntp.SntpError as e:
            fails += 1
            if fails % RESOLVE_AFTER == 0:
                na = None  # the pool may have moved: resolve again
            board.ntp_error = str(e)
            ms = jitter(retry)
            board.log("time: %s; retry in %d s" % (e, (ms + 999) // 1000))
            await asyncio.sleep_ms(ms)
            retry = min(retry * 2, board.ntp_retry_max_ms)
            continue
        was_valid = board.time_valid()
        step = sec - board.time()
        board.set_time(sec, us)
        board.ntp_synced = sec
        board.ntp_error = None
        retry = board.ntp_retry_ms
        fails = 0
        if not was_valid:
            board.log("time: set from %s" % name)
        elif not -2 <= step <= 2:
            board.log("time: corrected by %d s from %s" % (step, name))
        await asyncio.sleep_ms(board.ntp_resync_ms)
