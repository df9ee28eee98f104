//! The request phases, each driven with a fake client side (`FakeClient`, the
//! [`ClientSide`] seam) or an HTTP/1.1 session over an in-memory pipe, against in-memory
//! workers (scripted tasks on the other end of a `tokio::io::duplex`), on a paused tokio
//! clock: no socket, no process, and timers that move only when every task waits.
//! pingora's own read timeouts (the pool's `timeout`) run on its timer thread, in real time.

mod conns;
mod queue;
mod relay;
mod retry;
mod size;
mod upgrade;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use corral_routes::{
    Address, Backend, BackendInfo, PoolRoute, Recycle, Report, Reporter, RoutingTable,
    SharedRoutes, WorkerId,
};
use corral_telemetry::Metrics;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use pingora_error::Result;
use pingora_http::{RequestHeader, ResponseHeader};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

use super::accept::{Connection, ConnectionSlot};
use super::client::ClientSide;
use super::conns::ConnMap;
use super::context::Exchange;
use super::failure::Failure;
use super::identity::{ClientIdentity, Peer};
use super::relay::Done;
use super::{Forwarder, Tunnels};
use crate::settings::ProxySettings;

/// What an in-memory worker does with each connection it is given.
pub(super) type Script =
    Arc<dyn Fn(DuplexStream, Arc<Seen>) -> BoxFuture<'static, ()> + Send + Sync>;

/// What one in-memory worker saw.
#[derive(Default)]
pub(super) struct Seen {
    /// Connections opened to it.
    pub(super) connections: AtomicUsize,
    /// The requests it read whole, as text (head and body).
    pub(super) requests: Mutex<Vec<String>>,
}

/// One in-memory worker: its address (only a name here), its script, what it saw.
pub(super) struct MemoryWorker {
    pub(super) addr: SocketAddr,
    script: Option<Script>,
    pub(super) seen: Arc<Seen>,
}

/// A forwarder with one pool of in-memory workers, and the supervisor's end of the reports.
pub(super) struct World {
    pub(super) forwarder: Arc<Forwarder>,
    pub(super) routes: SharedRoutes,
    pub(super) reports: mpsc::UnboundedReceiver<Report>,
    pub(super) workers: Vec<Arc<MemoryWorker>>,
}

/// A worker that refuses connections (nothing listens).
pub(super) fn refuses() -> Option<Script> {
    None
}

/// A worker that reads each request and writes `answer`, then waits for the next.
pub(super) fn answers(answer: &'static [u8]) -> Option<Script> {
    Some(Arc::new(move |mut stream, seen| {
        Box::pin(async move {
            while read_request(&mut stream, &seen).await {
                if stream.write_all(answer).await.is_err() {
                    return;
                }
            }
        })
    }))
}

/// A worker that reads the request and closes without a word.
pub(super) fn closes_after_request() -> Option<Script> {
    Some(Arc::new(|mut stream, seen| {
        Box::pin(async move {
            read_request(&mut stream, &seen).await;
        })
    }))
}

/// A worker that reads the request, writes `part` of an answer and closes.
pub(super) fn breaks_off_after(part: &'static [u8]) -> Option<Script> {
    Some(Arc::new(move |mut stream, seen| {
        Box::pin(async move {
            if read_request(&mut stream, &seen).await {
                let _ = stream.write_all(part).await;
            }
        })
    }))
}

/// A worker that reads the request and never answers.
pub(super) fn hangs() -> Option<Script> {
    Some(Arc::new(|mut stream, seen| {
        Box::pin(async move {
            read_request(&mut stream, &seen).await;
            std::future::pending::<()>().await;
            drop(stream);
        })
    }))
}

/// Reads one request (its head, and a body of `Content-Length` bytes) and records it;
/// false at the end of the connection.
async fn read_request(stream: &mut DuplexStream, seen: &Seen) -> bool {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => return false,
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    if stream.read_exact(&mut body).await.is_err() {
        return false;
    }
    seen.requests
        .lock()
        .push(head + &String::from_utf8_lossy(&body));
    true
}

/// `[pools.web]` with `pool` added, and `server` lines; the forwarder's settings are made
/// from it as from any corral.toml.
fn config(server: &str, pool: &str) -> corral_config::Config {
    let text = format!("[server]\n{server}\n[pools.web]\ncommand = [\"app\"]\n{pool}\n");
    corral_config::parse(Path::new("test.toml"), &text).expect("valid test config")
}

