//! The in-memory rate-limit store: one number per key (a TAT or a window's
//! count) and the time it dies, in shards chosen by the tenant, so every
//! check of one request takes one lock and one tenant's traffic never waits
//! for another tenant's shard lock (other than the few tenants sharing its
//! shard). Keys are the logical keys of the one formatter
//! (`<prefix>:{tenant:<id>}:ratelimit:<name>`), as in Redis.
//!
//! O(1) per check: a hash lookup per limit, plus a sweep that looks at two
//! keys of the shard's ring (oldest first) and drops them if dead, so
//! expired keys go without a scan and without a background thread.
//!
//! The store is bounded: each shard holds at most its share of `max_keys`
//! (`cap`). Forgetting a live count hands that count's client a fresh
//! allowance, so a full shard makes room by these rules, in order:
//!
//! 1. dead keys (any tenant's: their allowance is full again anyway);
//! 2. a tenant holding less than its *fair part* of the shard (`cap` over
//!    the tenants holding keys there, itself included) takes room from the
//!    tenant holding the most keys there, if that one holds more than its
//!    fair part: neighbours crowding a shard cannot starve a small tenant's
//!    new keys;
//! 3. otherwise the adding tenant gives up one of its own keys;
//! 4. otherwise the new key is refused ([`Refused`]) and the check is
//!    treated like an unreachable store (`TENANT_RATE_LIMIT_FAILURE`).
//!
//! In 2 and 3 a tenant's least used keys go first (each key is graded by
//! the share of its limit it had used at its last check: under a quarter,
//! under half), oldest first, and a key that had used half of its limit or
//! more ([`LIMITED`]: at or near its limit) is **never** forgotten while it
//! lives — not for a neighbour, not for its own tenant's new keys — so no
//! arrival, of anyone, can reset a client at 429. A tenant holding no
//! more than its fair part never loses a key to another tenant.
//!
//! Each tenant keeps one oldest-first ring per grade, and each shard its
//! tenants that hold keys below [`LIMITED`] ordered by how many keys they
//! hold, so making room is O(log tenants of the shard) plus O(1) amortized.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap, VecDeque};
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
/// Keys looked at from the front of the shard's ring for dead ones before
/// a full shard makes room from a tenant's live keys.
const ROOM_SWEEP: usize = 8;
/// Keys looked at for dead ones before a new key is refused.
const REFUSE_SWEEP: usize = 64;

thread_local! {
    static TURN: crate::sweep::Turn = const { std::cell::Cell::new((0, 0)) };
}

/// How much of its limit a key had used at its last check: 0 under a
/// quarter, 1 under half, [`LIMITED`] half or more (at or near its limit).
/// Lower grades are forgotten first.
pub type Grade = u8;
/// The grade of a key at or near its limit.
pub const LIMITED: Grade = 2;
const GRADES: usize = LIMITED as usize + 1;

/// The grade of a key that has `remaining` of `limit` left.
pub fn grade(limit: u64, remaining: u64) -> Grade {
    let used = limit.saturating_sub(remaining);
    if limit == 0 || used.saturating_mul(2) >= limit {
        LIMITED
    } else if used.saturating_mul(4) >= limit {
        1
    } else {
        0
    }
}

/// A check whose new key found no room it may take (every key it could
/// have made room from is at or near its limit, or belongs to a tenant
/// within its fair part): nothing was consumed or forgotten.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub tenant: String,
    pub keys: usize,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the memory rate-limit store's shard of tenant {:?} is full ({} keys) and holds \
             nothing this tenant may give up (keys at or near their limits are never \
             forgotten, and tenants within their fair part of the shard keep theirs): raise \
             the store's size or use Redis",
            self.tenant, self.keys
        )
    }
}

impl std::error::Error for Refused {}

struct Slot {
    value: u64,
    expires: u64,
    tenant: Arc<str>,
    grade: Grade,
    /// Bumped each time the key is queued in a grade ring: a ring record
    /// with another `seq` is stale.
    seq: u32,
}

