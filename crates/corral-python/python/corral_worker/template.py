"""The template of an app pool: imports the app once, then forks a worker whenever corral
asks, so workers share the app's memory copy-on-write and start in milliseconds.

corral starts it as ``python -m corral_worker.template --app MOD:CALLABLE --interface
wsgi|asgi --control-fd N --master-pid PID`` with the pool's user, group, environment and
working directory. The control channel (fd N) is a ``SOCK_SEQPACKET`` Unix socket, one
message a datagram:

- template to corral, once: ``ready PID`` after the import (the GC frozen), or
  ``error`` and the import's traceback on the following lines, then it exits 1.
- corral to template: ``spawn SLOT SERVER_NAME SERVER_PORT`` with three fds (SCM_RIGHTS):
  the worker's listening socket, and the write ends of its stdout and stderr pipes.
- template to corral, for each: ``spawned PID`` or ``failed REASON``.

A worker is forked twice (template, a short-lived middle process, the worker), so its
parent is corral, which is a child subreaper: corral waits for it, reads its exit status,
and kills it like any worker; the worker outlives the template (a template that dies is
restarted; its workers keep serving). The worker makes itself a process group, takes
``PR_SET_PDEATHSIG`` once corral is its parent, closes the control channel and calls the
interface's ``serve``.

Memory: a worker shares the template's pages until either writes to one, so what a worker
does can be done once here is done here, before the forks: the default signal handlers are
put back after the import (an app may set its own), the libc functions a worker calls are
looked up, and glibc's ``malloc_trim`` gives back the heap the import freed. The GC is off
in the template and its objects frozen (see ``main``). The template itself imports no more
than it needs (no ``argparse``): every module it imports stays in it and in every worker.

The template exits when corral closes the channel or sends SIGTERM.
"""

import ctypes
import faulthandler
import gc
import importlib
import os
import signal
import socket
import sys
import time
import traceback

# Longest traceback sent on the channel; the whole one also goes to stderr.
_MAX_MESSAGE = 60000
# How long a new worker waits to become corral's child (the middle process exits at once).
_REPARENT_WAIT = 5.0
_PR_SET_PDEATHSIG = 1
# Exit code of a worker that could not set itself up.
_SETUP_FAILED = 70
# libc and the functions a worker calls, looked up once here rather than in each worker.
_LIBC = ctypes.CDLL(None, use_errno=True)
_PRCTL = _LIBC.prctl
_PRCTL.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
# glibc's; musl has none (then nothing is trimmed).
_MALLOC_TRIM = getattr(_LIBC, "malloc_trim", None)
# Signals a worker starts with the default handler of: the template sets them so after the
# app's import, and each fork inherits them.
_DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
                    signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD)
_USAGE = ("usage: corral_worker.template --app MOD:CALLABLE [--interface wsgi|asgi] "
          "--control-fd N --master-pid PID")


def load(target):
    """The callable ``module:attribute`` names (``module`` alone: its ``application``)."""
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    obj = module
    for part in (attribute or "application").split("."):
        obj = getattr(obj, part)
    return obj


def send(control, text, fds=()):
    data = text.encode("utf-8", "replace")[:_MAX_MESSAGE]
    if fds:
        socket.send_fds(control, [data], list(fds))
    else:
        control.send(data)


def parse_args(argv):
    """The command line corral gives, as ``(app, interface, control_fd, master_pid)``;
    exits 1 with the usage on anything else."""
    values = {"--interface": "wsgi"}
    if len(argv) % 2:
        raise SystemExit(_USAGE)
    for flag, value in zip(argv[::2], argv[1::2]):
        if flag not in ("--app", "--interface", "--control-fd", "--master-pid"):
            raise SystemExit("%s\nunknown option %r" % (_USAGE, flag))
        values[flag] = value
    try:
        app = values["--app"]
        interface = values["--interface"]
        if interface not in ("wsgi", "asgi"):
            raise ValueError(interface)
        return app, interface, int(values["--control-fd"]), int(values["--master-pid"])
    except (KeyError, ValueError):
        raise SystemExit(_USAGE) from None


