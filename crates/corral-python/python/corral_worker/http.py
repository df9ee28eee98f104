"""Requests as corral's proxy sends them to a worker, read without a second HTTP parser.

corral has already parsed, validated and normalized every request before it reaches a
worker: one request line in origin form, one field per line with no folding, no field with
both `Content-Length` and `Transfer-Encoding`, forged forwarding fields removed and
`X-Forwarded-For`/`-Proto`/`-Host` and `X-Request-Id` set by corral itself, and
`Expect: 100-continue` answered by corral. The worker's socket is corral's alone, so this
module trusts what it reads: it finds the end of the head with one `find`, splits the lines
and builds the WSGI environ (or the ASGI scope's parts) directly from them. It checks only
what it needs not to misframe the connection (a head that never ends, a bad length).

The wire stays HTTP/1.1 because corral speaks it to every worker; `bench/python_parse.py`
measures this reader against gunicorn's parser, h11 and httptools on the same requests.

Body readers give `wsgi.input` its file API (`read`, `readline`, `readlines`, iteration)
over a fixed-length or chunked body, streaming from the socket as the app reads.
"""

import time
from io import BytesIO
from urllib.parse import unquote, unquote_to_bytes

#: A head longer than this is refused (corral's own limit is lower).
MAX_HEAD = 1 << 20
#: Unread body bytes a worker reads and discards to keep a connection; past this it closes it.
MAX_DRAIN = 1 << 22
RECV = 65536


class BadRequest(Exception):
    """A request this worker cannot frame: the connection is closed after a 400."""


def read_head(sock, buf):
    """The next request head on `sock` as `(head, rest)`: `head` without its blank line,
    `rest` the bytes read after it. `buf` holds bytes already read. `None` when the peer
    closed the connection between requests."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            return buf[:end], buf[end + 4 :]
        if len(buf) > MAX_HEAD:
            raise BadRequest("request head too long")
        data = sock.recv(RECV)
        if not data:
            if buf.strip():
                raise BadRequest("connection closed inside a request head")
            return None
        buf += data


class Head:
    """One request head, split: the request line and the fields as (NAME, value) pairs with
    the names upper-cased and `-` turned into `_` (the CGI spelling WSGI uses)."""

    __slots__ = (
        "method",
        "target",
        "version",
        "fields",
        "length",
        "chunked",
        "keep_alive",
        "forwarded_for",
        "real_ip",
        "scheme",
        "upgrade",
    )

    def __init__(self, head):
        lines = head.decode("latin-1").split("\r\n")
        try:
            self.method, self.target, self.version = lines[0].split(" ", 2)
        except ValueError:
            raise BadRequest("bad request line") from None
        fields = []
        length = None
        chunked = False
        connection = ""
        forwarded_for = ""
        real_ip = ""
        scheme = "http"
        upgrade = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.upper().replace("-", "_")
            value = value.strip()
            if name == "CONTENT_LENGTH":
                if not value.isdigit():
                    raise BadRequest("bad Content-Length")
                length = int(value)
            elif name == "TRANSFER_ENCODING":
                chunked = value.lower().endswith("chunked")
            elif name == "CONNECTION":
                connection = value.lower()
            elif name == "X_FORWARDED_FOR":
                forwarded_for = value
            elif name == "X_REAL_IP":
                real_ip = value
            elif name == "X_FORWARDED_PROTO":
                scheme = value.lower()
            elif name == "UPGRADE":
                upgrade = True
            fields.append((name, value))
        self.fields = fields
        self.length = length
        self.chunked = chunked
        if self.version == "HTTP/1.1":
            self.keep_alive = "close" not in connection
        else:
            self.keep_alive = "keep-alive" in connection
        self.forwarded_for = forwarded_for
        self.real_ip = real_ip
        self.scheme = scheme
        self.upgrade = upgrade

    def client(self, peer):
        """The client's address: `X-Real-IP`, the client corral worked out (its peer, or
        with `trusted_proxies` the right-most untrusted hop); else the last `X-Forwarded-For`
        hop (the peer corral saw); else the socket's peer."""
        if self.real_ip:
            return self.real_ip
        if self.forwarded_for:
            return self.forwarded_for.rpartition(",")[2].strip()
        return peer

    def path_query(self):
        """`(PATH_INFO, QUERY_STRING, RAW_URI)`: the path percent-decoded to bytes and read
        as latin-1, as PEP 3333 has it."""
        target = self.target
        path, _, query = target.partition("?")
        if not path.startswith("/"):
            # absolute form (never from corral) or `*`
            if "://" in path:
                path = "/" + path.split("://", 1)[1].partition("/")[2]
        if "%" in path:
            path = unquote_to_bytes(path).decode("latin-1")
        return path, query, target


