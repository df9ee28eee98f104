"""The smallest FastAPI app with a WebSocket route, for corral's uvicorn example."""
import os

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect

app = FastAPI()


@app.get("/")
async def index(request: Request):
    return {
        "hello": "fastapi",
        "pid": os.getpid(),
        "worker": os.environ.get("CORRAL_WORKER"),
        "client": request.headers.get("x-forwarded-for"),
    }


@app.get("/health")
async def health():
    return {"ok": True}


@app.websocket("/ws")
async def echo(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass
