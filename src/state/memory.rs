//! The in-memory state store: one per process, shared by every tenant,
//! bounded in bytes.
//!
//! Layout: [`SHARDS`] independently locked shards; a tenant's keys all live
//! in one shard (chosen by a keyed hash of the tenant id), in one
//! [`RecordTable`] of that tenant, found through a small per-shard tenant
//! index. So `delete_tenant` unlinks one table (the memory is freed outside
//! the lock) and never looks at another tenant's keys, and a tenant with few
//! keys costs one small table, not one per shard. (Calls from Python hold the
//! GIL, so spreading one tenant over shards would buy no parallelism.)
//!
//! A key costs its packed record — name, stored value and a 5-byte header,
//! plus 8 bytes with an expiry — and about 9 bytes of hash table (see
//! [`super::table`]): no per-key allocation.
//!
//! Expiry never scans: an expired key is dropped when it is touched, and
//! every shard keeps a min-heap of `(expiry, table, hash)` for its keys that
//! have a TTL. Each operation pops up to [`EXPIRE_PER_OP`] due keys of its
//! shard, and every [`SWEEP_EVERY`] operations a thread does the same (up to
//! [`EXPIRE_PER_SWEEP`]) for the next shard of a round robin, so shards
//! without traffic are cleaned too. Heap records made stale by an overwrite
//! or a delete are skipped when popped; when they outnumber the live ones the
//! shard's heap is rebuilt (amortized O(1) per write).
//!
//! The byte bound counts, per key, its record plus [`ENTRY_OVERHEAD`] (its
//! share of the hash table) and [`HEAP_OVERHEAD`] when it has a TTL. A write
//! that would pass the bound first expires everything due, then fails with
//! [`StateError::Full`] (no eviction: state is not a cache).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hashbrown::HashTable;
use parking_lot::Mutex;

use super::table::{key_hash, record_len, Record, RecordTable, Removed};
use super::{parse_int, Space, StateError, Ttl, Value};
use crate::sweep;
use crate::tenant_id::TenantId;

/// Number of shards (a power of two).
pub const SHARDS: usize = 64;
/// Due keys expired per operation on a shard.
pub const EXPIRE_PER_OP: usize = 4;
/// Every this many operations, a thread also expires due keys of the next
/// shard of its round robin.
pub const SWEEP_EVERY: u32 = 8;
/// Due keys expired per sweep step.
pub const EXPIRE_PER_SWEEP: usize = 64;
/// Bytes counted per key besides its record (its share of the hash table).
pub const ENTRY_OVERHEAD: usize = 12;
/// Bytes counted per key with a TTL (its heap record).
pub const HEAP_OVERHEAD: usize = 24;
/// The default byte bound (`STATE_MEMORY_MAX_BYTES`).
pub const DEFAULT_LIMIT: usize = 512 * 1024 * 1024;

thread_local! {
    static SWEEP: sweep::Turn = const { std::cell::Cell::new((0, 0)) };
}

/// Bytes a key is counted for.
fn cost(len: usize, expires: u64) -> usize {
    len + ENTRY_OVERHEAD + if expires != 0 { HEAP_OVERHEAD } else { 0 }
}

fn cost_of(r: &Removed) -> usize {
    cost(r.len, r.expires)
}

struct Table {
    tenant: Box<str>,
    tenant_hash: u64,
    records: RecordTable,
    with_ttl: usize,
}

struct Slot {
    generation: u32,
    table: Option<Table>,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: u64,
    slot: u32,
    generation: u32,
    hash: u64,
}

#[derive(Default)]
struct Shard {
    /// Tenant → index in `slots`.
    tenants: HashTable<u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    heap: BinaryHeap<Reverse<Due>>,
    /// Live keys with a TTL (what the heap should hold).
    with_ttl: usize,
}

/// Cache-line aligned so neighbouring shards' locks do not false-share.
#[repr(align(64))]
struct Padded<T>(T);

/// What an operation changed, applied to the store's counters.
#[derive(Default)]
struct Delta {
    bytes: isize,
    entries: isize,
}

impl Delta {
    fn gone(&mut self, removed: &Removed) {
        self.bytes -= cost_of(removed) as isize;
        self.entries -= 1;
    }
}

pub struct MemoryState {
    shards: Box<[Padded<Mutex<Shard>>]>,
    /// Keyed (random per process) so crafted names cannot collide.
    hasher: RandomState,
    epoch: Instant,
    limit: AtomicUsize,
    used: AtomicUsize,
    entries: AtomicUsize,
}

