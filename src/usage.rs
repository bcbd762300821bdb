//! Per-tenant usage counters (SPEC §12), by UTC hour and day, with no
//! Python types: HTTP requests, live events, limited (refused) requests —
//! counts — and peak concurrent presences and state bytes — peaks.
//!
//! Recording is batched: [`Batch`] gathers a tenant's deltas in the
//! process and hands them over at most once per flush interval, so a
//! request costs no round trip, and a flush costs one (one script for the
//! tenant's hour and day hashes, which share its hash tag).
//!
//! Stores: [`MemoryUsage`] (the process) and [`RedisUsage`]
//! (`<prefix>:{tenant:<id>}:usage:h:<hour>` and `…:usage:d:<day>` hashes,
//! expiring after [`HOURS_KEPT`] hours and [`DAYS_KEPT`] days).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;
use redis::Value as Reply;

use crate::keys::{format_key, glob_escaped, parse_key, KeyPrefix, Kind};
use crate::redis_store::{Arg, RedisStore, Script, StoreError};
use crate::tenant_id::TenantId;

pub const HOUR: u64 = 3600;
pub const DAY: u64 = 86_400;
/// Hours of hourly figures kept.
pub const HOURS_KEPT: u64 = 48;
/// Days of daily figures kept.
pub const DAYS_KEPT: u64 = 90;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    HttpRequests,
    LiveEvents,
    Limited,
    PeakPresences,
    StateBytes,
    /// Every refusal tenantry made of a known tenant's request, event,
    /// mount or job (rate limit, admission, origin, isolation).
    Refused,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Metric::HttpRequests,
        Metric::LiveEvents,
        Metric::Limited,
        Metric::PeakPresences,
        Metric::StateBytes,
        Metric::Refused,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::HttpRequests => "http_requests",
            Metric::LiveEvents => "live_events",
            Metric::Limited => "limited",
            Metric::PeakPresences => "peak_presences",
            Metric::StateBytes => "state_bytes",
            Metric::Refused => "refused",
        }
    }

    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Peaks keep the largest value seen; counts add up.
    pub fn is_peak(self) -> bool {
        matches!(self, Metric::PeakPresences | Metric::StateBytes)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One bucket's figures, by [`Metric`] order.
pub type Figures = [u64; 6];

fn merge(into: &mut Figures, from: &Figures) {
    for m in Metric::ALL {
        let (a, b) = (&mut into[m.index()], from[m.index()]);
        *a = if m.is_peak() {
            (*a).max(b)
        } else {
            a.saturating_add(b)
        };
    }
}

/// Hour and day buckets (UTC epoch hours and days) of one tenant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub hours: BTreeMap<u64, Figures>,
    pub days: BTreeMap<u64, Figures>,
}

impl Usage {
    fn add(&mut self, hour: u64, figures: &Figures) {
        merge(self.hours.entry(hour).or_default(), figures);
        merge(self.days.entry(hour / 24).or_default(), figures);
    }

    fn prune(&mut self, hour: u64) {
        self.hours = self.hours.split_off(&hour.saturating_sub(HOURS_KEPT - 1));
        self.days = self
            .days
            .split_off(&(hour / 24).saturating_sub(DAYS_KEPT - 1));
    }

    /// Figures from `since_hour` on (days from that hour's day).
    pub fn since(mut self, since_hour: u64) -> Usage {
        self.hours = self.hours.split_off(&since_hour);
        self.days = self.days.split_off(&(since_hour / 24));
        self
    }

    /// Counts summed, peaks maxed, over the days.
    pub fn total(&self) -> Figures {
        let mut total = Figures::default();
        for f in self.days.values() {
            merge(&mut total, f);
        }
        total
    }
}

