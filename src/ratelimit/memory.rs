//! The in-memory rate-limit store: one number per key (a TAT or a window's
//! count) and the time it dies, in shards chosen by the tenant, so every
//! check of one request takes one lock and one tenant's traffic never waits
//! for another tenant's shard lock (other than the few tenants sharing its
//! shard). Keys are the logical keys of the one formatter
//! (`<prefix>:{tenant:<id>}:ratelimit:<name>`), as in Redis.
//!
//! O(1) per check: a hash lookup per limit, plus a sweep that looks at two
//! keys of the shard's ring (oldest first) and drops them if dead, so
//! expired keys go without a scan and without a background thread. The
//! store is bounded: a shard at its share of `max_keys` drops dead keys
//! first, then forgets a live one (a limit forgotten under memory pressure
//! restarts from a full allowance; documented in docs/ratelimits.md).
//!
//! Which live key goes is fair between the tenants of a shard: the oldest
//! key of the tenant inserting, when it holds at least the shard's average,
//! else the oldest key of the largest tenant among those of the shard's
//! oldest few keys. So a tenant that floods new keys (one per client
//! address, say) only ever pushes out its own keys, never a smaller
//! neighbour's counts: forgetting those would hand that neighbour's clients
//! a fresh allowance. Each tenant keeps its own oldest-first ring, so this
//! stays O(1).

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Check, Decision, Outcome};
use crate::keys::{format_key, KeyPrefix, Kind};
use crate::tenant_id::TenantId;

pub const SHARDS: usize = 64;
/// Keys kept by default (all tenants): ~100 bytes each.
pub const DEFAULT_MAX_KEYS: usize = 1 << 20;
/// Keys each operation looks at to drop dead ones.
const SWEEP: usize = 2;
/// Every this many checks, a thread also sweeps the next shard in turn, so
/// shards without traffic lose their dead keys too.
const TURN_EVERY: u32 = 16;
const TURN_SWEEP: usize = 8;

thread_local! {
    static TURN: crate::sweep::Turn = const { std::cell::Cell::new((0, 0)) };
}

struct Slot {
    value: u64,
    expires: u64,
    tenant: Arc<str>,
}

/// One tenant's keys in a shard: how many, and its own oldest-first ring
/// (records of keys already gone are skipped when met).
#[derive(Default)]
struct Held {
    count: usize,
    ring: VecDeque<Box<str>>,
}

/// Records looked at from the front of the shard's ring to pick the tenant
/// that gives up a key when a small tenant adds one to a full shard.
const VICTIM_SAMPLE: usize = 8;

#[derive(Default)]
struct Shard {
    map: HashMap<Box<str>, Slot>,
    /// Every key, oldest first (a key may appear twice after a clear; a
    /// record without its key is skipped).
    ring: VecDeque<Box<str>>,
    /// Each tenant's keys here (fair eviction in O(1)).
    held: HashMap<Arc<str>, Held>,
}

impl Shard {
    fn live(&self, key: &str, now: u64) -> Option<u64> {
        self.map
            .get(key)
            .filter(|s| s.expires > now)
            .map(|s| s.value)
    }

    fn remove(&mut self, key: &str) {
        if let Some(slot) = self.map.remove(key) {
            if let Some(held) = self.held.get_mut(&slot.tenant) {
                held.count -= 1;
                if held.count == 0 {
                    self.held.remove(&slot.tenant);
                }
            }
        }
    }

    /// Looks at `n` keys from the front: dead ones go, live ones move back.
    fn sweep(&mut self, n: usize, now: u64) {
        for _ in 0..n.min(self.ring.len()) {
            let Some(key) = self.ring.pop_front() else {
                return;
            };
            match self.map.get(&key) {
                Some(slot) if slot.expires > now => self.ring.push_back(key),
                Some(_) => self.remove(&key),
                None => {}
            }
        }
    }