impl Default for MemoryState {
    fn default() -> Self {
        Self::new()
    }
}

/// Totals over the whole store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Keys held, expired but not yet dropped ones included.
    pub entries: usize,
    /// Bytes counted against the limit.
    pub bytes: usize,
    pub limit: usize,
}

impl Shard {
    fn find_slot(&self, tenant_hash: u64, tenant: &str) -> Option<u32> {
        let slots = &self.slots;
        self.tenants
            .find(tenant_hash, |&i| {
                slots[i as usize]
                    .table
                    .as_ref()
                    .is_some_and(|t| &*t.tenant == tenant)
            })
            .copied()
    }

    fn slot_or_create(&mut self, tenant_hash: u64, tenant: &str) -> u32 {
        if let Some(slot) = self.find_slot(tenant_hash, tenant) {
            return slot;
        }
        let table = Table {
            tenant: tenant.into(),
            tenant_hash,
            records: RecordTable::default(),
            with_ttl: 0,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize].table = Some(table);
                slot
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    table: Some(table),
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        self.tenants.insert_unique(tenant_hash, slot, |&i| {
            slots[i as usize]
                .table
                .as_ref()
                .map_or(0, |t| t.tenant_hash)
        });
        slot
    }

    fn table(&mut self, slot: u32) -> Option<&mut Table> {
        self.slots.get_mut(slot as usize)?.table.as_mut()
    }

    fn table_ref(&self, slot: u32) -> Option<&Table> {
        self.slots.get(slot as usize)?.table.as_ref()
    }

    /// Unlinks the table of `slot` (its heap records become stale).
    fn take_table(&mut self, slot: u32) -> Option<Table> {
        let entry = self.slots.get_mut(slot as usize)?;
        let table = entry.table.take()?;
        entry.generation = entry.generation.wrapping_add(1);
        if let Ok(found) = self.tenants.find_entry(table.tenant_hash, |&i| i == slot) {
            found.remove();
        }
        self.free.push(slot);
        self.with_ttl -= table.with_ttl;
        Some(table)
    }

    /// Frees the table of `slot` if it holds nothing.
    fn drop_if_empty(&mut self, slot: u32) {
        if self.table_ref(slot).is_some_and(|t| t.records.is_empty()) {
            self.take_table(slot);
        }
    }

    /// Removes the key of `slot`'s table for which `pred` holds; frees the
    /// table if that empties it.
    fn remove(
        &mut self,
        slot: u32,
        key: &Key<'_>,
        pred: impl Fn(&Record<'_>) -> bool,
        delta: &mut Delta,
    ) -> Option<Removed> {
        let table = self.table(slot)?;
        let removed = table
            .records
            .remove_if(key.hash, key.space, key.name, pred, key.hasher)?;
        if removed.expires != 0 {
            table.with_ttl -= 1;
            self.with_ttl -= 1;
        }
        delta.gone(&removed);
        self.drop_if_empty(slot);
        Some(removed)
    }

    /// Pops up to `budget` due heap records and drops their keys when still
    /// expired. Returns how many keys went.
    fn expire(
        &mut self,
        now: u64,
        budget: usize,
        hasher: &RandomState,
        delta: &mut Delta,
    ) -> usize {
        let mut removed = 0;
        for _ in 0..budget {
            match self.heap.peek() {
                Some(Reverse(due)) if due.at <= now => {}
                _ => break,
            }
            let Some(Reverse(due)) = self.heap.pop() else {
                break;
            };
            let live = self
                .slots
                .get(due.slot as usize)
                .is_some_and(|s| s.generation == due.generation && s.table.is_some());
            if !live {
                continue;
            }
            let Some(table) = self.table(due.slot) else {
                continue;
            };
            // The key of this record, if it still has this expiry.
            let Some((space, name)) = table
                .records
                .iter_hash(due.hash)
                .find(|r| r.expires() == due.at)
                .map(|r| (r.space(), r.name().to_vec()))
            else {
                continue; // overwritten or deleted since: a stale record
            };
            let key = Key {
                tenant: "",
                tenant_hash: 0,
                hash: due.hash,
                space,
                name: &name,
                now,
                hasher,
            };
            if self
                .remove(
                    due.slot,
                    &key,
                    |r| r.expires() == due.at && r.expired(now),
                    delta,
                )
                .is_some()
            {
                removed += 1;
            }
        }
        removed
    }

    fn schedule(&mut self, slot: u32, hash: u64, at: u64, hasher: &RandomState) {
        let generation = self.slots[slot as usize].generation;
        self.heap.push(Reverse(Due {
            at,
            slot,
            generation,
            hash,
        }));
        // Stale records (overwrites, deletes) outnumber live ones: rebuild.
        if self.heap.len() > 2 * self.with_ttl + 64 {
            let mut live = Vec::with_capacity(self.with_ttl);
            for (index, s) in self.slots.iter().enumerate() {
                let Some(table) = &s.table else { continue };
                for r in table.records.iter().filter(|r| r.expires() != 0) {
                    live.push(Reverse(Due {
                        at: r.expires(),
                        slot: index as u32,
                        generation: s.generation,
                        hash: key_hash(hasher, r.space(), r.name()),
                    }));
                }
            }
            self.heap = BinaryHeap::from(live);
        }
    }
}

impl MemoryState {
    pub fn new() -> Self {
        Self::with_limit(DEFAULT_LIMIT)
    }

