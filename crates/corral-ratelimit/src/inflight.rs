//! In-flight caps: requests of one key at once, counted in shards like the memory store and
//! released by a guard however the request ends. Always per corral instance.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use parking_lot::Mutex;

const SHARDS: usize = 64;

/// Requests in flight per key.
pub struct InFlight {
    shards: Vec<Mutex<HashMap<Box<[u8]>, u32>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for InFlight {
    fn default() -> Self {
        InFlight {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: Default::default(),
        }
    }
}

/// One request's place under its key's cap; freed on drop.
pub struct InFlightGuard {
    store: Arc<InFlight>,
    key: Box<[u8]>,
}

impl InFlight {
    fn shard(&self, key: &[u8]) -> &Mutex<HashMap<Box<[u8]>, u32>> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    /// A place for one more request of `key`, unless `cap` are in flight already.
    pub fn enter(self: &Arc<Self>, key: &[u8], cap: u32) -> Option<InFlightGuard> {
        let mut map = self.shard(key).lock();
        let count = map.entry(key.into()).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(InFlightGuard {
            store: self.clone(),
            key: key.into(),
        })
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut map = self.store.shard(&self.key).lock();
        if let Some(count) = map.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_holds_and_places_come_back() {
        let store = Arc::new(InFlight::default());
        let a = store.enter(b"k", 2).expect("first");
        let _b = store.enter(b"k", 2).expect("second");
        assert!(store.enter(b"k", 2).is_none());
        assert!(store.enter(b"other", 2).is_some());
        drop(a);
        assert!(store.enter(b"k", 2).is_some());
    }
}
