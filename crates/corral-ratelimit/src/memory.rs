//! The in-process store: TATs in shards, each behind its own short lock (never held across
//! an `.await`), so requests of different keys rarely meet. Bounded: a full shard first
//! drops keys whose TAT has passed (losslessly: such a key is as good as new), then the key
//! closest to passing, so a spray of distinct addresses cannot grow memory past `max_keys`.

use std::collections::HashMap;
use std::hash::BuildHasher;

use parking_lot::Mutex;

use crate::gcra::{self, Decision, Rate};

const SHARDS: usize = 64;

/// TATs of every key, in microseconds since the store's start.
pub struct MemoryStore {
    shards: Vec<Mutex<HashMap<Box<[u8]>, u64>>>,
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl MemoryStore {
    /// A store of at most `max_keys` keys.
    pub fn new(max_keys: usize) -> MemoryStore {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: max_keys.div_ceil(SHARDS).max(1),
            hasher: Default::default(),
        }
    }

    /// Decides one request of `key` at `now` and records it when allowed.
    pub fn decide(&self, key: &[u8], rate: Rate, now: u64) -> Decision {
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        let mut map = shard.lock();
        let decision = gcra::decide(rate, map.get(key).copied(), now);
        if decision.allowed {
            if let Some(tat) = map.get_mut(key) {
                *tat = decision.tat;
            } else {
                if map.len() >= self.per_shard {
                    make_room(&mut map, now);
                }
                map.insert(key.into(), decision.tat);
            }
        }
        decision
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Frees at least one place in a full shard.
fn make_room(map: &mut HashMap<Box<[u8]>, u64>, now: u64) {
    let before = map.len();
    map.retain(|_, tat| *tat > now);
    if map.len() == before {
        if let Some(key) = map
            .iter()
            .min_by_key(|(_, tat)| **tat)
            .map(|(k, _)| k.clone())
        {
            map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn keys_are_limited_apart() {
        let store = MemoryStore::new(1000);
        let rate = Rate::new(1, Duration::from_secs(1), 2);
        assert!(store.decide(b"a", rate, 0).allowed);
        assert!(store.decide(b"a", rate, 0).allowed);
        assert!(!store.decide(b"a", rate, 0).allowed);
        assert!(store.decide(b"b", rate, 0).allowed);
    }

    #[test]
    fn a_spray_of_keys_stays_within_max_keys() {
        let store = MemoryStore::new(10_000);
        let rate = Rate::new(1, Duration::from_secs(60), 1);
        for i in 0u32..200_000 {
            store.decide(&i.to_be_bytes(), rate, u64::from(i));
        }
        let held = store.len();
        assert!(held <= 10_000 + SHARDS, "{held} keys held");
        assert!(held > 5_000, "{held} keys held");
    }
}
