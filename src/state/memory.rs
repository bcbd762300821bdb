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
//! share of the hash table), [`HEAP_OVERHEAD`] when it has a TTL and
//! [`LRU_OVERHEAD`] for a saved view.
//!
//! Fair share: besides the store's bound (`STATE_MEMORY_MAX_BYTES`), each
//! tenant's keys may count at most `tenant_limit` bytes
//! (`STATE_TENANT_MAX_BYTES`, by default [`default_tenant_limit`]). The count
//! is per tenant table, exact, and changed only under the tenant's shard
//! lock. A write that would pass either bound first expires everything due
//! in its shard. Then:
//!
//! * a tenant within its *effective share* (`min(tenant_limit, limit /
//!   tenants holding keys)`, the writer counted) that finds the store full
//!   takes the room from the tenants furthest over their effective share
//!   ([`MemoryState::evict_over_share`], outside the writer's lock): first
//!   the least recently used saved views of the heaviest tenant holding
//!   views, and only when no tenant over its share holds a view, the
//!   application state of the heaviest tenant, in the order its table
//!   stores it ([`RecordTable::evict_data`]). Keys are taken from a tenant
//!   only while it holds more than its effective share, so a tenant within
//!   it never loses a key to another tenant, and whatever the others hold, a quiet tenant is never refused
//!   because they are full: the tenants over their share hold at least
//!   what it needs (the shares of all tenants add up to at most the store);
//! * a tenant over its share (or past `tenant_limit`) evicts its own saved
//!   views (djust's `view-state` space, a cache djust refills by mounting
//!   afresh), least recently used first, if they can free enough; its own
//!   writes never evict its own application state and never take room from
//!   another tenant; otherwise the write fails ([`StateError::TenantFull`]
//!   or [`StateError::Full`]) having evicted nothing.
//!
//! [`RecordTable::evict_data`]: super::table::RecordTable::evict_data
//!
//! Least recently used, cheaply: every saved view record carries a last-use
//! stamp from its table's clock, rewritten in place when the view is read
//! or written, and each use appends `(key hash, stamp)` to the table's
//! queue. Eviction pops the front: a queue record whose stamp no longer
//! matches a view of that hash (used again, overwritten, deleted) is stale
//! and skipped. Each record is pushed once and popped at most once, so
//! eviction is O(1) amortized per evicted view; when stale records outnumber
//! live views the queue is filtered in place (one hash lookup per record,
//! paid for by the pushes that made them stale: O(1) amortized per use). No
//! write ever scans the keys.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hashbrown::HashTable;
use parking_lot::Mutex;

use super::table::{key_hash, record_len, Record, RecordTable, Removed, Stamps};
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
/// Bytes counted per saved view (its record in its tenant's
/// least-recently-used queue).
pub const LRU_OVERHEAD: usize = 16;
/// The default byte bound (`STATE_MEMORY_MAX_BYTES`).
pub const DEFAULT_LIMIT: usize = 512 * 1024 * 1024;
/// Without `STATE_TENANT_MAX_BYTES`, one tenant may hold this fraction of
/// the store: eight tenants at their share fill it.
pub const TENANT_SHARE_DIVISOR: usize = 8;

/// One tenant's default share of a store bounded at `limit` bytes.
pub fn default_tenant_limit(limit: usize) -> usize {
    limit / TENANT_SHARE_DIVISOR
}

const VIEW: u8 = Space::View.byte();

thread_local! {
    static SWEEP: sweep::Turn = const { std::cell::Cell::new((0, 0)) };
}

/// Bytes a key is counted for.
fn cost(len: usize, expires: u64, space: u8) -> usize {
    len + ENTRY_OVERHEAD
        + if expires != 0 { HEAP_OVERHEAD } else { 0 }
        + if space == VIEW { LRU_OVERHEAD } else { 0 }
}

fn cost_of(r: &Removed) -> usize {
    cost(r.len, r.expires, r.space)
}

fn record_cost(r: &Record<'_>) -> usize {
    cost(r.len(), r.expires(), r.space())
}

/// One tenant's keys, and what they count.
struct Table {
    tenant: Box<str>,
    tenant_hash: u64,
    records: RecordTable,
    with_ttl: usize,
    /// Bytes counted for this tenant's keys (against the tenant limit), and
    /// the part of them its saved views take.
    bytes: usize,
    view_bytes: usize,
    /// Saved views held.
    views: usize,
    /// Uses of saved views, least recent first: `(key hash, stamp)`; a
    /// record is live while a view of that hash still carries that stamp.
    lru: VecDeque<(u64, u64)>,
    /// The last stamp handed out.
    clock: u64,
}

impl Table {
    fn new(tenant: &str, tenant_hash: u64) -> Self {
        Table {
            tenant: tenant.into(),
            tenant_hash,
            records: RecordTable::default(),
            with_ttl: 0,
            bytes: 0,
            view_bytes: 0,
            views: 0,
            lru: VecDeque::new(),
            clock: 0,
        }
    }

    /// Counts a key that came in.
    fn added(&mut self, cost: usize, space: u8, expires: u64) {
        self.bytes += cost;
        self.with_ttl += usize::from(expires != 0);
        if space == VIEW {
            self.views += 1;
            self.view_bytes += cost;
        }
    }

    /// Counts a key that went.
    fn gone(&mut self, removed: &Removed) {
        let cost = cost_of(removed);
        self.bytes -= cost;
        self.with_ttl -= usize::from(removed.expires != 0);
        if removed.space == VIEW {
            self.views -= 1;
            self.view_bytes -= cost;
            if self.views == 0 {
                self.lru = VecDeque::new();
            }
        }
    }

    /// A stamp for a use of a saved view (later than every earlier one).
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Queues a use of the view at `hash` (its record carries `stamp`).
    fn used(&mut self, hash: u64, stamp: u64) {
        self.lru.push_back((hash, stamp));
        // Stale records outnumber live views: drop them, keeping the order
        // (at most 2 × views + 64 records are ever held).
        if self.lru.len() > 2 * self.views + 64 {
            let records = &self.records;
            self.lru.retain(|&(h, s)| records.has_stamp(h, s));
        }
    }
}

/// What a write lacks: bytes over the tenant's share and over the store's
/// bound, and what the tenant's saved views (other than the key written)
/// could free.
#[derive(Default)]
struct Shortfall {
    tenant: usize,
    store: usize,
    evictable: usize,
    /// The tenant's bytes after the write.
    after: usize,
}

impl Shortfall {
    fn fits(&self) -> bool {
        self.tenant == 0 && self.store == 0
    }
}

/// The heaviest table of a shard by what it can give up — its bytes when it
/// holds saved views, else nothing — kept in a max segment tree over the
/// shard's slots: O(log slots) per change, O(1) to read the heaviest.
#[derive(Default)]
struct Heaviest {
    /// Leaves at `cap..2 * cap` (`cap` a power of two, or no nodes at all);
    /// every inner node holds the larger of its two children.
    nodes: Vec<usize>,
}

impl Heaviest {
    fn cap(&self) -> usize {
        self.nodes.len() / 2
    }

    fn set(&mut self, slot: usize, weight: usize) {
        if slot >= self.cap() {
            if weight == 0 {
                return;
            }
            self.grow(slot + 1);
        }
        let mut i = self.cap() + slot;
        if self.nodes[i] == weight {
            return;
        }
        self.nodes[i] = weight;
        while i > 1 {
            i /= 2;
            let larger = self.nodes[2 * i].max(self.nodes[2 * i + 1]);
            if self.nodes[i] == larger {
                break;
            }
            self.nodes[i] = larger;
        }
    }