    pub fn with_limit(limit: usize) -> Self {
        MemoryState {
            shards: (0..SHARDS)
                .map(|_| Padded(Mutex::new(Shard::default())))
                .collect(),
            hasher: RandomState::new(),
            epoch: Instant::now(),
            limit: AtomicUsize::new(limit),
            used: AtomicUsize::new(0),
            entries: AtomicUsize::new(0),
        }
    }

    /// Changes the byte bound (existing keys stay; writes past it fail).
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    pub fn stats(&self) -> Stats {
        Stats {
            entries: self.entries.load(Ordering::Relaxed),
            bytes: self.used.load(Ordering::Relaxed),
            limit: self.limit.load(Ordering::Relaxed),
        }
    }

    /// Bytes the tables have actually allocated (records, spare room in
    /// their chunks, hash tables); walks every table.
    pub fn allocated(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let shard = shard.0.lock();
                shard
                    .slots
                    .iter()
                    .filter_map(|s| s.table.as_ref())
                    .map(|t| t.records.allocated())
                    .sum::<usize>()
            })
            .sum()
    }

    /// The instant the store counts expiries from (tests build `now`s
    /// from it).
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    fn millis(&self, now: Instant) -> u64 {
        let ms = now.saturating_duration_since(self.epoch).as_millis();
        u64::try_from(ms).unwrap_or(u64::MAX - 1) + 1
    }

    fn apply(&self, delta: &Delta) {
        if delta.bytes >= 0 {
            self.used.fetch_add(delta.bytes as usize, Ordering::Relaxed);
        } else {
            self.used
                .fetch_sub(delta.bytes.unsigned_abs(), Ordering::Relaxed);
        }
        if delta.entries >= 0 {
            self.entries
                .fetch_add(delta.entries as usize, Ordering::Relaxed);
        } else {
            self.entries
                .fetch_sub(delta.entries.unsigned_abs(), Ordering::Relaxed);
        }
    }

    /// The shard of a tenant. Uses middle bits: the tenant index uses the
    /// low bits (bucket) and the top 7 bits (tag).
    fn shard_of(&self, tenant_hash: u64) -> &Mutex<Shard> {
        &self.shards[((tenant_hash >> 32) as usize) & (SHARDS - 1)].0
    }

    /// Every [`SWEEP_EVERY`] operations of a thread: expire due keys of the
    /// next shard of its round robin, if its lock is free (never waits).
    fn sweep_step(&self, now: u64) {
        let shard = sweep::next_shard(&SWEEP, SWEEP_EVERY, SHARDS);
        if let Some(index) = shard {
            let mut delta = Delta::default();
            if let Some(mut shard) = self.shards[index].0.try_lock() {
                shard.expire(now, EXPIRE_PER_SWEEP, &self.hasher, &mut delta);
            }
            self.apply(&delta);
        }
    }

    /// Runs `op` on the key's shard under its lock (after expiring a few due
    /// keys of that shard), then one sweep step.
    fn on_key<R>(
        &self,
        tenant: &TenantId,
        space: Space,
        name: &str,
        now: Instant,
        op: impl FnOnce(&mut Shard, Key<'_>, &mut Delta) -> R,
    ) -> R {
        let now = self.millis(now);
        let tenant_hash = self.hasher.hash_one(tenant.as_str());
        let key = Key {
            tenant: tenant.as_str(),
            tenant_hash,
            hash: key_hash(&self.hasher, space.byte(), name.as_bytes()),
            space: space.byte(),
            name: name.as_bytes(),
            now,
            hasher: &self.hasher,
        };
        let mut delta = Delta::default();
        let result = {
            let mut shard = self.shard_of(tenant_hash).lock();
            shard.expire(now, EXPIRE_PER_OP, &self.hasher, &mut delta);
            op(&mut shard, key, &mut delta)
        };
        self.apply(&delta);
        self.sweep_step(now);
        result
    }

    /// Runs `read` on the live stored value of the key, if any.
    pub fn get_with<R>(
        &self,
        tenant: &TenantId,
        space: Space,
        name: &str,
        now: Instant,
        read: impl FnOnce(&[u8]) -> R,
    ) -> Option<R> {
        self.on_key(tenant, space, name, now, |shard, key, delta| {
            let slot = shard.find_slot(key.tenant_hash, key.tenant)?;
            let record = shard
                .table_ref(slot)?
                .records
                .find(key.hash, key.space, key.name)?;
            if record.expired(key.now) {
                shard.remove(slot, &key, |_| true, delta);
                return None;
            }
            Some(read(record.value()))
        })
    }

    /// The stored value (tag included), copied out.
    pub fn get(
        &self,
        tenant: &TenantId,
        space: Space,
        name: &str,
        now: Instant,
    ) -> Option<Vec<u8>> {
        self.get_with(tenant, space, name, now, <[u8]>::to_vec)
    }

    /// Stores `value`, replacing any previous one; `ttl` `None` never
    /// expires.
    pub fn set(
        &self,
        tenant: &TenantId,
        space: Space,
        name: &str,
        value: &Value<'_>,
        ttl: Option<Duration>,
        now: Instant,
    ) -> Result<(), StateError> {
        value.check()?;
        let attempt = || {
            self.on_key(tenant, space, name, now, |shard, key, delta| {
                let expires = ttl.map_or(0, |t| key.now.saturating_add(super::ttl_millis(t)));
                self.put(shard, &key, value, expires, delta)
            })
        };
        match attempt() {
            // Due keys of other shards may free enough: drop them (one shard
            // lock at a time) and try once more.
            Err(StateError::Full { .. }) if self.purge_expired(now) > 0 => attempt(),
            other => other,
        }
    }

    /// Inserts or replaces the key's value within the byte bound.
    fn put(
        &self,
        shard: &mut Shard,
        key: &Key<'_>,
        value: &Value<'_>,
        expires: u64,
        delta: &mut Delta,
    ) -> Result<(), StateError> {
        let new_cost = cost(record_len(key.name, value, expires), expires);
        let old_cost = shard
            .find_slot(key.tenant_hash, key.tenant)
            .and_then(|slot| shard.table_ref(slot))
            .and_then(|t| t.records.find(key.hash, key.space, key.name))
            .map_or(0, |r| cost(r.len(), r.expires()));
        let grow = new_cost.saturating_sub(old_cost);
        if grow > 0 && self.would_overflow(grow, delta) {
            // Make room from what is due anyway in this shard, or give up.
            shard.expire(key.now, usize::MAX, key.hasher, delta);
            if self.would_overflow(grow, delta) {
                return Err(self.full());
            }
        }
        let slot = shard.slot_or_create(key.tenant_hash, key.tenant);
        let Some(table) = shard.table(slot) else {
            return Err(self.full()); // unreachable: the slot was just made
        };
        let upserted = table
            .records
            .upsert(key.hash, key.space, key.name, value, expires, key.hasher);
        let replaced = match upserted {
            Ok(replaced) => replaced,
            Err(_) => {
                shard.drop_if_empty(slot);
                return Err(self.full());
            }
        };
        let mut ttl_change = isize::from(expires != 0);
        match &replaced {
            Some(old) => {
                ttl_change -= isize::from(old.expires != 0);
                delta.bytes += new_cost as isize - cost_of(old) as isize;
            }
            None => {
                delta.bytes += new_cost as isize;
                delta.entries += 1;
            }
        }
        table.with_ttl = table.with_ttl.wrapping_add_signed(ttl_change);
        shard.with_ttl = shard.with_ttl.wrapping_add_signed(ttl_change);
        if expires != 0 {
            shard.schedule(slot, key.hash, expires, key.hasher);
        }
        Ok(())
    }

    fn full(&self) -> StateError {
        StateError::Full {
            limit: self.limit.load(Ordering::Relaxed),
        }
    }

    fn would_overflow(&self, grow: usize, delta: &Delta) -> bool {
        let used = self.used.load(Ordering::Relaxed) as isize + delta.bytes;
        used.max(0) as usize + grow > self.limit.load(Ordering::Relaxed)
    }

    /// Removes the key; true when it existed (and had not expired).
    pub fn delete(&self, tenant: &TenantId, space: Space, name: &str, now: Instant) -> bool {
        self.on_key(tenant, space, name, now, |shard, key, delta| {
            let Some(slot) = shard.find_slot(key.tenant_hash, key.tenant) else {
                return false;
            };
            shard
                .remove(slot, &key, |_| true, delta)
                .is_some_and(|r| r.expires == 0 || r.expires > key.now)
        })
    }

    pub fn exists(&self, tenant: &TenantId, space: Space, name: &str, now: Instant) -> bool {
        self.get_with(tenant, space, name, now, |_| ()).is_some()
    }

    pub fn ttl(&self, tenant: &TenantId, space: Space, name: &str, now: Instant) -> Ttl {
        self.on_key(tenant, space, name, now, |shard, key, delta| {
            let Some(slot) = shard.find_slot(key.tenant_hash, key.tenant) else {
                return Ttl::Missing;
            };
            let found = shard
                .table_ref(slot)
                .and_then(|t| t.records.find(key.hash, key.space, key.name))
                .map(|r| (r.expires(), r.expired(key.now)));
            match found {
                None => Ttl::Missing,
                Some((_, true)) => {
                    shard.remove(slot, &key, |_| true, delta);
                    Ttl::Missing
                }
                Some((0, false)) => Ttl::Persistent,
                Some((at, false)) => Ttl::Expires(Duration::from_millis(at - key.now)),
            }
        })
    }

    /// Adds `by` to the integer at the key (a missing key counts as 0 and is
    /// created without expiry; an existing key keeps its TTL). Returns the
    /// new value.
    pub fn incr(
        &self,
        tenant: &TenantId,
        space: Space,
        name: &str,
        by: i64,
        now: Instant,
    ) -> Result<i64, StateError> {
        self.on_key(tenant, space, name, now, |shard, key, delta| {
            let current = shard
                .find_slot(key.tenant_hash, key.tenant)
                .and_then(|slot| shard.table_ref(slot))
                .and_then(|t| t.records.find(key.hash, key.space, key.name))
                .filter(|r| !r.expired(key.now))
                .map(|r| (parse_int(r.value()), r.expires()));
            let (value, expires) = match current {
                None => (by, 0),
                Some((None, _)) => {
                    return Err(StateError::NotAnInteger {
                        name: name.to_owned(),
                    })
                }
                Some((Some(n), expires)) => match n.checked_add(by) {
                    Some(sum) => (sum, expires),
                    None => {
                        return Err(StateError::Overflow {
                            name: name.to_owned(),
                        })
                    }
                },
            };
            self.put(shard, &key, &Value::Int(value), expires, delta)?;
            Ok(value)
        })
    }

    /// Removes every key of `tenant` (both spaces): one table unlinked, its
    /// memory freed outside the lock. Returns how many live keys went.
    pub fn delete_tenant(&self, tenant: &TenantId, now: Instant) -> usize {
        let now = self.millis(now);
        let tenant_hash = self.hasher.hash_one(tenant.as_str());
        let table = {
            let mut shard = self.shard_of(tenant_hash).lock();
            let slot = shard.find_slot(tenant_hash, tenant.as_str());
            slot.and_then(|slot| shard.take_table(slot))
        };
        let Some(table) = table else { return 0 };
        let mut delta = Delta::default();
        let mut live = 0;
        for r in table.records.iter() {
            delta.bytes -= cost(r.len(), r.expires()) as isize;
            delta.entries -= 1;
            live += usize::from(!r.expired(now));
        }
        self.apply(&delta);
        drop(table);
        live
    }

    /// Removes every key of `space`, of `tenant` or of every tenant; returns
    /// how many live keys went.
    pub fn delete_space(&self, tenant: Option<&TenantId>, space: Space, now: Instant) -> usize {
        let now = self.millis(now);
        let wanted = space.byte();
        let mut live = 0;
        for shard in self.shards.iter() {
            let mut delta = Delta::default();
            {
                let mut shard = shard.0.lock();
                let slots: Vec<u32> = (0..shard.slots.len() as u32)
                    .filter(|&i| {
                        shard.table_ref(i).is_some_and(|t| {
                            tenant.is_none_or(|wanted| &*t.tenant == wanted.as_str())
                        })
                    })
                    .collect();
                for slot in slots {
                    let Some(table) = shard.table(slot) else {
                        continue;
                    };
                    let removed = table
                        .records
                        .remove_where(|r| r.space() == wanted, &self.hasher);
                    let gone_ttl = removed.iter().filter(|r| r.expires != 0).count();
                    table.with_ttl -= gone_ttl;
                    shard.with_ttl -= gone_ttl;
                    for r in &removed {
                        delta.gone(r);
                        live += usize::from(r.expires == 0 || r.expires > now);
                    }
                    shard.drop_if_empty(slot);
                }
            }
            self.apply(&delta);
        }
        live
    }

    /// Drops every expired key now (all shards); returns how many.
    pub fn purge_expired(&self, now: Instant) -> usize {
        let now = self.millis(now);
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut delta = Delta::default();
            removed += shard
                .0
                .lock()
                .expire(now, usize::MAX, &self.hasher, &mut delta);
            self.apply(&delta);
        }
        removed
    }

    /// Live keys of `space`, of `tenant` or of every tenant (walks the
    /// tables: for statistics, not for hot paths).
    pub fn count(&self, tenant: Option<&TenantId>, space: Space, now: Instant) -> usize {
        let now = self.millis(now);
        let wanted = space.byte();
        let mut n = 0;
        for shard in self.shards.iter() {
            let shard = shard.0.lock();
            for slot in &shard.slots {
                let Some(table) = &slot.table else { continue };
                if tenant.is_some_and(|t| &*table.tenant != t.as_str()) {
                    continue;
                }
                n += table
                    .records
                    .iter()
                    .filter(|r| r.space() == wanted && !r.expired(now))
                    .count();
            }
        }
        n
    }

    /// Removes everything; returns how many keys went.
    pub fn clear_all(&self) -> usize {
        let mut n = 0;
        for shard in self.shards.iter() {
            let old = std::mem::take(&mut *shard.0.lock());
            let mut delta = Delta::default();
            for table in old.slots.iter().filter_map(|s| s.table.as_ref()) {
                for r in table.records.iter() {
                    delta.bytes -= cost(r.len(), r.expires()) as isize;
                    delta.entries -= 1;
                    n += 1;
                }
            }
            self.apply(&delta);
        }
        n
    }
}

