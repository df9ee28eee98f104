"""Opens N idle WebSockets to URL and holds them for HOLD seconds; while they are open,
ECHOERS more sockets each send MESSAGES messages one after another and time the echoes, to
each of the ECHO_URLS in turn, for ROUNDS rounds (the order rotating each round).

usage: ws_idle.py URL N HOLD [ECHOERS MESSAGES ROUNDS ECHO_URL...]
prints: OPEN <opened> FAILED <failed>
        ECHO <i> <median p50 ms> <min> <max> <median p99 ms> <min> <max> <round trips>
        (one line per ECHO_URL, i its position; medians and spreads over the rounds)
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


async def main(url: str, n: int, hold: float, echoers: int, messages: int, rounds: int, echo_urls: list) -> None:
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
    cells = {i: [] for i in range(len(echo_urls))}
    for r in range(rounds if echoers > 0 else 0):
        for k in range(len(echo_urls)):
            i = (k + r) % len(echo_urls)
            results = await asyncio.gather(*(echo_rounds(echo_urls[i], messages) for _ in range(echoers)), return_exceptions=True)
            times = sorted(t for res in results if not isinstance(res, Exception) for t in res)
            cells[i].append((percentile(times, 0.5) * 1000, percentile(times, 0.99) * 1000, len(times)))
    for i, runs in cells.items():
        if not runs:
            continue
        p50s = sorted(c[0] for c in runs)
        p99s = sorted(c[1] for c in runs)
        count = sum(c[2] for c in runs)
        print(f"ECHO {i} {p50s[len(p50s) // 2]:.3f} {p50s[0]:.3f} {p50s[-1]:.3f} {p99s[len(p99s) // 2]:.3f} {p99s[0]:.3f} {p99s[-1]:.3f} {count}", flush=True)
    await asyncio.sleep(max(0.0, hold - (time.monotonic() - began)))
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    echoers, messages, rounds = (int(args[3]), int(args[4]), int(args[5])) if len(args) >= 7 else (0, 0, 0)
    asyncio.run(main(args[0], int(args[1]), float(args[2]), echoers, messages, rounds, args[6:]))