    fn grow(&mut self, slots: usize) {
        let cap = slots.next_power_of_two().max(8);
        let mut nodes = vec![0; 2 * cap];
        let old = self.cap();
        nodes[cap..cap + old].copy_from_slice(&self.nodes[old..]);
        for i in (1..cap).rev() {
            nodes[i] = nodes[2 * i].max(nodes[2 * i + 1]);
        }
        self.nodes = nodes;
    }

    fn max(&self) -> usize {
        self.nodes.get(1).copied().unwrap_or(0)
    }

    /// The slot of the heaviest table (none when every weight is 0).
    fn heaviest(&self) -> Option<u32> {
        let top = self.max();
        if top == 0 {
            return None;
        }
        let mut i = 1;
        while i < self.cap() {
            i = if self.nodes[2 * i] == top {
                2 * i
            } else {
                2 * i + 1
            };
        }
        u32::try_from(i - self.cap()).ok()
    }
}

/// A write a tenant under its effective share could not make because the
/// store is full: the caller makes room from the tenant furthest over its
/// share ([`MemoryState::evict_over_share`]), outside the writer's lock.
enum Refusal {
    /// Bytes the store lacks, and the effective share of that moment.
    Store {
        short: usize,
        share: usize,
    },
    Failed(StateError),
}

impl From<StateError> for Refusal {
    fn from(e: StateError) -> Self {
        Refusal::Failed(e)
    }
}

/// What a tenant over its effective share gives up to a tenant within its
/// own, in this order: saved views (any tenant's over its share, heaviest
/// first), then — only when no tenant over its share holds views — its
/// application state too.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Give {
    Views = 0,
    Anything = 1,
}

/// How many times a write of a tenant under its share makes room from
/// others and tries again (other writers may take the room meanwhile).
const FAIR_TRIES: usize = 8;

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
    /// What each table can give up: its bytes when it holds saved views
    /// (taken first), and its bytes whatever it holds.
    heaviest: [Heaviest; 2],
}

/// Cache-line aligned so neighbouring shards' locks do not false-share.
#[repr(align(64))]
struct Padded<T>(T);

/// What an operation changed, applied to the store's counters.
#[derive(Default)]
struct Delta {
    bytes: isize,
    entries: isize,
    /// Tenant tables made and freed.
    tenants: isize,
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
    /// One tenant's share: its keys may count at most this many bytes.
    tenant_limit: AtomicUsize,
    used: AtomicUsize,
    entries: AtomicUsize,
    /// Tenants with a table (what the effective share divides the store by).
    tenants: AtomicUsize,
    /// Per [`Give`] and shard, what its heaviest table can give up (see
    /// [`Heaviest`]), published after every change under the shard's lock.
    heaviest: [Box<[AtomicUsize]>; 2],
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
    pub tenant_limit: usize,
    /// Tenants holding keys.
    pub tenants: usize,
    /// One tenant's effective share now: `min(tenant_limit, limit / tenants)`.
    pub effective_share: usize,
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