const SHARDS: usize = 32;
/// Tenants whose figures the memory store keeps (all shards), so memory
/// stays bounded when a process sees many (tenants come and go, or hosts
/// name new ones). A tenant's figures are what it is billed on, so they are
/// never dropped while they are kept ([`DAYS_KEPT`]): a tenant goes only
/// once all its figures are past that, and a new tenant that finds no room
/// is counted as [`TenantId::other`]. Redis keeps every tenant's figures by
/// their TTL.
pub const MAX_MEMORY_TENANTS: usize = 16_384;
const SHARD_TENANTS: usize = MAX_MEMORY_TENANTS / SHARDS;

/// One shard of [`MemoryUsage`].
#[derive(Default)]
struct UsageShard {
    tenants: HashMap<TenantId, Usage>,
    /// Full, and no tenant's figures expire before this day: a new tenant
    /// needs no scan to be counted as `other` until then.
    no_room_before_day: u64,
}

/// Usage kept by the process, in shards chosen by the tenant (one
/// tenant's traffic never waits on another's shard lock, bar collisions).
pub struct MemoryUsage {
    shards: Box<[Mutex<UsageShard>]>,
}

impl Default for MemoryUsage {
    fn default() -> Self {
        MemoryUsage {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(UsageShard::default()))
                .collect(),
        }
    }
}

/// The newest day of `usage`, 0 when it has none.
fn newest_day(usage: &Usage) -> u64 {
    usage.days.last_key_value().map_or(0, |(d, _)| *d)
}

impl MemoryUsage {
    fn shard(&self, tenant: &TenantId) -> &Mutex<UsageShard> {
        use std::hash::Hasher;
        // A fixed hasher: the shard of a tenant must not change.
        let mut fixed = std::collections::hash_map::DefaultHasher::new();
        fixed.write(tenant.as_str().as_bytes());
        &self.shards[(fixed.finish() as usize) % SHARDS]
    }

    /// Adds `figures` to `tenant`'s `hour`. Returns the owner they were
    /// counted under: `tenant`, or [`TenantId::other`] when the store is at
    /// its bound and no kept tenant's figures have all expired.
    pub fn add(&self, tenant: &TenantId, hour: u64, figures: &Figures) -> TenantId {
        let other = TenantId::other();
        let mut shard = self.shard(tenant).lock();
        let mut owner = tenant;
        let day = hour / 24;
        if !shard.tenants.contains_key(tenant)
            && shard.tenants.len() >= SHARD_TENANTS
            && *tenant != other
        {
            let first_kept = day.saturating_sub(DAYS_KEPT - 1);
            let forgettable = if first_kept < shard.no_room_before_day {
                None
            } else {
                // O(shard), at most once a day per full shard: the least
                // recently active tenant, if all its figures expired.
                let stalest = shard
                    .tenants
                    .iter()
                    .filter(|(t, _)| **t != other)
                    .min_by_key(|(_, u)| newest_day(u))
                    .map(|(t, u)| (t.clone(), newest_day(u)));
                match stalest {
                    Some((t, newest)) if newest < first_kept => Some(t),
                    Some((_, newest)) => {
                        shard.no_room_before_day = newest + DAYS_KEPT;
                        None
                    }
                    None => None,
                }
            };
            match forgettable {
                Some(t) => {
                    shard.tenants.remove(&t);
                }
                None => owner = &other,
            }
        }
        if owner == &other && !std::ptr::eq(self.shard(&other), self.shard(tenant)) {
            drop(shard);
            self.put(&mut self.shard(&other).lock(), &other, hour, figures);
        } else {
            self.put(&mut shard, owner, hour, figures);
        }
        owner.clone()
    }

    fn put(&self, shard: &mut UsageShard, tenant: &TenantId, hour: u64, figures: &Figures) {
        let tenants = &mut shard.tenants;
        let usage = match tenants.get_mut(tenant) {
            Some(u) => u,
            None => tenants.entry(tenant.clone()).or_default(),
        };
        let known_hour = usage.hours.contains_key(&hour);
        usage.add(hour, figures);
        if !known_hour {
            usage.prune(hour);
        }
    }

