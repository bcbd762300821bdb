//! The in-memory presence store: one per process, shared by every tenant.
//!
//! Rooms are identified by `(tenant, room name)` — the same logical key as
//! the Redis backend's `<prefix>:{tenant:<id>}:presence-*:<room>` keys — and
//! spread over [`SHARDS`] independently locked shards by a keyed hash of
//! that pair, so there is no global lock and one busy tenant does not
//! serialize others.
//!
//! A room holds users ([`LruTable`] keyed by user id, least recently active
//! first) and, for expiry, its connections ([`LruTable`] keyed by
//! `(user, ref)`, oldest heartbeat first). A user keeps its connections
//! (ref, `online_at`, payload) in a small vector in tracking order, at most
//! [`MAX_CONNECTIONS_PER_USER`](super::MAX_CONNECTIONS_PER_USER) long.
//!
//! Costs:
//! * `track`, `untrack`, `heartbeat` of one connection, `count`: O(1)
//!   amortized (plus O(connections of that user) ≤ 64 to find a ref in the
//!   user's vector). Expired connections are popped from the front of the
//!   room's connection order when the room is touched, and a user whose last
//!   connection goes is removed with it, so `count` is the number of users
//!   after that pop and never scans the room. Each connection expires once,
//!   which is what makes the popping amortized O(1).
//! * Expiry never scans tenants or rooms: every shard also keeps its rooms
//!   in last-write order, and each operation on a shard reclaims up to
//!   [`RECLAIM_PER_OP`] rooms whose newest heartbeat is older than their
//!   timeout; every [`SWEEP_EVERY`] operations a thread also does that for
//!   the next shard of a round robin, so shards without traffic are cleaned
//!   too. An emptied room is removed at once, so memory follows the live
//!   connections.
//!
//! The store is generic over the payloads it keeps (`M`): per user the
//! user-level meta, per connection its meta entry. The Python bindings keep
//! their own copies of the metas (no JSON; no object a caller holds), and
//! listing only clones `Arc`s under the lock: the records are built after. Payloads that leave the store are handed back
//! through a `graveyard` vector instead of being dropped under a shard lock,
//! because dropping a Python object can run arbitrary code (which might
//! call back into the store).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::table::LruTable;
use super::{counted_tenant, is_shared_space, MAX_CONNECTIONS_PER_USER};
use crate::sweep;
use crate::tenant_id::TenantId;

/// Number of shards (a power of two).
pub const SHARDS: usize = 64;
/// Expired rooms reclaimed per operation on a shard (beyond the room the
/// operation itself touches).
pub const RECLAIM_PER_OP: usize = 4;
/// Every this many operations, a thread also reclaims expired rooms in the
/// next shard of its round-robin sweep, so rooms in shards that see no
/// traffic are reclaimed too.
pub const SWEEP_EVERY: u32 = 16;
/// Expired rooms reclaimed per sweep step.
pub const RECLAIM_PER_SWEEP: usize = 16;

thread_local! {
    static SWEEP: sweep::Turn = const { std::cell::Cell::new((0, 0)) };
}

/// One live connection of a user.
pub struct Conn<M> {
    conn_ref: Box<str>,
    online_at: f64,
    payload: M,
}

impl<M> Conn<M> {
    pub fn conn_ref(&self) -> &str {
        &self.conn_ref
    }

    /// Wall-clock time the connection was first tracked.
    pub fn online_at(&self) -> f64 {
        self.online_at
    }

    pub fn payload(&self) -> &M {
        &self.payload
    }
}

/// One present user as seen by [`MemoryPresence::list`].
pub struct Presence<'a, M> {
    pub user: &'a str,
    pub joined_at: f64,
    /// The user-level payload (the meta of the user's latest track).
    pub meta: &'a M,
    /// Its connections, oldest first.
    pub conns: &'a [Conn<M>],
}

/// What a [`MemoryPresence::track`] did. Replaced payloads come back here
/// (not through the graveyard) for the caller to drop after the lock.
#[derive(Debug, PartialEq)]
pub enum Tracked<M> {
    /// The user was not present: it joined with this connection.
    UserJoined { joined_at: f64 },
    /// The user was present; this is a new connection of it. `old_meta`:
    /// the user-level payload it replaced.
    ConnAdded { joined_at: f64, old_meta: M },
    /// The connection was live: its payload was replaced (the old one is
    /// returned) and it was refreshed; `online_at` is the connection's first
    /// track.
    ConnUpdated {
        joined_at: f64,
        online_at: f64,
        old: M,
        old_meta: M,
    },
}

/// A usage period of a tenant's `peak_presences`: the hour, and the
/// generation of the usage figures (changed whenever figures already
/// recorded may be gone: cleared, recorded elsewhere, a new usage store).
/// A peak recorded in one period need not be recorded again in it unless
/// the count rises above it (peaks keep the largest value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meter {
    pub hour: u64,
    pub generation: u64,
}

/// What [`MemoryPresence::track_metered`] did.
#[derive(Debug, PartialEq)]
pub struct Metered<M> {
    pub tracked: Tracked<M>,
    /// Users present after the track counted against the same tenant as the
    /// user (the room's, or in a shared room the member's): the figure of
    /// that tenant's `peak_presences`.
    pub users: usize,
    /// Whether `users` must be recorded: false only when it is at most a
    /// figure this part already recorded in the same [`Meter`] period.
    pub meter_due: bool,
}

/// What an [`MemoryPresence::untrack`] removed.
#[derive(Debug, PartialEq)]
pub struct Untracked<M> {
    pub joined_at: f64,
    pub online_at: f64,
    /// The removed connection's payload.
    pub payload: M,
    /// The user-level payload: moved out when the user left, otherwise a
    /// share of it (made by the caller's `share`).
    pub meta: M,
    /// The user has no live connection left.
    pub user_left: bool,
}

/// A user [`MemoryPresence::leave`] removed.
#[derive(Debug, PartialEq)]
pub struct Left<M> {
    pub joined_at: f64,
    pub meta: M,
    /// `(ref, online_at, payload)` of every connection, oldest first.
    pub conns: Vec<(Box<str>, f64, M)>,
}

/// A track refused: the user already holds
/// [`MAX_CONNECTIONS_PER_USER`](super::MAX_CONNECTIONS_PER_USER) connections
/// (`cap` `None`), or the tenant is at one of its caps. The payloads come
/// back unused.
#[derive(Debug, PartialEq)]
pub struct TooManyConnections<M> {
    pub meta: M,
    pub payload: M,
    pub cap: Option<Cap>,
}

/// One of a tenant's caps in the memory store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cap {
    /// `PRESENCE_TENANT_MAX_ROOMS`: rooms holding at least one user.
    Rooms,
    /// `PRESENCE_TENANT_MAX_USERS`: users present, one per user and room.
    Users,
    /// `PRESENCE_TENANT_MAX_CONNECTIONS`: connections, all rooms.
    Connections,
}

impl Cap {
    /// The `DJUST_CONFIG` key of the cap.
    pub fn key(self) -> &'static str {
        match self {
            Cap::Rooms => "PRESENCE_TENANT_MAX_ROOMS",
            Cap::Users => "PRESENCE_TENANT_MAX_USERS",
            Cap::Connections => "PRESENCE_TENANT_MAX_CONNECTIONS",
        }
    }

    /// What the cap counts, for messages.
    pub fn what(self) -> &'static str {
        match self {
            Cap::Rooms => "presence rooms",
            Cap::Users => "present users",
            Cap::Connections => "presence connections",
        }
    }
}

/// A tenant's caps (`PRESENCE_TENANT_MAX_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    pub rooms: usize,
    pub users: usize,
    pub connections: usize,
}

/// Defaults of [`Caps`]: generous for one process (a process rarely holds
/// more than a few thousand sockets), bounded for a tenant that tracks
/// without sockets.
pub const DEFAULT_CAPS: Caps = Caps {
    rooms: 10_000,
    users: 50_000,
    connections: 50_000,
};

/// What one tenant holds in the store, kept exactly: changed only under the
/// lock of the shard of the room that changed, with atomic operations (a
/// tenant's rooms span shards), checked before anything is added.
#[derive(Default, Debug)]
struct Held {
    rooms: AtomicUsize,
    users: AtomicUsize,
    conns: AtomicUsize,
}

/// Adds one to `counter` unless it is at `cap` (exact under concurrency).
fn reserve(counter: &AtomicUsize, cap: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < cap).then_some(n + 1)
        })
        .is_ok()
}

