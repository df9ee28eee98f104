"""Opens N keep-alive HTTP/1.1 connections to 127.0.0.1:PORT, sends one request on each (so
each is an established client connection that has been served), and holds them idle for
HOLD seconds, or until killed. Prints one line once they are open:

    OPEN <opened> FAILED <failed>

usage: idle_conns.py PORT N HOLD [PATH]   (PATH "-": connect only, send nothing)
"""
import asyncio
import sys

REQUEST = "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def one(port: int, request: bytes):
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 20)
    if not request:
        return writer
    writer.write(request)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await asyncio.wait_for(reader.readexactly(length), 20)
    return writer


async def main(port: int, n: int, hold: float, path: str) -> None:
    # PATH "-": connections that send nothing at all
    request = b"" if path == "-" else REQUEST.format(path=path).encode()
    writers = []
    failed = 0
    for start in range(0, n, 500):
        batch = [one(port, request) for _ in range(start, min(n, start + 500))]
        for result in await asyncio.gather(*batch, return_exceptions=True):
            if isinstance(result, Exception):
                failed += 1
            else:
                writers.append(result)
    print(f"OPEN {len(writers)} FAILED {failed}", flush=True)
    await asyncio.sleep(hold)
    for w in writers:
        w.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "/bytes?n=0"))
