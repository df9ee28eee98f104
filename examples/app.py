#!/usr/bin/env python3
"""corral's bundled example app: a tiny web app using only Python's standard library.

corral starts one copy per worker with `--port {port}`; each answers on 127.0.0.1:PORT.
"""
import argparse
import json
import os
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "example-app"

    def do_GET(self):
        if self.path == "/health":
            body = b"ok\n"
            content_type = "text/plain"
        else:
            if self.path.startswith("/slow"):
                time.sleep(1)
            body = (json.dumps({
                "hello": "from corral's example app",
                "worker": os.environ.get("CORRAL_WORKER"),
                "pid": os.getpid(),
                "path": self.path,
                "client": self.headers.get("X-Forwarded-For"),
                "request_id": self.headers.get("X-Request-Id"),
            }) + "\n").encode()
            content_type = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        # corral writes the access log; keep the worker quiet.
        pass


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = parser.parse_args()
    server = HTTPServer(("127.0.0.1", args.port), Handler)
    print(f"example app worker {os.environ.get('CORRAL_WORKER')} listening on 127.0.0.1:{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