/// One tenant's keys in a shard: how many (in all, and per grade), and per
/// grade its own oldest-first ring (records of keys gone or regraded are
/// skipped).
#[derive(Default)]
struct Held {
    count: usize,
    by_grade: [usize; GRADES],
    rings: [VecDeque<(Arc<str>, u32)>; GRADES],
}

impl Held {
    fn records(&self) -> usize {
        self.rings.iter().map(VecDeque::len).sum()
    }

    /// Keys it may give up to make room (below [`LIMITED`]; dead ones go
    /// by the sweep whatever their grade).
    fn below_limited(&self) -> usize {
        self.by_grade[..LIMITED as usize].iter().sum()
    }
}

#[derive(Default)]
struct Shard {
    map: HashMap<Arc<str>, Slot>,
    /// Every key, oldest first (a key may appear twice after a clear; a
    /// record without its key is skipped).
    ring: VecDeque<Arc<str>>,
    /// Each tenant's keys here (its rings make room in O(1)).
    held: HashMap<Arc<str>, Held>,
    /// `(keys held, tenant)` of every tenant holding keys below
    /// [`LIMITED`]: the last one is the tenant with the most keys that can
    /// give one up (rule 2 of the module doc).
    givers: BTreeSet<(usize, Arc<str>)>,
}

impl Shard {
    fn live(&self, key: &str, now: u64) -> Option<u64> {
        self.map
            .get(key)
            .filter(|s| s.expires > now)
            .map(|s| s.value)
    }