    pub fn get(&self, tenant: &TenantId) -> Usage {
        self.shard(tenant)
            .lock()
            .tenants
            .get(tenant)
            .cloned()
            .unwrap_or_default()
    }

    pub fn tenants(&self) -> Vec<TenantId> {
        let mut ids: Vec<TenantId> = self
            .shards
            .iter()
            .flat_map(|s| s.lock().tenants.keys().cloned().collect::<Vec<_>>())
            .collect();
        ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        ids
    }

    /// Whether `tenant` has figures: what [`MemoryUsage::clear_tenant`]
    /// would forget.
    pub fn has_tenant(&self, tenant: &TenantId) -> bool {
        self.shard(tenant).lock().tenants.contains_key(tenant)
    }

    /// Forgets every figure of `tenant`; whether it had any.
    pub fn clear_tenant(&self, tenant: &TenantId) -> bool {
        let mut shard = self.shard(tenant).lock();
        shard.no_room_before_day = 0;
        shard.tenants.remove(tenant).is_some()
    }

    pub fn clear(&self) {
        for s in self.shards.iter() {
            let old = std::mem::take(&mut *s.lock());
            drop(old);
        }
    }
}

/// KEYS: hour hash, day hash. ARGV: hour TTL s, day TTL s, then pairs of
/// (field, value) for counts, a '|' separator, pairs for peaks.
const FLUSH: &str = r#"
local peaks = false
local i = 3
while i <= #ARGV do
  if ARGV[i] == '|' then
    peaks = true
    i = i + 1
  else
    for k = 1, 2 do
      if peaks then
        local cur = tonumber(redis.call('HGET', KEYS[k], ARGV[i]) or '0')
        if tonumber(ARGV[i + 1]) > cur then redis.call('HSET', KEYS[k], ARGV[i], ARGV[i + 1]) end
      else
        redis.call('HINCRBY', KEYS[k], ARGV[i], ARGV[i + 1])
      end
    end
    i = i + 2
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"#;

/// KEYS: hashes of one tenant. Returns each one's HGETALL.
const READ: &str = r#"
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HGETALL', KEYS[i]) end
return out
"#;

static SCRIPTS: LazyLock<(Script, Script)> =
    LazyLock::new(|| (Script::new(FLUSH), Script::new(READ)));

pub struct RedisUsage {
    store: Arc<RedisStore>,
    prefix: KeyPrefix,
}

impl RedisUsage {
    pub fn new(store: Arc<RedisStore>, prefix: KeyPrefix) -> Self {
        RedisUsage { store, prefix }
    }

    pub fn store(&self) -> &RedisStore {
        &self.store
    }

    pub fn prefix(&self) -> &KeyPrefix {
        &self.prefix
    }

    pub fn hour_key(&self, tenant: &TenantId, hour: u64) -> String {
        format_key(&self.prefix, tenant, Kind::Usage, &format!("h:{hour}"))
    }

    pub fn day_key(&self, tenant: &TenantId, day: u64) -> String {
        format_key(&self.prefix, tenant, Kind::Usage, &format!("d:{day}"))
    }

    /// One round trip: the figures go into the hour's and the day's hash.
    pub fn add(&self, tenant: &TenantId, hour: u64, figures: &Figures) -> Result<(), StoreError> {
        let keys = [self.hour_key(tenant, hour), self.day_key(tenant, hour / 24)];
        let values: Vec<String> = figures.iter().map(u64::to_string).collect();
        let mut args = vec![
            Arg::Int((HOURS_KEPT * HOUR) as i64),
            Arg::Int((DAYS_KEPT * DAY) as i64),
        ];
        for peaks in [false, true] {
            if peaks {
                args.push(Arg::Str("|"));
            }
            for m in Metric::ALL.into_iter().filter(|m| m.is_peak() == peaks) {
                if figures[m.index()] > 0 {
                    args.push(Arg::Str(m.name()));
                    args.push(Arg::Str(&values[m.index()]));
                }
            }
        }
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.store.eval_once(&SCRIPTS.0, &refs, &args)?;
        Ok(())
    }