fn release(counter: &AtomicUsize, n: usize) {
    if n > 0 {
        counter.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Each tenant's [`Held`], found by rooms when they are made (rooms keep an
/// `Arc` of it, so nothing else looks it up). Sharded by tenant; a shard's
/// lock is only ever taken under a room shard's lock, never the reverse.
struct Tenants {
    shards: Box<[Mutex<TenantMap>]>,
}

type TenantMap = HashMap<Box<str>, Arc<Held>>;

impl Tenants {
    fn new() -> Self {
        Tenants {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, hasher: &RandomState, tenant: &str) -> &Mutex<TenantMap> {
        &self.shards[(hasher.hash_one(tenant) >> 32) as usize & (SHARDS - 1)]
    }

    /// Counts a new room of `tenant` unless the tenant is at `cap`; its
    /// [`Held`]. The count is made under this lock, so a room freed at the
    /// same time never drops a `Held` a new room took.
    fn new_room(&self, hasher: &RandomState, tenant: &str, cap: usize) -> Option<Arc<Held>> {
        let mut map = self.shard(hasher, tenant).lock();
        let held = match map.get(tenant) {
            Some(held) => Arc::clone(held),
            None => {
                if cap == 0 {
                    return None;
                }
                let held = Arc::new(Held::default());
                map.insert(tenant.into(), Arc::clone(&held));
                held
            }
        };
        if !reserve(&held.rooms, cap) {
            return None;
        }
        Some(held)
    }

    /// Uncounts a room of `tenant`; forgets the tenant with its last room.
    fn room_gone(&self, hasher: &RandomState, tenant: &str, held: &Arc<Held>) {
        if held.rooms.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let mut map = self.shard(hasher, tenant).lock();
        if held.rooms.load(Ordering::Acquire) == 0
            && map.get(tenant).is_some_and(|h| Arc::ptr_eq(h, held))
        {
            map.remove(tenant);
        }
    }

    fn get(&self, hasher: &RandomState, tenant: &str) -> Option<Arc<Held>> {
        self.shard(hasher, tenant).lock().get(tenant).cloned()
    }
}

/// A tenant's holdings in the memory store (see [`MemoryPresence::held`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TenantStats {
    pub rooms: usize,
    pub users: usize,
    pub connections: usize,
}

/// Where the room's connection order points at one of a user's connections.
struct ConnKey {
    user: Box<str>,
    user_hash: u64,
    conn_ref: Box<str>,
}

struct User<M> {
    user: Box<str>,
    joined_at: f64,
    meta: M,
    conns: Vec<Conn<M>>,
}

impl<M> User<M> {
    fn position(&self, conn_ref: &str) -> Option<usize> {
        self.conns.iter().position(|c| &*c.conn_ref == conn_ref)
    }
}

/// The members of one tenant in a room, and what that tenant holds in the
/// whole store (its caps count them). A room of a tenant's own space has
/// one part, that tenant's; a room of a space of shared rooms
/// (`-rooms.<owner>`) one per member tenant present, so each member tenant
/// spends its own caps (docs/collaboration.md#live-rooms). A part goes
/// with its tenant's last user in the room, and with it the room from that
/// tenant's room count.
struct Part {
    tenant: Box<str>,
    held: Arc<Held>,
    users: usize,
    conns: usize,
    /// The highest `users` this part was metered at, and in which
    /// [`Meter`] period (see [`MemoryPresence::track_metered`]).
    metered: Option<(Meter, usize)>,
}

struct Room<M> {
    tenant: Box<str>,
    name: Box<str>,
    /// Whether the room is in a space of shared rooms: its users are member
    /// ids `<tenant>:<user>`, each counted by its own tenant.
    shared: bool,
    /// Per counted tenant: what it has in this room (few: the owner and
    /// its grantees present).
    parts: Vec<Part>,
    /// The timeout of the last write; the room as a whole is expired once its
    /// last write is older than this.
    timeout: Duration,
    users: LruTable<User<M>>,
    conns: LruTable<ConnKey>,
}

impl<M> Room<M> {
    fn new(tenant: &TenantId, name: &str, timeout: Duration) -> Self {
        Room {
            tenant: tenant.as_str().into(),
            name: name.into(),
            shared: is_shared_space(tenant.as_str()),
            parts: Vec::with_capacity(1),
            timeout,
            users: LruTable::default(),
            conns: LruTable::default(),
        }
    }

    /// The tenant `user` is counted against in this room.
    fn counted<'u>(&'u self, user: &'u str) -> &'u str {
        if self.shared {
            counted_tenant(&self.tenant, user)
        } else {
            &self.tenant
        }
    }

    /// The part of the tenant `user` is counted against, if it has one.
    fn part_of(&self, user: &str) -> Option<usize> {
        let counted = self.counted(user);
        self.parts.iter().position(|p| &*p.tenant == counted)
    }

    /// Uncounts `users` users and `conns` connections of `user`'s tenant; a
    /// part left without users goes, and the room from its tenant's count.
    fn uncount(&mut self, cx: &Ctx<'_>, user: &str, users: usize, conns: usize) {
        let Some(i) = self.part_of(user) else {
            return;
        };
        let part = &mut self.parts[i];
        part.users = part.users.saturating_sub(users);
        part.conns = part.conns.saturating_sub(conns);
        release(&part.held.users, users);
        release(&part.held.conns, conns);
        if part.users == 0 {
            let part = self.parts.swap_remove(i);
            release(&part.held.conns, part.conns);
            cx.tenants.room_gone(cx.hasher, &part.tenant, &part.held);
        }
    }

    fn find_user(&self, user_hash: u64, user: &str) -> Option<usize> {
        self.users.find(user_hash, |u| &*u.user == user)
    }

    fn find_conn(&self, conn_hash: u64, user: &str, conn_ref: &str) -> Option<usize> {
        self.conns
            .find(conn_hash, |c| &*c.user == user && &*c.conn_ref == conn_ref)
    }
}

struct Shard<M> {
    rooms: LruTable<Room<M>>,
    users: usize,
    conns: usize,
}

/// Cache-line aligned so neighbouring shards' locks do not false-share.
#[repr(align(64))]
struct Padded<T>(T);

pub struct MemoryPresence<M> {
    shards: Box<[Padded<Mutex<Shard<M>>>]>,
    /// Keyed (random per process) so user-chosen room names, user ids and
    /// refs cannot be crafted to collide (HashDoS).
    hasher: RandomState,
    tenants: Tenants,
    max_rooms: AtomicUsize,
    max_users: AtomicUsize,
    max_conns: AtomicUsize,
}

/// Totals over the whole store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub rooms: usize,
    /// Users present (one per user and room).
    pub presences: usize,
    pub connections: usize,
}

fn expired(stamp: Instant, timeout: Duration, now: Instant) -> bool {
    now.saturating_duration_since(stamp) > timeout
}

/// What a shard operation needs besides the shard: the tenants' holdings.
struct Ctx<'a> {
    tenants: &'a Tenants,
    hasher: &'a RandomState,
}

impl<M> Shard<M> {
    /// Drops up to `limit` rooms whose last write is older than their timeout.
    fn reclaim(&mut self, cx: &Ctx<'_>, now: Instant, limit: usize, graveyard: &mut Vec<M>) {
        for _ in 0..limit {
            let Some(pos) = self.rooms.front() else {
                return;
            };
            let room = self.rooms.get(pos);
            if !expired(self.rooms.stamp(pos), room.timeout, now) {
                return;
            }
            let room = self.rooms.remove(pos);
            self.bury_room(cx, room, graveyard);
        }
    }

    /// Uncounts a room that left the shard (every path that removes a room
    /// comes here: the tenant's counts stay exact).
    fn bury_room(&mut self, cx: &Ctx<'_>, mut room: Room<M>, graveyard: &mut Vec<M>) {
        self.users -= room.users.len();
        self.conns -= room.conns.len();
        for part in room.parts.drain(..) {
            release(&part.held.users, part.users);
            release(&part.held.conns, part.conns);
            cx.tenants.room_gone(cx.hasher, &part.tenant, &part.held);
        }
        room.conns.drain_all().for_each(drop);
        for user in room.users.drain_all() {
            graveyard.push(user.meta);
            graveyard.extend(user.conns.into_iter().map(|c| c.payload));
        }
    }

    fn find_room(&self, hash: u64, tenant: &str, name: &str) -> Option<usize> {
        self.rooms
            .find(hash, |r| &*r.tenant == tenant && &*r.name == name)
    }

    /// Pops the room's expired connections (and users left without one);
    /// removes the room if that empties it. Returns the room's position
    /// (`None` when it is gone) and how many connections expired.
    fn expire(
        &mut self,
        cx: &Ctx<'_>,
        pos: usize,
        timeout: Duration,
        now: Instant,
        graveyard: &mut Vec<M>,
    ) -> (Option<usize>, usize) {
        let room = self.rooms.get_mut(pos);
        let (mut conns, mut users) = (0, 0);
        while let Some(front) = room.conns.front() {
            if !expired(room.conns.stamp(front), timeout, now) {
                break;
            }
            let key = room.conns.remove(front);
            conns += 1;
            let Some(at) = room.find_user(key.user_hash, &key.user) else {
                room.uncount(cx, &key.user, 0, 1);
                continue;
            };
            let user = room.users.get_mut(at);
            if let Some(i) = user.position(&key.conn_ref) {
                graveyard.push(user.conns.remove(i).payload);
            }
            let user_left = user.conns.is_empty();
            if user_left {
                graveyard.push(room.users.remove(at).meta);
                users += 1;
            }
            room.uncount(cx, &key.user, usize::from(user_left), 1);
        }
        let now_empty = room.users.is_empty();
        self.conns -= conns;
        self.users -= users;
        if now_empty {
            let room = self.rooms.remove(pos);
            self.bury_room(cx, room, graveyard);
            (None, conns)
        } else {
            (Some(pos), conns)
        }
    }

