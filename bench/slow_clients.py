"""Slow clients for bench/slow_clients.sh: READERS connections each asking `/big?SIZE` and
reading it at RATE bytes/s (checking every byte), UPLOADERS each sending SIZE_UP bytes at
RATE bytes/s to `/upload`, arriving one by one, evenly over RAMP seconds (0: all at once).
Prints one line: readers whole, uploads whole, seconds taken.

The clients must not take the CPU the proxies and workers need (two cores): one thread
visits every connection each TICK seconds and reads (or sends) what its rate allows by
then, without blocking, so the cost is a few system calls per connection and tick, not an
event-loop round per segment. A slow phone looks the same to the proxy: its window opens
by a few tens of KiB at a time."""
import socket
import sys
import time

HOST = "127.0.0.1"
TICK = 0.05
MOST = 256 * 1024  # bytes one recv may take
PATTERN = bytes(range(256)) * (MOST // 256 + 1)


class Reader:
    def __init__(self, port, size, rate):
        self.sock = socket.create_connection((HOST, port))
        self.sock.sendall(b"GET /big?%d HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n" % size)
        self.sock.setblocking(False)
        self.size, self.rate = size, rate
        self.start = time.monotonic()
        self.head = b""  # until the head is whole
        self.body = None  # body bytes so far, once the head is whole
        self.ok = True
        self.done = None  # True: whole and right

    def tick(self, now):
        due = int(self.rate * (now - self.start)) - (self.body or 0)
        while due > 0 and self.done is None:
            try:
                piece = self.sock.recv(min(due, MOST))
            except BlockingIOError:
                return
            except OSError:
                piece = b""
            if not piece:
                self.done = self.ok and self.body == self.size
                self.sock.close()
                return
            if self.body is None:
                self.head += piece
                end = self.head.find(b"\r\n\r\n")
                if end < 0:
                    continue
                self.ok = self.head.startswith(b"HTTP/1.1 200")
                piece, self.body = self.head[end + 4:], 0
            at = self.body % 256
            if self.ok and piece != PATTERN[at:at + len(piece)]:
                self.ok = False
            self.body += len(piece)
            due -= len(piece)


class Uploader:
    def __init__(self, port, size, rate):
        self.sock = socket.create_connection((HOST, port))
        self.sock.sendall(b"POST /upload HTTP/1.1\r\nHost: b\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size)
        self.sock.setblocking(False)
        self.size, self.rate = size, rate
        self.start = time.monotonic()
        self.sent = 0
        self.answer = b""
        self.done = None

    def tick(self, now):
        due = min(self.size, int(self.rate * (now - self.start))) - self.sent
        try:
            while due > 0:
                n = self.sock.send(PATTERN[:min(due, MOST)])
                self.sent += n
                due -= n
            while self.sent == self.size:
                piece = self.sock.recv(4096)
                if not piece:
                    self.done = self.answer.endswith(b"\r\n%d\n" % self.size)
                    self.sock.close()
                    return
                self.answer += piece
        except BlockingIOError:
            return
        except OSError:
            self.done = False
            self.sock.close()


def main():
    port, readers, size, uploaders, size_up, rate = (int(a) for a in sys.argv[1:7])
    ramp = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
    start = time.monotonic()
    # (when, kind): readers evenly over the ramp, uploaders between them.
    plan = [(ramp * i / readers, Reader, size) for i in range(readers)]
    plan += [(ramp * (i + 0.5) / max(uploaders, 1), Uploader, size_up) for i in range(uploaders)]
    plan.sort(key=lambda p: p[0])
    clients, failed = [], 0
    while plan or any(c.done is None for c in clients):
        now = time.monotonic()
        while plan and plan[0][0] <= now - start:
            _, kind, n = plan.pop(0)
            try:
                clients.append(kind(port, n, rate))
            except OSError:
                failed += 1
        for c in clients:
            if c.done is None:
                c.tick(now)
        time.sleep(max(0.0, TICK - (time.monotonic() - now)))
    whole = sum(1 for c in clients if isinstance(c, Reader) and c.done)
    uploads = sum(1 for c in clients if isinstance(c, Uploader) and c.done)
    print(f"{whole}/{readers} {uploads}/{uploaders} {time.monotonic() - start:.1f}")


main()
