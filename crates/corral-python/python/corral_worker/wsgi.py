"""The sync WSGI worker: one request at a time (a pool's `concurrency = 1`), HTTP/1.1
keep-alive with corral, full PEP 3333.

The entry point, called in a worker forked from the template or by `standalone`:

    serve(listener: socket.socket, app, *, worker: int, server_name: str, server_port: str) -> None

`listener` is a bound, listening socket (TCP or Unix) that this process accepts on; `app`
the WSGI callable; `worker` the slot number (`wsgi.` environ gets it as `corral.worker`);
`server_name`/`server_port` fill `SERVER_NAME`/`SERVER_PORT`. It returns after SIGTERM
once the request in flight is answered (idle keep-alive connections are closed, no new
connection is accepted); SIGINT and SIGQUIT end the process at once. Nothing is imported
beyond the standard library.

What the environ trusts (corral's proxy set it): `REMOTE_ADDR` is `X-Real-IP` (the client
corral worked out, `trusted_proxies` included), else the last `X-Forwarded-For` hop;
`wsgi.url_scheme` is `X-Forwarded-Proto`; `SCRIPT_NAME` comes from the process
environment or a `SCRIPT_NAME` field (corral passes one only from a trusted proxy).

The worker waits in one `poll` over the listener, its idle connections and a signal wake-up
pipe, so a connection corral opens while another sits idle is never stuck behind it, and
SIGTERM wakes it without racing a request that is arriving.
"""

import errno
import faulthandler
import os
import select
import signal
import socket
import stat
import sys
import traceback

from . import http

SERVER_SOFTWARE = "corral"
_HOP_BY_HOP = frozenset(
    ("connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
     "trailers", "transfer-encoding", "upgrade")
)
_NO_BODY_STATUS = frozenset((204, 304))
_ERROR_BODY = b"Internal Server Error\n"
_ERROR_HEAD = (
    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
    "Content-Length: %d\r\n" % len(_ERROR_BODY)
)


class FileWrapper:
    """`wsgi.file_wrapper`: iterates a file in blocks, and lets the worker send a regular
    file with `os.sendfile` instead."""

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration

    def sendable(self):
        """`(fd, offset, size)` when the file is a regular file `os.sendfile` can send from
        its current position, else `None`."""
        try:
            fd = self.filelike.fileno()
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return None
            offset = self.filelike.tell()
        except (AttributeError, OSError, ValueError):
            return None
        return fd, offset, max(info.st_size - offset, 0)


class _State:
    stopping = False


def _log_exception(environ, what):
    method = environ.get("REQUEST_METHOD", "")
    path = environ.get("PATH_INFO", "")
    rid = environ.get("HTTP_X_REQUEST_ID", "-")
    sys.stderr.write(
        "corral_worker: %s: %s %s (request %s)\n%s" % (what, method, path, rid, traceback.format_exc())
    )
    sys.stderr.flush()


