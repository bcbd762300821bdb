//! Presence in Redis: every operation is one Lua script, so one round trip.
//!
//! Per room four keys, all from the one key formatter and so sharing the
//! tenant's hash tag (one cluster slot). A user is named in them by its
//! *user field* `"<user id length>:<user id>"`, a connection by its
//! *connection field* `"<user field>:<ref>"` (the length makes both
//! unambiguous whatever bytes ids and refs hold, and puts all of one user's
//! connections in one lexical range):
//! * `presence-users:<room>` — sorted set, member = user field, score = the
//!   newest heartbeat of any of the user's connections (so `count` is one
//!   `ZCOUNT` from the liveness cutoff: O(log n), no scan);
//! * `presence-conns:<room>` — sorted set, member = connection field,
//!   score = the connection's last heartbeat (expiry pops from the front);
//! * `presence-refs:<room>` — sorted set, the same members with score 0, so
//!   a user's connections are one `ZRANGEBYLEX` range;
//! * `presence-data:<room>` — hash: user field → `"<joined_at> <meta JSON>"`
//!   (the user-level meta: the latest track's), connection field →
//!   `"<online_at> <meta JSON>"`.
//!
//! In a space of shared rooms (`-rooms.<owner>`) a track, untrack, leave or
//! heartbeat of a member also keeps a fifth key, its member tenant's users
//! in the room, `presence-members:<tenant>:<room>` (a sorted set like
//! `presence-users`, mirrored on every change of that member's score), so
//! the track script returns the member tenant's own count for its
//! `peak_presences` (docs/collaboration.md#live-rooms) in the same round
//! trip. Members of other tenants dropped by expiry keep a stale score
//! there (below the cutoff, so never counted) until their tenant's next
//! track prunes them or the key's TTL ends.
//!
//! Expired connections are removed in bounded batches by `track`, all at
//! once (amortised: each expires once) by `list` and `cleanup_stale`, and
//! filtered by score everywhere else; a user goes with its last connection.
//! Every write sets the four keys' TTL to twice the presence timeout: once
//! the last heartbeat of a room is older than the timeout every connection
//! is expired, so a room nobody touches any more vanishes on its own.
//!
//! Time is Redis' own clock (`TIME`), so app servers with skewed clocks
//! agree on who is present.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Value;

use super::{
    check_member, check_ref, check_room, check_user, is_shared_space, member_tenant, PresenceError,
    MAX_CONNECTIONS_PER_USER,
};
use crate::keys::{format_key, KeyPrefix, Kind};
use crate::redis_store::{Arg, RedisStore, Script};
use crate::tenant_id::TenantId;

