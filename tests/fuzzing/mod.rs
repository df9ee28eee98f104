//! The network fuzzer's parts (`tests/fuzz.rs`): a seeded generator, the tally of what
//! each connection did, and the HTTP/1.1 and HTTP/2 case makers.

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub mod h1;
pub mod h2;

/// Past the longest configured timeout (3 s) with room for a loaded machine.
pub const HANG: Duration = Duration::from_secs(12);

pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// splitmix64: a small deterministic generator, one per case.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, case: u64) -> Rng {
        Rng(seed ^ case.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// How one connection went.
#[derive(Default)]
pub struct Tally {
    pub cases: AtomicUsize,
    pub answered: AtomicUsize,
    pub hung: AtomicUsize,
    pub refused_connect: AtomicUsize,
    pub statuses: Mutex<HashMap<u16, usize>>,
    pub hangs: Mutex<Vec<String>>,
}

impl Tally {
    pub fn status(&self, status: u16) {
        if let Ok(mut s) = self.statuses.lock() {
            *s.entry(status).or_default() += 1;
        }
    }
}

/// Reads until the peer closes; false when it is still open after `HANG`.
pub fn read_to_close<S: Read>(stream: &mut S, got: &mut Vec<u8>) -> bool {
    let start = Instant::now();
    let mut chunk = [0u8; 16384];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
        if start.elapsed() > HANG {
            return false;
        }
    }
}

/// Runs `cases` in `threads` threads, each case with its own generator.
pub fn run_cases(cases: u64, threads: usize, seed: u64, case: impl Fn(&mut Rng) + Sync) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as u64;
                if i >= cases {
                    return;
                }
                case(&mut Rng::new(seed, i));
            });
        }
    });
}