class _Answer:
    """One answer: `start_response` and `write` for the app, and the framing decision."""

    __slots__ = (
        "conn", "head_only", "version", "keep_alive", "status", "headers", "sent",
        "chunked", "length", "written", "code",
    )

    def __init__(self, conn, head_only, version, keep_alive):
        self.conn = conn
        self.head_only = head_only
        self.version = version
        self.keep_alive = keep_alive
        self.status = None
        self.headers = None
        self.sent = False
        self.chunked = False
        self.length = None
        self.written = 0
        self.code = 0

    def start_response(self, status, headers, exc_info=None):
        if exc_info:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called a second time without exc_info")
        if type(status) is not str:
            raise AssertionError("status must be a str, got %r" % (status,))
        self.status = status
        self.headers = headers
        return self.write

    def _head(self, known_length):
        """The answer's head as bytes, deciding how its body is framed. `known_length` is
        the whole body's size when the worker knows it (a list, a file), else `None`."""
        status = self.status
        if status is None:
            raise AssertionError("the app returned without calling start_response")
        code = self.code = int(status[:3])
        lines = ["HTTP/1.1 ", status, "\r\n"]
        length = None
        has_date = False
        fields = 0
        for name, value in self.headers:
            low = name.lower()
            if low == "content-length":
                length = int(value)
            elif low == "date":
                has_date = True
            elif low in _HOP_BY_HOP:
                # PEP 3333 forbids them; Gunicorn's reading: `Connection: close` closes
                # after the answer, the rest is the server's to decide and is left out.
                if low == "connection" and "close" in value.lower():
                    self.keep_alive = False
                continue
            lines += (name, ": ", value, "\r\n")
            fields += 1
        no_body = code < 200 or code in _NO_BODY_STATUS
        if length is None and not no_body:
            if known_length is not None:
                # what a GET would announce, for HEAD too
                length = known_length
                lines += ("Content-Length: ", str(length), "\r\n")
                fields += 1
            elif self.head_only:
                pass
            elif self.version == "HTTP/1.1":
                self.chunked = True
                lines.append("Transfer-Encoding: chunked\r\n")
                fields += 1
            else:
                self.keep_alive = False
        self.length = None if (no_body or self.head_only) else length
        if not has_date:
            lines += ("Date: ", http.Date.now(), "\r\n")
            fields += 1
        if _State.stopping:
            self.keep_alive = False
        if not self.keep_alive:
            lines.append("Connection: close\r\n")
            fields += 1
        elif self.version != "HTTP/1.1":
            lines.append("Connection: keep-alive\r\n")
            fields += 1
        lines.append("\r\n")
        text = "".join(lines)
        # a CR or LF inside a name or value would split the head
        if text.count("\n") != fields + 2 or text.count("\r") != fields + 2:
            raise AssertionError("CR or LF in an answer's status or fields")
        self.sent = True
        return text.encode("latin-1")

    def write(self, data):
        """The `write()` callable `start_response` returns, and the path every chunk of
        the body takes."""
        if not self.sent:
            out = self._head(None)
            if self.head_only or not data:
                self.conn.sendall(out)
                return
        elif not data or self.head_only:
            return
        else:
            out = b""
        if self.chunked:
            out += b"%x\r\n" % len(data) + data + b"\r\n"
        elif self.length is not None:
            room = self.length - self.written
            if len(data) > room:
                data = data[:room]
                self.keep_alive = False
            out += data
        else:
            out += data
        self.written += len(data)
        self.conn.sendall(out)

    def finish(self):
        """Ends the body: the last chunk, or a connection close when fewer bytes than the
        announced length were sent."""
        if not self.sent:
            # no body came: 0 bytes, unless this is HEAD and the app skipped it
            self.conn.sendall(self._head(None if self.head_only else 0))
        if self.head_only:
            return
        if self.chunked:
            self.conn.sendall(b"0\r\n\r\n")
        elif self.length is not None and self.written < self.length:
            self.keep_alive = False


def _send_file(answer, wrapper, conn):
    """Sends a `FileWrapper` over a regular file with `os.sendfile`; `False` when it
    cannot (not a regular file, a chunked answer), so the caller iterates it."""
    where = wrapper.sendable()
    if where is None:
        return False
    fd, offset, size = where
    if not answer.sent:
        head = answer._head(size)
        if answer.chunked:
            answer.sent = False
            answer.chunked = False
            return False
        conn.sendall(head)
    elif answer.chunked:
        return False
    if answer.head_only:
        return True
    if answer.length is not None:
        size = min(size, answer.length - answer.written)
    sock_fd = conn.fileno()
    sent = 0
    while sent < size:
        try:
            n = os.sendfile(sock_fd, fd, offset + sent, size - sent)
        except BlockingIOError:
            continue
        if n == 0:
            break
        sent += n
    answer.written += sent
    return True


def _error_answer(conn, keep_alive):
    head = _ERROR_HEAD + "Date: " + http.Date.now() + "\r\n"
    if not keep_alive:
        head += "Connection: close\r\n"
    conn.sendall((head + "\r\n").encode("latin-1") + _ERROR_BODY)


