"""Open-loop load: requests start on a fixed schedule whatever the server does, so a slow
answer cannot hold back the next request (wrk's closed loop can). Latency is measured from
each request's scheduled start, which counts time spent queued anywhere.

    python3 openloop.py HOST PORT RATE SECONDS SLOW_PERCENT

Every request is `GET /` (fast) or `GET /slow`, on its own connection. Prints
`RESULT fast_p50_us fast_p99_us fast_p999_us all_p99_us errors requests`.
"""
import asyncio
import random
import sys
import time


async def one(host, port, path, scheduled, fast, slow, errors):
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=30)
        writer.close()
        if not data.startswith(b"HTTP/1.1 200"):
            errors.append(data[:40])
            return
    except Exception as e:  # counted, not fatal: the load goes on
        errors.append(repr(e))
        return
    took = time.perf_counter() - scheduled
    (slow if path == "/slow" else fast).append(took)


def pct(values, p):
    if not values:
        return 0
    values = sorted(values)
    return int(values[min(len(values) - 1, int(len(values) * p))] * 1e6)


async def main():
    host, port, rate, seconds, slow_percent = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
    rng = random.Random(42)
    fast, slow, errors, tasks = [], [], [], []
    start = time.perf_counter() + 0.1
    n = int(rate * seconds)
    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        path = "/slow" if rng.random() * 100 < slow_percent else "/"
        tasks.append(asyncio.create_task(one(host, port, path, scheduled, fast, slow, errors)))
    await asyncio.gather(*tasks)
    print("RESULT", pct(fast, 0.5), pct(fast, 0.99), pct(fast, 0.999), pct(fast + slow, 0.99), len(errors), n)


asyncio.run(main())
