"""Opens N idle WebSockets to URL, reports how many opened, holds them for HOLD seconds.

usage: ws_idle.py URL N HOLD
"""
import asyncio
import sys

import websockets


async def main(url: str, n: int, hold: float) -> None:
    sockets = []
    failed = 0
    for start in range(0, n, 500):
        batch = [websockets.connect(url, open_timeout=20, ping_interval=None) for _ in range(start, min(n, start + 500))]
        for result in await asyncio.gather(*batch, return_exceptions=True):
            if isinstance(result, Exception):
                failed += 1
            else:
                sockets.append(result)
    print(f"OPEN {len(sockets)} FAILED {failed}", flush=True)
    await asyncio.sleep(hold)
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
