"""The ASGI app of the benchmarks (FastAPI under uvicorn): `/` answers at once, `/slow`
after 200 ms, as bench/wsgi.py does."""
import asyncio

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

app = FastAPI()


@app.get("/", response_class=PlainTextResponse)
async def fast():
    return "ok\n"


@app.get("/slow", response_class=PlainTextResponse)
async def slow():
    await asyncio.sleep(0.2)
    return "ok\n"