impl World {
    /// One pool whose workers run `scripts`, configured by `pool` lines (`concurrency`,
    /// `queue_timeout`, `timeout`...).
    pub(super) fn new(scripts: Vec<Option<Script>>, pool: &str) -> World {
        World::with_server(scripts, pool, "")
    }

    pub(super) fn with_server(scripts: Vec<Option<Script>>, pool: &str, server: &str) -> World {
        let config = config(server, pool);
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let workers: Vec<Arc<MemoryWorker>> = scripts
            .into_iter()
            .enumerate()
            .map(|(i, script)| {
                Arc::new(MemoryWorker {
                    addr: SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)),
                    script,
                    seen: Arc::default(),
                })
            })
            .collect();
        let p = &config.pools[0];
        let now = Instant::now();
        let backends = workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                Arc::new(Backend::new(BackendInfo {
                    id: WorkerId(i as u64 + 1),
                    pool: Arc::from("web"),
                    worker: i as u32 + 1,
                    pid: 100 + i as u32,
                    addr: Address::Tcp(w.addr),
                    started: now,
                    max_requests: p.max_requests,
                    recycle: Recycle::new(p.max_requests, Duration::from_secs(1), now),
                }))
            })
            .collect();
        let route = Arc::new(PoolRoute {
            name: Arc::from("web"),
            backends,
            metrics: metrics.pool("web"),
            concurrency: p.concurrency,
            queue_size: p.queue_size,
            queue_timeout: p.queue_timeout,
            timeout: p.timeout,
            queue: Arc::default(),
            health: p.health.clone(),
            response_buffering: p.response_buffering,
            request_buffering: p.request_buffering,
        });
        let routes: SharedRoutes = Arc::new(ArcSwap::from_pointee(RoutingTable {
            pools: vec![route.clone()],
            active: route,
            previous: None,
            split: Vec::new(),
            generation: 1,
            steered: Arc::from(""),
            lanes: Vec::new(),
        }));
        let settings = ProxySettings::new(&config, None, &metrics);
        let (reporter, reports) = Reporter::channel();
        let dial_workers = workers.clone();
        let mut conns = ConnMap::default();
        conns.memory = Some(Arc::new(move |addr: &Address| {
            let worker = dial_workers
                .iter()
                .find(|w| matches!(addr, Address::Tcp(a) if *a == w.addr))
                .ok_or_else(|| io::Error::from(io::ErrorKind::ConnectionRefused))?;
            let Some(script) = &worker.script else {
                return Err(io::Error::from(io::ErrorKind::ConnectionRefused));
            };
            worker.seen.connections.fetch_add(1, Ordering::SeqCst);
            let (ours, theirs) = tokio::io::duplex(64 * 1024);
            tokio::spawn(script(theirs, worker.seen.clone()));
            Ok(Box::new(ours) as pingora_core::protocols::Stream)
        }));
        let conns = Arc::new(conns);
        let forwarder = Forwarder {
            routes: routes.clone(),
            settings: Arc::new(ArcSwap::from_pointee(settings)),
            metrics,
            reporter,
            connections: Arc::default(),
            tunnels: Arc::new(Tunnels::default()),
            own_conns: conns.clone(),
            conns,
            tls: None,
            challenges: None,
            static_metrics: Arc::default(),
        };
        World {
            forwarder: Arc::new(forwarder),
            routes,
            reports,
            workers,
        }
    }

    /// The pool's route in the current table.
    pub(super) fn route(&self) -> Arc<PoolRoute> {
        self.routes.load().active.clone()
    }

    /// A client connection from 192.0.2.7.
    pub(super) fn connection(&self) -> Connection {
        let peer = Peer {
            addr: Some("192.0.2.7".parse().expect("ip")),
            local_port: Some(8080),
            tls: false,
        };
        Connection {
            identity: Arc::new(ClientIdentity::of_peer(peer, &[])),
            slot: Arc::new(ConnectionSlot::for_tests(&self.forwarder)),
            peer,
        }
    }

    /// Runs `client`'s request through every phase up to the end of the worker's part.
    pub(super) async fn exchange(
        &self,
        client: &mut FakeClient,
    ) -> (Exchange, std::result::Result<Done, Failure>) {
        let connection = self.connection();
        self.forwarder.exchange(client, &connection, false).await
    }

    /// Runs `client`'s request as the connection loop does after a failure or an answer:
    /// the refusal written, the access line counted. The status the client got.
    pub(super) async fn serve(&self, client: &mut FakeClient) -> u16 {
        let (exchange, result) = self.exchange(client).await;
        match result {
            Ok(Done::Answered) => {
                let status = client.response_written().map_or(0, |h| h.status.as_u16());
                self.forwarder.finish(&*client, &exchange, status, None);
            }
            Ok(_) => panic!("a fake client gets neither a plain relay nor a tunnel"),
            Err(failure) => {
                self.forwarder.fail(client, &exchange, failure).await;
            }
        }
        client.response_written().map_or(0, |h| h.status.as_u16())
    }
}

