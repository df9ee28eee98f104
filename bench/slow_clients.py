"""Slow clients for bench/slow_clients.sh: READERS connections each asking `/big?SIZE` and
reading it at RATE bytes/s (checking every byte), UPLOADERS each sending SIZE_UP bytes at
RATE bytes/s to `/upload`, arriving one by one, evenly over RAMP seconds (0: all at once).
Prints one line: readers whole, uploads whole, seconds taken."""
import asyncio
import sys
import time

HOST = "127.0.0.1"


async def reader(port, size, rate, delay):
    await asyncio.sleep(delay)
    r, w = await asyncio.open_connection(HOST, port)
    w.write(b"GET /big?%d HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n" % size)
    await w.drain()
    data = bytearray()
    start = time.monotonic()
    while True:
        piece = await r.read(16384)
        if not piece:
            break
        data += piece
        # Keep to the rate: sleep until this many bytes are due.
        due = len(data) / rate - (time.monotonic() - start)
        if due > 0:
            await asyncio.sleep(due)
    w.close()
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    pattern = (bytes(range(256)) * (size // 256 + 1))[:size]
    return head.startswith(b"HTTP/1.1 200") and body == pattern


async def uploader(port, size, rate, delay):
    await asyncio.sleep(delay)
    r, w = await asyncio.open_connection(HOST, port)
    w.write(b"POST /upload HTTP/1.1\r\nHost: b\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size)
    piece = 16384
    for _ in range(0, size, piece):
        w.write(b"x" * piece)
        await w.drain()
        await asyncio.sleep(piece / rate)
    answer = await r.read()
    w.close()
    return answer.endswith(b"\r\n%d\n" % size)


async def main():
    port, readers, size, uploaders, size_up, rate = (int(a) for a in sys.argv[1:7])
    ramp = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
    start = time.monotonic()
    jobs = [reader(port, size, rate, ramp * i / readers) for i in range(readers)]
    jobs += [uploader(port, size_up, rate, ramp * (i + 0.5) / max(uploaders, 1)) for i in range(uploaders)]
    results = await asyncio.gather(*jobs, return_exceptions=True)
    whole = sum(1 for x in results[:readers] if x is True)
    uploads = sum(1 for x in results[readers:] if x is True)
    print(f"{whole}/{readers} {uploads}/{uploaders} {time.monotonic() - start:.1f}")


asyncio.run(main())
