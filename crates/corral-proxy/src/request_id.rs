//! Request ids: unique per process run and cheap to make (no syscall, no lock).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);
static PREFIX: OnceLock<u32> = OnceLock::new();

/// A new id: a per-run random prefix and a counter, 24 hex digits.
pub fn next() -> String {
    let prefix = *PREFIX.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        nanos ^ std::process::id().rotate_left(16)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Written digit by digit: `format!` costs more than the rest of the id on the hot path.
    let value = (u128::from(prefix) << 64) | u128::from(n);
    (0..24)
        .rev()
        .map(|digit| char::from(HEX[((value >> (digit * 4)) & 0xf) as usize]))
        .collect()
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_distinct_and_fixed_width() {
        let (a, b) = (super::next(), super::next());
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        let n = u64::from_str_radix(&b[8..], 16).expect("hex counter");
        assert_eq!(format!("{:016x}", n - 1), a[8..]);
        assert_eq!(a[..8], b[..8]);
    }
}
