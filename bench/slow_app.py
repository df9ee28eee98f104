"""The app of bench/slow_clients.sh: `/` answers "ok" at once, `/big?N` N bytes (byte k is
k % 256, with a Content-Length), `/upload` reads the request body and answers its length."""

BLOCK = bytes(range(256)) * 256


def app(environ, start_response):
    path = environ.get("PATH_INFO")
    if path == "/big":
        n = int(environ.get("QUERY_STRING") or 0)

        def pieces(left=n):
            while left > 0:
                piece = BLOCK[: min(left, len(BLOCK))]
                left -= len(piece)
                yield piece

        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(n))])
        return pieces()
    if path == "/upload":
        n = len(environ["wsgi.input"].read())
        body = b"%d\n" % n
    else:
        body = b"ok\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
