"""How long reading one request takes in Python, per request: corral's worker reader
(`corral_worker.http`) against gunicorn's parser, h11 and httptools on the same bytes, each
up to a WSGI environ (what the app gets). It decides the wire between corral and its Python
workers: parsing is worth a custom wire format only if it is a large share of a request.

    target/venv/bin/python bench/python_parse.py [--rounds 7] [--n 20000]

Prints the median and spread (min-max) of the per-request time over interleaved rounds.
"""

import argparse
import io
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "corral-python", "python"))

from corral_worker import http, wsgi  # noqa: E402

# What corral's proxy sends a worker for a curl-like request, and for a browser's.
SMALL = (
    b"GET /hello?name=world HTTP/1.1\r\n"
    b"host: example.com\r\n"
    b"user-agent: curl/8.5.0\r\n"
    b"accept: */*\r\n"
    b"x-forwarded-for: 203.0.113.7\r\n"
    b"x-forwarded-proto: https\r\n"
    b"x-forwarded-host: example.com\r\n"
    b"x-request-id: 5f0a8c1e2b3d4f6a0000000000000001\r\n\r\n"
)
BROWSER = (
    b"GET /static/app/main.css?v=1234 HTTP/1.1\r\n"
    b"host: www.example.com\r\n"
    b"user-agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"accept: text/css,*/*;q=0.1\r\n"
    b"accept-language: en-US,en;q=0.5\r\n"
    b"accept-encoding: gzip, deflate, br, zstd\r\n"
    b"referer: https://www.example.com/\r\n"
    b"cookie: sessionid=abcdefghijklmnopqrstuvwxyz012345; csrftoken=0123456789abcdef0123456789abcdef\r\n"
    b"sec-fetch-dest: style\r\n"
    b"sec-fetch-mode: no-cors\r\n"
    b"sec-fetch-site: same-origin\r\n"
    b"if-none-match: \"abc123\"\r\n"
    b"x-forwarded-for: 203.0.113.7\r\n"
    b"x-forwarded-proto: https\r\n"
    b"x-forwarded-host: www.example.com\r\n"
    b"x-request-id: 5f0a8c1e2b3d4f6a0000000000000001\r\n\r\n"
)


class FakeSocket:
    def __init__(self, data):
        self.data = data

    def recv(self, n):
        data, self.data = self.data, b""
        return data


def corral_reader(raw):
    worker = wsgi.Worker.__new__(wsgi.Worker)
    worker.base = {"SERVER_NAME": "localhost", "SERVER_PORT": "80", "SCRIPT_NAME": ""}

    def one():
        got = http.read_head(FakeSocket(raw), b"")
        head = http.Head(got[0])
        body, _ = http.body_for(None, head, got[1])
        return worker.environ(head, body, "127.0.0.1")

    return one


def gunicorn_reader(raw):
    from gunicorn.config import Config
    from gunicorn.http.message import Request
    from gunicorn.http.unreader import IterUnreader
    from gunicorn.http.wsgi import create

    cfg = Config()

    class Sock:
        def send(self, data):
            pass

        def sendall(self, data):
            pass

    sock = Sock()

    def one():
        req = Request(cfg, IterUnreader([raw]), ("127.0.0.1", 5000), 1)
        _, environ = create(req, sock, ("127.0.0.1", 5000), ("localhost", "80"), cfg)
        return environ

    return one


def _environ_from(method, target, fields):
    environ = {"REQUEST_METHOD": method}
    path, _, query = target.partition("?")
    environ["PATH_INFO"] = path
    environ["QUERY_STRING"] = query
    for name, value in fields:
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        environ[key] = value
    environ["wsgi.input"] = io.BytesIO(b"")
    return environ


def h11_reader(raw):
    import h11

    def one():
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(raw)
        event = conn.next_event()
        return _environ_from(
            event.method.decode("latin-1"),
            event.target.decode("latin-1"),
            [(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers],
        )

    return one


def httptools_reader(raw):
    import httptools

    class Proto:
        __slots__ = ("url", "fields")

        def __init__(self):
            self.url = b""
            self.fields = []

        def on_url(self, url):
            self.url += url

        def on_header(self, name, value):
            self.fields.append((name.decode("latin-1"), value.decode("latin-1")))

    def one():
        proto = Proto()
        parser = httptools.HttpRequestParser(proto)
        parser.feed_data(raw)
        return _environ_from(parser.get_method().decode(), proto.url.decode("latin-1"), proto.fields)

    return one


def per_request(fn, n):
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=20000)
    args = parser.parse_args()
    readers = {
        "corral_worker": corral_reader,
        "gunicorn": gunicorn_reader,
        "h11": h11_reader,
        "httptools": httptools_reader,
    }
    for label, raw in (("curl-like (7 fields)", SMALL), ("browser-like (15 fields)", BROWSER)):
        fns = {name: make(raw) for name, make in readers.items()}
        for fn in fns.values():
            fn()
        times = {name: [] for name in fns}
        for _ in range(args.rounds):  # interleaved, so machine noise hits all alike
            for name, fn in fns.items():
                times[name].append(per_request(fn, args.n))
        print("%s, per request up to the environ, %d rounds of %d:" % (label, args.rounds, args.n))
        base = statistics.median(times["corral_worker"])
        for name, ts in times.items():
            med = statistics.median(ts)
            print("  %-14s median %6.2f us  (min %6.2f, max %6.2f)  %.1fx corral_worker"
                  % (name, med, min(ts), max(ts), med / base))


if __name__ == "__main__":
    main()