def environ_fields(environ, fields):
    """Adds the head's fields to a WSGI environ: `CONTENT_TYPE`/`CONTENT_LENGTH` as they
    are, the others as `HTTP_*`, repeated fields joined with `,`."""
    for name, value in fields:
        if name == "CONTENT_TYPE" or name == "CONTENT_LENGTH":
            key = name
        else:
            key = "HTTP_" + name
            if key in environ:
                value = environ[key] + "," + value
        environ[key] = value


class _Stream:
    """The file API of `wsgi.input` over decoded body pieces from `_more()`."""

    __slots__ = ("sock", "buf", "done")

    def _more(self):
        raise NotImplementedError

    def read(self, size=-1):
        if size is None or size < 0:
            parts = [self.buf]
            self.buf = b""
            while True:
                piece = self._more()
                if not piece:
                    return b"".join(parts)
                parts.append(piece)
        while len(self.buf) < size:
            piece = self._more()
            if not piece:
                break
            self.buf += piece
        data, self.buf = self.buf[:size], self.buf[size:]
        return data

    def readline(self, size=-1):
        if size is None:
            size = -1
        while True:
            end = self.buf.find(b"\n")
            if end >= 0:
                end += 1
                if 0 <= size < end:
                    end = size
                break
            if 0 <= size <= len(self.buf):
                end = size
                break
            piece = self._more()
            if not piece:
                end = len(self.buf)
                break
            self.buf += piece
        data, self.buf = self.buf[:end], self.buf[end:]
        return data

    def readlines(self, hint=-1):
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def drain(self):
        """Reads the body's unread rest and returns the bytes read past its end (the next
        request's), or `None` when more than `MAX_DRAIN` were left: close the connection."""
        left = MAX_DRAIN
        self.buf = b""
        while left > 0:
            piece = self._more()
            if not piece:
                return self.leftover()
            left -= len(piece)
        return None


class FixedBody(_Stream):
    """A body of `Content-Length` bytes, `rest` of which came with the head."""

    __slots__ = ("left", "extra")

    def __init__(self, sock, rest, length):
        self.sock = sock
        self.extra = rest[length:]
        self.buf = rest[:length]
        self.left = length - len(self.buf)

    def _more(self):
        if self.left <= 0:
            return b""
        data = self.sock.recv(min(self.left, RECV))
        if not data:
            raise ConnectionResetError("connection closed inside a request body")
        self.left -= len(data)
        return data

    def leftover(self):
        return self.extra


class ChunkedBody(_Stream):
    """A `Transfer-Encoding: chunked` body (corral forwards it so with
    `request_buffering = false`); trailers are read and dropped."""

    __slots__ = ("raw", "chunk", "ended")

    def __init__(self, sock, rest):
        self.sock = sock
        self.buf = b""
        self.raw = rest
        self.chunk = 0
        self.ended = False

    def _fill(self):
        data = self.sock.recv(RECV)
        if not data:
            raise ConnectionResetError("connection closed inside a chunked body")
        self.raw += data

    def _line(self):
        while True:
            end = self.raw.find(b"\r\n")
            if end >= 0:
                line, self.raw = self.raw[:end], self.raw[end + 2 :]
                return line
            if len(self.raw) > MAX_HEAD:
                raise BadRequest("chunk line too long")
            self._fill()

    def _more(self):
        while not self.ended:
            if self.chunk == 0:
                size = self._line().split(b";", 1)[0].strip()
                try:
                    self.chunk = int(size, 16)
                except ValueError:
                    raise BadRequest("bad chunk size") from None
                if self.chunk == 0:
                    while self._line():  # trailers, then the blank line
                        pass
                    self.ended = True
                    return b""
            if not self.raw:
                self._fill()
            take = self.raw[: self.chunk]
            self.raw = self.raw[len(take) :]
            self.chunk -= len(take)
            if self.chunk == 0:
                while len(self.raw) < 2:  # the CRLF after the data
                    self._fill()
                self.raw = self.raw[2:]
            if take:
                return take
        return b""

    def leftover(self):
        return self.raw


class Empty:
    """`wsgi.input` of a request without a body: one shared, stateless instance."""

    __slots__ = ()

    def read(self, size=-1):
        return b""

    def readline(self, size=-1):
        return b""

    def readlines(self, hint=-1):
        return []

    def __iter__(self):
        return iter(())


EMPTY = Empty()