    /// The tenant that gives up a live key so `tenant` can add one: itself
    /// when it holds at least the shard's average (a flooding tenant always
    /// does), else, among the tenants of the oldest few keys, the one
    /// holding the most. O(1) amortized: records of keys already gone are
    /// dropped from the front first (each once), so the sample starts at a
    /// live key.
    fn victim(&mut self, tenant: &str) -> Option<Arc<str>> {
        if let Some((name, held)) = self.held.get_key_value(tenant) {
            if held.count * self.held.len() >= self.map.len() {
                return Some(Arc::clone(name));
            }
        }
        while self.ring.front().is_some_and(|k| !self.map.contains_key(k)) {
            self.ring.pop_front();
        }
        self.ring
            .iter()
            .take(VICTIM_SAMPLE)
            .filter_map(|k| self.map.get(k))
            .max_by_key(|slot| self.held.get(&slot.tenant).map_or(0, |h| h.count))
            .map(|slot| Arc::clone(&slot.tenant))
    }

    /// Forgets `victim`'s oldest live key.
    fn evict_oldest_of(&mut self, victim: &Arc<str>) -> bool {
        loop {
            let Some(key) = self.held.get_mut(victim).and_then(|h| h.ring.pop_front()) else {
                return false;
            };
            if self.map.get(&key).is_some_and(|s| s.tenant == *victim) {
                self.remove(&key);
                return true;
            }
        }
    }

    /// Makes room for one key of `tenant`: dead keys first, then the oldest
    /// key of [`Shard::victim`].
    fn make_room(&mut self, cap: usize, now: u64, tenant: &str) {
        if self.map.len() < cap {
            return;
        }
        self.sweep(8, now);
        while self.map.len() >= cap.max(1) {
            let evicted = self
                .victim(tenant)
                .is_some_and(|victim| self.evict_oldest_of(&victim));
            if !evicted {
                break;
            }
        }
    }

    fn put(
        &mut self,
        tenant: &TenantId,
        key: String,
        value: u64,
        expires: u64,
        cap: usize,
        now: u64,
    ) {
        if let Some(slot) = self.map.get_mut(key.as_str()) {
            slot.value = value;
            slot.expires = expires;
            return;
        }
        self.make_room(cap, now, tenant.as_str());
        let key: Box<str> = key.into();
        let name = match self.held.get_key_value(tenant.as_str()) {
            Some((name, _)) => Arc::clone(name),
            None => Arc::from(tenant.as_str()),
        };
        let held = self.held.entry(Arc::clone(&name)).or_default();
        if held.ring.len() > 2 * held.count + 16 {
            // Records of keys gone piled up: keep the live ones, in order.
            let map = &self.map;
            held.ring
                .retain(|k| map.get(k).is_some_and(|s| s.tenant == name));
        }
        held.count += 1;
        held.ring.push_back(key.clone());
        self.ring.push_back(key.clone());
        self.map.insert(
            key,
            Slot {
                value,
                expires,
                tenant: name,
            },
        );
        if self.ring.len() > 2 * self.map.len() + 16 {
            // Records of cleared keys piled up: rebuild from the map.
            self.ring = self.map.keys().cloned().collect();
        }
    }
}

pub struct MemoryLimiter {
    shards: Box<[Mutex<Shard>]>,
    max_keys: AtomicUsize,
}

impl Default for MemoryLimiter {
    fn default() -> Self {
        Self::new()
    }
}

fn shard_of(tenant: &TenantId) -> usize {
    let mut h = DefaultHasher::new();
    tenant.as_str().hash(&mut h);
    (h.finish() as usize) % SHARDS
}

impl MemoryLimiter {
    pub fn new() -> Self {
        MemoryLimiter {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            max_keys: AtomicUsize::new(DEFAULT_MAX_KEYS),
        }
    }

    /// Bounds the store (all tenants); at least one key per shard.
    pub fn set_max_keys(&self, max_keys: usize) {
        self.max_keys.store(max_keys.max(SHARDS), Ordering::Relaxed);
    }

    fn cap(&self) -> usize {
        self.max_keys.load(Ordering::Relaxed) / SHARDS
    }

