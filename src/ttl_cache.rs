//! A bounded cache with a time to live, for the tenant registry: lookups of
//! tenant rows (and custom domains) by key, positive and negative.
//!
//! Entries expire `ttl` after insertion. When full, the oldest insertion is
//! evicted first (FIFO), in O(1) amortized. Not internally locked: the owner
//! wraps it in a mutex.
//!
//! Loads race invalidations: a lookup misses, calls its loader (a database
//! query, run without the lock), and meanwhile the row is deleted and the
//! cache invalidated; storing the loaded row afterwards would serve the
//! deleted row for a whole TTL. So every invalidation ([`TtlCache::remove`],
//! [`TtlCache::clear`]) bumps the cache's [`Generation`], a lookup takes the
//! generation when it misses, and [`TtlCache::insert_loaded`] stores its
//! result only if the generation has not moved since. One counter for the
//! whole cache: an invalidation of another key also drops an in-flight load
//! (one more miss later), which keeps the check O(1) and the memory bounded.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

pub struct TtlCache<V> {
    map: HashMap<Box<str>, Entry<V>>,
    /// Insertion order; stale records (for keys re-inserted or removed since)
    /// are skipped by comparing sequence numbers.
    order: VecDeque<(Box<str>, u64)>,
    capacity: usize,
    ttl: Duration,
    next_seq: u64,
    /// Invalidations so far.
    generation: u64,
}

/// How many invalidations a cache had seen when a load started (see
/// [`TtlCache::insert_loaded`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generation(u64);

struct Entry<V> {
    value: V,
    expires: Instant,
    seq: u64,
}

impl<V> TtlCache<V> {
    /// `capacity` 0 or `ttl` zero: nothing is ever kept.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        TtlCache {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity,
            ttl,
            next_seq: 0,
            generation: 0,
        }
    }

    /// Take this when a lookup misses, before loading.
    pub fn generation(&self) -> Generation {
        Generation(self.generation)
    }

    /// Stores a loaded value, unless the cache was invalidated since the
    /// load started (`started`): then the value may predate a change and
    /// is not kept. Returns whether it was stored.
    pub fn insert_loaded(
        &mut self,
        started: Generation,
        key: &str,
        value: V,
        now: Instant,
    ) -> bool {
        if started.0 != self.generation {
            return false;
        }
        self.insert(key, value, now);
        true
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The live value for `key`; an expired one is dropped.
    pub fn get(&mut self, key: &str, now: Instant) -> Option<&V> {
        let expired = match self.map.get(key) {
            None => return None,
            Some(entry) => entry.expires <= now,
        };
        if expired {
            self.map.remove(key);
            return None;
        }
        self.map.get(key).map(|e| &e.value)
    }

    pub fn insert(&mut self, key: &str, value: V, now: Instant) {
        if self.capacity == 0 || self.ttl.is_zero() {
            return;
        }
        if !self.map.contains_key(key) {
            while self.map.len() >= self.capacity {
                if !self.evict_oldest() {
                    break;
                }
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.map.insert(
            key.into(),
            Entry {
                value,
                expires: now + self.ttl,
                seq,
            },
        );
        self.order.push_back((key.into(), seq));
        // Re-inserted keys leave stale records behind; keep the queue bounded.
        if self.order.len() > 2 * self.capacity + 16 {
            let map = &self.map;
            self.order
                .retain(|(k, s)| map.get(k).is_some_and(|e| e.seq == *s));
        }
    }

    fn evict_oldest(&mut self) -> bool {
        while let Some((key, seq)) = self.order.pop_front() {
            if self.map.get(&key).is_some_and(|e| e.seq == seq) {
                self.map.remove(&key);
                return true;
            }
        }
        false
    }

    /// Invalidates `key`: removes it, and keeps out any load of any key
    /// started before.
    pub fn remove(&mut self, key: &str) -> Option<V> {
        self.generation = self.generation.wrapping_add(1);
        self.map.remove(key).map(|e| e.value)
    }

    /// Invalidates everything, loads in flight included.
    pub fn clear(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.map.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_the_ttl() {
        let t0 = Instant::now();
        let mut c = TtlCache::new(10, Duration::from_secs(5));
        c.insert("a", 1, t0);
        assert_eq!(c.get("a", t0 + Duration::from_secs(4)), Some(&1));
        assert_eq!(c.get("a", t0 + Duration::from_secs(5)), None);
        assert!(c.is_empty());
    }

    #[test]
    fn size_is_bounded_and_oldest_goes_first() {
        let t0 = Instant::now();
        let mut c = TtlCache::new(3, Duration::from_secs(60));
        for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
            c.insert(k, i, t0);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("a", t0), None);
        assert_eq!(c.get("d", t0), Some(&3));
        // Re-inserting refreshes the value without growing the cache.
        c.insert("b", 10, t0);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("b", t0), Some(&10));
    }

    #[test]
    fn a_flood_keeps_memory_bounded() {
        let t0 = Instant::now();
        let mut c = TtlCache::new(100, Duration::from_secs(60));
        for i in 0..100_000 {
            c.insert(&format!("k{i}"), i, t0);
            c.insert("hot", 0, t0);
        }
        assert!(c.len() <= 100);
        assert!(c.order.len() <= 2 * 100 + 16);
    }

    #[test]
    fn zero_ttl_or_capacity_keeps_nothing() {
        let t0 = Instant::now();
        let mut c = TtlCache::new(10, Duration::ZERO);
        c.insert("a", 1, t0);
        assert!(c.is_empty());
        let mut c = TtlCache::new(0, Duration::from_secs(1));
        c.insert("a", 1, t0);
        assert!(c.is_empty());
    }

    #[test]
    fn a_load_racing_an_invalidation_is_not_stored() {
        let t0 = Instant::now();
        let mut c = TtlCache::new(10, Duration::from_secs(60));
        // No invalidation meanwhile: stored.
        let started = c.generation();
        assert!(c.insert_loaded(started, "acme", "row", t0));
        assert_eq!(c.get("acme", t0), Some(&"row"));
        // The row is deleted (and the key invalidated) while a load runs:
        // the loaded row is not kept, even though the key was not cached.
        c.remove("acme");
        let started = c.generation();
        c.remove("acme");
        assert!(!c.insert_loaded(started, "acme", "stale row", t0));
        assert_eq!(c.get("acme", t0), None);
        // Clearing everything also stops every load in flight.
        let started = c.generation();
        c.clear();
        assert!(!c.insert_loaded(started, "globex", "stale", t0));
        assert!(c.is_empty());
        // Expiry and capacity eviction are not invalidations.
        let mut c = TtlCache::new(1, Duration::from_secs(1));
        let started = c.generation();
        c.insert("a", "1", t0);
        c.insert("b", "2", t0);
        assert_eq!(c.get("b", t0 + Duration::from_secs(2)), None);
        assert!(c.insert_loaded(started, "c", "3", t0));
        // A load started after the invalidation is stored.
        c.remove("c");
        let started = c.generation();
        assert!(c.insert_loaded(started, "c", "fresh", t0));
        assert_eq!(c.get("c", t0), Some(&"fresh"));
    }

    #[test]
    fn remove_and_clear() {
        let t0 = Instant::now();
        let mut c = TtlCache::new(10, Duration::from_secs(60));
        c.insert("a", 1, t0);
        c.insert("b", 2, t0);
        assert_eq!(c.remove("a"), Some(1));
        assert_eq!(c.get("a", t0), None);
        c.clear();
        assert!(c.is_empty());
    }
}