def body_for(sock, head, rest):
    """`(input, fully_read_leftover)` for `head`: the body reader, and when the body came
    whole with the head, the bytes after it (else `None`: ask the reader after the answer)."""
    if head.chunked:
        return ChunkedBody(sock, rest), None
    length = head.length
    if not length:
        return EMPTY, rest
    if len(rest) >= length:
        return BytesIO(rest[:length]), rest[length:]
    return FixedBody(sock, rest, length), None


class Date:
    """The `Date` field of answers, formatted once per second."""

    second = 0
    value = ""

    @classmethod
    def now(cls):
        now = int(time.time())
        if now != cls.second:
            cls.second = now
            cls.value = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now))
        return cls.value


class RawHead:
    """One request head for an ASGI scope: the fields as (lower-case name, value) byte
    pairs, as the scope's `headers` has them."""

    __slots__ = (
        "method",
        "target",
        "version",
        "headers",
        "length",
        "chunked",
        "keep_alive",
        "forwarded_for",
        "real_ip",
        "scheme",
        "websocket",
    )

    def __init__(self, head):
        lines = head.split(b"\r\n")
        try:
            method, self.target, version = lines[0].split(b" ", 2)
        except ValueError:
            raise BadRequest("bad request line") from None
        self.method = method.decode("latin-1")
        self.version = version
        headers = []
        length = None
        chunked = False
        connection = b""
        forwarded_for = b""
        real_ip = b""
        scheme = "http"
        websocket = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            value = value.strip()
            if name == b"content-length":
                if not value.isdigit():
                    raise BadRequest("bad Content-Length")
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = value.lower().endswith(b"chunked")
            elif name == b"connection":
                connection = value.lower()
            elif name == b"x-forwarded-for":
                forwarded_for = value
            elif name == b"x-real-ip":
                real_ip = value
            elif name == b"x-forwarded-proto":
                scheme = value.decode("latin-1").lower()
            elif name == b"upgrade":
                websocket = value.lower() == b"websocket"
            headers.append((name, value))
        self.headers = headers
        self.length = length
        self.chunked = chunked
        if version == b"HTTP/1.1":
            self.keep_alive = b"close" not in connection
        else:
            self.keep_alive = b"keep-alive" in connection
        self.forwarded_for = forwarded_for
        self.real_ip = real_ip
        self.scheme = scheme
        self.websocket = websocket

    def client(self, peer):
        """The client's address (see `Head.client`)."""
        if self.real_ip:
            return self.real_ip.decode("latin-1")
        if self.forwarded_for:
            return self.forwarded_for.rpartition(b",")[2].strip().decode("latin-1")
        return peer

    def path_query(self):
        """`(path, raw_path, query_string)` for an ASGI scope: `path` percent-decoded as
        UTF-8, the others as bytes."""
        raw, _, query = self.target.partition(b"?")
        if not raw.startswith(b"/") and b"://" in raw:
            raw = b"/" + raw.split(b"://", 1)[1].partition(b"/")[2]
        path = raw.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        return path, raw, query


class ChunkDecoder:
    """Decodes a chunked body fed in pieces as they arrive (the asyncio worker's path):
    `feed(data)` returns `(body_bytes, done, rest)`; `rest` is what came after the body."""

    __slots__ = ("raw", "chunk", "trailers")

    def __init__(self):
        self.raw = b""
        self.chunk = 0
        self.trailers = False

    def feed(self, data):
        raw = self.raw + data if self.raw else data
        out = []
        while True:
            if self.trailers:
                end = raw.find(b"\r\n")
                if end < 0:
                    break
                line, raw = raw[:end], raw[end + 2 :]
                if not line:
                    self.raw = b""
                    return b"".join(out), True, raw
                continue
            if self.chunk == 0:
                end = raw.find(b"\r\n")
                if end < 0:
                    if len(raw) > MAX_HEAD:
                        raise BadRequest("chunk line too long")
                    break
                size = raw[:end].split(b";", 1)[0].strip()
                try:
                    size = int(size, 16)
                except ValueError:
                    raise BadRequest("bad chunk size") from None
                raw = raw[end + 2 :]
                if size == 0:
                    self.trailers = True
                    continue
                self.chunk = size + 2
            if not raw:
                break
            take = raw[: self.chunk]
            raw = raw[len(take) :]
            self.chunk -= len(take)
            if self.chunk >= 2:
                out.append(take)
            else:
                # the CRLF after the data is (partly) in `take`
                keep = len(take) - (2 - self.chunk)
                if keep > 0:
                    out.append(take[:keep])
        self.raw = raw
        return b"".join(out), False, b""