    /// Decides `checks` for `tenant` at `now` (µs) and, when every one
    /// passes, consumes `cost` from each — atomically (one shard lock).
    pub fn check(
        &self,
        prefix: &KeyPrefix,
        tenant: &TenantId,
        checks: &[Check],
        cost: u64,
        now: u64,
    ) -> Decision {
        let keys: Vec<String> = checks
            .iter()
            .map(|c| format_key(prefix, tenant, Kind::RateLimit, &c.name))
            .collect();
        let cap = self.cap();
        let mut shard = self.shards[shard_of(tenant)].lock();
        shard.sweep(SWEEP, now);
        let outcomes: Vec<Outcome> = checks
            .iter()
            .zip(&keys)
            .map(|(c, key)| c.decide(shard.live(key, now), now, cost))
            .collect();
        let decision = Decision::combine(&outcomes);
        if decision.allowed {
            for (key, o) in keys.into_iter().zip(&outcomes) {
                shard.put(tenant, key, o.store, o.expires, cap, now);
            }
        }
        drop(shard);
        if let Some(other) = crate::sweep::next_shard(&TURN, TURN_EVERY, SHARDS) {
            self.shards[other].lock().sweep(TURN_SWEEP, now);
        }
        decision
    }

    /// How many keys `tenant` holds: what [`MemoryLimiter::clear_tenant`]
    /// would remove.
    pub fn tenant_keys(&self, tenant: &TenantId) -> usize {
        let shard = self.shards[shard_of(tenant)].lock();
        shard
            .map
            .values()
            .filter(|slot| &*slot.tenant == tenant.as_str())
            .count()
    }

    /// Forgets every key of `tenant`; returns how many went.
    pub fn clear_tenant(&self, tenant: &TenantId) -> usize {
        let mut shard = self.shards[shard_of(tenant)].lock();
        let before = shard.map.len();
        shard.map.retain(|_, slot| &*slot.tenant != tenant.as_str());
        shard.held.remove(tenant.as_str());
        before - shard.map.len()
    }