    /// The live room at `(tenant, name)`, expired connections dropped.
    #[allow(clippy::too_many_arguments)]
    fn live_room(
        &mut self,
        cx: &Ctx<'_>,
        hash: u64,
        tenant: &TenantId,
        name: &str,
        timeout: Duration,
        now: Instant,
        graveyard: &mut Vec<M>,
    ) -> Option<usize> {
        let pos = self.find_room(hash, tenant.as_str(), name)?;
        self.expire(cx, pos, timeout, now, graveyard).0
    }

    /// Removes a room that has no user left.
    fn drop_if_empty(&mut self, cx: &Ctx<'_>, pos: usize, graveyard: &mut Vec<M>) {
        if self.rooms.get(pos).users.is_empty() {
            let room = self.rooms.remove(pos);
            self.bury_room(cx, room, graveyard);
        }
    }
}

/// The hashes one operation on a connection needs, computed once.
struct Hashes {
    room: u64,
    user: u64,
    conn: u64,
}

impl<M> Default for MemoryPresence<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> MemoryPresence<M> {
    pub fn new() -> Self {
        MemoryPresence {
            shards: (0..SHARDS)
                .map(|_| Padded(Mutex::new(Shard::default_shard())))
                .collect(),
            hasher: RandomState::new(),
            tenants: Tenants::new(),
            max_rooms: AtomicUsize::new(DEFAULT_CAPS.rooms),
            max_users: AtomicUsize::new(DEFAULT_CAPS.users),
            max_conns: AtomicUsize::new(DEFAULT_CAPS.connections),
        }
    }

    /// Sets every tenant's caps (what tenants hold already stays; new
    /// rooms, users and connections past a cap are refused).
    pub fn set_caps(&self, caps: Caps) {
        self.max_rooms.store(caps.rooms, Ordering::Relaxed);
        self.max_users.store(caps.users, Ordering::Relaxed);
        self.max_conns.store(caps.connections, Ordering::Relaxed);
    }

    pub fn caps(&self) -> Caps {
        Caps {
            rooms: self.max_rooms.load(Ordering::Relaxed),
            users: self.max_users.load(Ordering::Relaxed),
            connections: self.max_conns.load(Ordering::Relaxed),
        }
    }

    /// What `tenant` holds in the store now (expired but not yet dropped
    /// included), as its caps count it: its own rooms, and its members in
    /// shared rooms (its own shared rooms and other owners'). O(1).
    pub fn held(&self, tenant: &TenantId) -> TenantStats {
        self.tenants
            .get(&self.hasher, tenant.as_str())
            .map_or_else(TenantStats::default, |h| TenantStats {
                rooms: h.rooms.load(Ordering::Acquire),
                users: h.users.load(Ordering::Acquire),
                connections: h.conns.load(Ordering::Acquire),
            })
    }

