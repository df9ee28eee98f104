"""The asyncio ASGI worker: many connections at once (a pool's `concurrency` > 1), ASGI 3.

    serve(listener: socket.socket, app, *, worker: int, server_name: str, server_port: str) -> None

The same contract as `wsgi.serve`. Runs on uvloop when the app's environment has it, else
on asyncio's own loop. Lifespan first: `lifespan.startup` is awaited before the first
accept, and a failed startup (the app sent `lifespan.startup.failed`, or raised after
receiving `lifespan.startup`) exits with status 1 and the traceback on stderr; an app that
raises before receiving anything does not speak lifespan and is served without it.
SIGTERM: stop accepting, close idle connections, let the requests in flight finish (their
connection closes after the answer), close WebSockets with 1001, then `lifespan.shutdown`,
and return. SIGINT and SIGQUIT end the process at once.

HTTP scope: streaming request bodies (`more_body`, read paused while the app has 64 KiB
unread), streaming answers (chunked when the app gives no length and more than one
body message), `http.disconnect` once the answer is sent or the connection is lost.
WebSocket scope: `websocket.py` frames; the handshake answer is written on
`websocket.accept`, a `websocket.close` before it is a 403.
"""

import asyncio
import faulthandler
import os
import signal
import socket
import sys
import traceback
from http import HTTPStatus

from . import http
from . import websocket as ws

REASONS = {s.value: s.phrase.encode("latin-1") for s in HTTPStatus}
HIGH_WATER = 65536
ASGI = {"version": "3.0", "spec_version": "2.3"}
_ERROR_BODY = b"Internal Server Error\n"


def _log(what, scope=None):
    where = ""
    if scope is not None:
        rid = "-"
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                rid = value.decode("latin-1")
        where = ": %s %s (request %s)" % (scope.get("method", "WEBSOCKET"), scope.get("path"), rid)
    sys.stderr.write("corral_worker: %s%s\n%s" % (what, where, traceback.format_exc()))
    sys.stderr.flush()


class Server:
    """What every connection of this worker shares."""

    def __init__(self, app, listener, server_name, server_port):
        self.app = app
        self.listener = listener
        self.unix = listener.family == socket.AF_UNIX
        port = int(server_port) if str(server_port).isdigit() else None
        self.server = (server_name, port)
        self.state = {}
        self.conns = set()
        self.tasks = set()
        self.stopping = False
        self.stop = None

    def run_task(self, coro):
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


class Connection(asyncio.Protocol):
    """One connection from corral: a sequence of HTTP exchanges, or one WebSocket."""

    def __init__(self, server):
        self.srv = server
        self.transport = None
        self.buf = b""
        self.cycle = None
        self.ws = None
        self.peer = "127.0.0.1"
        self.reading_paused = False
        self.writing_paused = False
        self.drained = None

    def connection_made(self, transport):
        self.transport = transport
        self.srv.conns.add(self)
        if not self.srv.unix:
            peer = transport.get_extra_info("peername")
            if peer:
                self.peer = peer[0]

    def connection_lost(self, exc):
        self.srv.conns.discard(self)
        if self.cycle is not None:
            self.cycle.lost()
        if self.ws is not None:
            self.ws.lost()
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def pause_writing(self):
        self.writing_paused = True

    def resume_writing(self):
        self.writing_paused = False
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    async def drain(self):
        if self.writing_paused and not self.transport.is_closing():
            self.drained = asyncio.get_running_loop().create_future()
            await self.drained
            self.drained = None

    def pause_reading(self):
        if not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self):
        if self.reading_paused:
            self.reading_paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    def data_received(self, data):
        if self.ws is not None:
            self.ws.feed(data)
        elif self.cycle is not None and not self.cycle.body_done:
            self.cycle.feed(data)
        else:
            self.buf += data
            if self.cycle is None:
                self.next_request()

    def refuse(self, status):
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % (status, REASONS[status])
        )
        self.transport.close()

    def next_request(self):
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > http.MAX_HEAD:
                self.refuse(431)
            return
        raw, rest = self.buf[:end], self.buf[end + 4 :]
        self.buf = b""
        try:
            head = http.RawHead(raw)
        except http.BadRequest:
            self.refuse(400)
            return
        if head.websocket and head.method == "GET":
            self.ws = Session(self, head, rest)
            return
        cycle = self.cycle = Cycle(self, head)
        if rest:
            if cycle.body_done:
                self.buf = rest
            else:
                cycle.feed(rest)
        self.srv.run_task(cycle.run())

    def cycle_done(self, cycle):
        """The answer of `cycle` is sent: read the next request, or close."""
        if self.cycle is not cycle:
            return
        self.cycle = None
        if not cycle.keep_alive or self.srv.stopping or not cycle.body_done:
            self.transport.close()
            return
        self.resume_reading()
        if self.buf:
            self.next_request()


