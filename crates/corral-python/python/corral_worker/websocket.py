"""RFC 6455 for the asyncio worker: the handshake answer and the framing, in pure Python.

corral checks the upgrade request and then tunnels the bytes both ways, so what arrives here
after the 101 is the client's frames as it sent them: masked, perhaps fragmented, with pings
and a close among them. `Frames` turns bytes into whole messages and control frames;
`frame` builds the server's (unmasked) frames.
"""

import base64
import hashlib
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: A message larger than this closes the connection with 1009.
MAX_MESSAGE = 16 << 20

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class ProtocolError(Exception):
    """The peer broke RFC 6455: close with `code`."""

    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def accept_key(key):
    """`Sec-WebSocket-Accept` for the client's `Sec-WebSocket-Key`."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def frame(opcode, payload):
    """One final, unmasked frame."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def close_frame(code, reason=""):
    if code is None:
        return frame(CLOSE, b"")
    return frame(CLOSE, struct.pack("!H", code) + reason.encode("utf-8")[:123])


def unmask(mask, data):
    """XORs `data` with the 4-byte `mask`, as one big-integer operation."""
    n = len(data)
    if n == 0:
        return data
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


class Frames:
    """Incremental frame reader: `feed(data)` returns the events that completed, each
    `(opcode, payload)` with TEXT/BINARY for whole (reassembled) messages."""

    __slots__ = ("buf", "parts", "kind", "size")

    def __init__(self):
        self.buf = b""
        self.parts = []
        self.kind = None
        self.size = 0

    def feed(self, data):
        buf = self.buf + data if self.buf else data
        events = []
        while True:
            if len(buf) < 2:
                break
            b0, b1 = buf[0], buf[1]
            fin = b0 & 0x80
            if b0 & 0x70:
                raise ProtocolError(1002, "reserved bits set")
            opcode = b0 & 0x0F
            if not b1 & 0x80:
                raise ProtocolError(1002, "client frame not masked")
            n = b1 & 0x7F
            at = 2
            if n == 126:
                if len(buf) < 4:
                    break
                n = struct.unpack_from("!H", buf, 2)[0]
                at = 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n = struct.unpack_from("!Q", buf, 2)[0]
                at = 10
            if n > MAX_MESSAGE:
                raise ProtocolError(1009, "frame too large")
            if len(buf) < at + 4 + n:
                break
            mask = buf[at : at + 4]
            payload = unmask(mask, buf[at + 4 : at + 4 + n])
            buf = buf[at + 4 + n :]
            if opcode >= 0x8:
                if not fin or n > 125:
                    raise ProtocolError(1002, "bad control frame")
                if opcode not in (CLOSE, PING, PONG):
                    raise ProtocolError(1002, "unknown opcode")
                events.append((opcode, payload))
                continue
            if opcode == CONTINUATION:
                if self.kind is None:
                    raise ProtocolError(1002, "continuation without a message")
            elif opcode in (TEXT, BINARY):
                if self.kind is not None:
                    raise ProtocolError(1002, "new message inside a fragmented one")
                self.kind = opcode
            else:
                raise ProtocolError(1002, "unknown opcode")
            self.size += n
            if self.size > MAX_MESSAGE:
                raise ProtocolError(1009, "message too large")
            self.parts.append(payload)
            if fin:
                message = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
                events.append((self.kind, message))
                self.parts = []
                self.kind = None
                self.size = 0
        self.buf = buf
        return events


def parse_close(payload):
    """`(code, reason)` of a close frame's payload (1005 when it has none)."""
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise ProtocolError(1002, "close payload of one byte")
    code = struct.unpack("!H", payload[:2])[0]
    if code < 1000 or code in (1004, 1005, 1006) or 1015 <= code < 3000 or code >= 5000:
        raise ProtocolError(1002, "bad close code")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(1007, "close reason not UTF-8") from None
    return code, reason