def main(argv=None):
    app_target, interface, control_fd, master_pid = parse_args(
        sys.argv[1:] if argv is None else argv)
    faulthandler.enable()
    # No collection in the template at all: one would leave freed holes in the pages the
    # workers inherit, which they then fill (each copying the page). What the import made
    # is frozen before each fork, and each worker collects again (Python's `gc.freeze` doc).
    gc.disable()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    control = socket.socket(fileno=control_fd)
    # The app's own directory first, as `python -m` and gunicorn do.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        serve = importlib.import_module("corral_worker." + interface).serve
        app = load(app_target)
    except BaseException:
        text = traceback.format_exc()
        sys.stderr.write(text)
        sys.stderr.flush()
        send(control, "error\n" + text)
        return 1
    for sig in _DEFAULT_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    # What the import made is never collected again: a collection would write to every
    # object's header and unshare the pages the workers inherit.
    gc.freeze()
    # The heap the import used and freed (.pyc buffers, compile temporaries) goes back to
    # the kernel: otherwise the template keeps it resident, and a worker's malloc reuses it
    # by copying the template's page. Measured on the Django example: 1.2 MiB.
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
    send(control, "ready %d" % os.getpid())
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 4096, 3)
        except InterruptedError:
            continue
        if not message:
            return 0
        words = message.decode("utf-8", "replace").split()
        if len(words) != 4 or words[0] != "spawn" or len(fds) != 3:
            for fd in fds:
                os.close(fd)
            send(control, "failed malformed request %r" % message[:200])
            continue
        middle = None
        try:
            pid, middle = fork_worker(int(words[1]), words[2], words[3], fds, control, serve,
                                      app, master_pid)
            send(control, "spawned %d" % pid)
        except Exception as e:  # noqa: BLE001 - the reason goes back to corral
            send(control, "failed %s" % e)
        finally:
            for fd in fds:
                os.close(fd)
            # Reaped once corral has its answer: the middle process only has to exit.
            if middle:
                os.waitpid(middle, 0)


def fork_worker(slot, server_name, server_port, fds, control, serve, app, master_pid):
    """Forks the worker through a middle process; returns the worker's pid and the middle
    process's, for the caller to reap."""
    sys.stdout.flush()
    sys.stderr.flush()
    gc.freeze()
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle == 0:
        code = 0
        try:
            os.close(read_end)
            pid = os.fork()
            if pid == 0:
                os.close(write_end)
                worker(slot, server_name, server_port, fds, control, serve, app, master_pid)
            os.write(write_end, b"%d" % pid)
        except BaseException:  # noqa: BLE001 - the template learns it from the empty pipe
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        # One write of a few bytes: whole, or nothing when the middle process failed.
        data = os.read(read_end, 32)
    except BaseException:
        os.waitpid(middle, 0)
        raise
    finally:
        os.close(read_end)
    if not data:
        os.waitpid(middle, 0)
        raise OSError("fork failed")
    return int(data), middle


def worker(slot, server_name, server_port, fds, control, serve, app, master_pid):
    """The forked worker: never returns."""
    code = _SETUP_FAILED
    try:
        os.setpgid(0, 0)
        deadline = time.monotonic() + _REPARENT_WAIT
        while os.getppid() != master_pid:
            if time.monotonic() > deadline:
                os._exit(_SETUP_FAILED)
            time.sleep(0.0002)
        # Die with corral, as the workers it starts itself do.
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != master_pid:
            os._exit(_SETUP_FAILED)
        control.close()
        listener_fd, out_fd, err_fd = fds
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.close(out_fd)
        os.close(err_fd)
        os.environ["CORRAL_WORKER"] = str(slot)
        gc.enable()
        # faulthandler writes to fd 2, now the worker's own stderr; `serve` enables it
        # again for every thread.
        listener = socket.socket(fileno=listener_fd)
        code = 1
        serve(listener, app, worker=slot, server_name=server_name, server_port=server_port)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported on the worker's stderr
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
