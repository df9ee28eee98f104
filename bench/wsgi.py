"""The Python app of the benchmarks: `/` answers at once, `/slow` after 200 ms."""
import time


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/slow":
        time.sleep(0.2)
    body = b"ok\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