class Cycle:
    """One HTTP request and its answer: the `receive` and `send` the app gets."""

    __slots__ = (
        "conn", "scope", "body", "body_size", "left", "decoder", "body_done", "final_given",
        "waiter", "started", "head_sent", "finished", "disconnected", "keep_alive",
        "head_only", "chunked", "status", "headers",
    )

    def __init__(self, conn, head):
        self.conn = conn
        srv = conn.srv
        path, raw_path, query = head.path_query()
        self.scope = {
            "type": "http",
            "asgi": ASGI,
            "http_version": "1.1" if head.version == b"HTTP/1.1" else "1.0",
            "method": head.method,
            "scheme": head.scheme,
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": head.headers,
            "client": (head.client(conn.peer), 0),
            "server": srv.server,
            "state": srv.state.copy(),
        }
        self.body = []
        self.body_size = 0
        self.decoder = http.ChunkDecoder() if head.chunked else None
        self.left = 0 if head.chunked else (head.length or 0)
        self.body_done = not head.chunked and not self.left
        self.final_given = False
        self.waiter = None
        self.started = False
        self.head_sent = False
        self.finished = False
        self.disconnected = False
        self.keep_alive = head.keep_alive
        self.head_only = head.method == "HEAD"
        self.chunked = False
        self.status = 200
        self.headers = ()

    def wake(self):
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def feed(self, data):
        if self.decoder is not None:
            try:
                piece, done, rest = self.decoder.feed(data)
            except http.BadRequest:
                self.keep_alive = False
                self.conn.transport.close()
                return
        else:
            piece, rest = data[: self.left], data[self.left :]
            self.left -= len(piece)
            done = self.left == 0
        if piece:
            self.body.append(piece)
            self.body_size += len(piece)
            if self.body_size > HIGH_WATER:
                self.conn.pause_reading()
        if done:
            self.body_done = True
            if rest:
                self.conn.buf += rest
        self.wake()

    def lost(self):
        self.disconnected = True
        self.wake()

    async def receive(self):
        while True:
            if self.body or (self.body_done and not self.final_given):
                data = self.body[0] if len(self.body) == 1 else b"".join(self.body)
                self.body = []
                self.body_size = 0
                self.conn.resume_reading()
                if self.body_done:
                    self.final_given = True
                return {"type": "http.request", "body": data, "more_body": not self.body_done}
            if self.disconnected or self.finished:
                return {"type": "http.disconnect"}
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    def _head(self, length):
        status = self.status
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Unknown"))]
        has_length = has_date = False
        for name, value in self.headers:
            low = name.lower()
            if low == b"content-length":
                has_length = True
            elif low == b"date":
                has_date = True
            elif low == b"transfer-encoding" or low == b"connection":
                continue
            parts += (name, b": ", value, b"\r\n")
        bodiless = self.head_only or status < 200 or status in (204, 304)
        if not has_length and not bodiless:
            if length is not None:
                parts.append(b"content-length: %d\r\n" % length)
            elif self.scope["http_version"] == "1.1":
                self.chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
            else:
                self.keep_alive = False
        if not has_date:
            parts.append(b"date: " + http.Date.now().encode("latin-1") + b"\r\n")
        if not self.keep_alive or self.conn.srv.stopping:
            parts.append(b"connection: close\r\n")
        elif self.scope["http_version"] != "1.1":
            parts.append(b"connection: keep-alive\r\n")
        parts.append(b"\r\n")
        self.head_sent = True
        return b"".join(parts)

    async def send(self, message):
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            self.status = message["status"]
            self.headers = message.get("headers", ())
            return
        if kind != "http.response.body":
            raise RuntimeError("unexpected ASGI message %r" % kind)
        if not self.started or self.finished:
            raise RuntimeError("http.response.body outside an answer")
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if self.disconnected:
            if not more:
                self.finished = True
            return
        out = b"" if self.head_sent else self._head(None if more else len(body))
        if body and not self.head_only and self.status not in (204, 304):
            if self.chunked:
                out += b"%x\r\n" % len(body) + body + b"\r\n"
            else:
                out += body
        if not more:
            if self.chunked and not self.head_only:
                out += b"0\r\n\r\n"
            self.finished = True
        if out:
            self.conn.transport.write(out)
        if self.finished:
            self.wake()
            self.conn.cycle_done(self)
        elif self.conn.writing_paused:
            await self.conn.drain()

    async def run(self):
        try:
            await self.conn.srv.app(self.scope, self.receive, self.send)
        except Exception:
            _log("the app raised", self.scope)
            self.fail()
        else:
            if not self.finished:
                sys.stderr.write("corral_worker: the app returned without a whole answer: %s %s\n"
                                 % (self.scope["method"], self.scope["path"]))
                self.fail()

    def fail(self):
        if self.finished or self.disconnected:
            return
        self.finished = True
        if self.head_sent:
            self.conn.transport.close()
        else:
            self.conn.transport.write(
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n" % len(_ERROR_BODY) + _ERROR_BODY
            )
            self.keep_alive = False
        self.wake()
        self.conn.cycle_done(self)