/// One operation's key, hashed once.
struct Key<'a> {
    tenant: &'a str,
    tenant_hash: u64,
    hash: u64,
    space: u8,
    name: &'a [u8],
    now: u64,
    hasher: &'a RandomState,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    fn at(store: &MemoryState, ms: u64) -> Instant {
        store.epoch() + Duration::from_millis(ms)
    }

    #[test]
    fn tenants_with_the_same_names_are_apart() {
        let s = MemoryState::new();
        let now = Instant::now();
        let (a, b) = (t("a"), t("b"));
        s.set(&a, Space::Data, "k", &Value::Bytes(b"A"), None, now)
            .unwrap();
        s.set(&b, Space::Data, "k", &Value::Json(b"[1]"), None, now)
            .unwrap();
        assert_eq!(s.get(&a, Space::Data, "k", now).unwrap(), b"bA");
        assert_eq!(s.get(&b, Space::Data, "k", now).unwrap(), b"j[1]");
        assert_eq!(
            s.get(&a, Space::View, "k", now),
            None,
            "spaces are apart too"
        );
        assert!(s.delete(&a, Space::Data, "k", now));
        assert!(!s.delete(&a, Space::Data, "k", now));
        assert!(s.exists(&b, Space::Data, "k", now));
        assert_eq!(s.stats().entries, 1);
    }

    #[test]
    fn entries_expire_without_being_read() {
        let s = MemoryState::new();
        let a = t("a");
        for i in 0..1000 {
            let ttl = Duration::from_millis(10 + i % 7);
            s.set(
                &a,
                Space::Data,
                &format!("k{i}"),
                &Value::Int(1),
                Some(ttl),
                at(&s, 0),
            )
            .unwrap();
        }
        s.set(&a, Space::Data, "keep", &Value::Int(1), None, at(&s, 0))
            .unwrap();
        assert_eq!(
            s.ttl(&a, Space::Data, "k3", at(&s, 5)),
            Ttl::Expires(Duration::from_millis(8))
        );
        assert_eq!(s.ttl(&a, Space::Data, "keep", at(&s, 5)), Ttl::Persistent);
        assert_eq!(s.ttl(&a, Space::Data, "nope", at(&s, 5)), Ttl::Missing);
        assert_eq!(s.get(&a, Space::Data, "k3", at(&s, 100)), None);
        // Unrelated operations (another tenant, another shard) expire the
        // rest through the sweep: 64 due keys per shard visit.
        let other = t("other");
        for i in 0..20_000 {
            s.exists(&other, Space::Data, &format!("x{i}"), at(&s, 100));
        }
        assert_eq!(s.stats().entries, 1);
        assert_eq!(s.count(None, Space::Data, at(&s, 100)), 1);
    }

    #[test]
    fn overwrites_reset_or_keep_the_ttl_and_stale_heap_records_are_harmless() {
        let s = MemoryState::new();
        let a = t("a");
        for round in 0..500u64 {
            s.set(
                &a,
                Space::Data,
                "k",
                &Value::Int(1),
                Some(Duration::from_millis(50)),
                at(&s, round),
            )
            .unwrap();
        }
        // Rebuilt, not grown without bound.
        assert!(
            s.shards
                .iter()
                .map(|x| x.0.lock().heap.len())
                .sum::<usize>()
                < 200
        );
        assert!(s.exists(&a, Space::Data, "k", at(&s, 540)));
        s.set(&a, Space::Data, "k", &Value::Int(1), None, at(&s, 540))
            .unwrap();
        assert!(
            s.exists(&a, Space::Data, "k", at(&s, 10_000)),
            "no TTL any more"
        );
        assert_eq!(s.incr(&a, Space::Data, "k", 5, at(&s, 10_000)).unwrap(), 6);
    }

    #[test]
    fn incr_counts_and_keeps_the_ttl() {
        let s = MemoryState::new();
        let a = t("a");
        assert_eq!(s.incr(&a, Space::Data, "n", 2, at(&s, 0)).unwrap(), 2);
        assert_eq!(s.incr(&a, Space::Data, "n", -5, at(&s, 0)).unwrap(), -3);
        assert_eq!(s.ttl(&a, Space::Data, "n", at(&s, 0)), Ttl::Persistent);
        s.set(
            &a,
            Space::Data,
            "e",
            &Value::Int(10),
            Some(Duration::from_millis(100)),
            at(&s, 0),
        )
        .unwrap();
        assert_eq!(s.incr(&a, Space::Data, "e", 1, at(&s, 50)).unwrap(), 11);
        assert_eq!(
            s.ttl(&a, Space::Data, "e", at(&s, 50)),
            Ttl::Expires(Duration::from_millis(50))
        );
        assert_eq!(
            s.incr(&a, Space::Data, "e", 1, at(&s, 200)).unwrap(),
            1,
            "expired: starts over"
        );
        s.set(
            &a,
            Space::Data,
            "s",
            &Value::Json(b"\"x\""),
            None,
            at(&s, 0),
        )
        .unwrap();
        assert!(matches!(
            s.incr(&a, Space::Data, "s", 1, at(&s, 0)),
            Err(StateError::NotAnInteger { .. })
        ));
        s.set(&a, Space::Data, "m", &Value::Int(i64::MAX), None, at(&s, 0))
            .unwrap();
        assert!(matches!(
            s.incr(&a, Space::Data, "m", 1, at(&s, 0)),
            Err(StateError::Overflow { .. })
        ));
    }

    #[test]
    fn delete_tenant_leaves_other_tenants_alone() {
        let s = MemoryState::new();
        let now = Instant::now();
        let (a, b) = (t("a"), t("b"));
        for i in 0..3000 {
            let name = format!("k{i}");
            s.set(&a, Space::Data, &name, &Value::Int(i), None, now)
                .unwrap();
            s.set(&b, Space::Data, &name, &Value::Int(i), None, now)
                .unwrap();
        }
        s.set(&a, Space::View, "v", &Value::Bytes(b"x"), None, now)
            .unwrap();
        assert_eq!(s.delete_tenant(&a, now), 3001);
        assert_eq!(s.count(Some(&a), Space::Data, now), 0);
        assert_eq!(s.count(Some(&b), Space::Data, now), 3000);
        assert_eq!(s.get(&b, Space::Data, "k7", now).unwrap(), b"7");
        assert_eq!(s.stats().entries, 3000);
        s.set(&a, Space::Data, "again", &Value::Int(1), None, now)
            .unwrap();
        assert!(s.exists(&a, Space::Data, "again", now));
    }

    #[test]
    fn delete_space_removes_views_only() {
        let s = MemoryState::new();
        let now = Instant::now();
        let (a, b) = (t("a"), t("b"));
        for tenant in [&a, &b] {
            s.set(tenant, Space::View, "v", &Value::Bytes(b"x"), None, now)
                .unwrap();
            s.set(tenant, Space::Data, "d", &Value::Int(1), None, now)
                .unwrap();
        }
        assert_eq!(s.delete_space(Some(&a), Space::View, now), 1);
        assert!(s.exists(&b, Space::View, "v", now));
        assert_eq!(s.delete_space(None, Space::View, now), 1);
        assert_eq!(s.count(None, Space::Data, now), 2);
        assert_eq!(s.count(None, Space::View, now), 0);
    }

    #[test]
    fn the_byte_bound_holds_and_due_entries_make_room() {
        let s = MemoryState::with_limit(10_000);
        let a = t("a");
        let big = vec![7u8; 1000];
        let mut stored = 0;
        for i in 0..100 {
            match s.set(
                &a,
                Space::Data,
                &format!("k{i}"),
                &Value::Bytes(&big),
                Some(Duration::from_millis(10)),
                at(&s, 0),
            ) {
                Ok(()) => stored += 1,
                Err(StateError::Full { limit }) => {
                    assert_eq!(limit, 10_000);
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!((5..10).contains(&stored), "{stored}");
        assert!(s.stats().bytes <= 10_000);
        // Later, the expired entries make room again.
        s.set(
            &a,
            Space::Data,
            "late",
            &Value::Bytes(&big),
            None,
            at(&s, 100),
        )
        .unwrap();
        assert!(s.clear_all() >= 1);
        assert_eq!(
            s.stats(),
            Stats {
                entries: 0,
                bytes: 0,
                limit: 10_000
            }
        );
    }

    #[test]
    fn accounting_matches_the_entries() {
        let s = MemoryState::new();
        let now = Instant::now();
        let a = t("a");
        s.set(&a, Space::Data, "abc", &Value::Bytes(b"12345"), None, now)
            .unwrap();
        // 5 header + 3 name + 1 tag + 5 value, plus the fixed overhead.
        assert_eq!(s.stats().bytes, 14 + ENTRY_OVERHEAD);
        s.set(
            &a,
            Space::Data,
            "abc",
            &Value::Bytes(b"1"),
            Some(Duration::from_secs(9)),
            now,
        )
        .unwrap();
        // The expiry adds 8 bytes to the record.
        assert_eq!(s.stats().bytes, 18 + ENTRY_OVERHEAD + HEAP_OVERHEAD);
        s.delete(&a, Space::Data, "abc", now);
        assert_eq!(
            s.stats(),
            Stats {
                entries: 0,
                bytes: 0,
                limit: DEFAULT_LIMIT
            }
        );
    }

    #[test]
    fn threads_on_many_tenants_keep_their_own_values() {
        let s = std::sync::Arc::new(MemoryState::new());
        let handles: Vec<_> = (0..4)
            .map(|n| {
                let s = std::sync::Arc::clone(&s);
                std::thread::spawn(move || {
                    let now = Instant::now();
                    for i in 0..2000i64 {
                        let tenant = t(&format!("t{}", (i + n) % 13));
                        // Only this thread writes this name; another
                        // thread's delete_tenant may remove it meanwhile.
                        let name = format!("k{}-{n}", i % 50);
                        let v = i * 100 + n;
                        s.set(&tenant, Space::Data, &name, &Value::Int(v), None, now)
                            .unwrap();
                        if let Some(got) = s.get(&tenant, Space::Data, &name, now) {
                            assert_eq!(parse_int(&got), Some(v));
                        }
                        if i % 97 == 0 {
                            s.delete_tenant(&tenant, now);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let now = Instant::now();
        let counted: usize = (0..13)
            .map(|i| s.count(Some(&t(&format!("t{i}"))), Space::Data, now))
            .sum();
        assert_eq!(counted, s.stats().entries);
    }
}
