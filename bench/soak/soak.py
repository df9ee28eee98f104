#!/usr/bin/env python3
"""A bounded fault soak of corral, as an operator would run it (issues 31 and 37).

Two pools of real app servers running `tests/apps/slow_start.py`: blue, `uvicorn --fd 3`
with `bind = "fd"` (1 s to start), and green, gunicorn with uvicorn workers on tcp (1.5 s);
`max_requests` with jitter, health checks, a rate limit on a Redis of our own, TLS, HTTP/2
and compression. Load: HTTP/1.1 keep-alive clients that reconnect every few requests (GET,
POST, large answers), HTTP/2 sessions (`h2client.js`), WebSockets echoing a numbered
message at a time, slow readers and slow uploads. Every 5-10 s a fault: reload, broken
reload, `kill -9` of a worker, switch, `corral scale`, SIGTTIN/SIGTTOU, a Redis outage, a
SIGUSR2 binary upgrade. At the end SIGTERM, and a check that no process is left.

Reports every failed request by fault window, WebSocket messages lost (and whether at a
drain deadline), corral's RSS and open files over time with their slope, and the exit.
Run it with bench/soak/run.sh; it writes the report as JSON too (--out).
"""

import argparse
import calendar
import http.client
import json
import os
import random
import signal
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APPS = os.path.join(ROOT, "tests", "apps")
GRACEFUL = 5.0  # graceful_timeout: the drain deadline of workers and masters
KILL_WINDOW = 3.0  # after a kill -9, requests in flight on the killed worker may fail


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Record:
    """Every outcome, with its time, shared by the load threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []  # (time, kind, ok, detail)
        self.ws_closes = []  # (time, code, lost, lived)
        self.ws_sent = 0
        self.ws_echoed = 0

    def request(self, kind, ok, detail=""):
        with self.lock:
            self.requests.append((time.time(), kind, ok, detail))


class Soak:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.work = tempfile.mkdtemp(prefix="corral-soak.")
        self.id = uuid.uuid4().hex
        self.http, self.https, self.admin, self.redis_port = (free_port() for _ in range(4))
        self.config = os.path.join(self.work, "corral.toml")
        self.stop = threading.Event()
        self.record = Record()
        self.faults = []  # (start, kind, detail)
        self.samples = []  # (time, master pid, rss KiB, open fds)
        self.redis = None
        self.corral = None
        self.master = None
        self.active = "blue"
        self.scaled = False
        self.threads = []

    # ---------------------------------------------------------------- setup
    def certificate(self):
        key, cert = (os.path.join(self.work, n) for n in ("key.pem", "cert.pem"))
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=soak.test",
             "-addext", "subjectAltName=DNS:soak.test,IP:127.0.0.1"],
            check=True, capture_output=True, timeout=30)
        return key, cert

    def config_text(self, key, cert):
        venv = os.path.join(self.args.venv, "bin")
        return f"""[server]
listen = ["127.0.0.1:{self.http}"]
admin = "127.0.0.1:{self.admin}"
control_socket = "{self.work}/control.sock"
runtime_dir = "{self.work}/run"
state_dir = "{self.work}/state"
graceful_timeout = "{GRACEFUL:g}s"

[server.tls]
listen = ["127.0.0.1:{self.https}"]
cert = "{cert}"
key = "{key}"

[log]
format = "json"
file = "{self.work}/corral.log"
access_file = "{self.work}/access.log"

[compression]
enabled = true

[[rate_limits]]
name = "soak"
rate = "100000/s"
burst = 100000

[rate_limit_store]
kind = "redis"
url = "redis://127.0.0.1:{self.redis_port}"
on_error = "allow"

[routing]
active = "blue"

[pools.blue]
command = ["{venv}/uvicorn", "--fd", "3", "--no-access-log", "slow_start:app"]
cwd = "{APPS}"
env = {{ SLOW_START = "1.0", SOAK_ID = "{self.id}" }}
bind = "fd"
workers = 2
concurrency = 32
queue_size = 1000
max_requests = 300
max_requests_jitter = 50
kill_timeout = "3s"
start_timeout = "30s"

[pools.blue.health]
interval = "1s"
timeout = "1s"

[pools.green]
command = ["{venv}/gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", "1", "--bind", "127.0.0.1:{{port}}", "slow_start:app"]
cwd = "{APPS}"
env = {{ SLOW_START = "1.5", SOAK_ID = "{self.id}" }}
workers = 2
concurrency = 32
queue_size = 1000
max_requests = 300
max_requests_jitter = 50
kill_timeout = "3s"
start_timeout = "30s"

