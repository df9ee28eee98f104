"""A plain ASGI 3 app for `tests/python_worker.rs`: lifespan state, streamed request and
answer bodies, `http.disconnect`, and a WebSocket echo with subprotocols and close codes.
`FAIL_STARTUP=1` in the environment makes its lifespan startup fail."""

import asyncio
import json
import os


async def _json(send, value, status=200):
    body = json.dumps(value, sort_keys=True).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def http(scope, receive, send):
    path = scope["path"]
    if path in ("/", "/health"):
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        await _json(send, {
            "path": path,
            "query": scope["query_string"].decode(),
            "client": scope["client"][0],
            "scheme": scope["scheme"],
            "started": scope["state"].get("started"),
            "request_id": headers.get("x-request-id"),
            "pid": os.getpid(),
        })
    elif path == "/echo":
        # the body as it comes, each piece echoed as it is read
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        while True:
            message = await receive()
            assert message["type"] == "http.request", message
            if message["body"]:
                await send({"type": "http.response.body", "body": message["body"], "more_body": True})
            if not message.get("more_body"):
                break
        await send({"type": "http.response.body", "body": b""})
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(int(scope["query_string"] or b"3")):
            await send({"type": "http.response.body", "body": b"line %d\n" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/slow":
        await asyncio.sleep(float(scope["query_string"] or b"1"))
        await _json(send, {"slept": scope["query_string"].decode()})
    elif path == "/error":
        raise RuntimeError("raised on purpose in an ASGI app")
    else:
        await _json(send, {"missing": path}, 404)


async def websocket(scope, receive, send):
    message = await receive()
    assert message["type"] == "websocket.connect"
    if scope["path"] == "/refuse":
        await send({"type": "websocket.close", "code": 1008})
        return
    subprotocol = scope["subprotocols"][0] if scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": subprotocol})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "bye":
            await send({"type": "websocket.close", "code": 4001, "reason": "asked to"})
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": "echo: " + message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        scope["state"]["started"] = True
        message = await receive()
        assert message["type"] == "lifespan.startup"
        if os.environ.get("FAIL_STARTUP"):
            raise RuntimeError("startup failed on purpose")
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "http":
        await http(scope, receive, send)
    else:
        await websocket(scope, receive, send)