/// The client side of one exchange, in memory: a request head and body chunks in, the
/// answer heads and body out. Like an HTTP/2 stream, it takes no raw answer bytes, so the
/// answer goes through the session path of `relay`.
pub(super) struct FakeClient {
    head: RequestHeader,
    raw: Option<Bytes>,
    body: VecDeque<Bytes>,
    keepalive: bool,
    /// Informational heads (1xx) then the final one, as written.
    pub(super) heads: Vec<ResponseHeader>,
    pub(super) body_out: Vec<u8>,
    pub(super) finished: bool,
    upgrade: bool,
}

impl FakeClient {
    /// A request of `method` for `path` with `fields`, and `body` (sent with a
    /// `Content-Length` when not empty).
    pub(super) fn new(method: &str, path: &str, fields: &[(&str, &str)], body: &[u8]) -> Self {
        let mut head = RequestHeader::build(method, path.as_bytes(), None).expect("head");
        head.insert_header("host", "example.test").expect("host");
        for (name, value) in fields {
            head.append_header(name.to_string(), *value).expect("field");
        }
        if !body.is_empty() {
            head.insert_header("content-length", body.len().to_string())
                .expect("length");
        }
        let mut raw = format!("{method} {path} HTTP/1.1\r\nhost: example.test\r\n");
        for (name, value) in fields {
            raw += &format!("{name}: {value}\r\n");
        }
        if !body.is_empty() {
            raw += &format!("content-length: {}\r\n", body.len());
        }
        raw += "\r\n";
        let upgrade = fields
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("upgrade"));
        FakeClient {
            head,
            raw: Some(Bytes::from(raw)),
            body: (!body.is_empty())
                .then(|| Bytes::copy_from_slice(body))
                .into_iter()
                .collect(),
            keepalive: true,
            heads: Vec::new(),
            body_out: Vec::new(),
            finished: false,
            upgrade,
        }
    }

    /// `GET path`.
    pub(super) fn get(path: &str) -> Self {
        FakeClient::new("GET", path, &[], b"")
    }

    /// The final answer's status, 0 when none was written.
    pub(super) fn status(&self) -> u16 {
        self.response_written().map_or(0, |h| h.status.as_u16())
    }
}

impl ClientSide for FakeClient {
    const RAW_ANSWER: bool = false;

    fn req_header(&self) -> &RequestHeader {
        &self.head
    }

    fn req_header_mut(&mut self) -> &mut RequestHeader {
        &mut self.head
    }

    fn raw_head(&self) -> Option<Bytes> {
        self.raw.clone()
    }

    fn is_body_empty(&mut self) -> bool {
        self.body.is_empty()
    }

    fn is_upgrade_req(&self) -> bool {
        self.upgrade
    }

    fn will_keepalive(&self) -> bool {
        self.keepalive
    }

    fn set_server_keepalive(&mut self, secs: Option<u64>) {
        self.keepalive = secs.is_some();
    }

    fn response_written(&self) -> Option<&ResponseHeader> {
        self.heads.last()
    }

    fn body_bytes_sent(&self) -> usize {
        self.body_out.len()
    }

    async fn read_body_bytes(&mut self) -> Result<Option<Bytes>> {
        Ok(self.body.pop_front())
    }

    async fn write_continue(&mut self) -> Result<()> {
        Ok(())
    }

    async fn write_response_header(&mut self, head: Box<ResponseHeader>) -> Result<()> {
        self.heads.push(*head);
        Ok(())
    }

    async fn write_body(&mut self, bytes: &[u8]) -> Result<()> {
        self.body_out.extend_from_slice(bytes);
        Ok(())
    }

    async fn finish_body(&mut self) -> Result<()> {
        self.finished = true;
        Ok(())
    }
}
