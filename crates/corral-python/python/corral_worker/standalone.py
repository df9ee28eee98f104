"""One worker without a template: imports the app and serves it in this process.

    python -m corral_worker.standalone --app mod:callable --interface wsgi|asgi \\
        (--socket PATH | --fd N | --port N [--host ADDR]) [--worker N]

For a pool's `command` (`--socket {socket}`, `--fd 3` with `bind = "fd"`, `--port {port}`),
for tests, and for running the worker code by hand. The serving loop is the same a forked
worker runs (`wsgi.serve`, `asgi.serve`).
"""

import argparse
import importlib
import os
import socket
import sys


def load_app(spec):
    """The object `module:attribute` names (dots in the attribute walk into it)."""
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise SystemExit("corral_worker: --app wants module:callable, got %r" % spec)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    obj = importlib.import_module(module_name)
    for part in (attr or "application").split("."):
        obj = getattr(obj, part)
    return obj


def listener_for(args):
    """The listening socket and its `(SERVER_NAME, SERVER_PORT)`."""
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
    elif args.socket:
        try:
            os.unlink(args.socket)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(args.socket)
        sock.listen(1024)
    else:
        sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(1024)
    if sock.family == socket.AF_UNIX:
        return sock, ("localhost", "80")
    name, port = sock.getsockname()[:2]
    return sock, (name, str(port))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m corral_worker.standalone")
    parser.add_argument("--app", required=True, help="module:callable")
    parser.add_argument("--interface", choices=("wsgi", "asgi"), default="wsgi")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--socket", help="Unix socket path to bind")
    where.add_argument("--fd", type=int, help="an inherited listening socket")
    where.add_argument("--port", type=int, help="TCP port to bind on --host")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--worker", type=int, default=int(os.environ.get("CORRAL_WORKER", "0") or 0))
    args = parser.parse_args(argv)

    app = load_app(args.app)
    listener, (name, port) = listener_for(args)
    if args.interface == "wsgi":
        from . import wsgi as server
    else:
        from . import asgi as server
    server.serve(listener, app, worker=args.worker, server_name=name, server_port=port)


if __name__ == "__main__":
    main()