    pub fn clear_all(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let mut s = s.lock();
                let n = s.map.len();
                *s = Shard::default();
                n
            })
            .sum()
    }

    /// Keys held (dead ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::super::{KeySpec, Limit, Rate, MICROS};
    use super::*;
    use std::sync::Arc;

    fn t(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    fn checks(rates: &[&str]) -> Vec<Check> {
        rates
            .iter()
            .map(|r| Check {
                limit: Limit::Rate(Rate::parse(r).unwrap()),
                name: format!("s:{r}:tenant"),
            })
            .collect()
    }

    #[test]
    fn a_refusal_consumes_nothing_from_any_limit() {
        let m = MemoryLimiter::new();
        let p = KeyPrefix::default();
        let c = checks(&["2/s", "3/h"]);
        let now = 1_000 * MICROS;
        assert!(m.check(&p, &t("a"), &c, 1, now).allowed);
        assert!(m.check(&p, &t("a"), &c, 1, now).allowed);
        let d = m.check(&p, &t("a"), &c, 1, now);
        assert!(!d.allowed);
        assert_eq!((d.limit, d.retry_after), (2, MICROS / 2));
        // Half a second later the per-second limit lets one through, and
        // the hourly one still had one left: the refusal took nothing.
        let d = m.check(&p, &t("a"), &c, 1, now + MICROS / 2);
        assert!(d.allowed);
        assert_eq!((d.limit, d.remaining), (3, 0));
        assert!(!m.check(&p, &t("a"), &c, 1, now + 10 * MICROS).allowed);
        // Another tenant is untouched.
        assert!(m.check(&p, &t("b"), &c, 1, now).allowed);
    }

    #[test]
    fn dead_keys_go_and_the_store_stays_bounded() {
        let m = MemoryLimiter::new();
        m.set_max_keys(SHARDS * 4);
        let p = KeyPrefix::default();
        let c = checks(&["1/s"]);
        for i in 0..1000 {
            m.check(&p, &t(&format!("t{i}")), &c, 1, 0);
        }
        assert!(m.len() <= SHARDS * 4, "{}", m.len());
        // Once dead, every key is swept away by later traffic.
        for i in 0..2000 {
            m.check(&p, &t(&format!("late{}", i % 7)), &c, 1, 10 * MICROS + i);
        }
        assert!(m.len() <= 7 + SHARDS * 2, "{}", m.len());
        assert_eq!(m.tenant_keys(&t("late1")), 1);
        assert_eq!(m.clear_tenant(&t("late1")), 1);
        assert_eq!(m.tenant_keys(&t("late1")), 0);
    }

    fn keyed(name: &str, rate: &str) -> Vec<Check> {
        vec![Check {
            limit: Limit::Rate(Rate::parse(rate).unwrap()),
            name: name.to_owned(),
        }]
    }

    #[test]
    fn many_neighbours_at_their_limits_keep_their_counts_under_a_flood() {
        let m = MemoryLimiter::new();
        m.set_max_keys(SHARDS * 16); // 16 keys per shard
        let p = KeyPrefix::default();
        let shard = shard_of(&t("anchor"));
        let mut names = (0..)
            .map(|i| t(&format!("n{i}")))
            .filter(|n| shard_of(n) == shard);
        let neighbours: Vec<TenantId> = names.by_ref().take(6).collect();
        let flood = names.next().unwrap();
        let own = keyed("http:2/h:tenant", "2/h");
        let now = MICROS;
        for n in &neighbours {
            assert!(m.check(&p, n, &own, 2, now).allowed);
            assert!(!m.check(&p, n, &own, 1, now).allowed);
        }
        // The neighbours' keys are the oldest in the shard; a flood of
        // 5,000 new keys goes past them 300 times over.
        for i in 0..5_000u64 {
            let c = keyed(&format!("http:2/h:ip=10.{}.{}", i / 200, i % 200), "2/h");
            assert!(m.check(&p, &flood, &c, 1, now + i).allowed);
        }
        for n in &neighbours {
            assert!(!m.check(&p, n, &own, 1, now + 9_000).allowed, "{n:?}");
        }
        assert!(m.len() <= 16, "{}", m.len());
    }

    #[test]
    fn a_tenant_flooding_new_keys_never_evicts_a_neighbours_counts() {
        let m = MemoryLimiter::new();
        m.set_max_keys(SHARDS * 8); // 8 keys per shard
        let p = KeyPrefix::default();
        let small = t("small");
        let flood = (0..)
            .map(|i| t(&format!("flood{i}")))
            .find(|f| shard_of(f) == shard_of(&small))
            .unwrap();
        let now = MICROS;
        // The neighbour spends its whole allowance on one key.
        let own = keyed("http:3/h:ip=10.0.0.1", "3/h");
        for _ in 0..3 {
            assert!(m.check(&p, &small, &own, 1, now).allowed);
        }
        assert!(!m.check(&p, &small, &own, 1, now).allowed);
        // A tenant in the same shard makes 1,000 new keys (one per address).
        for i in 0..1_000 {
            let c = keyed(&format!("http:3/h:ip=10.9.{}.{}", i / 250, i % 250), "3/h");
            assert!(m.check(&p, &flood, &c, 1, now + i).allowed);
        }
        assert!(m.len() <= 8, "{}", m.len());
        // The neighbour's count survived: still refused, not a fresh allowance.
        assert!(!m.check(&p, &small, &own, 1, now + 2_000).allowed);
        // A new key of the neighbour's takes the flooding tenant's place.
        let other = keyed("http:3/h:ip=10.0.0.2", "3/h");
        assert!(m.check(&p, &small, &other, 1, now + 3_000).allowed);
        assert!(!m.check(&p, &small, &own, 1, now + 4_000).allowed);
        assert!(m.len() <= 8, "{}", m.len());
        assert_eq!(m.clear_tenant(&small), 2);
    }

    #[test]
    fn threads_hammering_one_key_admit_exactly_the_limit() {
        let m = Arc::new(MemoryLimiter::new());
        let c = Arc::new(checks(&["1000/h"]));
        let now = 5 * MICROS; // a fixed clock: no refill during the run
        let admitted: usize = (0..16)
            .map(|_| {
                let (m, c) = (Arc::clone(&m), Arc::clone(&c));
                std::thread::spawn(move || {
                    (0..200)
                        .filter(|_| {
                            m.check(&KeyPrefix::default(), &t("hot"), &c, 1, now)
                                .allowed
                        })
                        .count()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(admitted, 1000);
    }

    #[test]
    fn keys_use_the_one_formatter() {
        let key = format_key(
            &KeyPrefix::default(),
            &t("acme"),
            Kind::RateLimit,
            "http:1/s:tenant",
        );
        assert_eq!(key, "djust:{tenant:acme}:ratelimit:http:1/s:tenant");
        let _ = KeySpec::TENANT;
    }
}
