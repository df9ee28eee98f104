"""A WSGI app exercising PEP 3333 for `tests/python_worker.rs`, served wrapped in
`wsgiref.validate.validator` (`app`) with every `WSGIWarning` turned into an error, so any
violation by the server or the app is a 500 and a traceback in the worker's stderr.
`plain` is the same app unwrapped (the validator hides `wsgi.file_wrapper` from the server).
"""

import json
import os
import sys
import time
import warnings
from wsgiref.validate import WSGIWarning, validator

warnings.simplefilter("error", WSGIWarning)

BLOCK = bytes(range(256)) * 256  # 64 KiB
CLOSED = []
FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pep3333.py")


def _json(start_response, value, status="200 OK"):
    body = json.dumps(value, sort_keys=True).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class Closing:
    """An iterable whose close() the server must call."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        for i in range(self.n):
            yield b"part %d\n" % i

    def close(self):
        CLOSED.append(1)


def inner(environ, start_response):
    path = environ["PATH_INFO"]
    method = environ["REQUEST_METHOD"]
    query = environ["QUERY_STRING"]
    stream = environ["wsgi.input"]
    if path in ("/", "/health", "/prefix/x"):
        return _json(start_response, {
            "method": method,
            "path": path,
            "script": environ["SCRIPT_NAME"],
            "query": query,
            "remote": environ["REMOTE_ADDR"],
            "scheme": environ["wsgi.url_scheme"],
            "host": environ.get("HTTP_HOST"),
            "request_id": environ.get("HTTP_X_REQUEST_ID"),
            "protocol": environ["SERVER_PROTOCOL"],
            "pid": os.getpid(),
        })
    if path == "/upload":
        # streamed in small reads, as an app handling an upload as it comes
        parts = []
        while True:
            piece = stream.read(1000)
            if not piece:
                break
            parts.append(piece)
        body = b"".join(parts)
        start_response("200 OK", [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(len(body))),
            ("X-Chunked", str("HTTP_TRANSFER_ENCODING" in environ)),
        ])
        return [body]
    if path == "/lines":
        lines = [line.decode() for line in stream]
        return _json(start_response, {"lines": lines})
    if path == "/readline":
        first = stream.readline(5)
        rest = stream.readlines()
        return _json(start_response, {"first": first.decode(), "rest": [l.decode() for l in rest]})
    if path == "/big":
        blocks = int(query or "16")
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (BLOCK for _ in range(blocks))
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        write(b"by write()\n")
        return [b"then returned\n"]
    if path == "/closing":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing(3)
    if path == "/closed":
        return _json(start_response, {"closed": len(CLOSED)})
    if path == "/file":
        start_response("200 OK", [("Content-Type", "text/x-python")])
        return environ["wsgi.file_wrapper"](open(FILE, "rb"), 4096)
    if path == "/error":
        raise RuntimeError("raised on purpose before start_response")
    if path == "/exc_info":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("failed after start_response")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"replaced\n"]
    if path == "/slow":
        time.sleep(float(query or "1"))
        return _json(start_response, {"slept": query})
    if path == "/nocontent":
        start_response("204 No Content", [])
        return []
    return _json(start_response, {"missing": path}, "404 Not Found")


app = validator(inner)
plain = inner