    /// One round trip for the tenant's hours and days from `since_hour`.
    pub fn get(
        &self,
        tenant: &TenantId,
        since_hour: u64,
        now_hour: u64,
    ) -> Result<Usage, StoreError> {
        let first_hour = since_hour.max(now_hour.saturating_sub(HOURS_KEPT - 1));
        let first_day = (since_hour / 24).max((now_hour / 24).saturating_sub(DAYS_KEPT - 1));
        let hours: Vec<u64> = (first_hour..=now_hour).collect();
        let days: Vec<u64> = (first_day..=now_hour / 24).collect();
        let keys: Vec<String> = hours
            .iter()
            .map(|h| self.hour_key(tenant, *h))
            .chain(days.iter().map(|d| self.day_key(tenant, *d)))
            .collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let reply = self.store.eval(&SCRIPTS.1, &refs, &[])?;
        let Reply::Array(items) = &reply else {
            return Err(self.store.unexpected("the usage read", &reply));
        };
        let mut usage = Usage::default();
        for (i, item) in items.iter().enumerate() {
            let figures = figures_of(item).ok_or_else(|| self.store.unexpected("HGETALL", item))?;
            if figures == Figures::default() {
                continue;
            }
            if i < hours.len() {
                usage.hours.insert(hours[i], figures);
            } else {
                usage.days.insert(days[i - hours.len()], figures);
            }
        }
        Ok(usage)
    }

    /// Deletes every hour and day hash of `tenant` that may still exist
    /// (one `DEL`, one slot: the keys share the tenant's hash tag); the
    /// number of keys deleted.
    pub fn delete_tenant(&self, tenant: &TenantId, now_hour: u64) -> Result<u64, StoreError> {
        let hours = now_hour.saturating_sub(HOURS_KEPT)..=now_hour;
        let days = (now_hour / 24).saturating_sub(DAYS_KEPT)..=now_hour / 24;
        let keys: Vec<String> = hours
            .map(|h| self.hour_key(tenant, h))
            .chain(days.map(|d| self.day_key(tenant, d)))
            .collect();
        let mut cmd = redis::cmd("DEL");
        for key in &keys {
            cmd.arg(key);
        }
        match self.store.query(&cmd)? {
            Reply::Int(n) => Ok(n.max(0) as u64),
            other => Err(self.store.unexpected("DEL", &other)),
        }
    }

    /// Tenants with daily figures (a `SCAN` of every node: for reports).
    pub fn tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        let pattern = format!("{}:{{tenant:*}}:usage:d:*", glob_escaped(&self.prefix));
        let mut found = std::collections::BTreeSet::new();
        for key in self.store.scan(&pattern)? {
            let key = String::from_utf8_lossy(&key);
            if let Some(id) = parse_key(&key).and_then(|p| TenantId::parse(p.tenant).ok()) {
                found.insert(id.as_str().to_owned());
            }
        }
        Ok(found
            .iter()
            .filter_map(|t| TenantId::parse(t).ok())
            .collect())
    }
}

fn figures_of(reply: &Reply) -> Option<Figures> {
    let Reply::Array(flat) = reply else {
        return None;
    };
    let mut figures = Figures::default();
    for pair in flat.chunks(2) {
        let [Reply::BulkString(name), Reply::BulkString(value)] = pair else {
            return None;
        };
        let name = std::str::from_utf8(name).ok()?;
        if let Some(m) = Metric::from_name(name) {
            figures[m.index()] = std::str::from_utf8(value).ok()?.parse().ok()?;
        }
    }
    Some(figures)
}

/// Batches held at most (all tenants): past this, the oldest batch is
/// flushed before a new one is made ([`Recorded::Full`]).
pub const MAX_PENDING: usize = MAX_MEMORY_TENANTS;