class Session:
    """One WebSocket: the handshake on `websocket.accept`, then frames both ways."""

    def __init__(self, conn, head, rest):
        self.conn = conn
        srv = conn.srv
        path, raw_path, query = head.path_query()
        key = b""
        protocols = []
        for name, value in head.headers:
            if name == b"sec-websocket-key":
                key = value
            elif name == b"sec-websocket-protocol":
                protocols += [p.strip().decode("latin-1") for p in value.split(b",") if p.strip()]
        self.key = key
        self.scope = {
            "type": "websocket",
            "asgi": ASGI,
            "http_version": "1.1",
            "scheme": "wss" if head.scheme == "https" else "ws",
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": head.headers,
            "client": (head.client(conn.peer), 0),
            "server": srv.server,
            "subprotocols": protocols,
            "state": srv.state.copy(),
        }
        self.pending = rest
        self.frames = ws.Frames()
        self.events = [{"type": "websocket.connect"}]
        self.waiter = None
        self.open = False
        self.done = False  # the handshake was refused or the socket is closed
        self.close_sent = False
        self.disconnect = None
        srv.run_task(self.run())

    def push(self, event):
        self.events.append(event)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def ended(self, code, reason=""):
        if self.disconnect is None:
            self.disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
            self.push(self.disconnect)

    def feed(self, data):
        if not self.open:
            self.pending += data
            return
        if self.disconnect is not None:
            return
        try:
            events = self.frames.feed(data)
            for opcode, payload in events:
                if opcode == ws.TEXT:
                    try:
                        text = payload.decode("utf-8")
                    except UnicodeDecodeError:
                        raise ws.ProtocolError(1007, "text not UTF-8") from None
                    self.push({"type": "websocket.receive", "text": text, "bytes": None})
                elif opcode == ws.BINARY:
                    self.push({"type": "websocket.receive", "bytes": payload, "text": None})
                elif opcode == ws.PING:
                    self.conn.transport.write(ws.frame(ws.PONG, payload))
                elif opcode == ws.CLOSE:
                    code, reason = ws.parse_close(payload)
                    if not self.close_sent:
                        self.close_sent = True
                        self.conn.transport.write(ws.close_frame(None if code == 1005 else code))
                    self.ended(code, reason)
                    self.conn.transport.close()
                    return
        except ws.ProtocolError as error:
            self.fail(error.code, error.reason)

    def fail(self, code, reason=""):
        if not self.close_sent:
            self.close_sent = True
            self.conn.transport.write(ws.close_frame(code, reason))
        self.ended(code, reason)
        self.conn.transport.close()

    def lost(self):
        self.ended(1006)

    async def receive(self):
        while not self.events:
            if self.disconnect is not None:
                return self.disconnect
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.events.pop(0)

    async def send(self, message):
        kind = message["type"]
        transport = self.conn.transport
        if not self.open and not self.done:
            if kind == "websocket.accept":
                head = [
                    b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
                    b"sec-websocket-accept: " + ws.accept_key(self.key) + b"\r\n"
                ]
                if message.get("subprotocol"):
                    head.append(b"sec-websocket-protocol: " + message["subprotocol"].encode("latin-1") + b"\r\n")
                for name, value in message.get("headers", ()):
                    head += (name, b": ", value, b"\r\n")
                head.append(b"\r\n")
                transport.write(b"".join(head))
                self.open = True
                if self.pending:
                    pending, self.pending = self.pending, b""
                    self.feed(pending)
                return
            if kind == "websocket.close":
                self.done = True
                self.conn.refuse(403)
                self.ended(message.get("code") or 1000)
                return
            raise RuntimeError("unexpected ASGI message %r before websocket.accept" % kind)
        if kind == "websocket.send":
            if self.close_sent or self.disconnect is not None or transport.is_closing():
                raise ConnectionResetError("the WebSocket is closed")
            data = message.get("bytes")
            if data is not None:
                transport.write(ws.frame(ws.BINARY, data))
            else:
                transport.write(ws.frame(ws.TEXT, message.get("text", "").encode("utf-8")))
            if self.conn.writing_paused:
                await self.conn.drain()
            return
        if kind == "websocket.close":
            if not self.close_sent:
                self.close_sent = True
                transport.write(ws.close_frame(message.get("code") or 1000, message.get("reason") or ""))
                # the peer answers with its close frame; do not wait for ever
                asyncio.get_running_loop().call_later(5, transport.close)
            return
        raise RuntimeError("unexpected ASGI message %r" % kind)

    async def run(self):
        try:
            await self.conn.srv.app(self.scope, self.receive, self.send)
        except Exception:
            _log("the WebSocket app raised", self.scope)
            if not self.open and not self.done:
                self.done = True
                self.conn.refuse(500)
            else:
                self.fail(1011)
        else:
            if not self.open and not self.done:
                self.done = True
                self.conn.refuse(403)
            elif not self.close_sent:
                self.fail(1000)

    def going_away(self):
        """SIGTERM: a close frame with 1001."""
        if self.open and not self.close_sent:
            self.close_sent = True
            self.conn.transport.write(ws.close_frame(1001, "server stopping"))
            asyncio.get_running_loop().call_later(5, self.conn.transport.close)


