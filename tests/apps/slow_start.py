"""A plain ASGI app that takes a while to start, as users' apps do (imports, warm-up):
it sleeps `SLOW_START` seconds (default 1.5) at import. Serves `/` (its pid), `/health`,
`/sleep?ms=N`, `/big?kib=N`, `POST /echo` (answers the body's length) and a WebSocket
echo on `/ws`. Used by corral's upgrade,
`bind = "fd"` and soak tests under uvicorn or gunicorn's uvicorn worker."""
import asyncio
import os
import time

time.sleep(float(os.environ.get("SLOW_START", "1.5")))

PID = str(os.getpid()).encode()


def query(scope, name, default):
    for part in scope.get("query_string", b"").decode().split("&"):
        key, _, value = part.partition("=")
        if key == name and value.isdigit():
            return int(value)
    return default


async def answer(send, body, status=200):
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})


async def echo(receive, send):
    event = await receive()
    if event["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        event = await receive()
        if event["type"] == "websocket.disconnect":
            return
        if event.get("text") is not None:
            await send({"type": "websocket.send", "text": event["text"]})
        elif event.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": event["bytes"]})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        return await echo(receive, send)
    path = scope["path"]
    if path == "/echo":
        size = 0
        while True:
            event = await receive()
            size += len(event.get("body", b""))
            if not event.get("more_body"):
                break
        return await answer(send, str(size).encode())
    if path == "/sleep":
        await asyncio.sleep(query(scope, "ms", 0) / 1000)
        return await answer(send, b"slept " + PID)
    if path == "/big":
        return await answer(send, b"x" * (1024 * query(scope, "kib", 64)))
    if path == "/health":
        return await answer(send, b"ok")
    return await answer(send, PID)
