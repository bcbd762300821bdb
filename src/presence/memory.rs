//! The in-memory presence store: one per process, shared by every tenant.
//!
//! Rooms are identified by `(tenant, room name)` — the same logical key as
//! the Redis backend's `<prefix>:{tenant:<id>}:presence:<room>` — and spread
//! over [`SHARDS`] independently locked shards by a keyed hash of that pair,
//! so there is no global lock and one busy tenant does not serialize others.
//!
//! Costs:
//! * `join`, `leave`, `heartbeat`, `count`: O(1) amortized. A room keeps its
//!   members in last-heartbeat order ([`LruTable`]); expired members are
//!   popped from the front when the room is touched, so `count` is the
//!   room's length after that pop and never scans the room. Each member
//!   expires once, which is what makes the popping amortized O(1).
//! * Expiry never scans tenants or rooms: every shard also keeps its rooms
//!   in last-write order, and each operation on a shard reclaims up to
//!   [`RECLAIM_PER_OP`] rooms whose newest heartbeat is older than their
//!   timeout; every [`SWEEP_EVERY`] operations a thread also does that for
//!   the next shard of a round robin, so shards without traffic are cleaned
//!   too. An emptied room is removed at once, so memory follows the live
//!   presences.
//!
//! The store is generic over the payload kept per presence (`M`): the
//! Python bindings keep the record dict itself, so joining stores no JSON
//! and listing only takes new references. Payloads that leave the store are
//! handed back through a `graveyard` vector instead of being dropped under
//! a shard lock, because dropping a Python object can run arbitrary code
//! (which might call back into the store).

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::table::LruTable;
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

/// One presence as seen by [`MemoryPresence::list`].
pub struct Presence<'a, M> {
    pub user: &'a str,
    pub joined_at: f64,
    pub payload: &'a M,
}

struct Member<M> {
    user: Box<str>,
    joined_at: f64,
    payload: M,
}

struct Room<M> {
    tenant: Box<str>,
    name: Box<str>,
    /// The timeout of the last write; the room as a whole is expired once its
    /// last write is older than this.
    timeout: Duration,
    members: LruTable<Member<M>>,
}

#[derive(Default)]
struct Shard<M> {
    rooms: LruTable<Room<M>>,
    members: usize,
}

/// Cache-line aligned so neighbouring shards' locks do not false-share.
#[repr(align(64))]
struct Padded<T>(T);

pub struct MemoryPresence<M> {
    shards: Box<[Padded<Mutex<Shard<M>>>]>,
    /// Keyed (random per process) so user-chosen room names and user ids
    /// cannot be crafted to collide (HashDoS).
    hasher: RandomState,
}

/// Totals over the whole store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub rooms: usize,
    pub presences: usize,
}

fn expired(stamp: Instant, timeout: Duration, now: Instant) -> bool {
    now.saturating_duration_since(stamp) > timeout
}

impl<M> Shard<M> {
    /// Drops up to `limit` rooms whose last write is older than their timeout.
    fn reclaim(&mut self, now: Instant, limit: usize, graveyard: &mut Vec<M>) {
        for _ in 0..limit {
            let Some(pos) = self.rooms.front() else {
                return;
            };
            let room = self.rooms.get(pos);
            if !expired(self.rooms.stamp(pos), room.timeout, now) {
                return;
            }
            let room = self.rooms.remove(pos);
            self.bury_room(room, graveyard);
        }
    }

    fn bury_room(&mut self, mut room: Room<M>, graveyard: &mut Vec<M>) {
        self.members -= room.members.len();
        graveyard.extend(room.members.drain_all().map(|m| m.payload));
    }

    fn find_room(&self, hash: u64, tenant: &str, name: &str) -> Option<usize> {
        self.rooms
            .find(hash, |r| &*r.tenant == tenant && &*r.name == name)
    }

