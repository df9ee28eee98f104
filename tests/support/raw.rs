//! A raw HTTP/1.1 connection to corral, for requests a library client would tidy up and
//! answers it would hide (framing, hop-by-hop fields, a connection closed mid-body).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A raw connection to corral, for requests a library client would tidy up.
pub struct Raw {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
}

/// One response as read off the wire.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        Raw::of(TcpStream::connect(("127.0.0.1", port)).expect("connect to corral"))
    }

    /// A raw connection over `stream`, whose reads give up after 15 s.
    fn of(stream: TcpStream) -> Raw {
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to corral");
    }

    pub fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Reads one response; `head_only` for answers to HEAD. Bodies are sized or chunked.
    pub fn response(&mut self, head_only: bool) -> Response {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(
                self.fill(),
                "connection ended before a response head: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end);
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        let mut response = Response {
            status,
            head,
            body: Vec::new(),
        };
        if head_only || status < 200 || status == 204 || status == 304 {
            return response;
        }
        if let Some(length) = response.header("content-length") {
            let length: usize = length.parse().expect("content-length");
            while self.buf.len() < length {
                assert!(self.fill(), "connection ended inside a body");
            }
            response.body = self.buf.drain(..length).collect();
        } else if response
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            response.body = self.chunked_body();
        } else {
            while self.fill() {}
            response.body = std::mem::take(&mut self.buf);
        }
        response
    }

    /// Reads a chunked body to its last chunk (after its head was read).
    pub fn chunked_body(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let line = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                assert!(self.fill(), "connection ended inside a chunk");
            };
            let size = usize::from_str_radix(
                std::str::from_utf8(&self.buf[..line]).expect("chunk size"),
                16,
            )
            .expect("hex chunk size");
            self.buf.drain(..line + 2);
            while self.buf.len() < size + 2 {
                assert!(self.fill(), "connection ended inside a chunk");
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
            if size == 0 {
                return body;
            }
        }
    }

    /// Whether the server closed the connection (reads EOF within the read timeout).
    pub fn closed(&mut self) -> bool {
        !self.fill()
    }
}

impl Raw {
    /// Connects to `to` from the local address `from` (a loopback address such as
    /// 127.0.0.2 or ::1), so a test can play a trusted or an untrusted peer.
    pub fn connect_from(from: std::net::IpAddr, to: std::net::SocketAddr) -> Raw {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::for_address(to), Type::STREAM, None).expect("socket");
        socket
            .bind(&std::net::SocketAddr::new(from, 0).into())
            .expect("bind the source address");
        socket.connect(&to.into()).expect("connect to corral");
        Raw::of(TcpStream::from(socket))
    }
}
