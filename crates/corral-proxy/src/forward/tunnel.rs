//! Upgraded connections (WebSocket): once the worker has answered 101, bytes are copied both
//! ways until either side closes, the tunnel has been silent for `idle_timeout`, or a drain
//! deadline closes it. A WebSocket closed at a drain deadline gets a close frame first, at
//! the next frame boundary of what the worker was sending (`frames`): 1012 "service
//! restart" when a reload replaces its worker, 1001 "going away" for every other drain
//! (a recycle, a switch or a pool stopped, a scale down, corral itself stopping); a browser
//! sees a clean close and reconnects. An open tunnel holds its two sockets and, while
//! quiet, no buffer
//! (see `copy`); pingora's HTTP sessions would hold 64 KiB per direction (and a fixed 60 s
//! read timeout) for as long as it lives.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use corral_routes::ExitReason;
use pingora_core::protocols::http::v1::client::HttpSession as UpstreamSession;
use pingora_core::protocols::http::v1::server::HttpSession as DownstreamSession;
use pingora_core::protocols::Stream;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::time::Instant;

use super::copy::{self, Meter};
use super::frames;

/// How long closing one side may wait for its unsent bytes to go out.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

/// How long a WebSocket closed at a drain deadline may take to reach the end of the frame
/// the worker is sending, for the close frame to go in after it; past this, a bare close.
const FRAME_END_WAIT: Duration = Duration::from_secs(2);

/// The close code for a worker a reload replaces (RFC 6455 registry: "Service Restart").
const SERVICE_RESTART: u16 = 1012;
/// The close code for every other drain ("Going Away").
const GOING_AWAY: u16 = 1001;

/// The close code for a WebSocket whose worker is drained because of `why`: a reload
/// restarts the service (the client may come back at once, to the new config's worker);
/// anything else takes this worker away.
fn close_code(why: ExitReason) -> u16 {
    match why {
        ExitReason::Reload => SERVICE_RESTART,
        _ => GOING_AWAY,
    }
}

/// The two ends of an upgraded connection, taken out of their HTTP sessions.
pub struct Tunnel {
    client: Stream,
    worker: Stream,
    early_from_client: Option<Bytes>,
    early_from_worker: Option<Bytes>,
    /// The client asked for `Upgrade: websocket`: the tunnel carries WebSocket frames.
    websocket: bool,
}

/// Why a tunnel ended.
#[derive(Debug)]
pub enum End {
    /// One side closed, and the other's remaining bytes went through.
    Closed,
    /// No byte either way for `idle_timeout`.
    Idle,
    /// A drain deadline (the worker's, or corral's own) closed it; with the close code
    /// the client was sent, when it was a WebSocket and the frame it was in ended in time.
    Drained(Option<u16>),
    /// A socket failed.
    Failed(io::Error),
}

/// What a tunnel carried, and how it ended.
pub struct Carried {
    pub to_client: u64,
    pub to_worker: u64,
    pub end: End,
}