/// What [`Batch::record`] did.
#[derive(Debug, PartialEq)]
pub enum Recorded {
    /// Added to a pending batch.
    Kept,
    /// The tenant's batch of that hour is due: flush it.
    Due(u64, Figures),
    /// No room for a new batch: the oldest one is handed out to flush
    /// first (then record again); if the flush fails, put it back
    /// ([`Batch::put_back`]) and count the figure as [`TenantId::other`].
    /// Nothing was recorded.
    Full(TenantId, u64, Figures),
}

#[derive(Default)]
struct Pending {
    batches: HashMap<(TenantId, u64), (Figures, u64)>,
    /// Batches oldest first (records of batches taken since are skipped).
    order: std::collections::VecDeque<(TenantId, u64)>,
}

/// Deltas gathered in the process before they are flushed; bounded, and a
/// batch leaves it only to be flushed (or, when the flush fails, is put
/// back), so no figure a tenant is billed on is forgotten to make room.
#[derive(Default)]
pub struct Batch {
    pending: Mutex<Pending>,
}

impl Batch {
    /// Adds `value` to `metric` (or raises a peak) for `tenant` at `now`
    /// (seconds). See [`Recorded`].
    pub fn record(
        &self,
        tenant: &TenantId,
        metric: Metric,
        value: u64,
        now: u64,
        interval: u64,
    ) -> Recorded {
        let hour = now / HOUR;
        let mut pending = self.pending.lock();
        let key = (tenant.clone(), hour);
        if !pending.batches.contains_key(&key)
            && pending.batches.len() >= MAX_PENDING
            && *tenant != TenantId::other()
        {
            while let Some(oldest) = pending.order.pop_front() {
                if let Some((figures, _)) = pending.batches.remove(&oldest) {
                    return Recorded::Full(oldest.0, oldest.1, figures);
                }
            }
        }
        let fresh = !pending.batches.contains_key(&key);
        let (figures, since) = pending
            .batches
            .entry(key.clone())
            .or_insert((Figures::default(), now));
        let mut one = Figures::default();
        one[metric.index()] = value;
        merge(figures, &one);
        if now.saturating_sub(*since) >= interval {
            let out = *figures;
            pending.batches.remove(&key);
            return Recorded::Due(hour, out);
        }
        if fresh {
            pending.order.push_back(key);
            if pending.order.len() > 2 * pending.batches.len() + 64 {
                let Pending { batches, order } = &mut *pending;
                order.retain(|k| batches.contains_key(k));
            }
        }
        Recorded::Kept
    }

    /// Puts a batch that could not be flushed back (merged with what came
    /// since), oldest again.
    pub fn put_back(&self, tenant: TenantId, hour: u64, figures: &Figures, now: u64) {
        let mut pending = self.pending.lock();
        let key = (tenant, hour);
        let fresh = !pending.batches.contains_key(&key);
        let (held, _) = pending
            .batches
            .entry(key.clone())
            .or_insert((Figures::default(), now));
        merge(held, figures);
        if fresh {
            pending.order.push_front(key);
        }
    }

    /// Every pending batch (of one tenant, or all), taken out.
    pub fn take(&self, tenant: Option<&TenantId>) -> Vec<(TenantId, u64, Figures)> {
        let mut pending = self.pending.lock();
        let keys: Vec<(TenantId, u64)> = pending
            .batches
            .keys()
            .filter(|(t, _)| tenant.is_none_or(|want| want == t))
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|k| pending.batches.remove(&k).map(|(f, _)| (k.0, k.1, f)))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.pending.lock().batches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis_store::tests::Server;
    use crate::redis_store::StoreOptions;