    fn cx(&self) -> Ctx<'_> {
        Ctx {
            tenants: &self.tenants,
            hasher: &self.hasher,
        }
    }

    /// Every [`SWEEP_EVERY`] operations of a thread: reclaim expired rooms in
    /// the next shard of the thread's round robin, if its lock is free
    /// (never waits). Called after the operation released its own shard lock.
    fn sweep_step(&self, now: Instant, graveyard: &mut Vec<M>) {
        let shard = sweep::next_shard(&SWEEP, SWEEP_EVERY, SHARDS);
        if let Some(index) = shard {
            if let Some(mut shard) = self.shards[index].0.try_lock() {
                shard.reclaim(&self.cx(), now, RECLAIM_PER_SWEEP, graveyard);
            }
        }
    }

    fn room_hash(&self, tenant: &TenantId, room: &str) -> u64 {
        self.hasher.hash_one((tenant.as_str(), room))
    }

    fn user_hash(&self, user: &str) -> u64 {
        self.hasher.hash_one(user)
    }

    /// A connection's hash, from its user's (so the user id is hashed once).
    fn conn_hash(&self, user_hash: u64, conn_ref: &str) -> u64 {
        self.hasher.hash_one((user_hash, conn_ref))
    }

    fn hashes(&self, tenant: &TenantId, room: &str, user: &str, conn_ref: &str) -> Hashes {
        let user = self.user_hash(user);
        Hashes {
            room: self.room_hash(tenant, room),
            user,
            conn: self.conn_hash(user, conn_ref),
        }
    }

    /// The shard for a room hash. Uses middle bits: the hash table itself
    /// uses the low bits (bucket) and the top 7 bits (tag).
    fn shard(&self, hash: u64) -> &Mutex<Shard<M>> {
        &self.shards[((hash >> 32) as usize) & (SHARDS - 1)].0
    }

    /// Runs `op` on the shard of the room hash under its lock, then reclaims
    /// a few expired rooms of that shard (after `op`, so `op` sees and counts
    /// its own room's expired connections), then takes one step of the
    /// thread's sweep over other shards.
    fn on_shard<R>(
        &self,
        room_hash: u64,
        now: Instant,
        graveyard: &mut Vec<M>,
        op: impl FnOnce(&mut Shard<M>, &Ctx<'_>, &mut Vec<M>) -> R,
    ) -> R {
        let cx = self.cx();
        let result = {
            let mut shard = self.shard(room_hash).lock();
            let result = op(&mut shard, &cx, graveyard);
            shard.reclaim(&cx, now, RECLAIM_PER_OP, graveyard);
            result
        };
        self.sweep_step(now, graveyard);
        result
    }

    /// Tracks connection `conn_ref` of `user`: adds it (and the user, if it
    /// was not present), or, when it is live, replaces its payload. `meta`
    /// becomes the user-level payload either way. `wall` is the time given
    /// to a new user's `joined_at` and a new connection's `online_at`.
    #[allow(clippy::too_many_arguments)]
    pub fn track(
        &self,
        tenant: &TenantId,
        room: &str,
        user: &str,
        conn_ref: &str,
        meta: M,
        payload: M,
        timeout: Duration,
        now: Instant,
        wall: f64,
        graveyard: &mut Vec<M>,
    ) -> Result<Tracked<M>, TooManyConnections<M>> {
        self.track_metered(
            tenant, room, user, conn_ref, meta, payload, timeout, now, wall, None, graveyard,
        )
        .map(|m| m.tracked)
    }

    /// [`track`](Self::track), also counting, under the same lock, the
    /// users counted against the user's tenant after it, and whether that
    /// figure is due for the tenant's `peak_presences` in period `meter`
    /// (always, with no `meter`). The part keeps the highest figure it
    /// reported due in the period, so a join that does not raise the
    /// count is not metered again.
    #[allow(clippy::too_many_arguments)]
    pub fn track_metered(
        &self,
        tenant: &TenantId,
        room: &str,
        user: &str,
        conn_ref: &str,
        meta: M,
        payload: M,
        timeout: Duration,
        now: Instant,
        wall: f64,
        meter: Option<Meter>,
        graveyard: &mut Vec<M>,
    ) -> Result<Metered<M>, TooManyConnections<M>> {
        let h = self.hashes(tenant, room, user, conn_ref);
        let caps = self.caps();
        self.on_shard(h.room, now, graveyard, |shard, cx, graveyard| {
            let live = shard.live_room(cx, h.room, tenant, room, timeout, now, graveyard);
            // What this track adds, checked against the tenant's caps before
            // anything changes (a refused track leaves no trace).
            let (user_at, conn_found) = match live {
                Some(pos) => {
                    let entry = shard.rooms.get(pos);
                    let at = entry.find_user(h.user, user);
                    let found = at.and_then(|at| entry.users.get(at).position(conn_ref));
                    (at, found)
                }
                None => (None, None),
            };
            if let (Some(pos), Some(at)) = (live, user_at) {
                if conn_found.is_none()
                    && shard.rooms.get(pos).users.get(at).conns.len() >= MAX_CONNECTIONS_PER_USER
                {
                    return Err(TooManyConnections {
                        meta,
                        payload,
                        cap: None,
                    });
                }
            }
            // The tenant this user is counted against: the room's, or in a
            // space of shared rooms the member's own. A room new to that
            // tenant (a new room, or its first member in a shared one) is
            // counted first (its `Held` found or made); a part already there
            // is borrowed, not cloned.
            let counted = counted_tenant(tenant.as_str(), user);
            let part_at = live.and_then(|pos| shard.rooms.get(pos).part_of(user));
            let made = match part_at {
                Some(_) => None,
                None => match cx.tenants.new_room(cx.hasher, counted, caps.rooms) {
                    Some(held) => Some(held),
                    None => {
                        return Err(TooManyConnections {
                            meta,
                            payload,
                            cap: Some(Cap::Rooms),
                        })
                    }
                },
            };
            let refused = {
                let held: &Held = match (&made, live, part_at) {
                    (Some(held), _, _) => held,
                    (None, Some(pos), Some(i)) => &shard.rooms.get(pos).parts[i].held,
                    _ => unreachable!("a part is live or was just counted"),
                };
                let new_user = user_at.is_none();
                if new_user && !reserve(&held.users, caps.users) {
                    Some(Cap::Users)
                } else if conn_found.is_none() && !reserve(&held.conns, caps.connections) {
                    if new_user {
                        release(&held.users, 1);
                    }
                    Some(Cap::Connections)
                } else {
                    None
                }
            };
            if let Some(cap) = refused {
                if let Some(held) = &made {
                    cx.tenants.room_gone(cx.hasher, counted, held);
                }
                return Err(TooManyConnections {
                    meta,
                    payload,
                    cap: Some(cap),
                });
            }
            let pos = match live {
                Some(pos) => pos,
                None => shard
                    .rooms
                    .push_back(h.room, now, Room::new(tenant, room, timeout)),
            };
            shard.rooms.touch(pos, now);
            let entry = shard.rooms.get_mut(pos);
            entry.timeout = timeout;
            let part = match (part_at, made) {
                (Some(i), _) => &mut entry.parts[i],
                (None, Some(held)) => {
                    entry.parts.push(Part {
                        tenant: counted.into(),
                        held,
                        users: 0,
                        conns: 0,
                        metered: None,
                    });
                    let last = entry.parts.len() - 1;
                    &mut entry.parts[last]
                }
                (None, None) => unreachable!("a part is live or was just counted"),
            };
            if user_at.is_none() {
                part.users += 1;
            }
            if conn_found.is_none() {
                part.conns += 1;
            }
            let users = part.users;
            let meter_due = match (meter, part.metered) {
                (Some(m), Some((k, peak))) if k == m && users <= peak => false,
                (Some(m), _) => {
                    part.metered = Some((m, users));
                    true
                }
                (None, _) => true,
            };
            let metered = |tracked| Metered {
                tracked,
                users,
                meter_due,
            };
            let key = || ConnKey {
                user: user.into(),
                user_hash: h.user,
                conn_ref: conn_ref.into(),
            };
            let conn = |payload| Conn {
                conn_ref: conn_ref.into(),
                online_at: wall,
                payload,
            };
            let Some(at) = user_at else {
                entry.users.push_back(
                    h.user,
                    now,
                    User {
                        user: user.into(),
                        joined_at: wall,
                        meta,
                        // Room for a second tab without a reallocation.
                        conns: {
                            let mut conns = Vec::with_capacity(2);
                            conns.push(conn(payload));
                            conns
                        },
                    },
                );
                entry.conns.push_back(h.conn, now, key());
                shard.users += 1;
                shard.conns += 1;
                return Ok(metered(Tracked::UserJoined { joined_at: wall }));
            };
            entry.users.touch(at, now);
            let u = entry.users.get_mut(at);
            let old_meta = std::mem::replace(&mut u.meta, meta);
            let joined_at = u.joined_at;
            match conn_found {
                Some(i) => {
                    let c = &mut u.conns[i];
                    let old = std::mem::replace(&mut c.payload, payload);
                    let online_at = c.online_at;
                    if let Some(k) = entry.find_conn(h.conn, user, conn_ref) {
                        entry.conns.touch(k, now);
                    }
                    Ok(metered(Tracked::ConnUpdated {
                        joined_at,
                        online_at,
                        old,
                        old_meta,
                    }))
                }
                None => {
                    u.conns.push(conn(payload));
                    entry.conns.push_back(h.conn, now, key());
                    shard.conns += 1;
                    Ok(metered(Tracked::ConnAdded {
                        joined_at,
                        old_meta,
                    }))
                }
            }
        })
    }

    /// Removes connection `conn_ref` of `user` (and the user with its last
    /// connection). `None` when the connection was not live. `share` makes
    /// the returned share of the user-level payload when the user stays.
    #[allow(clippy::too_many_arguments)]
    pub fn untrack(
        &self,
        tenant: &TenantId,
        room: &str,
        user: &str,
        conn_ref: &str,
        timeout: Duration,
        now: Instant,
        graveyard: &mut Vec<M>,
        share: impl FnOnce(&M) -> M,
    ) -> Option<Untracked<M>> {
        let h = self.hashes(tenant, room, user, conn_ref);
        self.on_shard(h.room, now, graveyard, |shard, cx, graveyard| {
            let pos = shard.live_room(cx, h.room, tenant, room, timeout, now, graveyard)?;
            let entry = shard.rooms.get_mut(pos);
            let k = entry.find_conn(h.conn, user, conn_ref)?;
            entry.conns.remove(k);
            shard.conns -= 1;
            let Some(at) = entry.find_user(h.user, user) else {
                entry.uncount(cx, user, 0, 1);
                return None;
            };
            let u = entry.users.get_mut(at);
            let Some(i) = u.position(conn_ref) else {
                entry.uncount(cx, user, 0, 1);
                return None;
            };
            let conn = u.conns.remove(i);
            let (joined_at, user_left) = (u.joined_at, u.conns.is_empty());
            let meta = if user_left {
                shard.users -= 1;
                entry.users.remove(at).meta
            } else {
                share(&u.meta)
            };
            entry.uncount(cx, user, usize::from(user_left), 1);
            shard.drop_if_empty(cx, pos, graveyard);
            Some(Untracked {
                joined_at,
                online_at: conn.online_at,
                payload: conn.payload,
                meta,
                user_left,
            })
        })
    }

    /// Removes `user` with all its connections; `None` when it was not
    /// present (not live).
    pub fn leave(
        &self,
        tenant: &TenantId,
        room: &str,
        user: &str,
        timeout: Duration,
        now: Instant,
        graveyard: &mut Vec<M>,
    ) -> Option<Left<M>> {
        let room_hash = self.room_hash(tenant, room);
        let user_hash = self.user_hash(user);
        self.on_shard(room_hash, now, graveyard, |shard, cx, graveyard| {
            let pos = shard.live_room(cx, room_hash, tenant, room, timeout, now, graveyard)?;
            let entry = shard.rooms.get_mut(pos);
            let at = entry.find_user(user_hash, user)?;
            let gone = entry.users.remove(at);
            let mut conns = 0;
            for c in &gone.conns {
                if let Some(k) =
                    entry.find_conn(self.conn_hash(user_hash, &c.conn_ref), user, &c.conn_ref)
                {
                    entry.conns.remove(k);
                    conns += 1;
                }
            }
            entry.uncount(cx, user, 1, conns);
            shard.users -= 1;
            shard.conns -= conns;
            shard.drop_if_empty(cx, pos, graveyard);
            Some(Left {
                joined_at: gone.joined_at,
                meta: gone.meta,
                conns: gone
                    .conns
                    .into_iter()
                    .map(|c| (c.conn_ref, c.online_at, c.payload))
                    .collect(),
            })
        })
    }

    /// Refreshes connection `conn_ref` of `user`, or every connection of the
    /// user when `conn_ref` is `None`. Connections that are gone (never
    /// tracked, untracked, or expired) are not brought back. Returns how
    /// many connections were refreshed.
    #[allow(clippy::too_many_arguments)]
    pub fn heartbeat(
        &self,
        tenant: &TenantId,
        room: &str,
        user: &str,
        conn_ref: Option<&str>,
        timeout: Duration,
        now: Instant,
        graveyard: &mut Vec<M>,
    ) -> usize {
        let room_hash = self.room_hash(tenant, room);
        let user_hash = self.user_hash(user);
        self.on_shard(room_hash, now, graveyard, |shard, cx, graveyard| {
            let Some(pos) = shard.live_room(cx, room_hash, tenant, room, timeout, now, graveyard)
            else {
                return 0;
            };
            let entry = shard.rooms.get_mut(pos);
            let Some(at) = entry.find_user(user_hash, user) else {
                return 0;
            };
            let Room {
                users,
                conns,
                timeout: room_timeout,
                ..
            } = entry;
            let mut refreshed = 0;
            let mut touch = |r: &str| {
                let hash = self.conn_hash(user_hash, r);
                if let Some(k) = conns.find(hash, |c| &*c.user == user && &*c.conn_ref == r) {
                    conns.touch(k, now);
                    refreshed += 1;
                }
            };
            match conn_ref {
                Some(r) => touch(r),
                None => users.get(at).conns.iter().for_each(|c| touch(&c.conn_ref)),
            }
            if refreshed > 0 {
                users.touch(at, now);
                *room_timeout = timeout;
                shard.rooms.touch(pos, now);
            }
            refreshed
        })
    }

    /// Number of present users.
    pub fn count(
        &self,
        tenant: &TenantId,
        room: &str,
        timeout: Duration,
        now: Instant,
        graveyard: &mut Vec<M>,
    ) -> usize {
        let room_hash = self.room_hash(tenant, room);
        self.on_shard(room_hash, now, graveyard, |shard, cx, graveyard| {
            shard
                .live_room(cx, room_hash, tenant, room, timeout, now, graveyard)
                .map_or(0, |pos| shard.rooms.get(pos).users.len())
        })
    }

    /// Number of present users counted against the same tenant as `user`
    /// (the room's tenant, or in a shared room `user`'s member tenant): the
    /// figure of that tenant's `peak_presences` usage.
    pub fn count_counted(
        &self,
        tenant: &TenantId,
        room: &str,
        user: &str,
        timeout: Duration,
        now: Instant,
        graveyard: &mut Vec<M>,
    ) -> usize {
        let room_hash = self.room_hash(tenant, room);
        self.on_shard(room_hash, now, graveyard, |shard, cx, graveyard| {
            shard
                .live_room(cx, room_hash, tenant, room, timeout, now, graveyard)
                .and_then(|pos| {
                    let entry = shard.rooms.get(pos);
                    entry.part_of(user).map(|i| entry.parts[i].users)
                })
                .unwrap_or(0)
        })
    }

    /// Calls `each` for every present user, least recently active first,
    /// under the shard lock (so `each` must not call back into the store).
    /// Returns the number of users.
    pub fn list(
        &self,
        tenant: &TenantId,
        room: &str,
        timeout: Duration,
        now: Instant,
        graveyard: &mut Vec<M>,
        mut each: impl FnMut(Presence<'_, M>),
    ) -> usize {
        let room_hash = self.room_hash(tenant, room);
        self.on_shard(room_hash, now, graveyard, |shard, cx, graveyard| {
            let Some(pos) = shard.live_room(cx, room_hash, tenant, room, timeout, now, graveyard)
            else {
                return 0;
            };
            let users = &shard.rooms.get(pos).users;
            for (u, _) in users.iter() {
                each(Presence {
                    user: &u.user,
                    joined_at: u.joined_at,
                    meta: &u.meta,
                    conns: &u.conns,
                });
            }
            users.len()
        })
    }

    /// Removes the room's expired connections now; returns how many.
    pub fn cleanup_stale(
        &self,
        tenant: &TenantId,
        room: &str,
        timeout: Duration,
        now: Instant,
        graveyard: &mut Vec<M>,
    ) -> usize {
        let room_hash = self.room_hash(tenant, room);
        self.on_shard(
            room_hash,
            now,
            graveyard,
            |shard, cx, graveyard| match shard.find_room(room_hash, tenant.as_str(), room) {
                Some(pos) => shard.expire(cx, pos, timeout, now, graveyard).1,
                None => 0,
            },
        )
    }

    /// Reclaims every expired room in every shard (the per-operation
    /// reclaiming already bounds memory; this is for tests and admin tools).
    /// Returns how many rooms went.
    pub fn reclaim_expired(&self, now: Instant, graveyard: &mut Vec<M>) -> usize {
        let mut gone = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.0.lock();
            let before = shard.rooms.len();
            shard.reclaim(&self.cx(), now, usize::MAX, graveyard);
            gone += before - shard.rooms.len();
        }
        gone
    }

    /// Removes every room of `tenant`; returns how many users went.
    /// Visits every shard and each shard's rooms (an admin operation).
    pub fn clear_tenant(&self, tenant: &TenantId, graveyard: &mut Vec<M>) -> usize {
        let mut gone = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.0.lock();
            // Reverse `Vec` order: `remove` moves the last entry into the
            // hole, and that entry has already been looked at.
            for pos in shard.rooms.positions_rev() {
                if &*shard.rooms.get(pos).tenant == tenant.as_str() {
                    let room = shard.rooms.remove(pos);
                    gone += room.users.len();
                    shard.bury_room(&self.cx(), room, graveyard);
                }
            }
        }
        gone
    }

    /// Removes everything; returns how many users went.
    pub fn clear_all(&self, graveyard: &mut Vec<M>) -> usize {
        let mut gone = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.0.lock();
            let rooms: Vec<Room<M>> = shard.rooms.drain_all().collect();
            for room in rooms {
                gone += room.users.len();
                shard.bury_room(&self.cx(), room, graveyard);
            }
        }
        gone
    }

    /// Users counted against `tenant` in all rooms (its own, and its
    /// members in shared rooms), expired ones not yet reclaimed included.
    /// Visits every shard (an admin operation).
    pub fn tenant_presences(&self, tenant: &TenantId) -> usize {
        let mut count = 0;
        for shard in self.shards.iter() {
            let shard = shard.0.lock();
            for pos in shard.rooms.positions_rev() {
                let room = shard.rooms.get(pos);
                for part in &room.parts {
                    if &*part.tenant == tenant.as_str() {
                        count += part.users;
                    }
                }
            }
        }
        count
    }

    /// Rooms, users and connections held (expired ones not yet reclaimed
    /// included).
    pub fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        for shard in self.shards.iter() {
            let shard = shard.0.lock();
            stats.rooms += shard.rooms.len();
            stats.presences += shard.users;
            stats.connections += shard.conns;
        }
        stats
    }
}