impl Tunnel {
    /// Takes the sockets out of the sessions, keeping bytes that arrived with the handshake
    /// (a client or worker that spoke first) to hand over before copying starts.
    pub fn open(mut client: DownstreamSession, mut worker: UpstreamSession) -> Tunnel {
        let websocket = client
            .req_header()
            .headers
            .get(http::header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
        let early_from_client = ready_now(client.read_body_bytes()).and_then(|r| r.ok().flatten());
        let early_from_worker = ready_now(worker.read_body_ref())
            .and_then(|r| r.ok().flatten().map(Bytes::copy_from_slice));
        Tunnel {
            client: client.into_inner(),
            worker: worker.into_inner(),
            early_from_client,
            early_from_worker,
            websocket,
        }
    }

    /// Copies bytes both ways until the tunnel ends; the worker's drain (`worker_closing`
    /// set to why) or corral's own (`corral_closing` turning true) ends it early, a
    /// WebSocket with a close frame first.
    pub async fn run(
        mut self,
        idle: Duration,
        worker_closing: watch::Receiver<Option<ExitReason>>,
        corral_closing: watch::Receiver<bool>,
    ) -> Carried {
        let websocket = self.websocket;
        let from_client = AtomicU64::new(0);
        let from_worker = AtomicU64::new(0);
        let last = AtomicU64::new(0);
        let start = Instant::now();
        let cut = AtomicBool::new(false);
        let mut frame_end = false;
        // The worker's first bytes, sent with its 101, are frames too.
        let mut back_frames = frames::Frames::default();
        if let Some(early) = &self.early_from_worker {
            back_frames.follow(early);
        }
        let end = match self.hand_over_early(&from_client, &from_worker).await {
            Err(e) => End::Failed(e),
            Ok(()) => {
                let copy = copy::both_ways(
                    &mut self.client,
                    &mut self.worker,
                    Meter {
                        bytes: &from_client,
                        last: &last,
                        start,
                    },
                    Meter {
                        bytes: &from_worker,
                        last: &last,
                        start,
                    },
                    websocket.then_some((back_frames, &cut)),
                );
                let mut copy = pin!(copy);
                let end = tokio::select! {
                    copied = &mut copy => match copied {
                        Ok(_) => End::Closed,
                        Err(e) => End::Failed(e),
                    },
                    () = until_silent(&last, start, idle) => End::Idle,
                    why = until_set(worker_closing) => End::Drained(Some(close_code(why))),
                    () = until_true(corral_closing) => End::Drained(Some(GOING_AWAY)),
                };
                if websocket && matches!(end, End::Drained(_)) {
                    // The close frame goes in where the worker's frame ends.
                    cut.store(true, Ordering::Relaxed);
                    frame_end = matches!(
                        tokio::time::timeout(FRAME_END_WAIT, &mut copy).await,
                        Ok(Ok(copy::Copied::Cut))
                    );
                }
                end
            }
        };
        let end = match end {
            End::Drained(Some(code)) if frame_end => {
                let reason = if code == SERVICE_RESTART {
                    "service restart"
                } else {
                    "going away"
                };
                let frame = frames::close_frame(code, reason);
                let sent = async {
                    self.client.write_all(&frame).await?;
                    self.client.flush().await
                };
                match tokio::time::timeout(SHUTDOWN_WAIT, sent).await {
                    Ok(Ok(())) => End::Drained(Some(code)),
                    _ => End::Drained(None),
                }
            }
            End::Drained(_) => End::Drained(None),
            end => end,
        };
        if !matches!(end, End::Closed) {
            for side in [&mut self.client, &mut self.worker] {
                let _ = tokio::time::timeout(SHUTDOWN_WAIT, side.shutdown()).await;
            }
        }
        Carried {
            to_client: from_worker.into_inner(),
            to_worker: from_client.into_inner(),
            end,
        }
    }

    async fn hand_over_early(
        &mut self,
        to_worker: &AtomicU64,
        to_client: &AtomicU64,
    ) -> io::Result<()> {
        if let Some(bytes) = self.early_from_client.take() {
            self.worker.write_all(&bytes).await?;
            self.worker.flush().await?;
            to_worker.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        if let Some(bytes) = self.early_from_worker.take() {
            self.client.write_all(&bytes).await?;
            self.client.flush().await?;
            to_client.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Returns once nothing was read either way for `idle`. It wakes once per `idle` at most:
/// reads only stamp the time, and the timer looks at the stamp when it fires.
async fn until_silent(last: &AtomicU64, start: Instant, idle: Duration) {
    loop {
        let stamp = start + Duration::from_millis(last.load(Ordering::Relaxed));
        let quiet_until = stamp + idle;
        if Instant::now() >= quiet_until {
            return;
        }
        tokio::time::sleep_until(quiet_until).await;
    }
}

/// Returns the value once `flag` is set; never, if its sender is gone.
async fn until_set<T: Copy>(mut flag: watch::Receiver<Option<T>>) -> T {
    let set = flag
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|set| *set);
    match set {
        Some(value) => value,
        None => std::future::pending().await,
    }
}

/// Returns once `flag` turns true; never, if its sender is gone.
async fn until_true(mut flag: watch::Receiver<bool>) {
    if flag.wait_for(|closing| *closing).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Polls a future once: its value if it needs no waiting. A read that would wait leaves
/// the socket's bytes where they are, for the copy loop to read.
fn ready_now<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => Some(value),
        Poll::Pending => None,
    }
}
