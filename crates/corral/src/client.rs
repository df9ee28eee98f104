//! The CLI's side of the control socket: one HTTP/1.1 request over a Unix socket to the
//! running master: a control verb (`corral-control`'s [`Request`]) or `GET /status`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_config::Config;
use corral_control::{Reply, Request};

/// How long the CLI waits for the master.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Exit code when no corral is running (EX_UNAVAILABLE).
pub const EXIT_NOT_RUNNING: u8 = 69;
/// Exit code when the socket's permissions refuse us (EX_NOPERM).
pub const EXIT_NO_PERMISSION: u8 = 77;

/// Why the master could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket.
    #[error("no corral is running with control socket {0} (start one with `corral run`, or pass --socket PATH)")]
    NotRunning(PathBuf),
    /// The socket exists but we may not use it.
    #[error("permission denied on control socket {0}: run as the user corral runs as, or as root")]
    Permission(PathBuf),
    /// Anything else on the way.
    #[error("control socket {path}: {reason}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// What failed.
        reason: std::io::Error,
    },
    /// The master answered something that is not HTTP.
    #[error("control socket {0}: unexpected answer")]
    BadAnswer(PathBuf),
}

impl ClientError {
    /// The documented exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::NotRunning(_) => EXIT_NOT_RUNNING,
            ClientError::Permission(_) => EXIT_NO_PERMISSION,
            _ => 1,
        }
    }
}

/// The socket to talk to: `--socket`, else the config's `server.control_socket`, else the
/// default under the default runtime dir. A config that does not load is no obstacle here:
/// `corral reload` of a broken file must still reach the master, which reports the errors.
pub fn socket_path(explicit: Option<&Path>, config: Option<&Config>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| config.and_then(|c| c.server.control_socket.clone()))
        .unwrap_or_else(|| corral_config::default_runtime_dir().join("control.sock"))
}

/// Asks the master to carry out `request` and returns its reply, waiting as long as the
/// verb's work takes (`corral switch` waits for a pool to start and pass its checks).
pub fn send(socket: &Path, request: &Request) -> Result<Reply, ClientError> {
    let (status, body) = exchange(
        socket,
        Request::METHOD,
        &request.target(),
        request.patience(),
    )?;
    Ok(corral_control::from_http(status, &body))
}

/// Sends `method path` and returns the status and body.
pub fn request(socket: &Path, method: &str, path: &str) -> Result<(u16, String), ClientError> {
    exchange(socket, method, path, TIMEOUT)
}

/// One HTTP/1.1 exchange on the control socket, waiting up to `wait` for the answer.
fn exchange(
    socket: &Path,
    method: &str,
    path: &str,
    wait: Duration,
) -> Result<(u16, String), ClientError> {
    let io = |reason: std::io::Error| ClientError::Io {
        path: socket.to_path_buf(),
        reason,
    };
    let mut stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ClientError::NotRunning(socket.to_path_buf())
        }
        std::io::ErrorKind::PermissionDenied => ClientError::Permission(socket.to_path_buf()),
        _ => io(e),
    })?;
    stream.set_read_timeout(Some(wait)).map_err(io)?;
    let head = format!("{method} {path} HTTP/1.1\r\nHost: corral\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(head.as_bytes()).map_err(io)?;
    let bad = || ClientError::BadAnswer(socket.to_path_buf());
    // Read the head, then exactly Content-Length bytes: the server may keep the connection.
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head_end, length) = loop {
        let n = stream.read(&mut chunk).map_err(io)?;
        if n == 0 {
            return Err(bad());
        }
        answer.extend_from_slice(&chunk[..n]);
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(bad)?;
            break (end + 4, length);
        }
    };
    while answer.len() < head_end + length {
        let n = stream.read(&mut chunk).map_err(io)?;
        if n == 0 {
            return Err(bad());
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&answer[..head_end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let body = String::from_utf8_lossy(&answer[head_end..head_end + length]).into_owned();
    Ok((status, body))
}