    /// Runs `change` on `tenant`'s [`Held`] (made if missing, dropped when
    /// it ends up holding nothing), keeping [`Shard::givers`] in step.
    fn change_held(&mut self, tenant: &Arc<str>, change: impl FnOnce(&mut Held)) {
        let held = self.held.entry(Arc::clone(tenant)).or_default();
        let before = (held.count, held.below_limited() > 0);
        change(held);
        let after = (held.count, held.below_limited() > 0);
        if held.count == 0 {
            self.held.remove(tenant);
        }
        if before != after {
            if before.1 {
                self.givers.remove(&(before.0, Arc::clone(tenant)));
            }
            if after.1 && after.0 > 0 {
                self.givers.insert((after.0, Arc::clone(tenant)));
            }
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(slot) = self.map.remove(key) {
            let grade = slot.grade as usize;
            self.change_held(&slot.tenant, |held| {
                held.count -= 1;
                held.by_grade[grade] -= 1;
            });
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

    /// Forgets `tenant`'s least used, oldest key that is not one of `keep`
    /// (the keys of the check being made) and not live at [`LIMITED`] (a
    /// dead one of any grade may go). False when it has none.
    fn evict_from(&mut self, tenant: &str, keep: &[String], now: u64) -> bool {
        let Some(held) = self.held.get_mut(tenant) else {
            return false;
        };
        let mut kept = Vec::new();
        let mut victim = None;
        'grades: for (grade, ring) in held.rings.iter_mut().enumerate() {
            while let Some((key, seq)) = ring.pop_front() {
                let Some(slot) = self.map.get(&key) else {
                    continue; // gone since
                };
                if slot.seq != seq || slot.grade as usize != grade || &*slot.tenant != tenant {
                    // Regraded since (queued again elsewhere), or a record
                    // of an earlier life of the key: a key dropped and made
                    // again restarts at seq 0, so the grade must match too.
                    continue;
                }
                let dead = slot.expires <= now;
                if !dead && keep.iter().any(|k| k.as_str() == &*key) {
                    kept.push((key, seq));
                    continue;
                }
                if !dead && grade == LIMITED as usize {
                    ring.push_front((key, seq)); // at or near its limit: kept
                    break 'grades;
                }
                victim = Some(key);
                break 'grades;
            }
        }
        for (key, seq) in kept.into_iter().rev() {
            if let Some(slot) = self.map.get(&key) {
                let grade = slot.grade as usize;
                if let Some(held) = self.held.get_mut(tenant) {
                    held.rings[grade].push_front((key, seq));
                }
            }
        }
        match victim {
            Some(key) => {
                self.remove(&key);
                true
            }
            None => false,
        }
    }

    /// Rule 2 of the module doc: `tenant` (holding fewer keys than its fair
    /// part) takes a key from the tenant holding the most keys that can
    /// give one up, if that one holds more than its fair part.
    fn evict_from_heaviest(&mut self, tenant: &str, fair: usize, now: u64) -> bool {
        let heaviest = self
            .givers
            .iter()
            .rev()
            .find(|(_, t)| &**t != tenant)
            .map(|(count, t)| (*count, Arc::clone(t)));
        match heaviest {
            Some((count, giver)) if count > fair => self.evict_from(&giver, &[], now),
            _ => false,
        }
    }

    /// Makes room for `new` more keys of `tenant` by the rules of the
    /// module doc. Errs having forgotten only dead keys and keys below
    /// [`LIMITED`] of tenants over their fair part or of `tenant` itself.
    fn make_room(
        &mut self,
        cap: usize,
        new: usize,
        now: u64,
        tenant: &str,
        keep: &[String],
    ) -> Result<(), Refused> {
        if self.map.len() + new <= cap {
            return Ok(());
        }
        self.sweep(ROOM_SWEEP, now);
        let mut swept = false;
        while self.map.len() + new > cap.max(new) {
            let own = self.held.get(tenant).map_or(0, |h| h.count);
            let tenants = self.held.len() + usize::from(own == 0);
            let fair = (cap / tenants).max(1);
            if own < fair && self.evict_from_heaviest(tenant, fair, now) {
                continue;
            }
            if self.evict_from(tenant, keep, now) {
                continue;
            }
            if !swept {
                // Dead keys further down the ring, once, before refusing.
                swept = true;
                self.sweep(REFUSE_SWEEP, now);
                continue;
            }
            return Err(Refused {
                tenant: tenant.to_owned(),
                keys: self.map.len(),
            });
        }
        Ok(())
    }

    /// Queues `key` in its tenant's ring of `grade`.
    fn queue(&mut self, tenant: &Arc<str>, key: Arc<str>, grade: Grade, seq: u32) {
        let held = self.held.entry(Arc::clone(tenant)).or_default();
        if held.records() > 2 * held.count + 16 {
            // Records of keys gone or regraded piled up: keep the live ones,
            // in order.
            let map = &self.map;
            for (g, ring) in held.rings.iter_mut().enumerate() {
                ring.retain(|(k, s)| {
                    map.get(k).is_some_and(|slot| {
                        slot.tenant == *tenant && slot.seq == *s && slot.grade as usize == g
                    })
                });
            }
        }
        held.rings[grade as usize].push_back((key, seq));
    }

    /// Stores a value the check decided (the key's room was made before).
    fn put(&mut self, tenant: &TenantId, key: &str, outcome: &Outcome) {
        let grade = grade(outcome.limit, outcome.remaining);
        if let Some(slot) = self.map.get_mut(key) {
            slot.value = outcome.store;
            slot.expires = outcome.expires;
            if slot.grade != grade {
                let old = slot.grade as usize;
                slot.grade = grade;
                slot.seq = slot.seq.wrapping_add(1);
                let (tenant, seq) = (Arc::clone(&slot.tenant), slot.seq);
                self.change_held(&tenant, |held| {
                    held.by_grade[old] -= 1;
                    held.by_grade[grade as usize] += 1;
                });
                if let Some(name) = self.map.get_key_value(key).map(|(k, _)| Arc::clone(k)) {
                    self.queue(&tenant, name, grade, seq);
                }
            }
            return;
        }
        let name: Arc<str> = match self.held.get_key_value(tenant.as_str()) {
            Some((name, _)) => Arc::clone(name),
            None => Arc::from(tenant.as_str()),
        };
        let key: Arc<str> = Arc::from(key);
        self.queue(&name, Arc::clone(&key), grade, 0);
        self.change_held(&name, |held| {
            held.count += 1;
            held.by_grade[grade as usize] += 1;
        });
        self.ring.push_back(Arc::clone(&key));
        self.map.insert(
            key,
            Slot {
                value: outcome.store,
                expires: outcome.expires,
                tenant: name,
                grade,
                seq: 0,
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
    /// Errs, consuming nothing, when a new key of the check finds no room
    /// (see [`Refused`]).
    pub fn check(
        &self,
        prefix: &KeyPrefix,
        tenant: &TenantId,
        checks: &[Check],
        cost: u64,
        now: u64,
    ) -> Result<Decision, Refused> {
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
            let new = keys
                .iter()
                .filter(|k| !shard.map.contains_key(k.as_str()))
                .count();
            if new > 0 {
                shard.make_room(cap, new, now, tenant.as_str(), &keys)?;
            }
            for (key, o) in keys.iter().zip(&outcomes) {
                shard.put(tenant, key, o);
            }
        }
        drop(shard);
        if let Some(other) = crate::sweep::next_shard(&TURN, TURN_EVERY, SHARDS) {
            self.shards[other].lock().sweep(TURN_SWEEP, now);
        }
        Ok(decision)
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
        if let Some((name, held)) = shard.held.remove_entry(tenant.as_str()) {
            shard.givers.remove(&(held.count, name));
        }
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

    impl MemoryLimiter {
        /// `check` of a key that must find room.
        fn check_ok(
            &self,
            p: &KeyPrefix,
            tenant: &TenantId,
            checks: &[Check],
            cost: u64,
            now: u64,
        ) -> Decision {
            self.check(p, tenant, checks, cost, now)
                .unwrap_or_else(|e| panic!("{e}"))
        }
    }

    /// `n` tenant ids that share the shard of `anchor`.
    fn shard_mates(anchor: &TenantId, prefix: &str, n: usize) -> Vec<TenantId> {
        (0..)
            .map(|i| t(&format!("{prefix}{i}")))
            .filter(|x| shard_of(x) == shard_of(anchor))
            .take(n)
            .collect()
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
        assert!(m.check_ok(&p, &t("a"), &c, 1, now).allowed);
        assert!(m.check_ok(&p, &t("a"), &c, 1, now).allowed);
        let d = m.check_ok(&p, &t("a"), &c, 1, now);
        assert!(!d.allowed);
        assert_eq!((d.limit, d.retry_after), (2, MICROS / 2));
        // Half a second later the per-second limit lets one through, and
        // the hourly one still had one left: the refusal took nothing.
        let d = m.check_ok(&p, &t("a"), &c, 1, now + MICROS / 2);
        assert!(d.allowed);
        assert_eq!((d.limit, d.remaining), (3, 0));
        assert!(!m.check_ok(&p, &t("a"), &c, 1, now + 10 * MICROS).allowed);
        // Another tenant is untouched.
        assert!(m.check_ok(&p, &t("b"), &c, 1, now).allowed);
    }

    #[test]
    fn dead_keys_go_and_the_store_stays_bounded() {
        let m = MemoryLimiter::new();
        m.set_max_keys(SHARDS * 4);
        let p = KeyPrefix::default();
        let c = checks(&["1/s"]);
        for i in 0..1000 {
            // A shard full of other tenants' live counts has no room for a
            // new tenant: refused, nobody's count forgotten.
            let _ = m.check(&p, &t(&format!("t{i}")), &c, 1, 0);
        }
        assert!(m.len() <= SHARDS * 4, "{}", m.len());
        // Once dead, every key is swept away by later traffic.
        for i in 0..2000 {
            m.check_ok(&p, &t(&format!("late{}", i % 7)), &c, 1, 10 * MICROS + i);
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
            assert!(m.check_ok(&p, n, &own, 2, now).allowed);
            assert!(!m.check_ok(&p, n, &own, 1, now).allowed);
        }
        // The neighbours' keys are the oldest in the shard; a flood of
        // 5,000 new keys goes past them 300 times over. Each flood key is at
        // half its limit after one request (never forgotten while it
        // lives), so once the shard is full the flood's new keys are
        // refused: nobody's count is forgotten, the flood's own included.
        let mut admitted = 0;
        for i in 0..5_000u64 {
            let c = keyed(&format!("http:2/h:ip=10.{}.{}", i / 200, i % 200), "2/h");
            match m.check(&p, &flood, &c, 1, now + i) {
                Ok(d) => {
                    assert!(d.allowed);
                    admitted += 1;
                }
                Err(e) => assert!(e.to_string().contains("is full"), "{e}"),
            }
        }
        assert_eq!(admitted, 16 - 6);
        for n in &neighbours {
            assert!(!m.check_ok(&p, n, &own, 1, now + 9_000).allowed, "{n:?}");
        }
        // The flood's first clients are still counted too.
        let first = keyed("http:2/h:ip=10.0.0", "2/h");
        assert!(m.check_ok(&p, &flood, &first, 1, now + 9_000).allowed);
        assert!(!m.check_ok(&p, &flood, &first, 1, now + 9_000).allowed);
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
            assert!(m.check_ok(&p, &small, &own, 1, now).allowed);
        }
        assert!(!m.check_ok(&p, &small, &own, 1, now).allowed);
        // A tenant in the same shard makes 1,000 new keys (one per address),
        // one request each (a third of "3/h": below half, so it may go).
        for i in 0..1_000 {
            let c = keyed(&format!("http:3/h:ip=10.9.{}.{}", i / 250, i % 250), "3/h");
            assert!(m.check_ok(&p, &flood, &c, 1, now + i).allowed);
        }
        assert!(m.len() <= 8, "{}", m.len());
        // The neighbour's count survived: still refused, not a fresh allowance.
        assert!(!m.check_ok(&p, &small, &own, 1, now + 2_000).allowed);
        // A new key of the neighbour's finds room: it holds less than its
        // fair part of the shard (half of it, with two tenants), and the
        // flood holds more, so the flood gives up its least used key. The
        // flood cannot starve the neighbour's new clients.
        for k in 2..=4 {
            let other = keyed(&format!("http:3/h:ip=10.0.0.{k}"), "3/h");
            assert!(m.check_ok(&p, &small, &other, 1, now + 3_000).allowed);
        }
        assert_eq!(m.tenant_keys(&small), 4);
        assert_eq!(m.tenant_keys(&flood), 4);
        // At its fair part, the neighbour's next key comes from its own
        // keys below half their limits, never from the flood's.
        let fifth = keyed("http:3/h:ip=10.0.0.5", "3/h");
        assert!(m.check_ok(&p, &small, &fifth, 1, now + 3_500).allowed);
        assert_eq!(m.tenant_keys(&flood), 4);
        assert!(!m.check_ok(&p, &small, &own, 1, now + 4_000).allowed);
        assert!(m.len() <= 8, "{}", m.len());
        assert_eq!(m.clear_tenant(&small), 4);
    }

    /// The reported attack: a busy tenant's client at its limit, then a few
    /// new small tenants of the same shard each add a key. Under the old
    /// rule (the busy tenant, holding the most, gave up its oldest key) the
    /// client got a fresh allowance.
    #[test]
    fn small_neighbours_never_reset_a_busy_tenants_limited_key() {
        let m = MemoryLimiter::new();
        m.set_max_keys(SHARDS * 16);
        let p = KeyPrefix::default();
        let busy = t("busy");
        let now = MICROS;
        let attacker = keyed("http:5/m:ip=10.6.6.6", "5/m");
        for _ in 0..5 {
            assert!(m.check_ok(&p, &busy, &attacker, 1, now).allowed);
        }
        assert!(!m.check_ok(&p, &busy, &attacker, 1, now).allowed);
        // The rest of the shard: the busy tenant's other clients.
        for i in 0..15 {
            let c = keyed(&format!("http:5/m:ip=10.1.0.{i}"), "5/m");
            assert!(m.check_ok(&p, &busy, &c, 1, now + 1 + i).allowed);
        }
        let mut refused = 0;
        for (n, small) in shard_mates(&busy, "small", 40).iter().enumerate() {
            let c = keyed("http:5/m:tenant", "5/m");
            // While the busy tenant holds more than its fair part, a small
            // tenant's key takes the room of one of its least used keys;
            // then there is nothing a small tenant may take: refused.
            match m.check(&p, small, &c, 1, now + 100 + n as u64) {
                Ok(d) => assert!(d.allowed),
                Err(_) => refused += 1,
            }
            assert!(!m.check_ok(&p, &busy, &attacker, 1, now + 100).allowed);
        }
        assert!(refused > 0);
        assert!(!m.check_ok(&p, &busy, &attacker, 1, now + 1_000).allowed);
        // Its own new clients: room from its own least used keys while it
        // has any, never the limited one.
        for i in 0..50 {
            let c = keyed(&format!("http:5/m:ip=10.2.0.{i}"), "5/m");
            let _ = m.check(&p, &busy, &c, 1, now + 2_000 + i);
            assert!(!m.check_ok(&p, &busy, &attacker, 1, now + 2_000).allowed);
        }
        assert!(m.len() <= 16, "{}", m.len());
    }

    /// The red team's shape: seven small neighbours with one key each fill
    /// the shard around a tenant whose only key is a client at 429; the
    /// tenant's next new client must not push that count out (it did, when
    /// a tenant holding "the shard's average" could give up its own
    /// limited keys).
    #[test]
    fn neighbours_cannot_make_a_tenant_evict_its_own_limited_key() {
        let m = MemoryLimiter::new();
        m.set_max_keys(SHARDS * 8);
        let p = KeyPrefix::default();
        let globex = t("globex");
        let now = MICROS;
        let login = keyed("login:3/h:ip=6.6.6.6", "3/h");
        for _ in 0..3 {
            assert!(m.check_ok(&p, &globex, &login, 1, now).allowed);
        }
        assert!(!m.check_ok(&p, &globex, &login, 1, now).allowed);
        for n in shard_mates(&globex, "n", 7) {
            let c = keyed("export:5/h:tenant", "5/h");
            assert!(m.check_ok(&p, &n, &c, 1, now + 1).allowed);
        }
        // Every way a new key of globex's can arrive: one at a time, or two
        // in one check.
        let new = keyed("login:3/h:ip=7.7.7.7", "3/h");
        assert!(m.check(&p, &globex, &new, 1, now + 2).is_err());
        let mut two = keyed("login:3/h:ip=7.7.7.8", "3/h");
        two.extend(keyed("export:5/h:tenant", "5/h"));
        assert!(m.check(&p, &globex, &two, 1, now + 3).is_err());
        let d = m.check_ok(&p, &globex, &login, 1, now + 4);
        assert!(!d.allowed, "the client at 429 got a fresh allowance");
        assert_eq!(m.len(), 8);
    }

    /// An attacker controlling any number of keys of the victim's own
    /// tenant (one per spoofed address) cannot push out that tenant's key
    /// at its limit either: its new keys are refused once only limited
    /// keys are left.
    #[test]
    fn a_tenants_own_flood_never_resets_its_limited_keys() {
        let m = MemoryLimiter::new();
        m.set_max_keys(SHARDS * 8);
        let p = KeyPrefix::default();
        let victim = t("victim");
        let now = MICROS;
        let user = keyed("login:4/h:user=alice", "4/h");
        for _ in 0..4 {
            assert!(m.check_ok(&p, &victim, &user, 1, now).allowed);
        }
        for cost in [1, 2] {
            // One request per address (a quarter: may go), then two (half:
            // kept).
            for i in 0..100u64 {
                let c = keyed(&format!("login:4/h:ip=10.{cost}.0.{i}"), "4/h");
                let _ = m.check(&p, &victim, &c, cost, now + i);
                assert!(!m.check_ok(&p, &victim, &user, 1, now + i).allowed);
            }
        }
        assert!(m.len() <= 8);
    }

    /// A tenant holding no more than its fair part of the shard never loses
    /// a key to another tenant, even keys far below their limits.
    #[test]
    fn a_tenant_within_its_fair_part_keeps_every_key() {
        let m = MemoryLimiter::new();
        m.set_max_keys(SHARDS * 8);
        let p = KeyPrefix::default();
        let quiet = t("quiet");
        let now = MICROS;
        for i in 0..4 {
            let c = keyed(&format!("api:100/h:ip=10.0.0.{i}"), "100/h");
            assert!(m.check_ok(&p, &quiet, &c, 1, now).allowed);
        }
        let mates = shard_mates(&quiet, "mate", 30);
        for (n, mate) in mates.iter().enumerate() {
            for k in 0..8 {
                let c = keyed(&format!("api:100/h:ip=10.1.{n}.{k}"), "100/h");
                let _ = m.check(&p, mate, &c, 1, now + 10);
            }
            // Fair part: 8 over the tenants holding keys. While `quiet`
            // holds no more than that, nothing of its goes.
            let tenants = m.shards[shard_of(&quiet)].lock().held.len();
            let fair = (8 / tenants).max(1);
            let kept = m.tenant_keys(&quiet);
            assert!(kept == 4 || kept >= fair, "{kept} < fair part {fair}");
        }
        assert!(m.len() <= 8);
    }

    /// Neighbours and the tenant's own flood, from threads, never take a
    /// key at its limit; the shard's bookkeeping stays exact.
    #[test]
    fn threads_of_neighbours_and_floods_never_reset_a_limited_key() {
        let m = Arc::new(MemoryLimiter::new());
        m.set_max_keys(SHARDS * 16);
        let p = KeyPrefix::default();
        let victim = t("victim");
        let now = MICROS;
        let limited = keyed("login:3/h:user=alice", "3/h");
        for _ in 0..3 {
            assert!(m.check_ok(&p, &victim, &limited, 1, now).allowed);
        }
        let mates = shard_mates(&victim, "th", 64);
        let handles: Vec<_> = (0..4)
            .map(|n| {
                let (m, mates) = (Arc::clone(&m), mates.clone());
                std::thread::spawn(move || {
                    let p = KeyPrefix::default();
                    let victim = t("victim");
                    for i in 0..2_000u64 {
                        let (tenant, cost) = if (i + n) % 3 == 0 {
                            (victim.clone(), 1 + i % 2)
                        } else {
                            (mates[((i * 7 + n) % 64) as usize].clone(), 1 + (i / 3) % 2)
                        };
                        let c = keyed(&format!("login:3/h:ip={n}.{i}"), "3/h");
                        let _ = m.check(&p, &tenant, &c, cost, now + i);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(!m.check_ok(&p, &victim, &limited, 1, now + 5_000).allowed);
        let shard = m.shards[shard_of(&victim)].lock();
        assert!(shard.map.len() <= 16);
        let held: usize = shard.held.values().map(|h| h.count).sum();
        assert_eq!(held, shard.map.len());
        for h in shard.held.values() {
            assert_eq!(h.by_grade.iter().sum::<usize>(), h.count);
        }
        let givers = shard
            .held
            .values()
            .filter(|h| h.below_limited() > 0)
            .count();
        assert_eq!(shard.givers.len(), givers);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any sequence of checks by any tenants (a few shard mates, each
        /// with a few keys of a few costs, the clock moving on): a key left
        /// at or near its limit stays counted until it dies, the shard
        /// never holds more than its share, and a refused check consumed
        /// nothing.
        #[test]
        fn no_sequence_of_checks_forgets_a_limited_key(
            ops in proptest::collection::vec((0usize..6, 0u64..12, 1u64..4, 0u64..3), 1..300)
        ) {
            let m = MemoryLimiter::new();
            m.set_max_keys(SHARDS * 6);
            let p = KeyPrefix::default();
            let tenants = shard_mates(&t("anchor"), "pt", 6);
            let mut now = MICROS;
            // (tenant, key) -> when its count dies, for keys left limited.
            let mut limited: HashMap<(usize, u64), u64> = HashMap::new();
            for (who, key, cost, tick) in ops {
                now += tick * 100_000_000; // up to 200 s
                let c = keyed(&format!("k:4/h:ip={key}"), "4/h");
                let tenant = &tenants[who];
                let before: Vec<u64> = limited
                    .iter()
                    .filter(|(_, &dies)| dies > now)
                    .map(|(&(w, k), _)| w as u64 * 100 + k)
                    .collect();
                match m.check(&p, tenant, &c, cost.min(4), now) {
                    Ok(d) if d.allowed => {
                        let g = grade(d.limit, d.remaining);
                        if g == LIMITED {
                            limited.insert((who, key), now + d.reset_after);
                        } else {
                            limited.remove(&(who, key));
                        }
                    }
                    _ => {}
                }
                let shard = m.shards[shard_of(tenant)].lock();
                proptest::prop_assert!(shard.map.len() <= 6);
                for wk in before {
                    let (w, k) = ((wk / 100) as usize, wk % 100);
                    let name = format_key(&p, &tenants[w], Kind::RateLimit, &format!("k:4/h:ip={k}"));
                    proptest::prop_assert!(
                        shard.map.contains_key(name.as_str()),
                        "a limited key was forgotten: {}", name
                    );
                }
            }
        }
    }

    /// The names (under the tenant) of `tenant`'s keys held now.
    fn held(m: &MemoryLimiter, tenant: &TenantId) -> Vec<String> {
        let head = format_key(&KeyPrefix::default(), tenant, Kind::RateLimit, "");
        let mut names: Vec<String> = m.shards[shard_of(tenant)]
            .lock()
            .map
            .keys()
            .filter_map(|k| k.strip_prefix(head.as_str()).map(str::to_owned))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_tenant_makes_room_from_its_least_used_keys_first() {
        let m = MemoryLimiter::new();
        m.set_max_keys(SHARDS * 3);
        let p = KeyPrefix::default();
        let a = t("a");
        let now = MICROS;
        let key = |n: u32| keyed(&format!("k{n}"), "8/h");
        let spend = |n: u32, uses: u32| {
            for _ in 0..uses {
                assert!(m.check_ok(&p, &a, &key(n), 1, now).allowed);
            }
        };
        spend(0, 8); // at its limit
        spend(1, 3); // a quarter used or more
        spend(2, 1); // less
        spend(3, 1);
        assert_eq!(
            held(&m, &a),
            ["k0", "k1", "k3"],
            "the least used, oldest went"
        );
        spend(3, 2);
        spend(4, 1);
        assert_eq!(
            held(&m, &a),
            ["k0", "k3", "k4"],
            "then the oldest of the next grade"
        );
        spend(4, 4);
        spend(3, 2);
        assert_eq!(grade(8, 8 - 5), LIMITED);
        // Every key at or near its limit now: a new one is refused, and
        // none of them is forgotten (not even for the tenant's own keys).
        assert!(m.check(&p, &a, &key(5), 1, now).is_err());
        assert_eq!(held(&m, &a), ["k0", "k3", "k4"]);
        assert!(!m.check_ok(&p, &a, &key(0), 1, now).allowed);
        assert_eq!(grade(8, 7), 0);
        assert_eq!(grade(8, 5), 1);
        assert_eq!(grade(8, 4), LIMITED);
        assert_eq!(grade(0, 0), LIMITED);
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
                            m.check_ok(&KeyPrefix::default(), &t("hot"), &c, 1, now)
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
