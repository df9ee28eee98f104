//! Request ids: unique across hosts and restarts, and cheap to make (no syscall, no lock):
//! 64 random bits drawn once per process, then a counter. 32 hex digits, like a UUID.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static COUNTER: AtomicU64 = AtomicU64::new(0);
static PREFIX: OnceLock<u64> = OnceLock::new();

/// The per-process random part, from the kernel's generator; should `/dev/urandom` be
/// missing, a mix of the clock, the pid and std's per-process hash keys stands in.
fn prefix() -> u64 {
    *PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
        match read {
            Ok(()) => u64::from_le_bytes(bytes),
            Err(_) => {
                use std::hash::{BuildHasher, Hasher};
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u32(std::process::id());
                h.write_u128(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos()),
                );
                h.finish()
            }
        }
    })
}

/// A new id.
pub fn next() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Written digit by digit: `format!` costs more than the rest of the id on the hot path.
    let value = (u128::from(prefix()) << 64) | u128::from(n);
    // Into bytes first, then one copy: collecting chars into a `String` pushes (and
    // encodes) one at a time.
    let mut digits = [0u8; 32];
    for (i, digit) in digits.iter_mut().enumerate() {
        *digit = HEX[((value >> ((31 - i) * 4)) & 0xf) as usize];
    }
    // Always ASCII hex, so never empty.
    std::str::from_utf8(&digits).unwrap_or_default().to_owned()
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_distinct_and_fixed_width() {
        let (a, b) = (super::next(), super::next());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        let n = u64::from_str_radix(&b[16..], 16).expect("hex counter");
        assert_eq!(format!("{:016x}", n - 1), a[16..]);
        assert_eq!(a[..16], b[..16]);
    }
}
