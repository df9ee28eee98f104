"""Opens N idle WebSockets to URL and holds them for HOLD seconds; while they are open,
ECHOERS more sockets each send ROUNDS messages one after another and time the echoes.

usage: ws_idle.py URL N HOLD [ECHOERS ROUNDS]
prints: OPEN <opened> FAILED <failed>
        ECHO <p50 ms> <p99 ms> <round trips>      (when ECHOERS > 0)
"""
import asyncio
import sys
import time

import websockets


async def echo_rounds(url: str, rounds: int) -> list:
    async with websockets.connect(url, open_timeout=20, ping_interval=None) as ws:
        times = []
        for i in range(rounds):
            start = time.perf_counter()
            await ws.send(f"ping {i}")
            await ws.recv()
            times.append(time.perf_counter() - start)
        return times


def percentile(sorted_values: list, p: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


async def main(url: str, n: int, hold: float, echoers: int, rounds: int) -> None:
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
    began = time.monotonic()
    if echoers > 0:
        results = await asyncio.gather(*(echo_rounds(url, rounds) for _ in range(echoers)), return_exceptions=True)
        times = sorted(t for r in results if not isinstance(r, Exception) for t in r)
        print(f"ECHO {percentile(times, 0.5) * 1000:.3f} {percentile(times, 0.99) * 1000:.3f} {len(times)}", flush=True)
    await asyncio.sleep(max(0.0, hold - (time.monotonic() - began)))
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    echoers, rounds = (int(args[3]), int(args[4])) if len(args) >= 5 else (0, 0)
    asyncio.run(main(args[0], int(args[1]), float(args[2]), echoers, rounds))