    fn t(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    fn one(metric: Metric, v: u64) -> Figures {
        let mut f = Figures::default();
        f[metric.index()] = v;
        f
    }

    #[test]
    fn counts_add_and_peaks_keep_the_largest() {
        let m = MemoryUsage::default();
        let hour = 500_000;
        m.add(&t("a"), hour, &one(Metric::HttpRequests, 3));
        m.add(&t("a"), hour + 1, &one(Metric::HttpRequests, 2));
        m.add(&t("a"), hour, &one(Metric::PeakPresences, 7));
        m.add(&t("a"), hour + 1, &one(Metric::PeakPresences, 4));
        let u = m.get(&t("a"));
        assert_eq!(u.hours.len(), 2);
        let total = u.total();
        assert_eq!(total[Metric::HttpRequests.index()], 5);
        assert_eq!(total[Metric::PeakPresences.index()], 7);
        assert_eq!(m.get(&t("b")), Usage::default());
        // Old hours are pruned.
        m.add(&t("a"), hour + 100, &one(Metric::Limited, 1));
        assert_eq!(m.get(&t("a")).hours.len(), 1);
    }

    #[test]
    fn batches_flush_once_per_interval() {
        let b = Batch::default();
        let now = 1_000 * HOUR + 10;
        assert_eq!(
            b.record(&t("a"), Metric::LiveEvents, 1, now, 1),
            Recorded::Kept
        );
        assert_eq!(
            b.record(&t("a"), Metric::LiveEvents, 1, now, 1),
            Recorded::Kept
        );
        let Recorded::Due(hour, f) = b.record(&t("a"), Metric::Limited, 1, now + 1, 1) else {
            panic!("not due")
        };
        assert_eq!(hour, 1000);
        assert_eq!(
            (f[Metric::LiveEvents.index()], f[Metric::Limited.index()]),
            (2, 1)
        );
        b.record(&t("b"), Metric::LiveEvents, 1, now, 1);
        assert_eq!(b.take(Some(&t("a"))), vec![]);
        assert_eq!(b.take(None).len(), 1);
    }

    #[test]
    fn redis_usage_round_trips() {
        let server = Server::require();
        let store = RedisStore::shared(&server.url(), StoreOptions::default()).unwrap();
        let r = RedisUsage::new(store, KeyPrefix::default());
        let hour = crate::ratelimit::now_micros() / 1_000_000 / HOUR;
        r.add(&t("acme"), hour, &one(Metric::HttpRequests, 4))
            .unwrap();
        r.add(&t("acme"), hour, &one(Metric::StateBytes, 9))
            .unwrap();
        r.add(&t("acme"), hour, &one(Metric::StateBytes, 5))
            .unwrap();
        let u = r.get(&t("acme"), hour - 5, hour).unwrap();
        assert_eq!(u.hours[&hour][Metric::HttpRequests.index()], 4);
        assert_eq!(u.days[&(hour / 24)][Metric::StateBytes.index()], 9);
        assert_eq!(r.tenants().unwrap(), vec![t("acme")]);

        // A deleted tenant's figures go, another tenant's stay.
        r.add(&t("globex"), hour - 30, &one(Metric::LiveEvents, 2))
            .unwrap();
        r.add(&t("acme"), hour - 30, &one(Metric::LiveEvents, 1))
            .unwrap();
        assert_eq!(r.delete_tenant(&t("acme"), hour).unwrap(), 4);
        assert_eq!(
            r.get(&t("acme"), hour - 47, hour).unwrap(),
            Usage::default()
        );
        let g = r.get(&t("globex"), hour - 47, hour).unwrap();
        assert_eq!(g.total()[Metric::LiveEvents.index()], 2);
        assert_eq!(r.delete_tenant(&t("acme"), hour).unwrap(), 0);
    }

    #[test]
    fn memory_keeps_a_bounded_number_of_tenants() {
        let m = MemoryUsage::default();
        m.add(&t("busy"), 1_000, &one(Metric::HttpRequests, 1));
        for i in 0..(MAX_MEMORY_TENANTS * 3) {
            m.add(&t(&format!("t{i}")), 10, &one(Metric::HttpRequests, 1));
            if i % 1000 == 0 {
                m.add(&t("busy"), 1_000, &one(Metric::HttpRequests, 1));
            }
        }
        assert!(m.tenants().len() <= MAX_MEMORY_TENANTS);
        // The busy tenant stayed; new tenants past the bound, whose figures
        // no kept tenant's expiry made room for, are counted as `-other`.
        assert!(m.get(&t("busy")).total()[Metric::HttpRequests.index()] > 1);
        let last = format!("t{}", MAX_MEMORY_TENANTS * 3 - 1);
        assert_eq!(m.get(&t(&last)), Usage::default());
        assert!(m.get(&TenantId::other()).total()[Metric::HttpRequests.index()] > 0);
    }

    #[test]
    fn clear_tenant_forgets_one_tenant() {
        let m = MemoryUsage::default();
        m.add(&t("a"), 1, &one(Metric::HttpRequests, 3));
        m.add(&t("b"), 1, &one(Metric::HttpRequests, 4));
        assert!(m.has_tenant(&t("a")));
        assert!(m.clear_tenant(&t("a")));
        assert!(!m.has_tenant(&t("a")));
        assert!(!m.clear_tenant(&t("a")));
        assert_eq!(m.get(&t("a")), Usage::default());
        assert_eq!(m.get(&t("b")).total()[Metric::HttpRequests.index()], 4);
    }

    #[test]
    fn a_flood_of_new_tenants_never_drops_a_quiet_tenants_figures() {
        let m = MemoryUsage::default();
        let hour = 480_000; // day 20,000
        m.add(&t("quiet"), hour - 24 * 30, &one(Metric::HttpRequests, 7));
        // Old figures, all past DAYS_KEPT: this tenant may go.
        m.add(
            &t("gone"),
            hour - 24 * (DAYS_KEPT + 1),
            &one(Metric::HttpRequests, 1),
        );
        let mut others = 0;
        for i in 0..(MAX_MEMORY_TENANTS * 2) {
            let owner = m.add(&t(&format!("f{i}")), hour, &one(Metric::HttpRequests, 1));
            others += usize::from(owner == TenantId::other());
        }
        assert!(
            m.tenants().len() <= MAX_MEMORY_TENANTS + 1,
            "{}",
            m.tenants().len()
        );
        // The quiet tenant's figures stayed; the expired tenant made room.
        assert_eq!(m.get(&t("quiet")).total()[Metric::HttpRequests.index()], 7);
        assert_eq!(m.get(&t("gone")), Usage::default());
        // What found no room is counted, as `-other`.
        assert!(others > 0);
        let other = m.get(&TenantId::other()).total()[Metric::HttpRequests.index()];
        assert_eq!(other as usize, others);
        // A known tenant still counts under its own name.
        assert_eq!(
            m.add(&t("quiet"), hour, &one(Metric::Limited, 1)),
            t("quiet")
        );
    }

    #[test]
    fn a_full_batch_hands_out_its_oldest_to_flush_first() {
        let b = Batch::default();
        let now = 1_000 * HOUR;
        b.record(&t("quiet"), Metric::LiveEvents, 5, now, 1000);
        for i in 1..MAX_PENDING {
            assert_eq!(
                b.record(&t(&format!("f{i}")), Metric::LiveEvents, 1, now, 1000),
                Recorded::Kept
            );
        }
        // Full: the oldest batch (quiet's) comes out to be flushed; nothing
        // of the newcomer was recorded.
        let Recorded::Full(oldest, hour, figures) =
            b.record(&t("new"), Metric::LiveEvents, 1, now, 1000)
        else {
            panic!("not full")
        };
        assert_eq!((oldest.as_str(), hour), ("quiet", 1000));
        assert_eq!(figures[Metric::LiveEvents.index()], 5);
        // The flush failed: it goes back, and the newcomer counts as other.
        b.put_back(oldest, hour, &figures, now);
        assert_eq!(
            b.record(&TenantId::other(), Metric::LiveEvents, 1, now, 1000),
            Recorded::Kept
        );
        let pending = b.take(Some(&t("quiet")));
        assert_eq!(pending[0].2[Metric::LiveEvents.index()], 5);
        assert_eq!(b.len(), MAX_PENDING); // f1.. and other
    }
}