class Worker:
    """The accept loop and the per-connection request loop of one worker process."""

    def __init__(self, listener, app, worker, server_name, server_port):
        self.listener = listener
        self.app = app
        self.unix = listener.family == socket.AF_UNIX
        self.base = {
            "wsgi.version": (1, 0),
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.errors": sys.stderr,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.input_terminated": True,
            "SERVER_SOFTWARE": SERVER_SOFTWARE,
            "SERVER_NAME": server_name,
            "SERVER_PORT": str(server_port),
            "SCRIPT_NAME": os.environ.get("SCRIPT_NAME", "").rstrip("/"),
            "corral.worker": worker,
        }

    def environ(self, head, body, peer):
        env = self.base.copy()
        path, query, raw = head.path_query()
        env["REQUEST_METHOD"] = head.method
        env["QUERY_STRING"] = query
        env["RAW_URI"] = raw
        env["SERVER_PROTOCOL"] = head.version
        env["REMOTE_ADDR"] = head.client(peer)
        env["wsgi.url_scheme"] = head.scheme
        env["wsgi.input"] = body
        http.environ_fields(env, head.fields)
        script = env.get("HTTP_SCRIPT_NAME")
        if script is not None:
            env["SCRIPT_NAME"] = script = script.rstrip("/")
        else:
            script = env["SCRIPT_NAME"]
        if script and path.startswith(script):
            path = path[len(script) :]
        env["PATH_INFO"] = path
        return env

    def serve_one(self, conn, head, rest, peer):
        """Answers one request; returns the bytes read after it when the connection stays
        open, `None` when it must close."""
        body, after = http.body_for(conn, head, rest)
        environ = self.environ(head, body, peer)
        keep_alive = head.keep_alive and not _State.stopping
        answer = _Answer(conn, head.method == "HEAD", head.version, keep_alive)
        result = None
        try:
            result = self.app(environ, answer.start_response)
            if type(result) in (list, tuple) and not answer.sent:
                # the common case: the whole body known, head and body in one write
                data = result[0] if len(result) == 1 else b"".join(result)
                head_bytes = answer._head(len(data))
                length = answer.length
                if answer.head_only or length is None:
                    data = b""
                elif len(data) != length:
                    data = data[:length]
                    answer.keep_alive = False
                answer.written = len(data)
                conn.sendall(head_bytes + data)
            elif isinstance(result, FileWrapper) and _send_file(answer, result, conn):
                pass
            else:
                for data in result:
                    if data:
                        answer.write(data)
                answer.finish()
        except (BrokenPipeError, ConnectionResetError):
            return None
        except Exception:
            _log_exception(environ, "the app raised")
            if answer.sent:
                return None
            try:
                _error_answer(conn, keep_alive)
            except OSError:
                return None
            answer.keep_alive = keep_alive
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    _log_exception(environ, "the answer's close() raised")
                    answer.keep_alive = False
        if not answer.keep_alive or _State.stopping:
            return None
        if after is not None:
            return after
        try:
            return body.drain()
        except (OSError, http.BadRequest):
            return None

    def serve_connection(self, conn, peer, buf):
        """Answers the requests on `conn` that have arrived (`buf` and what the socket holds
        without waiting); returns the unread bytes when the connection stays open and idle,
        `None` when it was closed."""
        while True:
            try:
                got = http.read_head(conn, buf)
            except http.BadRequest:
                try:
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass
                return None
            except OSError:
                return None
            if got is None:
                return None
            try:
                head = http.Head(got[0])
            except http.BadRequest:
                return None
            buf = self.serve_one(conn, head, got[1], peer)
            if buf is None:
                return None
            if not buf:
                return b""

    def run(self):
        listener = self.listener
        listener.setblocking(False)
        lfd = listener.fileno()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        poller = select.poll()
        poller.register(lfd, select.POLLIN)
        poller.register(wake_r, select.POLLIN)
        conns = {}  # fd -> (socket, peer, buffered bytes)
        try:
            while not _State.stopping:
                for fd, _ in poller.poll():
                    if fd == wake_r:
                        try:
                            os.read(wake_r, 512)
                        except BlockingIOError:
                            pass
                        continue
                    if _State.stopping:
                        break
                    if fd == lfd:
                        try:
                            conn, addr = listener.accept()
                        except (BlockingIOError, InterruptedError):
                            continue
                        except OSError as error:
                            if error.errno in (errno.ECONNABORTED, errno.EMFILE, errno.ENFILE):
                                continue
                            raise
                        conn.setblocking(True)
                        if not self.unix:
                            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                            peer = addr[0]
                        else:
                            peer = "127.0.0.1"
                        # corral writes the request as it connects: serve it now
                        conns[conn.fileno()] = (conn, peer, b"")
                        poller.register(conn.fileno(), select.POLLIN)
                        continue
                    entry = conns.get(fd)
                    if entry is None:
                        continue
                    conn, peer, buf = entry
                    left = self.serve_connection(conn, peer, buf)
                    if left is None:
                        poller.unregister(fd)
                        del conns[fd]
                        conn.close()
                    else:
                        conns[fd] = (conn, peer, left)
        finally:
            for conn, _, _ in conns.values():
                conn.close()
            signal.set_wakeup_fd(-1)
            os.close(wake_r)
            os.close(wake_w)


def install_signals():
    """SIGTERM: finish the request in flight and return; SIGINT, SIGQUIT: exit at once.
    faulthandler on stderr, so corral's SIGABRT of a hung worker prints every thread's
    Python stack."""
    faulthandler.enable(file=sys.stderr, all_threads=True)

    def stop(signum, frame):
        _State.stopping = True

    def quit_now(signum, frame):
        sys.stderr.flush()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, quit_now)
    signal.signal(signal.SIGQUIT, quit_now)


def serve(listener, app, *, worker, server_name, server_port):
    """Serves `app` on `listener` until SIGTERM; see the module's doc."""
    _State.stopping = False
    install_signals()
    Worker(listener, app, worker, server_name, server_port).run()