/// Shared head of every script: `now`, its text `stamp`, the liveness
/// cutoff (a connection is alive when its score is at least `cutoff`), and
/// the helpers. ARGV[1] is the timeout, ARGV[2] the TTL in ms.
macro_rules! prelude {
    () => {
        r#"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local stamp = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local cutoff = now - tonumber(ARGV[1])
local cut = string.format('%.6f', cutoff)
local USERS, CONNS, REFS, DATA = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local MEMBERS = KEYS[5]

-- A user's newest heartbeat, in the room and (a shared room's member) in
-- its tenant's members.
local function score(s, u)
  redis.call('ZADD', USERS, s, u)
  if MEMBERS then redis.call('ZADD', MEMBERS, s, u) end
end
local function unscore(u)
  redis.call('ZREM', USERS, u)
  if MEMBERS then redis.call('ZREM', MEMBERS, u) end
end

local function user_of(c)
  local digits = string.match(c, '^(%d+):')
  return string.sub(c, 1, #digits + 1 + tonumber(digits))
end
local function conns_of(u)
  return redis.call('ZRANGEBYLEX', REFS, '[' .. u .. ':', '(' .. u .. ';')
end
local function drop(conns)
  if #conns > 0 then
    redis.call('ZREM', CONNS, unpack(conns))
    redis.call('ZREM', REFS, unpack(conns))
    redis.call('HDEL', DATA, unpack(conns))
  end
end
local function live(score)
  return score and tonumber(score) >= cutoff
end
-- Drops the user's expired connections; the newest live heartbeat, or
-- false (then the user is removed too).
local function settle(u)
  local mine = conns_of(u)
  local best = false
  local dead = {}
  if #mine > 0 then
    local scores = redis.call('ZMSCORE', CONNS, unpack(mine))
    for i, m in ipairs(mine) do
      if live(scores[i]) then
        local s = tonumber(scores[i])
        if not best or s > best then best = s end
      else
        dead[#dead + 1] = m
      end
    end
  end
  drop(dead)
  if best then
    score(best, u)
  else
    unscore(u)
    redis.call('HDEL', DATA, u)
  end
  return best
end
-- Removes up to `limit` expired connections (and users left without one).
local function expire(limit)
  local stale = redis.call('ZRANGEBYSCORE', CONNS, '-inf', '(' .. cut, 'LIMIT', 0, limit)
  if #stale == 0 then return 0 end
  drop(stale)
  local seen = {}
  for _, c in ipairs(stale) do
    local u = user_of(c)
    if not seen[u] then
      seen[u] = true
      if redis.call('ZLEXCOUNT', REFS, '[' .. u .. ':', '(' .. u .. ';') == 0 then
        unscore(u)
        redis.call('HDEL', DATA, u)
      end
    end
  end
  return #stale
end
local function touch()
  for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
end
"#
    };
}

/// ARGV: timeout, ttl_ms, user field, ref, meta JSON, most connections.
/// Returns `{status, joined_at, online_at, users[, replaced meta JSON]}`;
/// status 1 user joined, 2 connection added, 3 connection updated; `users`
/// the present users counted against the user's tenant after the track
/// (the room's `count`, or with a fifth key the member tenant's users in
/// the shared room), taken in the same script for the usage peak (no
/// second round trip); `{0}` when the user is at its connection limit.
const TRACK: &str = concat!(
    prelude!(),
    r#"
expire(16)
local u = ARGV[3]
local c = u .. ':' .. ARGV[4]
local joined = stamp
local online = stamp
local old = false
local status
if live(redis.call('ZSCORE', USERS, u)) then
  local row = redis.call('HGET', DATA, u)
  joined = (row and string.match(row, '^([0-9.]+) ')) or stamp
  local crow = live(redis.call('ZSCORE', CONNS, c)) and redis.call('HGET', DATA, c)
  if crow then
    online = string.match(crow, '^([0-9.]+) ') or stamp
    old = string.match(crow, '^[0-9.]+ (.*)$') or 'null'
    status = 3
  else
    -- At the limit, the user's expired connections (not counted) go first.
    local held = redis.call('ZLEXCOUNT', REFS, '[' .. u .. ':', '(' .. u .. ';')
    if held >= tonumber(ARGV[6]) then
      settle(u)
      held = redis.call('ZLEXCOUNT', REFS, '[' .. u .. ':', '(' .. u .. ';')
      if held >= tonumber(ARGV[6]) then return {0} end
    end
    status = 2
  end
else
  drop(conns_of(u))
  status = 1
end
score(now, u)
redis.call('ZADD', CONNS, now, c)
redis.call('ZADD', REFS, 0, c)
redis.call('HSET', DATA, u, joined .. ' ' .. ARGV[5], c, online .. ' ' .. ARGV[5])
touch()
local users
if MEMBERS then
  -- Each stale member is pruned once (amortised O(1)).
  redis.call('ZREMRANGEBYSCORE', MEMBERS, '-inf', '(' .. cut)
  users = redis.call('ZCOUNT', MEMBERS, cut, '+inf')
else
  users = redis.call('ZCOUNT', USERS, cut, '+inf')
end
if old then return {status, joined, online, users, old} end
return {status, joined, online, users}
"#
);

/// ARGV: timeout, ttl_ms, user field, ref. Returns `{1 (user left) or 2
/// (user stays), user row, connection row}`, or nil when the connection was
/// not live.
const UNTRACK: &str = concat!(
    prelude!(),
    r#"
local u = ARGV[3]
local c = u .. ':' .. ARGV[4]
local score = redis.call('ZSCORE', CONNS, c)
if not score then return false end
local crow = redis.call('HGET', DATA, c)
local row = redis.call('HGET', DATA, u)
drop({c})
local stays = settle(u)
if not (live(score) and crow and row) then return false end
if stays then return {2, row, crow} end
return {1, row, crow}
"#
);

/// ARGV: timeout, ttl_ms, user field. Returns `{user row, connection field,
/// connection row, ...}` of the live connections, or nil when the user was
/// not present.
const LEAVE: &str = concat!(
    prelude!(),
    r#"
local u = ARGV[3]
local row = redis.call('HGET', DATA, u)
local out = false
if row and live(redis.call('ZSCORE', USERS, u)) then out = {row} end
local mine = conns_of(u)
if #mine > 0 then
  if out then
    local scores = redis.call('ZMSCORE', CONNS, unpack(mine))
    local rows = redis.call('HMGET', DATA, unpack(mine))
    for i, m in ipairs(mine) do
      if live(scores[i]) and rows[i] then
        out[#out + 1] = m
        out[#out + 1] = rows[i]
      end
    end
  end
  drop(mine)
end
unscore(u)
redis.call('HDEL', DATA, u)
if out and #out == 1 then return false end
return out
"#
);

/// ARGV: timeout, ttl_ms, user field[, ref]. Refreshes that connection, or
/// every live connection of the user; returns how many.
const HEARTBEAT: &str = concat!(
    prelude!(),
    r#"
local u = ARGV[3]
local targets
if #ARGV >= 4 then targets = {u .. ':' .. ARGV[4]} else targets = conns_of(u) end
if #targets == 0 then return 0 end
local scores = redis.call('ZMSCORE', CONNS, unpack(targets))
local args = {}
for i, m in ipairs(targets) do
  if live(scores[i]) then
    args[#args + 1] = now
    args[#args + 1] = m
  end
end
if #args == 0 then return 0 end
redis.call('ZADD', CONNS, unpack(args))
score(now, u)
touch()
return #args / 2
"#
);

/// ARGV: timeout. Users with a live connection; O(log n): no scan.
const COUNT: &str = concat!(
    prelude!(),
    r#"
return redis.call('ZCOUNT', USERS, cut, '+inf')
"#
);

/// ARGV: timeout. Removes every expired connection (amortised: each one
/// expires once); then the hash holds exactly the present users and their
/// connections, and `list` reads it with an `HGETALL` pipelined behind the
/// script (one round trip; Redis serves it natively, where returning it
/// from the script would pass thousands of strings through a Lua table:
/// three quarters of the script's time for a 1,000-user room).
const LIST: &str = concat!(
    prelude!(),
    r#"
while expire(1000) == 1000 do end
return 1
"#
);

/// ARGV: timeout. Removes every expired connection; returns how many.
const CLEANUP: &str = concat!(
    prelude!(),
    r#"
local removed = 0
while true do
  local n = expire(1000)
  removed = removed + n
  if n < 1000 then break end
end
return removed
"#
);

/// One live connection, as read back.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredConn {
    pub conn_ref: String,
    pub online_at: f64,
    pub meta_json: Vec<u8>,
}

/// One present user, as read back: its user-level meta and its live
/// connections, oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredUser {
    pub user: String,
    pub joined_at: f64,
    pub meta_json: Vec<u8>,
    pub conns: Vec<StoredConn>,
}

/// A room as `list` read it: the packed reply, and where each present
/// user's parts are in it (users by `(joined_at, id)`, each user's
/// connections by `(online_at, ref)`). Nothing is copied out of the reply.
pub struct Listing {
    packed: Vec<u8>,
    users: Vec<ListedUser>,
    conns: Vec<ListedConn>,
}

struct ListedUser {
    user: Range<usize>,
    joined_at: f64,
    meta: Range<usize>,
    /// This user's connections in [`Listing::conns`].
    conns: Range<usize>,
}

struct ListedConn {
    conn_ref: Range<usize>,
    online_at: f64,
    meta: Range<usize>,
}

/// One present user of a [`Listing`].
pub struct ListedUserRef<'a> {
    pub user: &'a str,
    pub joined_at: f64,
    pub meta_json: &'a [u8],
    conns: &'a [ListedConn],
    packed: &'a [u8],
}

/// One live connection of a [`ListedUserRef`].
pub struct ListedConnRef<'a> {
    pub conn_ref: &'a str,
    pub online_at: f64,
    pub meta_json: &'a [u8],
}

impl Listing {
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn users(&self) -> impl Iterator<Item = ListedUserRef<'_>> {
        self.users.iter().map(|u| ListedUserRef {
            user: text(&self.packed, &u.user),
            joined_at: u.joined_at,
            meta_json: &self.packed[u.meta.clone()],
            conns: &self.conns[u.conns.clone()],
            packed: &self.packed,
        })
    }

    /// Owned copies, as `leave` returns them.
    pub fn to_stored(&self) -> Vec<StoredUser> {
        self.users()
            .map(|u| StoredUser {
                user: u.user.to_owned(),
                joined_at: u.joined_at,
                meta_json: u.meta_json.to_vec(),
                conns: u
                    .conns()
                    .map(|c| StoredConn {
                        conn_ref: c.conn_ref.to_owned(),
                        online_at: c.online_at,
                        meta_json: c.meta_json.to_vec(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// Files the rows of the data hash (`[field, row, field, row, …]`,
    /// spans of `packed`); `None` when one is not a tenantry row.
    fn build(packed: Vec<u8>, items: &[Range<usize>]) -> Option<Listing> {
        if items.len() % 2 != 0 {
            return None;
        }
        struct Partial {
            user: Range<usize>,
            row: Option<(f64, Range<usize>)>,
        }
        let mut index: HashMap<&[u8], usize> = HashMap::with_capacity(items.len() / 4);
        let mut partials: Vec<Partial> = Vec::with_capacity(items.len() / 4);
        // (user index, online_at, ref, meta)
        let mut conns: Vec<(usize, f64, Range<usize>, Range<usize>)> =
            Vec::with_capacity(items.len() / 4);
        let buf = &packed[..];
        for pair in items.chunks_exact(2) {
            let field = &buf[pair[0].clone()];
            let (time, meta) = split_row(&buf[pair[1].clone()])?;
            let meta = span(buf, meta);
            let (user, conn_ref) = match split_user_field(field) {
                Some(user) => (user, None),
                None => {
                    let (user, conn_ref) = split_conn_field(field)?;
                    (user, Some(conn_ref))
                }
            };
            let i = *index.entry(user.as_bytes()).or_insert_with(|| {
                partials.push(Partial {
                    user: span(buf, user.as_bytes()),
                    row: None,
                });
                partials.len() - 1
            });
            match conn_ref {
                None => partials[i].row = Some((time, meta)),
                Some(r) => conns.push((i, time, span(buf, r.as_bytes()), meta)),
            }
        }
        // Unstable sorts: no two entries are equal (a user's refs, and the
        // users' ids, are unique), so the order is the same.
        conns.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| a.1.total_cmp(&b.1))
                .then_with(|| buf[a.2.clone()].cmp(&buf[b.2.clone()]))
        });
        let mut users = Vec::with_capacity(partials.len());
        let mut at = 0;
        for (i, p) in partials.into_iter().enumerate() {
            let start = at;
            while at < conns.len() && conns[at].0 == i {
                at += 1;
            }
            if let Some((joined_at, meta)) = p.row {
                if at > start {
                    users.push(ListedUser {
                        user: p.user,
                        joined_at,
                        meta,
                        conns: start..at,
                    });
                }
            }
        }
        // Users who joined in the same instant (a room filled at once) are
        // ordered by id: their first eight bytes, as one number, decide
        // most comparisons without comparing slices.
        let mut keyed: Vec<(f64, u64, ListedUser)> = users
            .into_iter()
            .map(|u| (u.joined_at, prefix(&buf[u.user.clone()]), u))
            .collect();
        keyed.sort_unstable_by(|a, b| {
            a.0.total_cmp(&b.0)
                .then(a.1.cmp(&b.1))
                .then_with(|| buf[a.2.user.clone()].cmp(&buf[b.2.user.clone()]))
        });
        let users = keyed.into_iter().map(|(_, _, u)| u).collect();
        let conns = conns
            .into_iter()
            .map(|(_, online_at, conn_ref, meta)| ListedConn {
                conn_ref,
                online_at,
                meta,
            })
            .collect();
        Some(Listing {
            packed,
            users,
            conns,
        })
    }
}

impl<'a> ListedUserRef<'a> {
    pub fn conns(&self) -> impl Iterator<Item = ListedConnRef<'a>> + 'a {
        let packed = self.packed;
        self.conns.iter().map(move |c| ListedConnRef {
            conn_ref: text(packed, &c.conn_ref),
            online_at: c.online_at,
            meta_json: &packed[c.meta.clone()],
        })
    }
}

/// A span checked as UTF-8 when the listing was built.
fn text<'a>(packed: &'a [u8], span: &Range<usize>) -> &'a str {
    std::str::from_utf8(&packed[span.clone()]).unwrap_or_default()
}

/// The first eight bytes of `bytes` as a big-endian number (zero-padded):
/// ordered as the bytes are, up to their eighth.
fn prefix(bytes: &[u8]) -> u64 {
    let mut head = [0u8; 8];
    let n = bytes.len().min(8);
    head[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(head)
}

/// Where `part` (a subslice of `buf`) is in `buf`.
fn span(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

/// What a `track` did.
#[derive(Clone, Debug, PartialEq)]
pub struct RedisTracked {
    /// The user was not present before.
    pub user_joined: bool,
    pub joined_at: f64,
    /// The connection's first track.
    pub online_at: f64,
    /// The connection was live: its previous meta JSON.
    pub replaced: Option<Vec<u8>>,
    /// Present users in the room after the track (what `count` returns),
    /// read in the same script.
    pub users_after: u64,
}

/// What an `untrack` removed.
#[derive(Clone, Debug, PartialEq)]
pub struct RedisUntracked {
    pub joined_at: f64,
    pub online_at: f64,
    /// The user-level meta JSON.
    pub meta_json: Vec<u8>,
    /// The removed connection's meta JSON.
    pub conn_meta_json: Vec<u8>,
    pub user_left: bool,
}

/// `"<len>:<user>"`.
pub fn user_field(user: &str) -> String {
    format!("{}:{user}", user.len())
}

/// `(user, ref)` of a connection field; `None` when it is not one.
fn split_conn_field(field: &[u8]) -> Option<(&str, &str)> {
    let colon = field.iter().position(|&b| b == b':')?;
    let len: usize = std::str::from_utf8(&field[..colon]).ok()?.parse().ok()?;
    let start = colon + 1;
    let end = start.checked_add(len)?;
    if field.get(end) != Some(&b':') {
        return None;
    }
    let user = std::str::from_utf8(&field[start..end]).ok()?;
    let conn_ref = std::str::from_utf8(&field[end + 1..]).ok()?;
    Some((user, conn_ref))
}

/// The user of a user field; `None` when it is not one.
fn split_user_field(field: &[u8]) -> Option<&str> {
    let colon = field.iter().position(|&b| b == b':')?;
    let len: usize = std::str::from_utf8(&field[..colon]).ok()?.parse().ok()?;
    let user = field.get(colon + 1..)?;
    (user.len() == len).then(|| std::str::from_utf8(user).ok())?
}

/// `"<time> <meta JSON>"` → `(time, meta JSON)`.
fn split_row(row: &[u8]) -> Option<(f64, &[u8])> {
    let space = row.iter().position(|&b| b == b' ')?;
    Some((parse_f64(&row[..space])?, &row[space + 1..]))
}

struct Scripts {
    track: Script,
    untrack: Script,
    leave: Script,
    heartbeat: Script,
    count: Script,
    list: Script,
    cleanup: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    track: Script::new(TRACK),
    untrack: Script::new(UNTRACK),
    leave: Script::new(LEAVE),
    heartbeat: Script::new(HEARTBEAT),
    count: Script::new(COUNT),
    list: Script::new(LIST),
    cleanup: Script::new(CLEANUP),
});

/// Presence for any tenant on one Redis (the pool is shared; this holds the
/// key prefix and the timeout).
pub struct RedisPresence {
    store: Arc<RedisStore>,
    prefix: KeyPrefix,
    timeout_secs: f64,
    ttl_ms: i64,
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

impl RedisPresence {
    pub fn new(store: Arc<RedisStore>, prefix: KeyPrefix, timeout: Duration) -> Self {
        let ttl_ms = (timeout.as_secs_f64() * 2000.0).ceil().max(1.0) as i64;
        RedisPresence {
            store,
            prefix,
            timeout_secs: timeout.as_secs_f64(),
            ttl_ms,
        }
    }

    pub fn store(&self) -> &Arc<RedisStore> {
        &self.store
    }

    pub fn prefix(&self) -> &KeyPrefix {
        &self.prefix
    }

    pub fn timeout_secs(&self) -> f64 {
        self.timeout_secs
    }

    /// TTL set on a room's keys at every write.
    pub fn ttl_ms(&self) -> i64 {
        self.ttl_ms
    }

    /// The room's keys: users, connections, refs (sorted sets), data (hash).
    pub fn keys(&self, tenant: &TenantId, room: &str) -> [String; 4] {
        [
            Kind::PresenceUsers,
            Kind::PresenceConns,
            Kind::PresenceRefs,
            Kind::PresenceData,
        ]
        .map(|kind| format_key(&self.prefix, tenant, kind, room))
    }

    /// The key of `user`'s member tenant's users in a shared room, when
    /// `tenant` is a space of shared rooms and `user` a member id
    /// (`presence-members:<member tenant>:<room>`: tenant ids hold no `:`).
    pub fn members_key(&self, tenant: &TenantId, room: &str, user: &str) -> Option<String> {
        if !is_shared_space(tenant.as_str()) {
            return None;
        }
        let member = member_tenant(user)?;
        let mut name = String::with_capacity(member.len() + 1 + room.len());
        name.push_str(member);
        name.push(':');
        name.push_str(room);
        Some(format_key(
            &self.prefix,
            tenant,
            Kind::PresenceMembers,
            &name,
        ))
    }

    fn eval(
        &self,
        script: &Script,
        tenant: &TenantId,
        room: &str,
        args: &[Arg<'_>],
    ) -> Result<Value, PresenceError> {
        self.eval_as(script, tenant, room, None, args)
    }

    /// [`Self::eval`] for an operation on one user: in a space of shared
    /// rooms with its member tenant's key (a fifth key).
    fn eval_as(
        &self,
        script: &Script,
        tenant: &TenantId,
        room: &str,
        user: Option<&str>,
        args: &[Arg<'_>],
    ) -> Result<Value, PresenceError> {
        check_room(room)?;
        if let Some(user) = user {
            check_member(tenant.as_str(), user)?;
        }
        let [users, conns, refs, data] = self.keys(tenant, room);
        let members = user.and_then(|u| self.members_key(tenant, room, u));
        let reply = match &members {
            Some(m) => self
                .store
                .eval(script, &[&users, &conns, &refs, &data, m], args)?,
            None => self
                .store
                .eval(script, &[&users, &conns, &refs, &data], args)?,
        };
        Ok(reply)
    }

    fn head(&self) -> [Arg<'_>; 2] {
        [Arg::Float(self.timeout_secs), Arg::Int(self.ttl_ms)]
    }

    /// Tracks connection `conn_ref` of `user` with `meta_json` (one JSON
    /// value), which also becomes the user-level meta.
    pub fn track(
        &self,
        tenant: &TenantId,
        room: &str,
        user: &str,
        conn_ref: &str,
        meta_json: &str,
    ) -> Result<RedisTracked, PresenceError> {
        check_user(user)?;
        check_ref(conn_ref)?;
        let field = user_field(user);
        let [timeout, ttl] = self.head();
        let args = [
            timeout,
            ttl,
            Arg::Str(&field),
            Arg::Str(conn_ref),
            Arg::Str(meta_json),
            Arg::Int(MAX_CONNECTIONS_PER_USER as i64),
        ];
        let reply = self.eval_as(&SCRIPTS.track, tenant, room, Some(user), &args)?;
        let parsed = match &reply {
            Value::Array(items) => match items.as_slice() {
                [Value::Int(0)] => {
                    return Err(PresenceError::TooManyConnections {
                        user: user.to_owned(),
                        room: room.to_owned(),
                    })
                }
                [Value::Int(status), joined, online, Value::Int(users), rest @ ..]
                    if rest.len() <= 1 =>
                {
                    (|| {
                        Some(RedisTracked {
                            user_joined: *status == 1,
                            joined_at: parse_f64(bytes(joined)?)?,
                            online_at: parse_f64(bytes(online)?)?,
                            replaced: match rest.first() {
                                Some(v) => Some(bytes(v)?.to_vec()),
                                None => None,
                            },
                            users_after: u64::try_from(*users).ok()?,
                        })
                    })()
                }
                _ => None,
            },
            _ => None,
        };
        parsed.ok_or_else(|| self.store.unexpected("track", &reply).into())
    }

    /// Removes connection `conn_ref` of `user`; `None` when it was not live.
    pub fn untrack(
        &self,
        tenant: &TenantId,
        room: &str,
        user: &str,
        conn_ref: &str,
    ) -> Result<Option<RedisUntracked>, PresenceError> {
        check_user(user)?;
        check_ref(conn_ref)?;
        let field = user_field(user);
        let [timeout, ttl] = self.head();
        let args = [timeout, ttl, Arg::Str(&field), Arg::Str(conn_ref)];
        let reply = self.eval_as(&SCRIPTS.untrack, tenant, room, Some(user), &args)?;
        let items = match &reply {
            Value::Nil => return Ok(None),
            Value::Array(items) => items,
            _ => return Err(self.store.unexpected("untrack", &reply).into()),
        };
        let parsed = match items.as_slice() {
            [Value::Int(status), row, crow] => (|| {
                let (joined_at, meta) = split_row(bytes(row)?)?;
                let (online_at, conn_meta) = split_row(bytes(crow)?)?;
                Some(RedisUntracked {
                    joined_at,
                    online_at,
                    meta_json: meta.to_vec(),
                    conn_meta_json: conn_meta.to_vec(),
                    user_left: *status == 1,
                })
            })(),
            _ => None,
        };
        parsed.map(Some).ok_or_else(|| self.malformed(tenant, room))
    }

    /// Removes the user with all its connections; what it held, if it was
    /// present.
    pub fn leave(
        &self,
        tenant: &TenantId,
        room: &str,
        user: &str,
    ) -> Result<Option<StoredUser>, PresenceError> {
        check_user(user)?;
        let field = user_field(user);
        let [timeout, ttl] = self.head();
        let args = [timeout, ttl, Arg::Str(&field)];
        let reply = self.eval_as(&SCRIPTS.leave, tenant, room, Some(user), &args)?;
        let items = match reply {
            Value::Nil => return Ok(None),
            Value::Array(items) => items,
            other => return Err(self.store.unexpected("leave", &other).into()),
        };
        let (row, conns) = items
            .split_first()
            .ok_or_else(|| self.malformed(tenant, room))?;
        let mut stored = HashMap::new();
        self.collect(tenant, room, &field, row, &mut stored)?;
        for pair in conns.chunks(2) {
            match pair {
                [f, v] => self.collect(
                    tenant,
                    room,
                    bytes(f).ok_or_else(|| self.malformed(tenant, room))?,
                    v,
                    &mut stored,
                )?,
                _ => return Err(self.malformed(tenant, room)),
            }
        }
        Ok(finish(stored).into_iter().next())
    }

    /// Files one `(field, row)` of the data hash into `users`.
    fn collect<F: AsRef<[u8]> + ?Sized>(
        &self,
        tenant: &TenantId,
        room: &str,
        field: &F,
        row: &Value,
        users: &mut HashMap<String, Partial>,
    ) -> Result<(), PresenceError> {
        let field = field.as_ref();
        let bad = || self.malformed(tenant, room);
        let (time, meta) = bytes(row).and_then(split_row).ok_or_else(bad)?;
        if let Some(user) = split_user_field(field) {
            let entry = users.entry(user.to_owned()).or_default();
            entry.user = Some((time, meta.to_vec()));
        } else {
            let (user, conn_ref) = split_conn_field(field).ok_or_else(bad)?;
            users
                .entry(user.to_owned())
                .or_default()
                .conns
                .push(StoredConn {
                    conn_ref: conn_ref.to_owned(),
                    online_at: time,
                    meta_json: meta.to_vec(),
                });
        }
        Ok(())
    }

    /// Refreshes connection `conn_ref` of `user`, or all of the user's
    /// connections when `None`; how many were refreshed (gone stays gone).
    pub fn heartbeat(
        &self,
        tenant: &TenantId,
        room: &str,
        user: &str,
        conn_ref: Option<&str>,
    ) -> Result<u64, PresenceError> {
        check_user(user)?;
        let field = user_field(user);
        let [timeout, ttl] = self.head();
        let mut args = vec![timeout, ttl, Arg::Str(&field)];
        if let Some(r) = conn_ref {
            check_ref(r)?;
            args.push(Arg::Str(r));
        }
        match self.eval_as(&SCRIPTS.heartbeat, tenant, room, Some(user), &args)? {
            Value::Int(n) => Ok(n.max(0) as u64),
            other => Err(self.store.unexpected("heartbeat", &other).into()),
        }
    }

    pub fn count(&self, tenant: &TenantId, room: &str) -> Result<u64, PresenceError> {
        match self.eval(&SCRIPTS.count, tenant, room, &[self.head()[0]])? {
            Value::Int(n) => Ok(n.max(0) as u64),
            other => Err(self.store.unexpected("count", &other).into()),
        }
    }

    /// Every present user with its live connections (users by `joined_at`,
    /// connections oldest first).
    pub fn list(&self, tenant: &TenantId, room: &str) -> Result<Listing, PresenceError> {
        check_room(room)?;
        let keys = self.keys(tenant, room);
        let [users, conns, refs, data] = keys.each_ref().map(String::as_str);
        let mut hgetall = redis::cmd("HGETALL");
        hgetall.arg(data);
        let (packed, spans) = self.store.eval_then_spans(
            &SCRIPTS.list,
            &[users, conns, refs, data],
            &[self.head()[0]],
            &hgetall,
        )?;
        Listing::build(packed, &spans).ok_or_else(|| self.malformed(tenant, room))
    }

    fn malformed(&self, tenant: &TenantId, room: &str) -> PresenceError {
        let [.., data] = self.keys(tenant, room);
        PresenceError::Store(crate::redis_store::StoreError::Failed {
            url: self.store.url().to_owned(),
            detail: format!(
                "{} holds a value that is not a tenantry presence record",
                crate::tenant_id::preview(&data)
            ),
        })
    }

    /// Removes the room's expired connections now; returns how many.
    pub fn cleanup_stale(&self, tenant: &TenantId, room: &str) -> Result<u64, PresenceError> {
        match self.eval(&SCRIPTS.cleanup, tenant, room, &[self.head()[0]])? {
            Value::Int(n) => Ok(n.max(0) as u64),
            other => Err(self.store.unexpected("cleanup_stale", &other).into()),
        }
    }

    /// Round-trip time of a `PING`.
    pub fn ping(&self) -> Result<Duration, PresenceError> {
        Ok(self.store.ping()?)
    }
}

/// A user being assembled from the data hash's rows.
#[derive(Default)]
struct Partial {
    user: Option<(f64, Vec<u8>)>,
    conns: Vec<StoredConn>,
}

/// Users with their row and at least one connection, by `(joined_at, id)`;
/// each user's connections by `(online_at, ref)`.
fn finish(users: HashMap<String, Partial>) -> Vec<StoredUser> {
    let mut out: Vec<StoredUser> = users
        .into_iter()
        .filter_map(|(user, mut p)| {
            let (joined_at, meta_json) = p.user.take()?;
            if p.conns.is_empty() {
                return None;
            }
            p.conns.sort_by(|a, b| {
                a.online_at
                    .total_cmp(&b.online_at)
                    .then_with(|| a.conn_ref.cmp(&b.conn_ref))
            });
            Some(StoredUser {
                user,
                joined_at,
                meta_json,
                conns: p.conns,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        a.joined_at
            .total_cmp(&b.joined_at)
            .then_with(|| a.user.cmp(&b.user))
    });
    out
}

fn parse_f64(bytes: &[u8]) -> Option<f64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis_store::tests::Server;
    use crate::redis_store::{StoreError, StoreOptions};
    use std::time::Instant;

    #[test]
    fn fields_split_into_their_parts() {
        assert_eq!(user_field("a:b"), "3:a:b");
        assert_eq!(split_user_field(b"3:a:b"), Some("a:b"));
        assert_eq!(split_conn_field(b"3:a:b:tab:1"), Some(("a:b", "tab:1")));
        assert_eq!(split_conn_field(b"3:a:b:"), Some(("a:b", "")));
        for bad in [&b"garbage"[..], b"x:ab", b"9:ab", b"3:a:b"] {
            assert!(split_conn_field(bad).is_none(), "{bad:?}");
        }
        assert!(split_user_field(b"3:a:b:x").is_none());
        assert_eq!(split_row(b"1.5 {\"a\":1}"), Some((1.5, &b"{\"a\":1}"[..])));
        assert!(split_row(b"x {}").is_none());
    }

    #[test]
    fn keys_follow_the_layout_and_share_the_tenant_hash_tag() {
        let store = RedisStore::shared("redis://127.0.0.1:1/0", StoreOptions::default()).unwrap();
        let p = RedisPresence::new(store, KeyPrefix::default(), Duration::from_secs(60));
        let t = TenantId::parse("acme").unwrap();
        assert_eq!(
            p.keys(&t, "room:1"),
            [
                "djust:{tenant:acme}:presence-users:room:1",
                "djust:{tenant:acme}:presence-conns:room:1",
                "djust:{tenant:acme}:presence-refs:room:1",
                "djust:{tenant:acme}:presence-data:room:1",
            ]
        );
        assert_eq!(p.ttl_ms(), 120_000);
    }

    /// Red team rooms finding 8: in a space of shared rooms the track's
    /// count is the member tenant's own (its `peak_presences`), on every
    /// way in and out, the room's count staying everyone's.
    #[test]
    fn shared_room_tracks_count_the_member_tenant() {
        let server = Server::require();
        let store = RedisStore::shared(&server.url(), StoreOptions::default()).unwrap();
        let p = RedisPresence::new(store, KeyPrefix::default(), Duration::from_millis(400));
        let space = TenantId::shared_rooms_of(&TenantId::parse("acme").unwrap());
        let (room, other) = ("board:1", "board:2");
        let after = |user: &str, r: &str| p.track(&space, room, user, r, "{}").unwrap().users_after;
        assert_eq!(after("globex:g0", "t"), 1);
        assert_eq!(after("globex:g1", "t"), 2);
        assert_eq!(after("globex:g1", "t2"), 2); // a second tab: one user
        assert_eq!(after("acme:a0", "t"), 1); // the owner's count excludes globex
        assert_eq!(after("initech:i0", "t"), 1);
        assert_eq!(p.count(&space, room).unwrap(), 4);
        // Another room of the space is counted apart.
        let there = p.track(&space, other, "globex:g9", "t", "{}").unwrap();
        assert_eq!(there.users_after, 1);
        // untrack and leave lower the member tenant's count.
        p.untrack(&space, room, "globex:g1", "t").unwrap().unwrap();
        assert_eq!(after("globex:g2", "t"), 3);
        p.untrack(&space, room, "globex:g1", "t2").unwrap().unwrap();
        p.leave(&space, room, "globex:g2").unwrap().unwrap();
        assert_eq!(after("globex:g0", "t"), 1);
        // Expiry: members that stopped heartbeating are not counted; one
        // that heartbeats is.
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(p.heartbeat(&space, room, "globex:g0", None).unwrap(), 1);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(after("globex:g3", "t"), 2);
        assert_eq!(after("acme:a1", "t"), 1);
        // The member key is the one formatter's, in the space's slot.
        let key = p.members_key(&space, room, "globex:g0").unwrap();
        assert_eq!(
            key,
            "djust:{tenant:-rooms.acme}:presence-members:globex:board:1"
        );
        assert_eq!(
            p.members_key(&TenantId::parse("acme").unwrap(), room, "globex:g0"),
            None
        );
        // A user id that is no member id is refused in a shared space.
        let err = p.track(&space, room, "g0", "t", "{}").unwrap_err();
        assert!(matches!(err, PresenceError::NotAMember { .. }), "{err}");
    }

    #[test]
    fn scripts_against_a_real_server() {
        let server = Server::require();
        let url = server.url();
        let store = RedisStore::shared(&url, StoreOptions::default()).unwrap();
        let p = RedisPresence::new(store, KeyPrefix::default(), Duration::from_millis(300));
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());

        // Every transition of one user's connections.
        let first = p.track(&a, "r", "u1", "tab1", "{\"n\":1}").unwrap();
        assert!(first.user_joined && first.replaced.is_none());
        assert_eq!(first.users_after, 1);
        assert!(first.joined_at > 1.0e9);
        let second = p.track(&a, "r", "u1", "tab2", "{\"n\":2}").unwrap();
        assert!(!second.user_joined && second.replaced.is_none());
        assert_eq!(second.joined_at, first.joined_at);
        let again = p.track(&a, "r", "u1", "tab1", "{\"n\":3}").unwrap();
        assert_eq!(again.replaced.as_deref(), Some(&b"{\"n\":1}"[..]));
        assert_eq!(again.online_at, first.online_at);
        assert_eq!((second.users_after, again.users_after), (1, 1));
        assert_eq!(p.track(&a, "r", "u2", "", "null").unwrap().users_after, 2);
        assert_eq!(p.track(&b, "r", "u1", "tab1", "{}").unwrap().users_after, 1);
        assert_eq!(p.count(&a, "r").unwrap(), 2);
        let listed = p.list(&a, "r").unwrap().to_stored();
        assert_eq!(listed.len(), 2);
        assert_eq!(
            (listed[0].user.as_str(), listed[0].joined_at),
            ("u1", first.joined_at)
        );
        assert_eq!(listed[0].meta_json, b"{\"n\":3}");
        let refs: Vec<&str> = listed[0]
            .conns
            .iter()
            .map(|c| c.conn_ref.as_str())
            .collect();
        assert_eq!(refs, ["tab1", "tab2"]);
        let gone = p.untrack(&a, "r", "u1", "tab1").unwrap().unwrap();
        assert!(!gone.user_left);
        assert_eq!(gone.conn_meta_json, b"{\"n\":3}");
        assert_eq!(p.untrack(&a, "r", "u1", "tab1").unwrap(), None);
        assert_eq!(p.count(&a, "r").unwrap(), 2);
        let gone = p.untrack(&a, "r", "u1", "tab2").unwrap().unwrap();
        assert!(gone.user_left);
        assert_eq!(p.count(&a, "r").unwrap(), 1);
        let left = p.leave(&a, "r", "u2").unwrap().unwrap();
        assert_eq!(
            (left.user.as_str(), &left.meta_json[..]),
            ("u2", &b"null"[..])
        );
        assert_eq!(left.conns.len(), 1);
        assert_eq!(p.leave(&a, "r", "u2").unwrap(), None);
        assert_eq!(p.count(&b, "r").unwrap(), 1);
        assert_eq!(p.heartbeat(&b, "r", "u1", None).unwrap(), 1);
        assert_eq!(p.heartbeat(&b, "r", "u1", Some("nope")).unwrap(), 0);

        // The cap on connections per user.
        for i in 0..MAX_CONNECTIONS_PER_USER {
            p.track(&a, "cap", "u", &format!("t{i}"), "1").unwrap();
        }
        assert!(matches!(
            p.track(&a, "cap", "u", "one-more", "1"),
            Err(PresenceError::TooManyConnections { .. })
        ));
        p.track(&a, "cap", "u", "t0", "2").unwrap();

        // Expired and present connections mixed, more expired than one
        // batch: list returns the present ones only.
        let slow = RedisPresence::new(
            Arc::clone(p.store()),
            KeyPrefix::default(),
            Duration::from_secs(60),
        );
        for i in 0..1001 {
            slow.track(&a, "mixed", &format!("old{i}"), "x", "1")
                .unwrap();
        }
        slow.track(&a, "mixed", "keep", "old", "1").unwrap();
        slow.track(&b, "stale", "u1", "x", "{}").unwrap();
        std::thread::sleep(Duration::from_millis(400));
        slow.track(&a, "mixed", "new", "x", "2").unwrap();
        slow.track(&a, "mixed", "keep", "new", "1").unwrap();
        assert_eq!(p.count(&a, "mixed").unwrap(), 2);
        let mixed = p.list(&a, "mixed").unwrap().to_stored();
        let users: Vec<(&str, usize)> = mixed
            .iter()
            .map(|u| (u.user.as_str(), u.conns.len()))
            .collect();
        assert_eq!(users, [("keep", 1), ("new", 1)]);
        assert_eq!(p.cleanup_stale(&b, "stale").unwrap(), 1);
        assert_eq!(p.heartbeat(&b, "r", "u1", None).unwrap(), 0, "no revival");

        // Large rooms come back in one call (past Lua's unpack limit).
        for i in 0..9000 {
            slow.track(&a, "big", &format!("u{i}"), "x", "1").unwrap();
        }
        assert_eq!(slow.list(&a, "big").unwrap().len(), 9000);
        assert_eq!(slow.count(&a, "big").unwrap(), 9000);

        // Stopping the server: fast, clear errors; then nothing is cached.
        drop(server);
        let start = Instant::now();
        let err = p.count(&a, "r").unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(
            matches!(err, PresenceError::Store(StoreError::Unavailable { .. })),
            "{err}"
        );
    }
}