    fn slot_or_create(&mut self, tenant_hash: u64, tenant: &str, delta: &mut Delta) -> u32 {
        if let Some(slot) = self.find_slot(tenant_hash, tenant) {
            return slot;
        }
        delta.tenants += 1;
        let table = Table::new(tenant, tenant_hash);
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
    fn take_table(&mut self, slot: u32, delta: &mut Delta) -> Option<Table> {
        let entry = self.slots.get_mut(slot as usize)?;
        let table = entry.table.take()?;
        delta.tenants -= 1;
        for tree in &mut self.heaviest {
            tree.set(slot as usize, 0);
        }
        entry.generation = entry.generation.wrapping_add(1);
        if let Ok(found) = self.tenants.find_entry(table.tenant_hash, |&i| i == slot) {
            found.remove();
        }
        self.free.push(slot);
        self.with_ttl -= table.with_ttl;
        Some(table)
    }

    /// Frees the table of `slot` if it holds nothing.
    fn drop_if_empty(&mut self, slot: u32, delta: &mut Delta) {
        if self.table_ref(slot).is_some_and(|t| t.records.is_empty()) {
            self.take_table(slot, delta);
        }
    }

    /// Counts a key that left `slot`'s table (table, shard and store).
    fn gone(&mut self, slot: u32, removed: &Removed, delta: &mut Delta) {
        if let Some(table) = self.table(slot) {
            table.gone(removed);
        }
        self.reweigh(slot);
        self.with_ttl -= usize::from(removed.expires != 0);
        delta.gone(removed);
    }

    /// Records what `slot`'s table can give up in [`Shard::heaviest`].
    fn reweigh(&mut self, slot: u32) {
        let (views, bytes) = self.table_ref(slot).map_or((0, 0), |t| (t.views, t.bytes));
        self.heaviest[Give::Views as usize].set(slot as usize, if views > 0 { bytes } else { 0 });
        self.heaviest[Give::Anything as usize].set(slot as usize, bytes);
    }

    /// Takes keys of the shard's heaviest tables (by `give`) while the
    /// heaviest is over `share` and at least `floor` (the heaviest of the
    /// other shards: the tenant furthest over its share goes first), until
    /// `need` bytes are freed: its least recently used saved views, then
    /// (with [`Give::Anything`]) its application state in stored order.
    /// Returns the bytes freed.
    fn evict_heaviest(
        &mut self,
        give: Give,
        share: usize,
        floor: usize,
        need: usize,
        hasher: &RandomState,
        delta: &mut Delta,
    ) -> usize {
        let no_key = Key {
            tenant: "",
            tenant_hash: 0,
            hash: 0,
            space: Space::Data.byte(),
            name: &[],
            now: 0,
            hasher,
        };
        let before = delta.bytes;
        let tree = give as usize;
        while ((before - delta.bytes) as usize) < need {
            let weight = self.heaviest[tree].max();
            if weight <= share || weight < floor {
                break;
            }
            let Some(slot) = self.heaviest[tree].heaviest() else {
                break;
            };
            let gave = self.evict_view(slot, &no_key, delta)
                || (give == Give::Anything && self.evict_data(slot, hasher, delta));
            if !gave {
                // Counted but nothing to give: never expected; stop
                // counting this table as able to give any up.
                self.heaviest[tree].set(slot as usize, 0);
                continue;
            }
            self.drop_if_empty(slot, delta);
        }
        (before - delta.bytes).max(0) as usize
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
        self.gone(slot, &removed, delta);
        self.drop_if_empty(slot, delta);
        Some(removed)
    }

    /// Evicts the least recently used saved view of `slot`'s table, never
    /// the key being written (`keep`). False when there is none. Each queue
    /// record is looked at once per call; stale ones are dropped on the way.
    fn evict_view(&mut self, slot: u32, keep: &Key<'_>, delta: &mut Delta) -> bool {
        let Some(table) = self.table(slot) else {
            return false;
        };
        for _ in 0..table.lru.len() {
            let Some((hash, stamp)) = table.lru.pop_front() else {
                break;
            };
            let kept = keep.space == VIEW
                && hash == keep.hash
                && table
                    .records
                    .find(hash, VIEW, keep.name)
                    .is_some_and(|r| r.stamp() == stamp);
            if kept {
                table.lru.push_back((hash, stamp));
                continue;
            }
            if let Some(removed) = table.records.remove_stamped(hash, stamp, keep.hasher) {
                self.gone(slot, &removed, delta);
                return true;
            }
        }
        false
    }

    /// Evicts the next application-state key of `slot`'s table (see
    /// [`RecordTable::evict_data`]). False when it has none.
    fn evict_data(&mut self, slot: u32, hasher: &RandomState, delta: &mut Delta) -> bool {
        let Some(table) = self.table(slot) else {
            return false;
        };
        match table.records.evict_data(hasher) {
            Some(removed) => {
                self.gone(slot, &removed, delta);
                true
            }
            None => false,
        }
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

    /// A store of `limit` bytes, with the default share per tenant.
    pub fn with_limit(limit: usize) -> Self {
        Self::with_limits(limit, default_tenant_limit(limit))
    }

    pub fn with_limits(limit: usize, tenant_limit: usize) -> Self {
        MemoryState {
            shards: (0..SHARDS)
                .map(|_| Padded(Mutex::new(Shard::default())))
                .collect(),
            hasher: RandomState::new(),
            epoch: Instant::now(),
            limit: AtomicUsize::new(limit),
            tenant_limit: AtomicUsize::new(tenant_limit),
            used: AtomicUsize::new(0),
            entries: AtomicUsize::new(0),
            tenants: AtomicUsize::new(0),
            heaviest: [0, 1].map(|_| (0..SHARDS).map(|_| AtomicUsize::new(0)).collect()),
        }
    }

    /// Changes the store's bound and one tenant's share (existing keys
    /// stay; writes past them make room or fail).
    pub fn set_limits(&self, limit: usize, tenant_limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
        self.tenant_limit.store(tenant_limit, Ordering::Relaxed);
    }

    pub fn stats(&self) -> Stats {
        Stats {
            entries: self.entries.load(Ordering::Relaxed),
            bytes: self.used.load(Ordering::Relaxed),
            limit: self.limit.load(Ordering::Relaxed),
            tenant_limit: self.tenant_limit.load(Ordering::Relaxed),
            tenants: self.tenants.load(Ordering::Relaxed),
            effective_share: self.effective_share(0),
        }
    }

    /// One tenant's effective share with `new` more tenants than hold keys
    /// now: `min(STATE_TENANT_MAX_BYTES, STATE_MEMORY_MAX_BYTES / tenants)`.
    fn effective_share(&self, new: usize) -> usize {
        let tenants = (self.tenants.load(Ordering::Relaxed) + new).max(1);
        let limit = self.limit.load(Ordering::Relaxed);
        self.tenant_limit
            .load(Ordering::Relaxed)
            .min(limit / tenants)
    }

    /// Bytes `tenant`'s keys count against its share (expired ones not yet
    /// dropped included).
    pub fn tenant_bytes(&self, tenant: &TenantId) -> usize {
        let tenant_hash = self.hasher.hash_one(tenant.as_str());
        let shard = self.shard_of(tenant_hash).lock();
        shard
            .find_slot(tenant_hash, tenant.as_str())
            .and_then(|slot| shard.table_ref(slot))
            .map_or(0, |t| t.bytes)
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
        if delta.tenants > 0 {
            self.tenants
                .fetch_add(delta.tenants as usize, Ordering::Relaxed);
        } else if delta.tenants < 0 {
            self.tenants
                .fetch_sub(delta.tenants.unsigned_abs(), Ordering::Relaxed);
        }
    }

    /// Publishes what shard `index`'s heaviest table can give up (called
    /// under that shard's lock, after a change).
    fn publish(&self, index: usize, shard: &Shard) {
        for (published, tree) in self.heaviest.iter().zip(&shard.heaviest) {
            let weight = tree.max();
            if published[index].load(Ordering::Relaxed) != weight {
                published[index].store(weight, Ordering::Relaxed);
            }
        }
    }

    /// The shard index of a tenant. Uses middle bits: the tenant index uses
    /// the low bits (bucket) and the top 7 bits (tag).
    fn shard_index(tenant_hash: u64) -> usize {
        ((tenant_hash >> 32) as usize) & (SHARDS - 1)
    }

    fn shard_of(&self, tenant_hash: u64) -> &Mutex<Shard> {
        &self.shards[Self::shard_index(tenant_hash)].0
    }

    /// Every [`SWEEP_EVERY`] operations of a thread: expire due keys of the
    /// next shard of its round robin, if its lock is free (never waits).
    fn sweep_step(&self, now: u64) {
        let shard = sweep::next_shard(&SWEEP, SWEEP_EVERY, SHARDS);
        if let Some(index) = shard {
            let mut delta = Delta::default();
            if let Some(mut shard) = self.shards[index].0.try_lock() {
                shard.expire(now, EXPIRE_PER_SWEEP, &self.hasher, &mut delta);
                self.publish(index, &shard);
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
        let index = Self::shard_index(tenant_hash);
        let result = {
            let mut shard = self.shards[index].0.lock();
            shard.expire(now, EXPIRE_PER_OP, &self.hasher, &mut delta);
            let result = op(&mut shard, key, &mut delta);
            self.publish(index, &shard);
            result
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
            let table = shard.table(slot)?;
            let loc = table.records.locate(key.hash, key.space, key.name)?;
            if table.records.record(loc).expired(key.now) {
                shard.remove(slot, &key, |_| true, delta);
                return None;
            }
            if key.space == VIEW {
                // A read is a use: the view moves to the back of the queue.
                let stamp = table.tick();
                table.records.set_stamp(loc, stamp);
                table.used(key.hash, stamp);
            }
            Some(read(table.records.record(loc).value()))
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
    /// expires. Returns the bytes the tenant's keys then count against its
    /// share ([`MemoryState::tenant_bytes`], known here without a lookup).
    pub fn set(
        &self,
        tenant: &TenantId,
        space: Space,
        name: &str,
        value: &Value<'_>,
        ttl: Option<Duration>,
        now: Instant,
    ) -> Result<usize, StateError> {
        value.check()?;
        self.fairly(now, |own_views| {
            self.on_key(tenant, space, name, now, |shard, key, delta| {
                let expires = ttl.map_or(0, |t| key.now.saturating_add(super::ttl_millis(t)));
                self.put(shard, &key, value, expires, own_views, delta)
            })
        })
    }

    /// Runs a write `attempt`. A tenant under its effective share that finds
    /// the store full ([`Refusal::Store`]) first takes room from the tenant
    /// furthest over its share ([`MemoryState::evict_over_share`], outside
    /// its own shard's lock) and tries again; when no tenant is over its
    /// share, it may evict its own views (`attempt(true)`, the rule for a
    /// tenant over its share). Last, due keys of every shard are dropped and
    /// the write is tried once more.
    fn fairly<R>(
        &self,
        now: Instant,
        attempt: impl Fn(bool) -> Result<R, Refusal>,
    ) -> Result<R, StateError> {
        let mut result = attempt(false);
        for _ in 0..FAIR_TRIES {
            let Err(Refusal::Store { short, share }) = result else {
                break;
            };
            // Views first (any tenant's over its share), application
            // state only when no tenant over its share holds a view.
            if !self.evict_over_share(Give::Views, short, share)
                && !self.evict_over_share(Give::Anything, short, share)
            {
                break;
            }
            result = attempt(false);
        }
        if let Err(Refusal::Store { .. }) = result {
            result = attempt(true);
        }
        match result {
            Ok(r) => Ok(r),
            // Due keys of other shards may free enough: drop them (one shard
            // lock at a time) and try once more.
            Err(Refusal::Failed(StateError::Full { .. })) if self.purge_expired(now) > 0 => {
                attempt(true).map_err(|e| self.refused(e))
            }
            Err(e) => Err(self.refused(e)),
        }
    }

    fn refused(&self, refusal: Refusal) -> StateError {
        match refusal {
            Refusal::Failed(e) => e,
            // Only `put(own_views: false)` answers this, and `fairly` ends
            // with `own_views: true`: the store is full.
            Refusal::Store { .. } => self.full(),
        }
    }

    /// Takes keys (by `give`, see [`Shard::evict_heaviest`]) of the tenants
    /// furthest over `share` (each time the heaviest of all: one read of
    /// each shard's published weight, then that shard's own tree) until
    /// `need` bytes are free. False when no tenant that can give is over
    /// its share any more.
    fn evict_over_share(&self, give: Give, need: usize, share: usize) -> bool {
        let published = &self.heaviest[give as usize];
        let mut freed = 0;
        for _ in 0..=SHARDS {
            let mut weights = published
                .iter()
                .map(|w| w.load(Ordering::Relaxed))
                .enumerate();
            let Some((index, weight)) = weights.by_ref().max_by_key(|&(_, w)| w) else {
                return false;
            };
            if weight <= share {
                return false;
            }
            let floor = published
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != index)
                .map(|(_, w)| w.load(Ordering::Relaxed))
                .max()
                .unwrap_or(0);
            let mut delta = Delta::default();
            {
                let mut shard = self.shards[index].0.lock();
                freed += shard.evict_heaviest(
                    give,
                    share,
                    floor,
                    need - freed,
                    &self.hasher,
                    &mut delta,
                );
                self.publish(index, &shard);
            }
            self.apply(&delta);
            if freed >= need {
                return true;
            }
        }
        freed > 0
    }

    /// Inserts or replaces the key's value within the store's bound and the
    /// tenant's share, making room first if it must (see the module doc).
    /// A tenant within its effective share that finds the store full gets
    /// [`Refusal::Store`] (the caller makes room from others) unless
    /// `own_views`, which lets it evict its own views as a tenant over its
    /// share does.
    fn put(
        &self,
        shard: &mut Shard,
        key: &Key<'_>,
        value: &Value<'_>,
        expires: u64,
        own_views: bool,
        delta: &mut Delta,
    ) -> Result<usize, Refusal> {
        let new_cost = cost(
            record_len(key.space, key.name, value, expires),
            expires,
            key.space,
        );
        let mut short = self.shortfall(shard, key, new_cost, delta);
        if !short.fits() {
            // What is due anyway in this shard goes first.
            shard.expire(key.now, usize::MAX, key.hasher, delta);
            short = self.shortfall(shard, key, new_cost, delta);
            if !own_views && short.tenant == 0 && short.store > 0 {
                // The store is full, not the tenant's share: a tenant within
                // its effective share takes the room from the tenant
                // furthest over its own.
                let new = usize::from(shard.find_slot(key.tenant_hash, key.tenant).is_none());
                let share = self.effective_share(new);
                if short.after <= share {
                    return Err(Refusal::Store {
                        short: short.store,
                        share,
                    });
                }
            }
            // Then the tenant's own saved views, only if they can free
            // enough: a write that fails evicts nothing.
            if short.tenant.max(short.store) <= short.evictable {
                while !short.fits() {
                    let slot = shard.find_slot(key.tenant_hash, key.tenant);
                    if !slot.is_some_and(|slot| shard.evict_view(slot, key, delta)) {
                        break;
                    }
                    short = self.shortfall(shard, key, new_cost, delta);
                }
            }
            if !short.fits() {
                if let Some(slot) = shard.find_slot(key.tenant_hash, key.tenant) {
                    shard.drop_if_empty(slot, delta);
                }
                let tenant_limit = self.tenant_limit.load(Ordering::Relaxed);
                // A share as big as the store is no share: name the store.
                let own = short.tenant > 0 && tenant_limit < self.limit.load(Ordering::Relaxed);
                return Err(Refusal::Failed(if own {
                    StateError::TenantFull {
                        tenant: key.tenant.to_owned(),
                        limit: tenant_limit,
                    }
                } else {
                    self.full()
                }));
            }
        }
        let slot = shard.slot_or_create(key.tenant_hash, key.tenant, delta);
        let Some(table) = shard.table(slot) else {
            return Err(self.full().into()); // unreachable: the slot was just made
        };
        let used = if key.space == VIEW { table.tick() } else { 0 };
        let at = Stamps { expires, used };
        let upserted = table
            .records
            .upsert(key.hash, key.space, key.name, value, at, key.hasher);
        let replaced = match upserted {
            Ok(replaced) => replaced,
            Err(_) => {
                shard.drop_if_empty(slot, delta);
                return Err(self.full().into());
            }
        };
        if let Some(old) = &replaced {
            shard.gone(slot, old, delta);
        }
        delta.entries += 1;
        delta.bytes += new_cost as isize;
        shard.with_ttl += usize::from(expires != 0);
        let mut tenant_bytes = 0;
        if let Some(table) = shard.table(slot) {
            table.added(new_cost, key.space, expires);
            if key.space == VIEW {
                table.used(key.hash, used);
            }
            tenant_bytes = table.bytes;
        }
        shard.reweigh(slot);
        if expires != 0 {
            shard.schedule(slot, key.hash, expires, key.hasher);
        }
        Ok(tenant_bytes)
    }

    /// What writing `new_cost` bytes at `key` lacks (nothing when it shrinks
    /// or keeps the key's size).
    fn shortfall(&self, shard: &Shard, key: &Key<'_>, new_cost: usize, delta: &Delta) -> Shortfall {
        let table = shard
            .find_slot(key.tenant_hash, key.tenant)
            .and_then(|slot| shard.table_ref(slot));
        let Some(table) = table else {
            let mut short = self.shortfall_of(0, new_cost, 0, delta);
            short.after = new_cost;
            return short;
        };
        let old = table
            .records
            .find(key.hash, key.space, key.name)
            .map_or(0, |r| record_cost(&r));
        let grow = new_cost.saturating_sub(old);
        if grow == 0 {
            return Shortfall::default();
        }
        let mut short = self.shortfall_of(table.bytes, grow, 0, delta);
        short.evictable = table.view_bytes - if key.space == VIEW { old } else { 0 };
        short.after = table.bytes + grow;
        short
    }

    fn shortfall_of(
        &self,
        tenant_bytes: usize,
        grow: usize,
        evictable: usize,
        delta: &Delta,
    ) -> Shortfall {
        let used = (self.used.load(Ordering::Relaxed) as isize + delta.bytes).max(0) as usize;
        Shortfall {
            tenant: (tenant_bytes + grow).saturating_sub(self.tenant_limit.load(Ordering::Relaxed)),
            store: (used + grow).saturating_sub(self.limit.load(Ordering::Relaxed)),
            evictable,
            after: 0,
        }
    }

    fn full(&self) -> StateError {
        StateError::Full {
            limit: self.limit.load(Ordering::Relaxed),
        }
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
        self.fairly(now, |own_views| {
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
                        }
                        .into())
                    }
                    Some((Some(n), expires)) => match n.checked_add(by) {
                        Some(sum) => (sum, expires),
                        None => {
                            return Err(StateError::Overflow {
                                name: name.to_owned(),
                            }
                            .into())
                        }
                    },
                };
                self.put(shard, &key, &Value::Int(value), expires, own_views, delta)?;
                Ok(value)
            })
        })
    }

    /// How many live keys `tenant` holds (both spaces): what
    /// [`MemoryState::delete_tenant`] would remove.
    pub fn tenant_keys(&self, tenant: &TenantId, now: Instant) -> usize {
        let now = self.millis(now);
        let tenant_hash = self.hasher.hash_one(tenant.as_str());
        let shard = self.shard_of(tenant_hash).lock();
        let Some(table) = shard
            .find_slot(tenant_hash, tenant.as_str())
            .and_then(|slot| shard.table_ref(slot))
        else {
            return 0;
        };
        table.records.iter().filter(|r| !r.expired(now)).count()
    }

    /// Removes every key of `tenant` (both spaces): one table unlinked, its
    /// memory freed outside the lock. Returns how many live keys went.
    pub fn delete_tenant(&self, tenant: &TenantId, now: Instant) -> usize {
        let now = self.millis(now);
        let tenant_hash = self.hasher.hash_one(tenant.as_str());
        let mut delta = Delta::default();
        let index = Self::shard_index(tenant_hash);
        let table = {
            let mut shard = self.shards[index].0.lock();
            let slot = shard.find_slot(tenant_hash, tenant.as_str());
            let table = slot.and_then(|slot| shard.take_table(slot, &mut delta));
            self.publish(index, &shard);
            table
        };
        let Some(table) = table else { return 0 };
        let mut live = 0;
        for r in table.records.iter() {
            delta.bytes -= record_cost(&r) as isize;
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
        for (index, shard) in self.shards.iter().enumerate() {
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
                    for r in &removed {
                        shard.gone(slot, r, &mut delta);
                        live += usize::from(r.expires == 0 || r.expires > now);
                    }
                    shard.drop_if_empty(slot, &mut delta);
                }
                self.publish(index, &shard);
            }
            self.apply(&delta);
        }
        live
    }

    /// Drops every expired key now (all shards); returns how many.
    pub fn purge_expired(&self, now: Instant) -> usize {
        let now = self.millis(now);
        let mut removed = 0;
        for (index, shard) in self.shards.iter().enumerate() {
            let mut delta = Delta::default();
            {
                let mut shard = shard.0.lock();
                removed += shard.expire(now, usize::MAX, &self.hasher, &mut delta);
                self.publish(index, &shard);
            }
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
        for (index, shard) in self.shards.iter().enumerate() {
            let old = {
                let mut shard = shard.0.lock();
                let old = std::mem::take(&mut *shard);
                self.publish(index, &shard);
                old
            };
            let mut delta = Delta::default();
            for table in old.slots.iter().filter_map(|s| s.table.as_ref()) {
                delta.tenants -= 1;
                for r in table.records.iter() {
                    delta.bytes -= record_cost(&r) as isize;
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
        assert_eq!(s.tenant_keys(&a, now), 3001); // what a dry run counts
        assert_eq!(s.delete_tenant(&a, now), 3001);
        assert_eq!(s.tenant_keys(&a, now), 0);
        assert_eq!(s.tenant_keys(&b, now), 3000);
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
        // One tenant may take the whole store here.
        let s = MemoryState::with_limits(10_000, 10_000);
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
                Ok(_) => stored += 1,
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
                limit: 10_000,
                tenant_limit: 10_000,
                tenants: 0,
                effective_share: 10_000,
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
        assert_eq!(s.tenant_bytes(&a), s.stats().bytes);
        // A saved view adds its last-use stamp and its queue record; the
        // write returns the tenant's bytes (its usage figure).
        let after = s
            .set(&a, Space::View, "abc", &Value::Bytes(b"1"), None, now)
            .unwrap();
        assert_eq!(after, s.tenant_bytes(&a));
        let view = 18 + ENTRY_OVERHEAD + LRU_OVERHEAD;
        assert_eq!(
            s.tenant_bytes(&a),
            18 + ENTRY_OVERHEAD + HEAP_OVERHEAD + view
        );
        assert!(s.delete(&a, Space::View, "abc", now));
        s.delete(&a, Space::Data, "abc", now);
        assert_eq!(s.tenant_bytes(&a), 0);
        assert_eq!(
            s.stats(),
            Stats {
                entries: 0,
                bytes: 0,
                limit: DEFAULT_LIMIT,
                tenant_limit: default_tenant_limit(DEFAULT_LIMIT),
                tenants: 0,
                effective_share: default_tenant_limit(DEFAULT_LIMIT),
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

    /// What a tenant's keys should count, summed from its records (the
    /// accounting kept on every write must match it).
    fn counted(s: &MemoryState, tenant: &TenantId) -> usize {
        let tenant_hash = s.hasher.hash_one(tenant.as_str());
        let shard = s.shard_of(tenant_hash).lock();
        shard
            .find_slot(tenant_hash, tenant.as_str())
            .and_then(|slot| shard.table_ref(slot))
            .map_or(0, |t| {
                let sum: usize = t.records.iter().map(|r| record_cost(&r)).sum();
                let views: usize = t
                    .records
                    .iter()
                    .filter(|r| r.space() == VIEW)
                    .map(|r| record_cost(&r))
                    .sum();
                assert_eq!(t.bytes, sum, "tenant bytes");
                assert_eq!(t.view_bytes, views, "view bytes");
                assert!(t.lru.len() <= 2 * t.views + 64, "queue bounded");
                sum
            })
    }

    fn view(s: &MemoryState, tenant: &TenantId, name: &str, len: usize, now: Instant) {
        s.set(
            tenant,
            Space::View,
            name,
            &Value::Bytes(&vec![1; len]),
            None,
            now,
        )
        .unwrap();
    }

    /// The cost of a saved view of `len` bytes named like `v000`.
    fn view_cost(len: usize) -> usize {
        cost(
            record_len(VIEW, b"v000", &Value::Bytes(&vec![1; len]), 0),
            0,
            VIEW,
        )
    }

    #[test]
    fn one_tenant_is_bounded_by_its_share() {
        let s = MemoryState::with_limits(1 << 20, 10_000);
        let now = Instant::now();
        let (a, b) = (t("a"), t("b"));
        let mut stored = 0;
        for i in 0..100 {
            match s.set(
                &a,
                Space::Data,
                &format!("k{i:03}"),
                &Value::Bytes(&[7; 1000]),
                None,
                now,
            ) {
                Ok(_) => stored += 1,
                Err(StateError::TenantFull { tenant, limit }) => {
                    assert_eq!((tenant.as_str(), limit), ("a", 10_000));
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!((8..10).contains(&stored), "{stored}");
        assert!(s.tenant_bytes(&a) <= 10_000);
        assert_eq!(s.tenant_bytes(&a), counted(&s, &a));
        // Far from the store's bound: another tenant has its whole share.
        for i in 0..stored {
            s.set(
                &b,
                Space::Data,
                &format!("k{i:03}"),
                &Value::Bytes(&[7; 1000]),
                None,
                now,
            )
            .unwrap();
        }
        // Overwriting with a value no bigger, and deleting, always work.
        s.set(&a, Space::Data, "k000", &Value::Bytes(&[1; 10]), None, now)
            .unwrap();
        assert!(s.delete(&a, Space::Data, "k001", now));
        s.set(
            &a,
            Space::Data,
            "k100",
            &Value::Bytes(&[7; 1000]),
            None,
            now,
        )
        .unwrap();
        // A value bigger than the share can never fit.
        assert!(matches!(
            s.set(
                &b,
                Space::View,
                "huge",
                &Value::Bytes(&[0; 20_000]),
                None,
                now
            ),
            Err(StateError::TenantFull { .. })
        ));
        assert_eq!(s.stats().bytes, counted(&s, &a) + counted(&s, &b));
    }

    #[test]
    fn a_tenant_over_its_share_evicts_its_own_least_recently_used_views() {
        let per = view_cost(500);
        let s = MemoryState::with_limits(1 << 20, 10 * per);
        let now = Instant::now();
        let (a, b) = (t("a"), t("b"));
        for i in 0..5 {
            view(&s, &b, &format!("v{i:03}"), 500, now);
        }
        s.set(&b, Space::Data, "d", &Value::Int(1), None, now)
            .unwrap();
        for i in 0..10 {
            view(&s, &a, &format!("v{i:03}"), 500, now);
        }
        assert_eq!(s.tenant_bytes(&a), 10 * per);
        // Reading v000 and rewriting v001 make them recent: v002 and v003
        // are now the least recently used.
        assert!(s.get(&a, Space::View, "v000", now).is_some());
        view(&s, &a, "v001", 500, now);
        view(&s, &a, "v010", 500, now);
        view(&s, &a, "v011", 500, now);
        let held: Vec<bool> = (0..12)
            .map(|i| s.exists(&a, Space::View, &format!("v{i:03}"), now))
            .collect();
        let mut expected = vec![true; 12];
        expected[2] = false;
        expected[3] = false;
        assert_eq!(held, expected);
        // A flood: a thousand more, never more than the share.
        for i in 100..1100 {
            view(&s, &a, &format!("f{:03}", i % 1000), 500, now);
            assert!(s.tenant_bytes(&a) <= 10 * per);
        }
        assert_eq!(s.count(Some(&a), Space::View, now), 10);
        assert!(s.exists(&a, Space::View, "f099", now));
        // The other tenant lost nothing.
        assert_eq!(s.count(Some(&b), Space::View, now), 5);
        assert_eq!(s.get(&b, Space::Data, "d", now).unwrap(), b"1");
        assert_eq!(s.tenant_bytes(&a), counted(&s, &a));
        assert_eq!(s.stats().bytes, counted(&s, &a) + counted(&s, &b));
        assert_eq!(s.stats().entries, 16);
    }

    #[test]
    fn application_state_is_refused_not_evicted_and_a_failed_write_evicts_nothing() {
        let per = view_cost(500);
        let s = MemoryState::with_limits(1 << 20, 6 * per);
        let now = Instant::now();
        let a = t("a");
        for i in 0..3 {
            view(&s, &a, &format!("v{i:03}"), 500, now);
        }
        // Application state makes room from the tenant's own views...
        let big = vec![5u8; 4 * per];
        s.set(&a, Space::Data, "big", &Value::Bytes(&big), None, now)
            .unwrap();
        assert!(s.count(Some(&a), Space::View, now) < 3);
        // ...but is never evicted itself: a write that cannot fit once
        // every view went fails and evicts nothing.
        let views_before = s.count(Some(&a), Space::View, now);
        let err = s
            .set(&a, Space::Data, "big2", &Value::Bytes(&big), None, now)
            .unwrap_err();
        assert!(matches!(err, StateError::TenantFull { .. }), "{err}");
        assert_eq!(s.count(Some(&a), Space::View, now), views_before);
        assert_eq!(
            s.get(&a, Space::Data, "big", now).unwrap().len(),
            big.len() + 1
        );
        assert!(matches!(
            s.incr(&a, Space::Data, &"n".repeat(1000), 1, now)
                .and_then(|_| { s.set(&a, Space::Data, "big3", &Value::Bytes(&big), None, now) }),
            Err(StateError::TenantFull { .. })
        ));
        // A view that does not fit next to the application state: refused.
        let err = s
            .set(
                &a,
                Space::View,
                "v9",
                &Value::Bytes(&vec![0; 3 * per]),
                None,
                now,
            )
            .unwrap_err();
        assert!(matches!(err, StateError::TenantFull { .. }), "{err}");
        assert_eq!(s.tenant_bytes(&a), counted(&s, &a));
        assert!(s.tenant_bytes(&a) <= 6 * per);
    }

    #[test]
    fn accounting_holds_after_evictions_expiry_and_deletes() {
        let per = view_cost(300);
        let s = MemoryState::with_limits(1 << 20, 20 * per);
        let a = t("a");
        for i in 0..2000u64 {
            let name = format!("v{:03}", i % 300);
            let ttl = (i % 3 == 0).then(|| Duration::from_millis(50 + i % 7));
            s.set(
                &a,
                Space::View,
                &name,
                &Value::Bytes(&[1; 300]),
                ttl,
                at(&s, i / 10),
            )
            .unwrap();
            if i % 5 == 0 {
                s.get(
                    &a,
                    Space::View,
                    &format!("v{:03}", (i / 2) % 300),
                    at(&s, i / 10),
                );
            }
            if i % 11 == 0 {
                s.delete(
                    &a,
                    Space::View,
                    &format!("v{:03}", (i + 1) % 300),
                    at(&s, i / 10),
                );
            }
            if i % 13 == 0 {
                s.set(
                    &a,
                    Space::Data,
                    &format!("d{}", i % 4),
                    &Value::Int(1),
                    None,
                    at(&s, i / 10),
                )
                .unwrap();
            }
            assert!(s.tenant_bytes(&a) <= 20 * per);
        }
        assert_eq!(s.tenant_bytes(&a), counted(&s, &a));
        assert_eq!(s.stats().bytes, s.tenant_bytes(&a));
        assert!(s.purge_expired(at(&s, 10_000)) > 0);
        assert_eq!(s.tenant_bytes(&a), counted(&s, &a));
        s.delete_space(Some(&a), Space::View, at(&s, 10_000));
        assert_eq!(s.tenant_bytes(&a), counted(&s, &a));
        assert_eq!(s.count(Some(&a), Space::Data, at(&s, 10_000)), 4);
        s.delete_tenant(&a, at(&s, 10_000));
        assert_eq!(
            (s.tenant_bytes(&a), s.stats().bytes, s.stats().entries),
            (0, 0, 0)
        );
    }

    #[test]
    fn the_store_bound_still_holds_and_views_make_room_for_their_own_tenant() {
        let per = view_cost(1000);
        // Shares of 8 views, a store of 20: three tenants can fill it.
        let s = MemoryState::with_limits(20 * per, 8 * per);
        let now = Instant::now();
        let tenants: Vec<TenantId> = (0..3).map(|i| t(&format!("t{i}"))).collect();
        for round in 0..50 {
            for tenant in &tenants {
                let name = format!("v{round:03}");
                match s.set(
                    tenant,
                    Space::View,
                    &name,
                    &Value::Bytes(&[1; 1000]),
                    None,
                    now,
                ) {
                    Ok(_) | Err(StateError::Full { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
                assert!(s.stats().bytes <= 20 * per);
                assert!(s.tenant_bytes(tenant) <= 8 * per);
            }
        }
        // Full: each tenant's new views evicted its own old ones.
        for tenant in &tenants {
            assert!(s.exists(tenant, Space::View, "v049", now));
            assert!(!s.exists(tenant, Space::View, "v000", now));
        }
        // A quiet tenant's first write fits: it is within its effective
        // share (a quarter of the store now), so the tenant furthest over
        // its own gives up its least recently used views.
        let before: Vec<usize> = tenants.iter().map(|t| s.tenant_bytes(t)).collect();
        s.set(
            &t("late"),
            Space::Data,
            "x",
            &Value::Bytes(&[1; 2000]),
            None,
            now,
        )
        .unwrap();
        assert!(s.stats().bytes <= 20 * per);
        // Only the heaviest gave up views (the lightest kept all its own),
        // and each of them its least recently used: the newest stay.
        let lightest = before.iter().copied().min().unwrap();
        for (tenant, before) in tenants.iter().zip(&before) {
            let after = s.tenant_bytes(tenant);
            assert!(
                after <= *before && after >= lightest.min(*before),
                "{tenant}"
            );
            if *before == lightest {
                assert_eq!(after, *before, "{tenant}");
            }
            assert!(s.exists(tenant, Space::View, "v049", now));
        }
        assert!(
            s.tenant_bytes(&tenants[0]) + s.tenant_bytes(&tenants[1]) + s.tenant_bytes(&tenants[2])
                < before.iter().sum()
        );
    }

    /// Nine tenants, each within `STATE_TENANT_MAX_BYTES`, fill the store;
    /// a tenth, quiet one still saves its first view and its first
    /// application key, and each time the views that go are the least
    /// recently used of the tenant furthest over its effective share.
    #[test]
    fn a_quiet_tenant_is_never_refused_because_others_are_full() {
        let per = view_cost(1000);
        let s = MemoryState::with_limits(72 * per, 9 * per); // an eighth
        let now = Instant::now();
        let nine: Vec<TenantId> = (0..9).map(|i| t(&format!("n{i}"))).collect();
        // n0 saves 9 views (its whole share), n1..n7 8 each, n8 7: 72.
        let views = |i: usize| match i {
            0 => 9,
            8 => 7,
            _ => 8,
        };
        for (i, tenant) in nine.iter().enumerate() {
            for v in 0..views(i) {
                let name = format!("v{v}");
                let value = Value::Bytes(&[1; 1000]);
                s.set(tenant, Space::View, &name, &value, None, now)
                    .unwrap();
            }
        }
        // Room for one small key, not a view: the store is full.
        assert!(s.stats().bytes + per > 72 * per);
        assert_eq!(s.stats().effective_share, 8 * per);
        assert_eq!(s.stats().tenants, 9);
        let quiet = t("quiet");
        s.set(
            &quiet,
            Space::View,
            "first",
            &Value::Bytes(&[1; 1000]),
            None,
            now,
        )
        .unwrap();
        assert!(s.stats().bytes <= 72 * per);
        assert_eq!(s.stats().tenants, 10);
        // n0 (9 views, furthest over the share of 72/10 views) lost its
        // least recently used one; nobody else lost anything.
        assert!(!s.exists(&nine[0], Space::View, "v0", now));
        assert!(s.exists(&nine[0], Space::View, "v1", now));
        for (i, tenant) in nine.iter().enumerate().skip(1) {
            assert_eq!(
                s.count(Some(tenant), Space::View, now),
                views(i),
                "{tenant}"
            );
        }
        // Application state too, even a larger key.
        s.set(
            &quiet,
            Space::Data,
            "app",
            &Value::Bytes(&[2; 2500]),
            None,
            now,
        )
        .unwrap();
        assert!(s.stats().bytes <= 72 * per);
        assert_eq!(
            s.get(&quiet, Space::Data, "app", now).unwrap()[1..],
            [2; 2500]
        );
        // A tenant over its effective share that finds the store full evicts
        // its own views, not a neighbour's.
        let counts: Vec<usize> = nine[1..]
            .iter()
            .map(|t| s.count(Some(t), Space::View, now))
            .collect();
        s.set(
            &nine[0],
            Space::View,
            "v9",
            &Value::Bytes(&[1; 1000]),
            None,
            now,
        )
        .unwrap();
        let after: Vec<usize> = nine[1..]
            .iter()
            .map(|t| s.count(Some(t), Space::View, now))
            .collect();
        assert_eq!(counts, after);
        assert!(s.stats().bytes <= 72 * per);
    }

    /// Threads of quiet tenants write while threads of heavy tenants keep
    /// the store full: every quiet write succeeds and the bound holds.
    #[test]
    fn quiet_tenants_write_while_others_flood_from_threads() {
        let per = view_cost(1000);
        let s = std::sync::Arc::new(MemoryState::with_limits(40 * per, 10 * per));
        let now = Instant::now();
        let floods: Vec<_> = (0..3)
            .map(|n| {
                let s = std::sync::Arc::clone(&s);
                std::thread::spawn(move || {
                    let tenant = t(&format!("heavy{n}"));
                    for v in 0..3000 {
                        let value = Value::Bytes(&[1; 1000]);
                        match s.set(&tenant, Space::View, &format!("v{v}"), &value, None, now) {
                            Ok(_) | Err(StateError::Full { .. }) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        let quiet: Vec<_> = (0..2)
            .map(|n| {
                let s = std::sync::Arc::clone(&s);
                std::thread::spawn(move || {
                    for q in 0..200 {
                        let tenant = t(&format!("quiet{n}-{q}"));
                        let value = Value::Bytes(&[1; 1000]);
                        s.set(&tenant, Space::View, "first", &value, None, now)
                            .unwrap_or_else(|e| panic!("{tenant}: {e}"));
                        assert!(s.delete(&tenant, Space::View, "first", now));
                    }
                })
            })
            .collect();
        for h in floods.into_iter().chain(quiet) {
            h.join().unwrap();
        }
        assert!(s.stats().bytes <= 40 * per);
    }

    #[test]
    fn tenants_flooding_in_parallel_only_evict_their_own_views() {
        let per = view_cost(200);
        let s = std::sync::Arc::new(MemoryState::with_limits(1 << 24, 25 * per));
        let now = Instant::now();
        let quiet = t("quiet");
        for i in 0..20 {
            view(&s, &quiet, &format!("v{i:03}"), 200, now);
        }
        let handles: Vec<_> = (0..4)
            .map(|n| {
                let s = std::sync::Arc::clone(&s);
                std::thread::spawn(move || {
                    for i in 0..3000usize {
                        // Two threads share each flooding tenant.
                        let tenant = t(&format!("flood{}", (n + i) % 2 + 2 * (n / 2)));
                        let name = format!("v{n}-{i}");
                        s.set(
                            &tenant,
                            Space::View,
                            &name,
                            &Value::Bytes(&[2; 200]),
                            None,
                            now,
                        )
                        .unwrap();
                        if i % 3 == 0 {
                            s.get(&tenant, Space::View, &name, now);
                        }
                        assert!(s.tenant_bytes(&tenant) <= 25 * per);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(s.count(Some(&quiet), Space::View, now), 20);
        let mut total = counted(&s, &quiet);
        for i in 0..4 {
            let tenant = t(&format!("flood{i}"));
            assert!(s.tenant_bytes(&tenant) <= 25 * per);
            total += counted(&s, &tenant);
        }
        assert_eq!(s.stats().bytes, total);
    }

    /// The red team's shape: nine tenants, each within the share, fill the
    /// store with application state (no saved view to evict). A quiet
    /// tenant's first view and its application state still go in: the
    /// tenants furthest over their effective share give up application
    /// state, in stored order; the others keep every key.
    #[test]
    fn a_quiet_tenant_is_never_refused_when_others_hold_application_state() {
        let s = MemoryState::with_limits(65_536, 8_192);
        let now = Instant::now();
        let nine: Vec<TenantId> = (0..9).map(|i| t(&format!("evil{i}"))).collect();
        let mut held = Vec::new();
        for tenant in &nine {
            let mut n = 0;
            while s
                .set(
                    tenant,
                    Space::Data,
                    &format!("draft:{n}"),
                    &Value::Json(&[b'x'; 200]),
                    None,
                    now,
                )
                .is_ok()
            {
                n += 1;
            }
            held.push(n);
        }
        assert!(held.iter().all(|&n| n > 0), "{held:?}");
        // A tenant that stayed within the effective share of ten tenants.
        let modest = t("modest");
        s.set(
            &modest,
            Space::Data,
            "m",
            &Value::Bytes(&[3; 1000]),
            None,
            now,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let quiet = t("globex");
        assert_eq!(s.tenant_bytes(&quiet), 0);
        s.set(
            &quiet,
            Space::View,
            "first",
            &Value::Bytes(&[1; 1500]),
            None,
            now,
        )
        .unwrap_or_else(|e| panic!("first page: {e}"));
        s.set(
            &quiet,
            Space::Data,
            "settings",
            &Value::Json(&[b'y'; 500]),
            None,
            now,
        )
        .unwrap_or_else(|e| panic!("settings: {e}"));
        // Up to its whole effective share, in small and big keys.
        let share = s.stats().effective_share;
        let mut i = 0;
        while s.tenant_bytes(&quiet) + 2_000 <= share {
            s.set(
                &quiet,
                Space::Data,
                &format!("k{i}"),
                &Value::Bytes(&[5; 1900]),
                None,
                now,
            )
            .unwrap_or_else(|e| panic!("key {i} at {} of {share}: {e}", s.tenant_bytes(&quiet)));
            i += 1;
        }
        assert!(s.stats().bytes <= 65_536);
        // Nobody within the effective share lost anything.
        assert!(s.exists(&modest, Space::Data, "m", now));
        assert!(s.tenant_bytes(&modest) <= share);
        // The ones that gave were over it, and are not pushed below it.
        for tenant in &nine {
            assert!(
                s.tenant_bytes(tenant) + 300 > share,
                "{tenant} pushed to {}",
                s.tenant_bytes(tenant)
            );
        }
        // The oldest drafts went first.
        let lost: Vec<bool> = nine
            .iter()
            .map(|t| !s.exists(t, Space::Data, "draft:0", now))
            .collect();
        assert!(lost.iter().any(|&l| l));
        for (tenant, &n) in nine.iter().zip(&held) {
            assert!(s.exists(tenant, Space::Data, &format!("draft:{}", n - 1), now));
        }
    }

    /// Views of tenants over their share go before anyone's application
    /// state: application state is taken only when no tenant over its
    /// share holds a saved view.
    #[test]
    fn views_over_the_share_go_before_application_state() {
        let per = view_cost(1000);
        let s = MemoryState::with_limits(40 * per, 20 * per);
        let now = Instant::now();
        let (apps, views, quiet) = (t("apps"), t("views"), t("quiet"));
        for i in 0..20 {
            s.set(
                &apps,
                Space::Data,
                &format!("a{i:02}"),
                &Value::Bytes(&[1; 1000]),
                None,
                now,
            )
            .unwrap();
            view(&s, &views, &format!("v{i:03}"), 1000, now);
        }
        for i in 0..6 {
            s.set(
                &quiet,
                Space::Data,
                &format!("q{i}"),
                &Value::Bytes(&[1; 1000]),
                None,
                now,
            )
            .unwrap_or_else(|e| panic!("{i}: {e}"));
        }
        // Both over the share of three (40/3 keys): only views went.
        assert_eq!(s.count(Some(&apps), Space::Data, now), 20);
        assert_eq!(s.count(Some(&views), Space::View, now), 20 - 6);
        // Once the view holder is down to its share, application state of
        // the tenant over its share goes too, the oldest first.
        for i in 6..12 {
            s.set(
                &quiet,
                Space::Data,
                &format!("q{i}"),
                &Value::Bytes(&[1; 1000]),
                None,
                now,
            )
            .unwrap_or_else(|e| panic!("{i}: {e}"));
        }
        assert!(s.count(Some(&apps), Space::Data, now) < 20);
        assert!(!s.exists(&apps, Space::Data, "a00", now));
        assert!(s.exists(&apps, Space::Data, "a19", now));
        assert!(s.count(Some(&views), Space::View, now) >= 40 / 3);
    }

    /// A tenant over its effective share never takes room from others, and
    /// never has its own application state evicted by its own writes.
    #[test]
    fn a_tenant_over_its_share_still_only_evicts_its_own_views() {
        let s = MemoryState::with_limits(65_536, 65_536);
        let now = Instant::now();
        let (big, small) = (t("big"), t("small"));
        s.set(
            &small,
            Space::Data,
            "s",
            &Value::Bytes(&[1; 2000]),
            None,
            now,
        )
        .unwrap();
        let mut n = 0;
        while s
            .set(
                &big,
                Space::Data,
                &format!("b{n}"),
                &Value::Bytes(&[1; 1000]),
                None,
                now,
            )
            .is_ok()
        {
            n += 1;
        }
        assert!(matches!(
            s.set(
                &big,
                Space::Data,
                "more",
                &Value::Bytes(&[1; 1000]),
                None,
                now
            ),
            Err(StateError::Full { .. })
        ));
        assert!(s.exists(&small, Space::Data, "s", now));
        assert_eq!(s.count(Some(&big), Space::Data, now), n);
        // The small tenant (share: half the store) writes again: the big
        // one gives up its oldest keys.
        s.set(
            &small,
            Space::Data,
            "t",
            &Value::Bytes(&[1; 4000]),
            None,
            now,
        )
        .unwrap();
        assert!(!s.exists(&big, Space::Data, "b0", now));
        assert!(s.exists(&big, Space::Data, &format!("b{}", n - 1), now));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Any sequence of writes and deletes of six tenants, application
        /// state and views, small and big: a write that leaves its tenant
        /// within its effective share never fails, a tenant holding no
        /// more than its effective share never loses a key to another's
        /// write, and the store stays within its bound.
        #[test]
        fn a_tenant_within_its_effective_share_is_never_refused_nor_robbed(
            ops in proptest::collection::vec(
                (0usize..6, 0u8..3, 0usize..24, 1usize..3000), 1..250)
        ) {
            let limit = 65_536;
            let s = MemoryState::with_limits(limit, 16_384);
            let now = Instant::now();
            let tenants: Vec<TenantId> = (0..6).map(|i| t(&format!("p{i}"))).collect();
            for (who, op, key, len) in ops {
                let tenant = &tenants[who];
                let name = format!("k{key}");
                let space = if key % 3 == 0 { Space::View } else { Space::Data };
                let before: Vec<(usize, usize)> = tenants
                    .iter()
                    .map(|t| (s.tenant_bytes(t), s.tenant_keys(t, now)))
                    .collect();
                let new = usize::from(before[who].1 == 0);
                let share = {
                    let st = s.stats();
                    st.tenant_limit.min(limit / (st.tenants + new).max(1))
                };
                if op == 0 {
                    s.delete(tenant, space, &name, now);
                    continue;
                }
                let value = vec![7u8; len];
                let value = Value::Bytes(&value);
                let old = s.get(tenant, space, &name, now).map_or(0, |v| {
                    cost(record_len(space.byte(), name.as_bytes(), &Value::Bytes(&v[1..]), 0), 0, space.byte())
                });
                let new_cost = cost(record_len(space.byte(), name.as_bytes(), &value, 0), 0, space.byte());
                let after = before[who].0 - old + new_cost;
                let result = s.set(tenant, space, &name, &value, None, now);
                if after <= share {
                    proptest::prop_assert!(result.is_ok(), "{} at {} of {}: {:?}", tenant, after, share, result);
                }
                proptest::prop_assert!(s.stats().bytes <= limit);
                for (i, other) in tenants.iter().enumerate() {
                    if i == who || before[i].0 > share {
                        continue;
                    }
                    proptest::prop_assert_eq!(s.tenant_keys(other, now), before[i].1, "{} lost a key", other);
                }
            }
        }
    }

    #[test]
    fn quiet_tenants_write_while_others_flood_application_state_from_threads() {
        let s = std::sync::Arc::new(MemoryState::with_limits(64 * 1024, 8 * 1024));
        let now = Instant::now();
        let floods: Vec<_> = (0..4)
            .map(|n| {
                let s = std::sync::Arc::clone(&s);
                std::thread::spawn(move || {
                    for k in 0..3000 {
                        let tenant = t(&format!("heavy{}", (n * 3000 + k) % 10));
                        let value = Value::Bytes(&[1; 500]);
                        match s.set(&tenant, Space::Data, &format!("k{k}"), &value, None, now) {
                            Ok(_)
                            | Err(StateError::Full { .. } | StateError::TenantFull { .. }) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            })
            .collect();
        let quiet: Vec<_> = (0..2)
            .map(|n| {
                let s = std::sync::Arc::clone(&s);
                std::thread::spawn(move || {
                    for q in 0..200 {
                        let tenant = t(&format!("quiet{n}-{q}"));
                        let value = Value::Bytes(&[1; 400]);
                        s.set(&tenant, Space::Data, "first", &value, None, now)
                            .unwrap_or_else(|e| panic!("{tenant}: {e}"));
                        assert!(s.delete(&tenant, Space::Data, "first", now));
                    }
                })
            })
            .collect();
        for h in floods.into_iter().chain(quiet) {
            h.join().unwrap();
        }
        assert!(s.stats().bytes <= 64 * 1024);
    }
}
