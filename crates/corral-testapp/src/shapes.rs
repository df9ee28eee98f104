//! Answers shaped the way other app servers write them, so tests can check that each reaches
//! the client intact: chunked bodies, hop-by-hop fields, heads split across writes, many
//! fields, HTTP/1.0, a worker closing after its answer, and bodies cut short or stalled.

use std::io::{self, Write};
use std::time::Duration;

/// Writes the answer for `path` when it is one of the shapes (`n` sizes the body).
/// `Some(Ok(true))` when the connection may carry another request; `None` for other paths.
pub fn answer<S: Write>(conn: &mut S, path: &str, n: usize) -> Option<io::Result<bool>> {
    let body = vec![b'x'; n];
    let result = match path {
        "/chunked" => chunked(conn, &body),
        "/hop-fields" => send(
            conn,
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\n\r\nok\n",
            true,
        ),
        // Plain framing, with fields a proxy replaces or drops.
        "/dated" => send(
            conn,
            b"HTTP/1.1 200 OK\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nContent-Length: 3\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\nok\n",
            true,
        ),
        "/split-head" => split_head(conn),
        "/many-fields" => {
            let mut head = String::from("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n");
            for i in 0..n {
                head.push_str(&format!("X-Field-{i}: {i}\r\n"));
            }
            head.push_str("\r\nok\n");
            send(conn, head.as_bytes(), true)
        }
        // No length, no chunks: the body ends when the worker closes.
        "/until-close" => send(conn, b"HTTP/1.1 200 OK\r\n\r\nuntil close\n", false),
        "/http10" => send(conn, b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nold\n", false),
        "/worker-close" => send(
            conn,
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbye\n",
            false,
        ),
        // Reads the request and closes without a word.
        "/drop" => Ok(false),
        // Promises `n` bytes, sends half, closes.
        "/truncate" => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n");
            let mut out = head.into_bytes();
            out.extend_from_slice(&body[..n / 2]);
            send(conn, &out, false)
        }
        // Promises `2n` bytes, sends `n`, and never the rest.
        "/stall" => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 2 * n);
            let mut out = head.into_bytes();
            out.extend_from_slice(&body);
            if let Err(e) = send(conn, &out, true) {
                return Some(Err(e));
            }
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        _ => return None,
    };
    Some(result)
}

fn send<S: Write>(conn: &mut S, bytes: &[u8], keep: bool) -> io::Result<bool> {
    conn.write_all(bytes)?;
    conn.flush()?;
    Ok(keep)
}

/// The body in chunks of up to 1000 bytes, with the head and each chunk written apart.
fn chunked<S: Write>(conn: &mut S, body: &[u8]) -> io::Result<bool> {
    send(
        conn,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
        true,
    )?;
    for part in body.chunks(1000) {
        let mut out = format!("{:x}\r\n", part.len()).into_bytes();
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
        send(conn, &out, true)?;
    }
    send(conn, b"0\r\n\r\n", true)
}

/// A head that arrives in two writes 100 ms apart, so corral reads it in parts.
fn split_head<S: Write>(conn: &mut S) -> io::Result<bool> {
    send(conn, b"HTTP/1.1 200 OK\r\nContent-Le", true)?;
    std::thread::sleep(Duration::from_millis(100));
    send(conn, b"ngth: 6\r\n\r\nsplit\n", true)
}