class Lifespan:
    """The lifespan scope, run beside the server for the worker's whole life."""

    def __init__(self, app, state):
        self.app = app
        self.state = state
        loop = asyncio.get_running_loop()
        self.queue = asyncio.Queue()
        self.started = loop.create_future()
        self.stopped = loop.create_future()
        self.received = False
        self.task = None

    async def receive(self):
        self.received = True
        return await self.queue.get()

    async def send(self, message):
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self._settle(self.started, None)
        elif kind == "lifespan.startup.failed":
            self._settle(self.started, message.get("message") or "lifespan.startup.failed")
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            if kind.endswith("failed"):
                sys.stderr.write("corral_worker: lifespan shutdown failed: %s\n" % message.get("message", ""))
            self._settle(self.stopped, None)

    @staticmethod
    def _settle(future, value):
        if not future.done():
            future.set_result(value)

    async def run(self):
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        try:
            await self.app(scope, self.receive, self.send)
        except Exception:
            if not self.received:
                self._settle(self.started, None)  # no lifespan support: serve without it
            elif not self.started.done():
                self._settle(self.started, "the app raised during lifespan startup\n" + traceback.format_exc())
            else:
                _log("the app raised in lifespan")
        finally:
            self._settle(self.started, None)
            self._settle(self.stopped, None)

    async def startup(self):
        """`None` once started, else why it failed."""
        self.task = asyncio.get_running_loop().create_task(self.run())
        await self.queue.put({"type": "lifespan.startup"})
        return await self.started

    async def shutdown(self):
        await self.queue.put({"type": "lifespan.shutdown"})
        await self.stopped


async def _serve(listener, app, server_name, server_port):
    loop = asyncio.get_running_loop()
    srv = Server(app, listener, server_name, server_port)
    srv.stop = asyncio.Event()

    def quit_now():
        sys.stderr.flush()
        os._exit(0)

    loop.add_signal_handler(signal.SIGTERM, srv.stop.set)
    loop.add_signal_handler(signal.SIGINT, quit_now)
    loop.add_signal_handler(signal.SIGQUIT, quit_now)

    lifespan = Lifespan(app, srv.state)
    failed = await lifespan.startup()
    if failed is not None:
        sys.stderr.write("corral_worker: lifespan startup failed: %s\n" % failed)
        sys.stderr.flush()
        return 1
    server = await loop.create_server(lambda: Connection(srv), sock=listener, backlog=2048)
    await srv.stop.wait()

    srv.stopping = True
    server.close()
    for conn in list(srv.conns):
        if conn.ws is not None:
            conn.ws.going_away()
        elif conn.cycle is None:
            conn.transport.close()
    while srv.tasks:
        await asyncio.wait(list(srv.tasks))
    await lifespan.shutdown()
    return 0


def _new_loop():
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve(listener, app, *, worker, server_name, server_port):
    """Serves `app` on `listener` until SIGTERM; see the module's doc. A failed lifespan
    startup raises `SystemExit(1)`."""
    faulthandler.enable(file=sys.stderr, all_threads=True)
    listener.setblocking(False)
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    try:
        status = loop.run_until_complete(_serve(listener, app, server_name, server_port))
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
    if status:
        raise SystemExit(status)