impl<M> Shard<M> {
    fn default_shard() -> Self {
        Shard {
            rooms: LruTable::default(),
            users: 0,
            conns: 0,
        }
    }
}

/// Seconds since the Unix epoch, for `joined_at`.
pub fn wall_clock() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const T: Duration = Duration::from_secs(60);

    fn id(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    struct Clock(Instant);
    impl Clock {
        fn at(&self, secs: u64) -> Instant {
            self.0 + Duration::from_secs(secs)
        }
    }

    type Store = MemoryPresence<u32>;

    /// `join` as the bindings do it: the default ref, meta = payload.
    #[allow(clippy::too_many_arguments)]
    fn join(
        s: &Store,
        t: &TenantId,
        room: &str,
        user: &str,
        v: u32,
        now: Instant,
        wall: f64,
    ) -> f64 {
        match s.track(t, room, user, "", v, v, T, now, wall, &mut Vec::new()) {
            Ok(Tracked::UserJoined { joined_at })
            | Ok(Tracked::ConnAdded { joined_at, .. })
            | Ok(Tracked::ConnUpdated { joined_at, .. }) => joined_at,
            Err(_) => panic!("too many connections"),
        }
    }

    fn track(s: &Store, room: &str, user: &str, r: &str, v: u32, now: Instant) -> Tracked<u32> {
        s.track(
            &id("acme"),
            room,
            user,
            r,
            v,
            v,
            T,
            now,
            0.0,
            &mut Vec::new(),
        )
        .unwrap_or_else(|_| panic!("too many connections"))
    }

    fn untrack(s: &Store, room: &str, user: &str, r: &str, now: Instant) -> Option<Untracked<u32>> {
        s.untrack(&id("acme"), room, user, r, T, now, &mut Vec::new(), |m| *m)
    }

    /// `(user, [(ref, payload)])` in list order.
    fn listing(
        s: &Store,
        t: &TenantId,
        room: &str,
        now: Instant,
    ) -> Vec<(String, Vec<(String, u32)>)> {
        let mut out = Vec::new();
        s.list(t, room, T, now, &mut Vec::new(), |p| {
            out.push((
                p.user.to_owned(),
                p.conns
                    .iter()
                    .map(|c| (c.conn_ref().to_owned(), *c.payload()))
                    .collect(),
            ))
        });
        out
    }

    fn users(s: &Store, t: &TenantId, room: &str, now: Instant) -> Vec<String> {
        listing(s, t, room, now)
            .into_iter()
            .map(|(u, _)| u)
            .collect()
    }

    #[test]
    fn every_connection_transition() {
        let c = Clock(Instant::now());
        let s = Store::new();
        let a = id("acme");
        // First connection: the user joins.
        assert_eq!(
            s.track(
                &a,
                "r",
                "u",
                "tab1",
                10,
                1,
                T,
                c.at(0),
                100.0,
                &mut Vec::new()
            ),
            Ok(Tracked::UserJoined { joined_at: 100.0 })
        );
        // Another tab: a connection added to a present user.
        assert_eq!(
            s.track(
                &a,
                "r",
                "u",
                "tab2",
                20,
                2,
                T,
                c.at(1),
                101.0,
                &mut Vec::new()
            ),
            Ok(Tracked::ConnAdded {
                joined_at: 100.0,
                old_meta: 10
            })
        );
        assert_eq!(s.count(&a, "r", T, c.at(1), &mut Vec::new()), 1, "one user");
        assert_eq!(s.stats().connections, 2);
        // Same ref again: the meta is replaced, online_at kept.
        assert_eq!(
            s.track(
                &a,
                "r",
                "u",
                "tab1",
                30,
                3,
                T,
                c.at(2),
                102.0,
                &mut Vec::new()
            ),
            Ok(Tracked::ConnUpdated {
                joined_at: 100.0,
                online_at: 100.0,
                old: 1,
                old_meta: 20,
            })
        );
        assert_eq!(
            listing(&s, &a, "r", c.at(2)),
            vec![("u".into(), vec![("tab1".into(), 3), ("tab2".into(), 2)])]
        );
        let mut meta = 0;
        s.list(&a, "r", T, c.at(2), &mut Vec::new(), |p| meta = *p.meta);
        assert_eq!(meta, 30, "the latest track's meta is the user's");
        // One tab closed while another remains: the user stays.
        let gone = untrack(&s, "r", "u", "tab1", c.at(3)).unwrap();
        assert_eq!((gone.payload, gone.meta, gone.user_left), (3, 30, false));
        assert_eq!((gone.joined_at, gone.online_at), (100.0, 100.0));
        assert_eq!(s.count(&a, "r", T, c.at(3), &mut Vec::new()), 1);
        // Unknown ref: nothing.
        assert_eq!(untrack(&s, "r", "u", "tab1", c.at(3)), None);
        assert_eq!(untrack(&s, "r", "nobody", "tab1", c.at(3)), None);
        assert_eq!(untrack(&s, "nowhere", "u", "tab2", c.at(3)), None);
        // Last tab: the user leaves, and the room is freed.
        let gone = untrack(&s, "r", "u", "tab2", c.at(4)).unwrap();
        assert_eq!((gone.payload, gone.meta, gone.user_left), (2, 30, true));
        assert_eq!(s.count(&a, "r", T, c.at(4), &mut Vec::new()), 0);
        assert_eq!(
            s.stats(),
            Stats::default(),
            "an emptied room leaves nothing"
        );
        // Tracking again is a new presence.
        assert_eq!(
            track(&s, "r", "u", "tab1", 1, c.at(5)),
            Tracked::UserJoined { joined_at: 0.0 }
        );
    }

    #[test]
    fn join_rejoin_leave() {
        let c = Clock(Instant::now());
        let s = Store::new();
        let a = id("acme");
        let mut g = Vec::new();
        assert_eq!(join(&s, &a, "r", "u1", 1, c.at(0), 100.0), 100.0);
        assert_eq!(join(&s, &a, "r", "u2", 2, c.at(1), 101.0), 101.0);
        // Re-join keeps joined_at, replaces the payload, does not duplicate.
        assert_eq!(join(&s, &a, "r", "u1", 3, c.at(2), 102.0), 100.0);
        assert_eq!(s.count(&a, "r", T, c.at(2), &mut g), 2);
        let mut payloads = Vec::new();
        s.list(&a, "r", T, c.at(2), &mut g, |p| payloads.push(*p.meta));
        assert_eq!(payloads, vec![2, 3]);
        let left = s.leave(&a, "r", "u2", T, c.at(3), &mut g).unwrap();
        assert_eq!((left.meta, left.conns.len()), (2, 1));
        assert_eq!(s.leave(&a, "r", "u2", T, c.at(3), &mut g), None);
        assert_eq!(users(&s, &a, "r", c.at(3)), vec!["u1"]);
        assert!(s.leave(&a, "r", "u1", T, c.at(3), &mut g).is_some());
        assert_eq!(s.stats(), Stats::default());
    }

    #[test]
    fn leave_removes_every_connection_of_the_user() {
        let c = Clock(Instant::now());
        let s = Store::new();
        let a = id("acme");
        for (i, r) in ["a", "b", "c"].iter().enumerate() {
            track(&s, "r", "u", r, i as u32, c.at(0));
        }
        track(&s, "r", "v", "a", 9, c.at(0));
        let left = s.leave(&a, "r", "u", T, c.at(1), &mut Vec::new()).unwrap();
        let refs: Vec<&str> = left.conns.iter().map(|(r, _, _)| &**r).collect();
        assert_eq!(refs, ["a", "b", "c"]);
        assert_eq!(s.stats().connections, 1);
        assert_eq!(users(&s, &a, "r", c.at(1)), vec!["v"]);
        // No connection of u survives in the expiry order.
        assert_eq!(
            s.heartbeat(&a, "r", "u", None, T, c.at(1), &mut Vec::new()),
            0
        );
    }

    #[test]
    fn connections_expire_one_by_one() {
        let c = Clock(Instant::now());
        let s = Store::new();
        let a = id("acme");
        let mut g = Vec::new();
        track(&s, "r", "w", "x", 3, c.at(0));
        track(&s, "r", "u", "old", 1, c.at(0));
        track(&s, "r", "u", "new", 2, c.at(30));
        // At 61 s "old" and w's only connection have expired; u stays.
        assert_eq!(s.count(&a, "r", T, c.at(61), &mut g), 1);
        assert_eq!(
            listing(&s, &a, "r", c.at(61)),
            vec![("u".into(), vec![("new".into(), 2)])]
        );
        assert_eq!(s.stats().connections, 1);
        // A heartbeat of one ref keeps that one only.
        track(&s, "r", "u", "other", 4, c.at(61));
        assert_eq!(
            s.heartbeat(&a, "r", "u", Some("new"), T, c.at(80), &mut g),
            1
        );
        assert_eq!(
            s.heartbeat(&a, "r", "u", Some("gone"), T, c.at(80), &mut g),
            0
        );
        assert_eq!(
            listing(&s, &a, "r", c.at(125)),
            vec![("u".into(), vec![("new".into(), 2)])]
        );
        // A heartbeat without a ref refreshes all of the user's connections.
        track(&s, "r", "u", "other", 4, c.at(125));
        assert_eq!(s.heartbeat(&a, "r", "u", None, T, c.at(139), &mut g), 2);
        assert_eq!(s.count(&a, "r", T, c.at(199), &mut g), 1);
        assert_eq!(s.count(&a, "r", T, c.at(200), &mut g), 0);
        // An expired connection is not revived, nor untracked.
        assert_eq!(s.heartbeat(&a, "r", "u", None, T, c.at(200), &mut g), 0);
        assert_eq!(untrack(&s, "r", "u", "new", c.at(200)), None);
        assert_eq!(s.stats(), Stats::default());
    }

    #[test]
    fn heartbeats_keep_users_and_silence_expires_them() {
        let c = Clock(Instant::now());
        let s = Store::new();
        let a = id("acme");
        let mut g = Vec::new();
        join(&s, &a, "r", "quiet", 1, c.at(0), 0.0);
        join(&s, &a, "r", "busy", 2, c.at(0), 0.0);
        assert_eq!(s.heartbeat(&a, "r", "busy", None, T, c.at(50), &mut g), 1);
        assert_eq!(
            s.count(&a, "r", T, c.at(60), &mut g),
            2,
            "60 s is not expired yet"
        );
        assert_eq!(s.count(&a, "r", T, c.at(61), &mut g), 1);
        assert_eq!(users(&s, &a, "r", c.at(61)), vec!["busy"]);
        assert_eq!(s.heartbeat(&a, "r", "quiet", None, T, c.at(62), &mut g), 0);
        assert_eq!(s.leave(&a, "r", "quiet", T, c.at(62), &mut g), None);
        assert_eq!(s.count(&a, "r", T, c.at(111), &mut g), 0);
        assert_eq!(s.stats(), Stats::default());
    }

    #[test]
    fn connections_per_user_are_capped() {
        let c = Clock(Instant::now());
        let s = Store::new();
        let a = id("acme");
        for i in 0..MAX_CONNECTIONS_PER_USER {
            track(&s, "r", "u", &format!("tab{i}"), 0, c.at(0));
        }
        let refused = s.track(
            &a,
            "r",
            "u",
            "one-more",
            7,
            8,
            T,
            c.at(0),
            0.0,
            &mut Vec::new(),
        );
        assert_eq!(
            refused,
            Err(TooManyConnections {
                meta: 7,
                payload: 8,
                cap: None,
            })
        );
        // Re-tracking a held ref and other users are fine.
        assert!(matches!(
            track(&s, "r", "u", "tab0", 1, c.at(0)),
            Tracked::ConnUpdated { .. }
        ));
        track(&s, "r", "v", "tab0", 1, c.at(0));
        untrack(&s, "r", "u", "tab3", c.at(0)).unwrap();
        track(&s, "r", "u", "one-more", 1, c.at(0));
        assert_eq!(s.stats().connections, MAX_CONNECTIONS_PER_USER + 1);
    }

    #[test]
    fn cleanup_stale_counts_connections_it_removed() {
        let c = Clock(Instant::now());
        let s = Store::new();
        let a = id("acme");
        let mut g = Vec::new();
        for (i, u) in ["a", "b", "c"].iter().enumerate() {
            join(&s, &a, "r", u, i as u32, c.at(i as u64), 0.0);
        }
        track(&s, "r", "a", "tab", 0, c.at(2));
        // a's first connection and b's only one expired: 2 connections, one user.
        assert_eq!(s.cleanup_stale(&a, "r", T, c.at(62), &mut g), 2);
        assert_eq!(s.cleanup_stale(&a, "r", T, c.at(62), &mut g), 0);
        assert_eq!(users(&s, &a, "r", c.at(62)), vec!["c", "a"]);
    }

    #[test]
    fn tenants_with_the_same_room_user_and_ref_are_separate() {
        let c = Clock(Instant::now());
        let s = Store::new();
        let (a, b) = (id("acme"), id("globex"));
        let mut g = Vec::new();
        s.track(&a, "lobby", "u1", "tab", 1, 1, T, c.at(0), 0.0, &mut g)
            .unwrap();
        assert_eq!(
            s.track(&b, "lobby", "u1", "tab", 2, 2, T, c.at(0), 0.0, &mut g),
            Ok(Tracked::UserJoined { joined_at: 0.0 })
        );
        assert!(g.is_empty(), "the second track must not replace the first");
        let gone = s
            .untrack(&a, "lobby", "u1", "tab", T, c.at(1), &mut g, |m| *m)
            .unwrap();
        assert_eq!(gone.payload, 1);
        assert_eq!(s.count(&b, "lobby", T, c.at(1), &mut g), 1);
        assert_eq!(s.clear_tenant(&b, &mut g), 1);
        assert_eq!(s.stats(), Stats::default());
    }

    #[test]
    fn abandoned_rooms_are_reclaimed_without_being_touched() {
        let c = Clock(Instant::now());
        let s = Store::new();
        let mut g = Vec::new();
        let tenants: Vec<TenantId> = (0..200).map(|i| id(&format!("t{i}"))).collect();
        for t in &tenants {
            for r in 0..5 {
                join(&s, t, &format!("room{r}"), "u", 0, c.at(0), 0.0);
            }
        }
        assert_eq!(s.stats().rooms, 1000);
        let live = id("live");
        let mut step = 0;
        while s.stats().rooms > 0 && step < 10_000 {
            let room = format!("r{}", step % 3);
            join(&s, &live, &room, "u", 0, c.at(120), 0.0);
            s.leave(&live, &room, "u", T, c.at(120), &mut g);
            step += 1;
        }
        assert_eq!(s.stats(), Stats::default(), "after {step} operations");
        for t in &tenants {
            join(&s, t, "again", "u", 0, c.at(200), 0.0);
        }
        assert_eq!(s.reclaim_expired(c.at(300), &mut g), 200);
    }

    #[test]
    fn clear_all_empties_the_store() {
        let c = Clock(Instant::now());
        let s = Store::new();
        let mut g = Vec::new();
        for i in 0..100 {
            let t = id(&format!("t{}", i % 7));
            s.track(
                &t,
                "r",
                &format!("u{i}"),
                "a",
                i,
                i,
                T,
                c.at(0),
                0.0,
                &mut g,
            )
            .unwrap();
            s.track(
                &t,
                "r",
                &format!("u{i}"),
                "b",
                i,
                i,
                T,
                c.at(0),
                0.0,
                &mut g,
            )
            .unwrap();
        }
        g.clear();
        assert_eq!(s.clear_all(&mut g), 100);
        assert_eq!(
            g.len(),
            300,
            "one user meta and two connection payloads each"
        );
        assert_eq!(s.stats(), Stats::default());
    }

    #[test]
    fn threads_never_see_other_tenants() {
        let s = Arc::new(MemoryPresence::<String>::new());
        let handles: Vec<_> = (0..8)
            .map(|worker| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    let mut g = Vec::new();
                    for round in 0..300 {
                        let t = id(&format!("t{}", (worker * 300 + round) % 40));
                        let now = Instant::now();
                        let user = format!("w{}", worker % 3);
                        let r = format!("tab{worker}");
                        let v = t.as_str().to_owned();
                        s.track(&t, "lobby", &user, &r, v.clone(), v, T, now, 0.0, &mut g)
                            .unwrap();
                        s.list(&t, "lobby", T, now, &mut g, |p| {
                            assert_eq!(p.meta, t.as_str(), "leak into {t}");
                            assert!(p.conns.iter().all(|c| c.payload() == t.as_str()));
                        });
                        if round % 3 == 0 {
                            let gone =
                                s.untrack(&t, "lobby", &user, &r, T, now, &mut g, |m| m.clone());
                            assert!(gone.is_some());
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }

    fn held(s: &Store, t: &str) -> (usize, usize, usize) {
        let h = s.held(&id(t));
        (h.rooms, h.users, h.connections)
    }

    fn try_track(s: &Store, t: &str, room: &str, user: &str, r: &str, now: Instant) -> Option<Cap> {
        match s.track(&id(t), room, user, r, 0, 0, T, now, 0.0, &mut Vec::new()) {
            Ok(_) => None,
            Err(e) => Some(e.cap.expect("a cap, not the per-user limit")),
        }
    }

    #[test]
    fn each_cap_refuses_past_it_and_only_that_tenant() {
        let s = Store::new();
        s.set_caps(Caps {
            rooms: 3,
            users: 5,
            connections: 7,
        });
        let c = Clock(Instant::now());
        for room in ["r0", "r1", "r2"] {
            assert_eq!(try_track(&s, "acme", room, "u0", "a", c.at(0)), None);
        }
        assert_eq!(
            try_track(&s, "acme", "r3", "u0", "a", c.at(0)),
            Some(Cap::Rooms)
        );
        assert_eq!(held(&s, "acme"), (3, 3, 3));
        assert_eq!(try_track(&s, "acme", "r0", "u1", "a", c.at(0)), None);
        assert_eq!(try_track(&s, "acme", "r0", "u2", "a", c.at(0)), None);
        assert_eq!(
            try_track(&s, "acme", "r0", "u3", "a", c.at(0)),
            Some(Cap::Users)
        );
        assert_eq!(held(&s, "acme"), (3, 5, 5));
        assert_eq!(try_track(&s, "acme", "r0", "u0", "b", c.at(0)), None);
        assert_eq!(try_track(&s, "acme", "r0", "u0", "c", c.at(0)), None);
        assert_eq!(
            try_track(&s, "acme", "r0", "u0", "d", c.at(0)),
            Some(Cap::Connections)
        );
        // Re-tracking a held connection adds nothing: allowed at the cap.
        assert_eq!(try_track(&s, "acme", "r0", "u0", "a", c.at(0)), None);
        assert_eq!(held(&s, "acme"), (3, 5, 7));
        // Another tenant has its own caps, whatever acme holds.
        for room in ["r0", "r1", "r2"] {
            assert_eq!(try_track(&s, "globex", room, "u0", "a", c.at(0)), None);
        }
        // A refused track left nothing behind (no empty room, no count).
        assert_eq!(s.stats().rooms, 6);
        assert_eq!(held(&s, "acme"), (3, 5, 7));
    }

    fn held_in(s: &Store, t: &TenantId) -> (usize, usize, usize) {
        let h = s.held(t);
        (h.rooms, h.users, h.connections)
    }

    fn try_track_in(s: &Store, t: &TenantId, room: &str, user: &str, now: Instant) -> Option<Cap> {
        match s.track(t, room, user, "tab", 0, 0, T, now, 0.0, &mut Vec::new()) {
            Ok(_) => None,
            Err(e) => Some(e.cap.expect("a cap, not the per-user limit")),
        }
    }

    /// Red team rooms findings 5 and 8: in a space of shared rooms each
    /// member is counted against its own tenant's caps (and its own count
    /// A part meters its count once per period unless it rises: a join
    /// that raises it is due, one that does not is not (peaks keep the
    /// largest value), a new hour or generation is due again, no period is
    /// always due, and in a shared room each member tenant's part meters
    /// its own members' count.
    #[test]
    fn peaks_are_due_when_they_rise_or_the_period_changes() {
        let s = Store::new();
        let c = Clock(Instant::now());
        let acme = id("acme");
        let p0 = Meter {
            hour: 7,
            generation: 0,
        };
        let track = |t: &TenantId, user: &str, r: &str, meter: Option<Meter>| {
            let m = s
                .track_metered(
                    t,
                    "doc",
                    user,
                    r,
                    1,
                    1,
                    T,
                    c.at(0),
                    1.0,
                    meter,
                    &mut Vec::new(),
                )
                .unwrap();
            (m.users, m.meter_due)
        };
        assert_eq!(track(&acme, "u1", "", Some(p0)), (1, true));
        assert_eq!(track(&acme, "u2", "", Some(p0)), (2, true));
        assert_eq!(track(&acme, "u2", "tab", Some(p0)), (2, false));
        assert_eq!(track(&acme, "u1", "", Some(p0)), (2, false));
        assert_eq!(track(&acme, "u1", "", None), (2, true));
        assert!(s
            .leave(&acme, "doc", "u2", T, c.at(0), &mut Vec::new())
            .is_some());
        assert_eq!(track(&acme, "u2", "", Some(p0)), (2, false));
        let next_hour = Meter { hour: 8, ..p0 };
        assert_eq!(track(&acme, "u1", "", Some(next_hour)), (2, true));
        let cleared = Meter {
            generation: 1,
            ..next_hour
        };
        assert_eq!(track(&acme, "u1", "", Some(cleared)), (2, true));
        assert_eq!(track(&acme, "u3", "", Some(cleared)), (3, true));
        // A part that went (its last user left) starts afresh.
        for u in ["u1", "u2", "u3"] {
            assert!(s
                .leave(&acme, "doc", u, T, c.at(0), &mut Vec::new())
                .is_some());
        }
        assert_eq!(track(&acme, "u1", "", Some(cleared)), (1, true));
        // Shared room: each member tenant's part, its own count.
        let space = TenantId::shared_rooms_of(&acme);
        assert_eq!(track(&space, "globex:g0", "", Some(p0)), (1, true));
        assert_eq!(track(&space, "globex:g1", "", Some(p0)), (2, true));
        assert_eq!(track(&space, "initech:i0", "", Some(p0)), (1, true));
        assert_eq!(track(&space, "initech:i0", "", Some(p0)), (1, false));
        assert_eq!(track(&space, "globex:g1", "", Some(p0)), (2, false));
    }

    /// for usage), so a grantee at its cap never locks the owner out.
    #[test]
    fn shared_room_members_count_against_their_own_tenant() {
        let s = Store::new();
        s.set_caps(Caps {
            rooms: 2,
            users: 3,
            connections: 5,
        });
        let c = Clock(Instant::now());
        let space = TenantId::shared_rooms_of(&id("acme"));
        let (acme, globex, initech) = (id("acme"), id("globex"), id("initech"));
        for g in ["globex:g0", "globex:g1", "globex:g2"] {
            assert_eq!(try_track_in(&s, &space, "board:1", g, c.at(0)), None);
        }
        // The grantee is refused at its own cap, naming the users cap...
        assert_eq!(
            try_track_in(&s, &space, "board:1", "globex:g3", c.at(0)),
            Some(Cap::Users)
        );
        assert_eq!(held_in(&s, &globex), (1, 3, 3));
        // ...its own rooms too (one allowance per tenant, wherever its users are)...
        assert_eq!(
            try_track_in(&s, &globex, "lobby", "u", c.at(0)),
            Some(Cap::Users)
        );
        // ...while the owner joins its granted board and a never-granted one,
        // and another grantee joins: nothing of theirs was spent.
        assert_eq!(held_in(&s, &acme), (0, 0, 0));
        assert_eq!(held_in(&s, &space), (0, 0, 0));
        assert_eq!(
            try_track_in(&s, &space, "board:1", "initech:i0", c.at(0)),
            None
        );
        assert_eq!(
            try_track_in(&s, &space, "board:1", "acme:a0", c.at(50)),
            None
        );
        assert_eq!(
            try_track_in(&s, &space, "board:2", "acme:a0", c.at(50)),
            None
        );
        assert_eq!(held_in(&s, &acme), (2, 2, 2));
        assert_eq!(held_in(&s, &initech), (1, 1, 1));
        // Each tenant's own count in the room (its usage figure); the room's
        // count is everyone.
        let g = &mut Vec::new();
        assert_eq!(
            s.count_counted(&space, "board:1", "globex:x", T, c.at(50), g),
            3
        );
        assert_eq!(
            s.count_counted(&space, "board:1", "acme:a0", T, c.at(50), g),
            1
        );
        assert_eq!(s.count(&space, "board:1", T, c.at(50), g), 5);
        assert_eq!(s.tenant_presences(&globex), 3);
        // untrack and leave give the grantee's allowance back, not the owner's.
        s.untrack(&space, "board:1", "globex:g0", "tab", T, c.at(50), g, |m| {
            *m
        })
        .unwrap();
        s.leave(&space, "board:1", "globex:g1", T, c.at(50), g)
            .unwrap();
        assert_eq!(held_in(&s, &globex), (1, 1, 1));
        assert_eq!(held_in(&s, &acme), (2, 2, 2));
        // Expiry: the grantee's (and initech's) members time out, the owner's stay.
        assert_eq!(s.count(&space, "board:1", T, c.at(100), g), 1);
        assert_eq!(held_in(&s, &globex), (0, 0, 0));
        assert_eq!(held_in(&s, &initech), (0, 0, 0));
        assert_eq!(held_in(&s, &acme), (2, 2, 2));
        assert_eq!(try_track_in(&s, &globex, "lobby", "u", c.at(100)), None);
        // Whole expired rooms go with every part's counts.
        s.reclaim_expired(c.at(1000), g);
        for t in [&acme, &globex, &initech, &space] {
            assert_eq!(held_in(&s, t), (0, 0, 0), "{t}");
        }
        // A second member of the same tenant, then clear_all.
        for u in ["globex:g0", "acme:a0", "globex:g1"] {
            assert_eq!(try_track_in(&s, &space, "board:1", u, c.at(1000)), None);
        }
        assert_eq!(held_in(&s, &globex), (1, 2, 2));
        s.clear_all(g);
        assert_eq!(held_in(&s, &globex), (0, 0, 0));
        assert_eq!(held_in(&s, &acme), (0, 0, 0));
    }

    #[test]
    fn shared_room_counts_are_exact_under_threads() {
        let s = Arc::new(Store::new());
        s.set_caps(Caps {
            rooms: 4,
            users: 30,
            connections: 40,
        });
        let space = TenantId::shared_rooms_of(&id("acme"));
        let handles: Vec<_> = (0..6)
            .map(|worker| {
                let (s, space) = (Arc::clone(&s), space.clone());
                std::thread::spawn(move || {
                    let mut g = Vec::new();
                    let tenant = ["acme", "globex", "initech"][worker % 3];
                    for round in 0..400 {
                        let room = format!("board:{}", round % 6);
                        let user = format!("{tenant}:u{}", (round * 7 + worker) % 25);
                        let r = format!("tab{}", round % 3);
                        let now = Instant::now();
                        let _ = s.track(&space, &room, &user, &r, 0, 0, T, now, 0.0, &mut g);
                        if round % 4 == 0 {
                            s.untrack(&space, &room, &user, &r, T, now, &mut g, |m| *m);
                        }
                        if round % 9 == 0 {
                            s.leave(&space, &room, &user, T, now, &mut g);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let now = Instant::now();
        for tenant in ["acme", "globex", "initech"] {
            let (rooms, users, _) = held(&s, tenant);
            assert!(rooms <= 4 && users <= 30, "{tenant}: {rooms} {users}");
            let probe = format!("{tenant}:probe");
            let mut listed = (0, 0);
            for r in 0..6 {
                let n = s.count_counted(
                    &space,
                    &format!("board:{r}"),
                    &probe,
                    T,
                    now,
                    &mut Vec::new(),
                );
                listed.0 += usize::from(n > 0);
                listed.1 += n;
            }
            assert_eq!((rooms, users), listed, "{tenant}");
        }
        s.clear_all(&mut Vec::new());
        for tenant in ["acme", "globex", "initech"] {
            assert_eq!(held(&s, tenant), (0, 0, 0));
        }
    }

    #[test]
    fn counts_go_back_to_zero_on_every_way_out() {
        let s = Store::new();
        let c = Clock(Instant::now());
        let a = id("acme");
        let fill = |at: Instant| {
            for room in ["r0", "r1"] {
                for user in ["u0", "u1"] {
                    for r in ["a", "b"] {
                        assert_eq!(try_track(&s, "acme", room, user, r, at), None);
                    }
                }
            }
        };
        fill(c.at(0));
        assert_eq!(held(&s, "acme"), (2, 4, 8));
        // untrack and leave
        untrack(&s, "r0", "u0", "a", c.at(0)).unwrap();
        untrack(&s, "r0", "u0", "b", c.at(0)).unwrap();
        assert_eq!(held(&s, "acme"), (2, 3, 6));
        s.leave(&a, "r0", "u1", T, c.at(0), &mut Vec::new())
            .unwrap();
        assert_eq!(held(&s, "acme"), (1, 2, 4));
        s.leave(&a, "r1", "u0", T, c.at(0), &mut Vec::new())
            .unwrap();
        s.leave(&a, "r1", "u1", T, c.at(0), &mut Vec::new())
            .unwrap();
        assert_eq!(held(&s, "acme"), (0, 0, 0));
        // expiry: a touched room drops its expired connections...
        fill(c.at(0));
        assert_eq!(try_track(&s, "acme", "r0", "u0", "a", c.at(50)), None);
        assert_eq!(s.count(&a, "r0", T, c.at(100), &mut Vec::new()), 1);
        assert_eq!(held(&s, "acme"), (2, 3, 5));
        assert_eq!(s.cleanup_stale(&a, "r1", T, c.at(100), &mut Vec::new()), 4);
        assert_eq!(held(&s, "acme"), (1, 1, 1));
        // ...and whole expired rooms are reclaimed.
        assert_eq!(s.reclaim_expired(c.at(1000), &mut Vec::new()), 1);
        assert_eq!(held(&s, "acme"), (0, 0, 0));
        // clear_tenant and clear_all
        fill(c.at(1000));
        assert_eq!(s.clear_tenant(&a, &mut Vec::new()), 4);
        assert_eq!(held(&s, "acme"), (0, 0, 0));
        fill(c.at(1000));
        s.clear_all(&mut Vec::new());
        assert_eq!(held(&s, "acme"), (0, 0, 0));
    }

    #[test]
    fn caps_are_exact_under_threads() {
        let s = Arc::new(Store::new());
        s.set_caps(Caps {
            rooms: 50,
            users: 200,
            connections: 300,
        });
        let c = Instant::now();
        let handles: Vec<_> = (0..8)
            .map(|n| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    for i in 0..400 {
                        let room = format!("r{}", (i * 7 + n) % 80);
                        let user = format!("u{n}-{i}");
                        try_track(&s, "acme", &room, &user, "a", c);
                        if i % 3 == 0 {
                            s.leave(&id("acme"), &room, &user, T, c, &mut Vec::new());
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let (rooms, users, conns) = held(&s, "acme");
        assert!(
            rooms <= 50 && users <= 200 && conns <= 300,
            "{rooms} {users} {conns}"
        );
        // The counts are the store's own: list every room to check.
        let mut listed_users = 0;
        let mut listed_rooms = 0;
        for r in 0..80 {
            let n = s.count(&id("acme"), &format!("r{r}"), T, c, &mut Vec::new());
            listed_users += n;
            listed_rooms += usize::from(n > 0);
        }
        assert_eq!(
            (rooms, users, conns),
            (listed_rooms, listed_users, listed_users)
        );
        s.clear_all(&mut Vec::new());
        assert_eq!(held(&s, "acme"), (0, 0, 0));
    }
}