[pools.green.health]
interval = "1s"
timeout = "1s"
"""

    def start_redis(self):
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.redis_port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("redis-server did not start")

    def status(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/status", timeout=3) as r:
                return json.load(r)
        except (OSError, ValueError):
            return None

    def start(self):
        key, cert = self.certificate()
        self.good = self.config_text(key, cert)
        with open(self.config, "w") as f:
            f.write(self.good)
        self.start_redis()
        self.corral = subprocess.Popen(
            [self.args.corral, "run", "-c", self.config],
            stdout=open(os.path.join(self.work, "stdout.log"), "w"),
            stderr=open(os.path.join(self.work, "stderr.log"), "w"),
            start_new_session=True)
        deadline = time.time() + 90
        while time.time() < deadline:
            status = self.status()
            pools = {p["name"]: p for p in (status or {}).get("pools", [])}
            if pools and all(
                    sum(w["state"] == "ready" for w in p["workers"]) >= 2 for p in pools.values()):
                self.master = status["pid"]
                return
            time.sleep(0.2)
        raise SystemExit(f"corral not ready within 90 s; see {self.work}")

    # ---------------------------------------------------------------- load
    def spawn(self, target, *args):
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self.threads.append(t)

    def http1(self, n):
        rng = random.Random(self.args.seed * 100 + n)
        while not self.stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.http, timeout=30)
            for _ in range(rng.randint(2, 10)):
                if self.stop.is_set():
                    break
                choice = rng.random()
                try:
                    if choice < 0.15:
                        body = os.urandom(rng.randint(1, 4096))
                        conn.request("POST", "/echo", body=body)
                        want = str(len(body)).encode()
                    elif choice < 0.25:
                        conn.request("GET", "/big?kib=64", headers={"Accept-Encoding": "gzip"})
                        want = None
                    else:
                        conn.request("GET", f"/sleep?ms={rng.randint(0, 20)}")
                        want = None
                    r = conn.getresponse()
                    data = r.read()
                    ok = r.status == 200 and (want is None or data == want)
                    self.record.request("http1", ok, "" if ok else f"{r.status} {data[:80]!r}")
                    # A user's pace, not a benchmark's: about 130 requests/s in all, the
                    # rate of the soak in issue 37, so `max_requests = 300` recycles each
                    # worker every few seconds.
                    time.sleep(rng.uniform(0.04, 0.08))
                except (OSError, http.client.HTTPException) as e:
                    self.record.request("http1", False, f"{type(e).__name__}: {e}")
                    break
            conn.close()

    def slow_reader(self, n):
        while not self.stop.is_set():
            kib = 1024
            try:
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
                s.settimeout(30)
                s.connect(("127.0.0.1", self.http))
                s.sendall(f"GET /big?kib={kib} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n".encode())
                got = b""
                while True:
                    chunk = s.recv(16384)
                    if not chunk:
                        break
                    got += chunk
                    time.sleep(0.03)
                s.close()
                head, _, body = got.partition(b"\r\n\r\n")
                ok = head.startswith(b"HTTP/1.1 200") and len(body) == kib * 1024
                self.record.request("slow_read", ok, "" if ok else f"{head[:40]!r} {len(body)} bytes")
            except OSError as e:
                self.record.request("slow_read", False, f"{type(e).__name__}: {e}")

    def slow_upload(self, n):
        size = 256 * 1024
        while not self.stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", self.http), 30)
                s.sendall(f"POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n".encode())
                for _ in range(size // 8192):
                    s.sendall(b"u" * 8192)
                    time.sleep(0.05)
                got = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    got += chunk
                s.close()
                head, _, body = got.partition(b"\r\n\r\n")
                ok = head.startswith(b"HTTP/1.1 200") and body == str(size).encode()
                self.record.request("slow_upload", ok, "" if ok else f"{head[:40]!r} {body[:40]!r}")
            except OSError as e:
                self.record.request("slow_upload", False, f"{type(e).__name__}: {e}")

    def websocket(self, n):
        from websockets.exceptions import ConnectionClosed, InvalidStatus
        from websockets.sync.client import connect
        seq = 0
        while not self.stop.is_set():
            try:
                ws = connect(f"ws://127.0.0.1:{self.http}/ws", open_timeout=30, close_timeout=2)
                ws.__enter__()  # a connection of our own, closed below
            except InvalidStatus as e:
                self.record.request("ws_upgrade", False, f"refused {e.response.status_code}")
                time.sleep(0.2)
                continue
            except (OSError, TimeoutError) as e:
                self.record.request("ws_upgrade", False, f"{type(e).__name__}: {e}")
                time.sleep(0.2)
                continue
            self.record.request("ws_upgrade", True)
            opened = time.time()
            waiting = False
            try:
                while not self.stop.is_set():
                    seq += 1
                    ws.send(str(seq))
                    waiting = True
                    with self.record.lock:
                        self.record.ws_sent += 1
                    echo = ws.recv(timeout=20)
                    waiting = False
                    if echo != str(seq):
                        raise ValueError(f"echo {echo!r} for {seq}")
                    with self.record.lock:
                        self.record.ws_echoed += 1
                    time.sleep(0.2)
                ws.close()
            except ConnectionClosed as e:
                code = e.rcvd.code if e.rcvd else 1006
                with self.record.lock:
                    self.record.ws_closes.append((time.time(), code, int(waiting), time.time() - opened))
            except (OSError, TimeoutError, ValueError) as e:
                with self.record.lock:
                    self.record.ws_closes.append((time.time(), f"{type(e).__name__}", int(waiting), time.time() - opened))

    def http2(self, seconds):
        out = subprocess.Popen(
            ["node", os.path.join(os.path.dirname(__file__), "h2client.js"),
             f"https://127.0.0.1:{self.https}", "3", "8", str(seconds)],
            stdout=subprocess.PIPE, text=True)
        for line in out.stdout:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            with self.record.lock:
                self.record.requests.append(
                    (r["end"], "http2", r["ok"], "" if r["ok"] else f"{r.get('status')} {r.get('err')}"))
        out.wait()

    def monitor(self):
        while not self.stop.is_set():
            status = self.status()
            if status:
                pid = status["pid"]
                self.master = pid
                try:
                    with open(f"/proc/{pid}/status") as f:
                        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
                    fds = len(os.listdir(f"/proc/{pid}/fd"))
                    self.samples.append((time.time(), pid, rss, fds))
                except (OSError, StopIteration):
                    pass
            self.stop.wait(2)

    # ---------------------------------------------------------------- faults
    def cli(self, *args):
        r = subprocess.run([self.args.corral, *args, "-c", self.config],
                           capture_output=True, text=True, timeout=90)
        return f"exit {r.returncode}: {(r.stdout + r.stderr).strip()[:160]}"

    def signal_master(self, sig):
        os.kill(self.master, sig)

    def workers(self, pool):
        status = self.status() or {}
        for p in status.get("pools", []):
            if p["name"] == pool:
                return [w for w in p["workers"] if w["state"] == "ready" and w.get("pid")]
        return []

    def fault(self, kind):
        if kind == "reload":
            self.signal_master(signal.SIGHUP)
            return "SIGHUP"
        if kind == "broken_reload":
            with open(self.config, "a") as f:
                f.write("\n[pools.blue\nthis is not toml\n")
            self.signal_master(signal.SIGHUP)
            time.sleep(1)
            with open(self.config, "w") as f:
                f.write(self.good)
            return "SIGHUP on a broken file, then the file restored"
        if kind == "kill9":
            workers = self.workers(self.active)
            if not workers:
                return "no ready worker to kill"
            victim = self.rng.choice(workers)
            os.kill(victim["pid"], signal.SIGKILL)
            return f"kill -9 {self.active} worker {victim.get('id')} pid {victim['pid']}"
        if kind == "switch":
            target = "green" if self.active == "blue" else "blue"
            first = ""
            # A stopped standby pool is sometimes scaled to 1 first: the switch then waits
            # for that one worker (issue 37).
            if not self.workers(target) and self.rng.random() < 0.5:
                first = f"scale {target} 1: {self.cli('scale', target, '1')}; "
            said = self.cli("switch", target)
            if said.startswith("exit 0"):
                self.active = target
                self.scaled = False
            return f"{first}switch to {target}: {said}"
        if kind == "scale":
            count = 2 if self.scaled else 3
            self.scaled = not self.scaled
            return f"scale {self.active} {count}: {self.cli('scale', self.active, str(count))}"
        if kind == "ttin_ttou":
            self.signal_master(signal.SIGTTIN)
            time.sleep(3)
            self.signal_master(signal.SIGTTOU)
            return "SIGTTIN, 3 s, SIGTTOU"
        if kind == "redis_outage":
            self.redis.kill()
            self.redis.wait()
            time.sleep(3)
            self.start_redis()
            return "redis-server killed, restarted 3 s later"
        if kind == "upgrade":
            old = self.master
            self.signal_master(signal.SIGUSR2)
            deadline = time.time() + 60
            while time.time() < deadline:
                status = self.status()
                if status and status["pid"] != old and not alive(old):
                    self.master = status["pid"]
                    return f"SIGUSR2: master {old} -> {self.master}"
                time.sleep(0.2)
            return f"SIGUSR2: master {old} not replaced within 60 s"
        raise ValueError(kind)

    def run_faults(self, until):
        kinds = ["reload", "broken_reload", "kill9", "switch", "scale", "ttin_ttou",
                 "redis_outage", "upgrade"]
        order = []
        while time.time() < until:
            self.stop.wait(self.rng.uniform(5, 10))
            if time.time() >= until or self.stop.is_set():
                return
            if not order:
                order = kinds[:]
                self.rng.shuffle(order)
            kind = order.pop()
            start = time.time()
            try:
                detail = self.fault(kind)
            except Exception as e:  # noqa: BLE001 - a failed fault is reported, not fatal
                detail = f"fault failed: {type(e).__name__}: {e}"
            self.faults.append((start, kind, detail))
            print(f"{start - self.began:7.1f}s {kind}: {detail}", flush=True)

    # ---------------------------------------------------------------- end
    def soak_processes(self):
        found = []
        needle = f"SOAK_ID={self.id}".encode()
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = f.read()
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ")
            except OSError:
                continue
            if (needle in env or self.config.encode() in cmd) and alive(int(pid)):
                found.append(f"{pid} {cmd[:100].decode(errors='replace')}")
        return found

    def finish(self):
        master = self.status()["pid"] if self.status() else self.master
        began = time.time()
        os.kill(master, signal.SIGTERM)
        deadline = time.time() + 60
        while alive(master) and time.time() < deadline:
            time.sleep(0.1)
        took = time.time() - began
        code = self.corral.poll() if self.corral.pid == master else None
        time.sleep(1)
        left = self.soak_processes()
        return {"master": master, "exit_seconds": round(took, 1), "exited": not alive(master),
                "exit_code": code, "processes_left": left}

    # ---------------------------------------------------------------- report
    def window_of(self, t):
        """The fault window holding time t: the last fault started before it."""
        current = ("warm-up", self.began, "")
        for start, kind, detail in self.faults:
            if start <= t:
                current = (kind, start, detail)
        return current

    def drain_marks(self):
        marks = []
        events = {"worker_drained", "drain_timeout", "drained", "upgraded", "stopping"}
        try:
            with open(os.path.join(self.work, "corral.log")) as f:
                for line in f:
                    if '"event"' not in line:
                        continue
                    try:
                        e = json.loads(line)
                    except ValueError:
                        continue
                    if e.get("event") in events:
                        stamp = e["timestamp"]
                        marks.append(calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
                                     + float(stamp[19:].rstrip("Z") or 0))
        except OSError:
            pass
        return marks

    def report(self, ending):
        requests = self.record.requests
        by_kind = {}
        for t, kind, ok, _ in requests:
            k = by_kind.setdefault(kind, [0, 0])
            k[0 if ok else 1] += 1
        failed = [(t, kind, detail) for t, kind, ok, detail in requests if not ok]
        windows = {}
        outside_kill = []
        for t, kind, detail in failed:
            fault, start, _ = self.window_of(t)
            in_kill = fault == "kill9" and t - start <= KILL_WINDOW
            windows.setdefault(f"{fault}@{start - self.began:.1f}s", []).append(
                f"{t - self.began:.2f}s {kind} {detail}")
            if not in_kill:
                outside_kill.append((t, kind, detail, fault))
        marks = self.drain_marks()
        lost_at_deadline, lost_in_kill, lost_elsewhere = 0, 0, []
        for t, code, lost, lived in self.record.ws_closes:
            if not lost:
                continue
            fault, start, _ = self.window_of(t)
            if any(abs(t - m) < 2.0 for m in marks) or code in (1001, 1012):
                lost_at_deadline += 1
            elif fault == "kill9" and t - start <= KILL_WINDOW:
                lost_in_kill += 1
            else:
                lost_elsewhere.append((round(t - self.began, 2), code, fault))
        per_master = {}
        for t, pid, rss, fds in self.samples:
            per_master.setdefault(pid, []).append((t, rss, fds))
        trend = []
        for pid, points in per_master.items():
            warm = [p for p in points if p[0] - points[0][0] >= 30]
            entry = {"pid": pid, "seconds": round(points[-1][0] - points[0][0]),
                     "rss_mib": [round(points[0][1] / 1024, 1), round(max(p[1] for p in points) / 1024, 1),
                                 round(points[-1][1] / 1024, 1)],
                     "fds": [points[0][2], max(p[2] for p in points), points[-1][2]]}
            if len(warm) >= 5:
                entry["rss_kib_per_min"] = round(slope([(p[0], p[1]) for p in warm]) * 60, 1)
                entry["fds_per_min"] = round(slope([(p[0], p[2]) for p in warm]) * 60, 2)
            trend.append(entry)
        kinds = {}
        for _, kind, _ in self.faults:
            kinds[kind] = kinds.get(kind, 0) + 1
        return {
            "seconds": round(self.ended - self.began),
            "seed": self.args.seed,
            "requests": {k: {"ok": v[0], "failed": v[1]} for k, v in sorted(by_kind.items())},
            "total_requests": len(requests),
            "failed": len(failed),
            "failed_outside_kill9_windows": len(outside_kill),
            "failed_by_window": windows,
            "faults": kinds,
            "fault_log": [(round(s - self.began, 1), k, d) for s, k, d in self.faults],
            "websocket": {"sent": self.record.ws_sent, "echoed": self.record.ws_echoed,
                          "closed": len(self.record.ws_closes),
                          "lost_at_drain_deadlines": lost_at_deadline,
                          "lost_in_kill9_windows": lost_in_kill,
                          "lost_elsewhere": lost_elsewhere},
            "masters": trend,
            # Each master's last sample, master after master: flat if nothing accumulates
            # across upgrades either.
            "rss_mib_at_each_hand_over": [m["rss_mib"][2] for m in trend],
            "fds_at_each_hand_over": [m["fds"][2] for m in trend],
            "exit": ending,
            "work_dir": self.work,
        }

    def run(self):
        self.start()
        self.began = time.time()
        until = self.began + self.args.seconds
        print(f"soak: {self.args.seconds} s, seed {self.args.seed}, work dir {self.work}", flush=True)
        self.spawn(self.monitor)
        for n in range(self.args.http_clients):
            self.spawn(self.http1, n)
        for n in range(self.args.ws_clients):
            self.spawn(self.websocket, n)
        for n in range(2):
            self.spawn(self.slow_reader, n)
        self.spawn(self.slow_upload, 0)
        self.spawn(self.http2, self.args.seconds)
        self.run_faults(until)
        while time.time() < until:
            time.sleep(0.2)
        self.stop.set()
        for t in self.threads:
            t.join(timeout=40)
        self.ended = time.time()
        ending = self.finish()
        return self.report(ending)

    def cleanup(self):
        for p in (self.redis,):
            if p and p.poll() is None:
                p.kill()
                p.wait()


def slope(points):
    """Least-squares slope of (x, y) points, per unit of x."""
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    den = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / den if den else 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--seed", type=int, default=37)
    parser.add_argument("--corral", default=os.path.join(ROOT, "target", "release", "corral"))
    parser.add_argument("--venv", default=os.environ.get("CORRAL_VENV", os.path.join(ROOT, "target", "venv")))
    parser.add_argument("--http-clients", type=int, default=8)
    parser.add_argument("--ws-clients", type=int, default=6)
    parser.add_argument("--out", help="write the report as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs) after a pass")
    args = parser.parse_args()
    soak = Soak(args)
    try:
        result = soak.run()
    finally:
        soak.cleanup()
    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)
    ok = (result["failed_outside_kill9_windows"] == 0 and not result["websocket"]["lost_elsewhere"]
          and result["exit"]["exited"] and not result["exit"]["processes_left"])
    if ok and not args.keep:
        shutil.rmtree(soak.work, ignore_errors=True)
    print("soak:", "PASS" if ok else f"FAIL (logs in {soak.work})", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