    /// Pops the room's expired members; removes the room if that empties it.
    /// Returns the room's position, or `None` when it is gone.
    fn expire_members(
        &mut self,
        pos: usize,
        timeout: Duration,
        now: Instant,
        graveyard: &mut Vec<M>,
    ) -> (Option<usize>, usize) {
        let members = &mut self.rooms.get_mut(pos).members;
        let mut removed = 0;
        while let Some(front) = members.front() {
            if !expired(members.stamp(front), timeout, now) {
                break;
            }
            graveyard.push(members.remove(front).payload);
            removed += 1;
        }
        let now_empty = members.is_empty();
        self.members -= removed;
        if now_empty {
            self.rooms.remove(pos);
            (None, removed)
        } else {
            (Some(pos), removed)
        }
    }
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
                .map(|_| {
                    Padded(Mutex::new(Shard {
                        rooms: LruTable::default(),
                        members: 0,
                    }))
                })
                .collect(),
            hasher: RandomState::new(),
        }
    }

    /// Every [`SWEEP_EVERY`] operations of a thread: reclaim expired rooms in
    /// the next shard of the thread's round robin, if its lock is free
    /// (never waits). Called before the operation takes its own shard lock.
    fn sweep_step(&self, now: Instant, graveyard: &mut Vec<M>) {
        let shard = sweep::next_shard(&SWEEP, SWEEP_EVERY, SHARDS);
        if let Some(index) = shard {
            if let Some(mut shard) = self.shards[index].0.try_lock() {
                shard.reclaim(now, RECLAIM_PER_SWEEP, graveyard);
            }
        }
    }

    fn room_hash(&self, tenant: &TenantId, room: &str) -> u64 {
        self.hasher.hash_one((tenant.as_str(), room))
    }

    fn user_hash(&self, user: &str) -> u64 {
        self.hasher.hash_one(user)
    }

    /// The shard for a room hash. Uses middle bits: the hash table itself
    /// uses the low bits (bucket) and the top 7 bits (tag).
    fn shard(&self, hash: u64) -> &Mutex<Shard<M>> {
        &self.shards[((hash >> 32) as usize) & (SHARDS - 1)].0
    }

    /// Runs `op` on the shard of `(tenant, room)` under its lock, then
    /// reclaims a few expired rooms of that shard (after `op`, so `op` sees
    /// and counts its own room's expired members), then takes one step of
    /// the thread's sweep over other shards.
    fn on_shard<R>(
        &self,
        tenant: &TenantId,
        room: &str,
        now: Instant,
        graveyard: &mut Vec<M>,
        op: impl FnOnce(&mut Shard<M>, u64, &mut Vec<M>) -> R,
    ) -> R {
        let hash = self.room_hash(tenant, room);
        let result = {
            let mut shard = self.shard(hash).lock();
            let result = op(&mut shard, hash, graveyard);
            shard.reclaim(now, RECLAIM_PER_OP, graveyard);
            result
        };
        self.sweep_step(now, graveyard);
        result
    }

    /// Adds `user` to the room, or updates its payload and heartbeat when it
    /// is already present. Returns the presence's `joined_at`: `wall` for a
    /// new presence, the first join's time for a user still present.
    #[allow(clippy::too_many_arguments)]
    pub fn join(
        &self,
        tenant: &TenantId,
        room: &str,
        user: &str,
        payload: M,
        timeout: Duration,
        now: Instant,
        wall: f64,
        graveyard: &mut Vec<M>,
    ) -> f64 {
        let user_hash = self.user_hash(user);
        self.on_shard(tenant, room, now, graveyard, |shard, hash, graveyard| {
            let pos = match shard.find_room(hash, tenant.as_str(), room) {
                Some(pos) => shard.expire_members(pos, timeout, now, graveyard).0,
                None => None,
            };
            let pos = match pos {
                Some(pos) => pos,
                None => shard.rooms.push_back(
                    hash,
                    now,
                    Room {
                        tenant: tenant.as_str().into(),
                        name: room.into(),
                        timeout,
                        members: LruTable::default(),
                    },
                ),
            };
            let entry = shard.rooms.get_mut(pos);
            entry.timeout = timeout;
            let members = &mut entry.members;
            let (joined_at, added) = match members.find(user_hash, |m| &*m.user == user) {
                Some(at) => {
                    members.touch(at, now);
                    let member = members.get_mut(at);
                    graveyard.push(std::mem::replace(&mut member.payload, payload));
                    (member.joined_at, 0)
                }
                None => {
                    members.push_back(
                        user_hash,
                        now,
                        Member {
                            user: user.into(),
                            joined_at: wall,
                            payload,
                        },
                    );
                    (wall, 1)
                }
            };
            shard.rooms.touch(pos, now);
            shard.members += added;
            joined_at
        })
    }

    /// Removes `user`; returns its payload when it was present (not expired).
    pub fn leave(
        &self,
        tenant: &TenantId,
        room: &str,
        user: &str,
        timeout: Duration,
        now: Instant,
        graveyard: &mut Vec<M>,
    ) -> Option<M> {
        let user_hash = self.user_hash(user);
        self.on_shard(tenant, room, now, graveyard, |shard, hash, graveyard| {
            let pos = shard.find_room(hash, tenant.as_str(), room)?;
            let pos = shard.expire_members(pos, timeout, now, graveyard).0?;
            let members = &mut shard.rooms.get_mut(pos).members;
            let at = members.find(user_hash, |m| &*m.user == user)?;
            let member = members.remove(at);
            let now_empty = members.is_empty();
            shard.members -= 1;
            if now_empty {
                shard.rooms.remove(pos);
            }
            Some(member.payload)
        })
    }

    /// Refreshes `user`'s heartbeat. A user that is not present (never
    /// joined, left, or already expired) is not brought back: returns false.
    pub fn heartbeat(
        &self,
        tenant: &TenantId,
        room: &str,
        user: &str,
        timeout: Duration,
        now: Instant,
        graveyard: &mut Vec<M>,
    ) -> bool {
        let user_hash = self.user_hash(user);
        self.on_shard(tenant, room, now, graveyard, |shard, hash, graveyard| {
            let Some(pos) = shard.find_room(hash, tenant.as_str(), room) else {
                return false;
            };
            let Some(pos) = shard.expire_members(pos, timeout, now, graveyard).0 else {
                return false;
            };
            let entry = shard.rooms.get_mut(pos);
            let Some(at) = entry.members.find(user_hash, |m| &*m.user == user) else {
                return false;
            };
            entry.members.touch(at, now);
            entry.timeout = timeout;
            shard.rooms.touch(pos, now);
            true
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
        self.on_shard(tenant, room, now, graveyard, |shard, hash, graveyard| {
            let Some(pos) = shard.find_room(hash, tenant.as_str(), room) else {
                return 0;
            };
            match shard.expire_members(pos, timeout, now, graveyard).0 {
                Some(pos) => shard.rooms.get(pos).members.len(),
                None => 0,
            }
        })
    }

    /// Calls `each` for every present user, least recent heartbeat first,
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
        self.on_shard(tenant, room, now, graveyard, |shard, hash, graveyard| {
            let Some(pos) = shard.find_room(hash, tenant.as_str(), room) else {
                return 0;
            };
            let Some(pos) = shard.expire_members(pos, timeout, now, graveyard).0 else {
                return 0;
            };
            let members = &shard.rooms.get(pos).members;
            for (m, _) in members.iter() {
                each(Presence {
                    user: &m.user,
                    joined_at: m.joined_at,
                    payload: &m.payload,
                });
            }
            members.len()
        })
    }

    /// Removes the room's expired users now; returns how many.
    pub fn cleanup_stale(
        &self,
        tenant: &TenantId,
        room: &str,
        timeout: Duration,
        now: Instant,
        graveyard: &mut Vec<M>,
    ) -> usize {
        self.on_shard(
            tenant,
            room,
            now,
            graveyard,
            |shard, hash, graveyard| match shard.find_room(hash, tenant.as_str(), room) {
                Some(pos) => shard.expire_members(pos, timeout, now, graveyard).1,
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
            shard.reclaim(now, usize::MAX, graveyard);
            gone += before - shard.rooms.len();
        }
        gone
    }

    /// Removes every room of `tenant`; returns how many presences went.
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
                    gone += room.members.len();
                    shard.bury_room(room, graveyard);
                }
            }
        }
        gone
    }

    /// Removes everything; returns how many presences went.
    pub fn clear_all(&self, graveyard: &mut Vec<M>) -> usize {
        let mut gone = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.0.lock();
            let rooms: Vec<Room<M>> = shard.rooms.drain_all().collect();
            for room in rooms {
                gone += room.members.len();
                shard.bury_room(room, graveyard);
            }
        }
        gone
    }

    /// Presences of `tenant` in all its rooms (expired ones not yet
    /// reclaimed included). Visits every shard (an admin operation).
    pub fn tenant_presences(&self, tenant: &TenantId) -> usize {
        let mut count = 0;
        for shard in self.shards.iter() {
            let shard = shard.0.lock();
            for pos in shard.rooms.positions_rev() {
                let room = shard.rooms.get(pos);
                if &*room.tenant == tenant.as_str() {
                    count += room.members.len();
                }
            }
        }
        count
    }

    /// Rooms and presences held (expired ones not yet reclaimed included).
    pub fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        for shard in self.shards.iter() {
            let shard = shard.0.lock();
            stats.rooms += shard.rooms.len();
            stats.presences += shard.members;
        }
        stats
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

    fn users(store: &MemoryPresence<u32>, t: &TenantId, room: &str, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        store.list(t, room, T, now, &mut Vec::new(), |p| {
            out.push(p.user.to_owned())
        });
        out
    }

    #[test]
    fn join_rejoin_leave() {
        let c = Clock(Instant::now());
        let s = MemoryPresence::new();
        let a = id("acme");
        let mut g = Vec::new();
        assert_eq!(s.join(&a, "r", "u1", 1, T, c.at(0), 100.0, &mut g), 100.0);
        assert_eq!(s.join(&a, "r", "u2", 2, T, c.at(1), 101.0, &mut g), 101.0);
        // Re-join keeps joined_at, replaces the payload, does not duplicate.
        assert_eq!(s.join(&a, "r", "u1", 3, T, c.at(2), 102.0, &mut g), 100.0);
        assert_eq!(g, vec![1]);
        assert_eq!(s.count(&a, "r", T, c.at(2), &mut g), 2);
        let mut payloads = Vec::new();
        s.list(&a, "r", T, c.at(2), &mut g, |p| payloads.push(*p.payload));
        assert_eq!(payloads, vec![2, 3]);
        assert_eq!(s.leave(&a, "r", "u2", T, c.at(3), &mut g), Some(2));
        assert_eq!(s.leave(&a, "r", "u2", T, c.at(3), &mut g), None);
        assert_eq!(users(&s, &a, "r", c.at(3)), vec!["u1"]);
        assert_eq!(s.leave(&a, "r", "u1", T, c.at(3), &mut g), Some(3));
        assert_eq!(
            s.stats(),
            Stats::default(),
            "an emptied room leaves nothing"
        );
    }

    #[test]
    fn heartbeats_keep_users_and_silence_expires_them() {
        let c = Clock(Instant::now());
        let s = MemoryPresence::new();
        let a = id("acme");
        let mut g = Vec::new();
        s.join(&a, "r", "quiet", 1, T, c.at(0), 0.0, &mut g);
        s.join(&a, "r", "busy", 2, T, c.at(0), 0.0, &mut g);
        assert!(s.heartbeat(&a, "r", "busy", T, c.at(50), &mut g));
        assert_eq!(
            s.count(&a, "r", T, c.at(60), &mut g),
            2,
            "60 s is not expired yet"
        );
        assert_eq!(s.count(&a, "r", T, c.at(61), &mut g), 1);
        assert_eq!(g, vec![1]);
        assert_eq!(users(&s, &a, "r", c.at(61)), vec!["busy"]);
        // An expired user is not revived by a late heartbeat, nor returned by leave.
        assert!(!s.heartbeat(&a, "r", "quiet", T, c.at(62), &mut g));
        assert_eq!(s.leave(&a, "r", "quiet", T, c.at(62), &mut g), None);
        assert!(!s.heartbeat(&a, "r", "nobody", T, c.at(62), &mut g));
        assert_eq!(s.count(&a, "r", T, c.at(111), &mut g), 0);
        assert_eq!(s.stats(), Stats::default());
    }

    #[test]
    fn rejoin_after_expiry_is_a_new_presence() {
        let c = Clock(Instant::now());
        let s = MemoryPresence::new();
        let a = id("acme");
        let mut g = Vec::new();
        s.join(&a, "r", "u", 1, T, c.at(0), 10.0, &mut g);
        assert_eq!(s.join(&a, "r", "u", 2, T, c.at(100), 20.0, &mut g), 20.0);
    }

    #[test]
    fn cleanup_stale_counts_what_it_removed() {
        let c = Clock(Instant::now());
        let s = MemoryPresence::new();
        let a = id("acme");
        let mut g = Vec::new();
        for (i, u) in ["a", "b", "c"].iter().enumerate() {
            s.join(&a, "r", u, i as u32, T, c.at(i as u64), 0.0, &mut g);
        }
        assert_eq!(s.cleanup_stale(&a, "r", T, c.at(62), &mut g), 2);
        assert_eq!(s.cleanup_stale(&a, "r", T, c.at(62), &mut g), 0);
        assert_eq!(users(&s, &a, "r", c.at(62)), vec!["c"]);
    }

    #[test]
    fn tenants_with_the_same_room_and_user_are_separate() {
        let c = Clock(Instant::now());
        let s = MemoryPresence::new();
        let (a, b) = (id("acme"), id("globex"));
        let mut g = Vec::new();
        s.join(&a, "lobby", "u1", 1, T, c.at(0), 0.0, &mut g);
        s.join(&b, "lobby", "u1", 2, T, c.at(0), 0.0, &mut g);
        assert!(g.is_empty(), "the second join must not replace the first");
        assert_eq!(s.leave(&a, "lobby", "u1", T, c.at(1), &mut g), Some(1));
        assert_eq!(s.count(&b, "lobby", T, c.at(1), &mut g), 1);
        assert_eq!(s.clear_tenant(&b, &mut g), 1);
        assert_eq!(s.stats(), Stats::default());
    }

    #[test]
    fn abandoned_rooms_are_reclaimed_without_being_touched() {
        let c = Clock(Instant::now());
        let s = MemoryPresence::new();
        let mut g = Vec::new();
        let tenants: Vec<TenantId> = (0..200).map(|i| id(&format!("t{i}"))).collect();
        for t in &tenants {
            for r in 0..5 {
                s.join(t, &format!("room{r}"), "u", 0, T, c.at(0), 0.0, &mut g);
            }
        }
        assert_eq!(s.stats().rooms, 1000);
        // Later traffic in one fresh room per shard-ish reclaims old rooms a
        // few at a time, never by scanning.
        let live = id("live");
        let mut step = 0;
        while s.stats().rooms > 0 && step < 10_000 {
            s.join(
                &live,
                &format!("r{}", step % 3),
                "u",
                0,
                T,
                c.at(120),
                0.0,
                &mut g,
            );
            s.leave(&live, &format!("r{}", step % 3), "u", T, c.at(120), &mut g);
            step += 1;
        }
        assert_eq!(s.stats().rooms, 0, "after {step} operations");
        assert_eq!(s.stats().presences, 0);
        // reclaim_expired does the same in one sweep.
        for t in &tenants {
            s.join(t, "again", "u", 0, T, c.at(200), 0.0, &mut g);
        }
        assert_eq!(s.reclaim_expired(c.at(300), &mut g), 200);
    }

    #[test]
    fn clear_all_empties_the_store() {
        let c = Clock(Instant::now());
        let s = MemoryPresence::new();
        let mut g = Vec::new();
        for i in 0..100 {
            s.join(
                &id(&format!("t{}", i % 7)),
                "r",
                &format!("u{i}"),
                i,
                T,
                c.at(0),
                0.0,
                &mut g,
            );
        }
        assert_eq!(s.clear_all(&mut g), 100);
        assert_eq!(g.len(), 100);
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
                        let user = format!("w{worker}");
                        s.join(
                            &t,
                            "lobby",
                            &user,
                            t.as_str().to_owned(),
                            T,
                            now,
                            0.0,
                            &mut g,
                        );
                        s.list(&t, "lobby", T, now, &mut g, |p| {
                            assert_eq!(p.payload, t.as_str(), "leak into {t}");
                        });
                        if round % 3 == 0 {
                            assert!(s.leave(&t, "lobby", &user, T, now, &mut g).is_some());
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
}
