//! State in Redis (single server or cluster): every operation is one round
//! trip — a plain command for reads, one Lua script for writes.
//!
//! Keys, all from the one key formatter and so sharing the tenant's hash tag
//! (one cluster slot per tenant):
//! * `<prefix>:{tenant:<id>}:state:<name>` — a string: the stored value
//!   (`b<bytes>`, `j<json>` or a decimal integer, see [`super::Value`]),
//!   with the TTL given to `set`;
//! * `<prefix>:{tenant:<id>}:view-state:<name>` — the same, for djust's
//!   saved views;
//! * `<prefix>:{tenant:<id>}:state-index:` — the tenant's index: a sorted
//!   set whose members are the keys above without the tenant part
//!   (`state:<name>`, `view-state:<name>`) and whose scores are their expiry
//!   (Redis time in milliseconds, `+inf` for none);
//! * `<prefix>:{tenant:<id>}:state-index:bytes` — a hash: each index
//!   member's bytes (its stored value and its name), and under `*` their
//!   sum, the tenant's state
//!   bytes (what its usage reports as `state_bytes`), kept by the same
//!   scripts and expiring with the index.
//!
//! The index is what lets `delete_tenant` remove one tenant's keys without
//! `KEYS` and without walking other tenants' keys: it reads the index 1,000
//! members at a time and deletes those keys and members in one script per
//! batch, so Redis never blocks on a big tenant. (`SCAN MATCH` on the
//! tenant's prefix would also avoid `KEYS`, but it walks the whole keyspace
//! of the server — every tenant's keys — to find one tenant's.) Writes keep
//! the index exact and small: every `set` also drops the members whose
//! expiry has passed, and sets the index's own expiry to its latest member's,
//! so an abandoned tenant's index vanishes with its last key.
//!
//! Reads (`get`, `exists`, `ttl`) are plain `GET`, `EXISTS`, `PTTL`.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Value as Reply;

use super::{check_name, Space, StateError, Ttl, Value};
use crate::keys::{format_key, parse_key, tenant_tag_prefix, KeyPrefix, Kind};
use crate::redis_store::{Arg, RedisStore, Script};
use crate::tenant_id::TenantId;

/// Keys deleted per `delete_tenant` round trip.
pub const BATCH: usize = 1000;

/// Shared by the write scripts: `now` in milliseconds (Redis' clock), the
/// byte count (`resize`: a member's size in the sizes hash and their sum
/// under `*`) and the index upkeep (add the member with its expiry, drop up
/// to 1,000 past members and their sizes, let the index and the sizes live
/// as long as the longest-lived member). Returns the tenant's bytes.
macro_rules! prelude {
    () => {
        r#"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function resize(sizes, member, len)
  local got = redis.call('HMGET', sizes, '*', member)
  local total = (tonumber(got[1]) or 0) - (tonumber(got[2]) or 0) + len
  redis.call('HSET', sizes, member, len, '*', total)
  return total
end
local function upkeep(index, sizes, member, score, len, now)
  redis.call('ZADD', index, score, member)
  local total = resize(sizes, member, len)
  local past = redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. string.format('%.0f', now), 'LIMIT', 0, 1000)
  if #past > 0 then
    redis.call('ZREM', index, unpack(past))
    local was = redis.call('HMGET', sizes, unpack(past))
    for i = 1, #past do total = total - (tonumber(was[i]) or 0) end
    redis.call('HDEL', sizes, unpack(past))
    redis.call('HSET', sizes, '*', total)
  end
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if last[2] == 'inf' then
    redis.call('PERSIST', index)
    redis.call('PERSIST', sizes)
  elseif last[2] then
    redis.call('PEXPIREAT', index, last[2])
    redis.call('PEXPIREAT', sizes, last[2])
  end
  return total
end
"#
    };
}

/// KEYS: data, index, sizes. ARGV: stored value, TTL in ms ('0': none),
/// member. Returns the tenant's bytes.
const SET: &str = concat!(
    prelude!(),
    r#"
local now = now_ms()
local score = 'inf'
if ARGV[2] == '0' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  score = string.format('%.0f', now + tonumber(ARGV[2]))
end
return upkeep(KEYS[2], KEYS[3], ARGV[3], score, #ARGV[1] + #ARGV[3], now)
"#
);

/// Drops `members` from the index and the sizes (the sizes go with the
/// tenant's last member). Shared by the delete scripts.
macro_rules! forget {
    () => {
        r#"
local function forget(index, sizes, members)
  if #members == 0 then return end
  redis.call('ZREM', index, unpack(members))
  local was = redis.call('HMGET', sizes, unpack(members))
  local gone = 0
  for i = 1, #members do gone = gone + (tonumber(was[i]) or 0) end
  if redis.call('ZCARD', index) == 0 then
    redis.call('DEL', sizes)
  elseif gone > 0 then
    redis.call('HDEL', sizes, unpack(members))
    redis.call('HINCRBY', sizes, '*', -gone)
  end
end
"#
    };
}

/// KEYS: data, index, sizes. ARGV: member. Returns 1 when the key existed.
const DELETE: &str = concat!(
    forget!(),
    r#"
local n = redis.call('DEL', KEYS[1])
forget(KEYS[2], KEYS[3], {ARGV[1]})
return n
"#
);

/// KEYS: data, index, sizes. ARGV: increment, member.
/// Returns {0, value}, {1} (not an integer) or {2, error} (overflow).
const INCR: &str = concat!(
    prelude!(),
    r#"
local v = redis.call('GET', KEYS[1])
if v and v ~= '0' and not string.match(v, '^%-?[1-9]%d*$') then return {1} end
local r = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(r) == 'table' and r.err then return {2, r.err} end
local len = redis.call('STRLEN', KEYS[1]) + #ARGV[2]
if not v then
  upkeep(KEYS[2], KEYS[3], ARGV[2], 'inf', len, now_ms())
elseif len ~= #v + #ARGV[2] then
  resize(KEYS[3], ARGV[2], len)
end
return {0, r}
"#
);

/// KEYS: index, sizes, then the data keys. ARGV: their members. Deletes
/// the keys, removes the members; returns how many keys existed.
const DELETE_BATCH: &str = concat!(
    forget!(),
    r#"
local n = 0
for i = 3, #KEYS do n = n + redis.call('DEL', KEYS[i]) end
forget(KEYS[1], KEYS[2], ARGV)
return n
"#
);

struct Scripts {
    set: Script,
    delete: Script,
    incr: Script,
    delete_batch: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    set: Script::new(SET),
    delete: Script::new(DELETE),
    incr: Script::new(INCR),
    delete_batch: Script::new(DELETE_BATCH),
});

/// State for any tenant on one Redis (the pool is shared; this holds the
/// key prefix).
pub struct RedisState {
    store: Arc<RedisStore>,
    prefix: KeyPrefix,
}

impl RedisState {
    pub fn new(store: Arc<RedisStore>, prefix: KeyPrefix) -> Self {
        RedisState { store, prefix }
    }

    pub fn store(&self) -> &Arc<RedisStore> {
        &self.store
    }

    pub fn prefix(&self) -> &KeyPrefix {
        &self.prefix
    }

    /// The Redis key of `(tenant, space, name)`.
    pub fn key(&self, tenant: &TenantId, space: Space, name: &str) -> String {
        format_key(&self.prefix, tenant, space.kind(), name)
    }

    /// The tenant's index key.
    pub fn index_key(&self, tenant: &TenantId) -> String {
        format_key(&self.prefix, tenant, Kind::StateIndex, "")
    }

    /// The tenant's sizes hash (each member's bytes, their sum under `*`).
    pub fn sizes_key(&self, tenant: &TenantId) -> String {
        format_key(&self.prefix, tenant, Kind::StateIndex, "bytes")
    }

    /// `[data key, index key, sizes key]` and where the index member starts
    /// in the data key.
    fn keys(
        &self,
        tenant: &TenantId,
        space: Space,
        name: &str,
    ) -> Result<([String; 3], usize), StateError> {
        check_name(name)?;
        let key = self.key(tenant, space, name);
        let member_at = tenant_tag_prefix(&self.prefix, tenant).len();
        Ok((
            [key, self.index_key(tenant), self.sizes_key(tenant)],
            member_at,
        ))
    }

    pub fn get(
        &self,
        tenant: &TenantId,
        space: Space,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StateError> {
        let ([key, ..], _) = self.keys(tenant, space, name)?;
        match self.store.query(redis::cmd("GET").arg(&key))? {
            Reply::Nil => Ok(None),
            Reply::BulkString(b) => Ok(Some(b)),
            other => Err(self.store.unexpected("GET", &other).into()),
        }
    }

    /// Stores `value` at `name`; returns the tenant's state bytes (the
    /// stored values and their names, per the sizes hash).
    pub fn set(
        &self,
        tenant: &TenantId,
        space: Space,
        name: &str,
        value: &Value<'_>,
        ttl: Option<Duration>,
    ) -> Result<u64, StateError> {
        value.check()?;
        let ([key, index, sizes], member_at) = self.keys(tenant, space, name)?;
        let stored = value.encode();
        let ttl_ms = ttl.map_or(0, super::ttl_millis);
        let ttl_ms = i64::try_from(ttl_ms).unwrap_or(i64::MAX);
        let args = [
            Arg::Bytes(&stored),
            Arg::Int(ttl_ms),
            Arg::Str(&key[member_at..]),
        ];
        match self
            .store
            .eval(&SCRIPTS.set, &[&key, &index, &sizes], &args)?
        {
            Reply::Int(bytes) => Ok(bytes.max(0) as u64),
            other => Err(self.store.unexpected("set", &other).into()),
        }
    }

    /// True when the key existed.
    pub fn delete(&self, tenant: &TenantId, space: Space, name: &str) -> Result<bool, StateError> {
        let ([key, index, sizes], member_at) = self.keys(tenant, space, name)?;
        let args = [Arg::Str(&key[member_at..])];
        match self
            .store
            .eval(&SCRIPTS.delete, &[&key, &index, &sizes], &args)?
        {
            Reply::Int(n) => Ok(n > 0),
            other => Err(self.store.unexpected("delete", &other).into()),
        }
    }

    pub fn exists(&self, tenant: &TenantId, space: Space, name: &str) -> Result<bool, StateError> {
        let ([key, ..], _) = self.keys(tenant, space, name)?;
        match self.store.query(redis::cmd("EXISTS").arg(&key))? {
            Reply::Int(n) => Ok(n > 0),
            other => Err(self.store.unexpected("EXISTS", &other).into()),
        }
    }

    pub fn ttl(&self, tenant: &TenantId, space: Space, name: &str) -> Result<Ttl, StateError> {
        let ([key, ..], _) = self.keys(tenant, space, name)?;
        match self.store.query(redis::cmd("PTTL").arg(&key))? {
            Reply::Int(-2) => Ok(Ttl::Missing),
            Reply::Int(-1) => Ok(Ttl::Persistent),
            Reply::Int(ms) if ms >= 0 => Ok(Ttl::Expires(Duration::from_millis(ms as u64))),
            other => Err(self.store.unexpected("PTTL", &other).into()),
        }
    }

    /// Adds `by` (a missing key counts as 0 and never expires; an existing
    /// one keeps its TTL). Never re-sent after a dropped connection.
    pub fn incr(
        &self,
        tenant: &TenantId,
        space: Space,
        name: &str,
        by: i64,
    ) -> Result<i64, StateError> {
        let ([key, index, sizes], member_at) = self.keys(tenant, space, name)?;
        let args = [Arg::Int(by), Arg::Str(&key[member_at..])];
        let reply = self
            .store
            .eval_once(&SCRIPTS.incr, &[&key, &index, &sizes], &args)?;
        if let Reply::Array(parts) = &reply {
            match parts.as_slice() {
                [Reply::Int(0), Reply::Int(n)] => return Ok(*n),
                [Reply::Int(1)] => {
                    return Err(StateError::NotAnInteger {
                        name: name.to_owned(),
                    })
                }
                [Reply::Int(2), ..] => {
                    return Err(StateError::Overflow {
                        name: name.to_owned(),
                    })
                }
                _ => {}
            }
        }
        Err(self.store.unexpected("incr", &reply).into())
    }

    /// Removes every key of `tenant` (both spaces) and its index, [`BATCH`]
    /// keys per round trip; returns how many keys existed.
    pub fn delete_tenant(&self, tenant: &TenantId) -> Result<usize, StateError> {
        let index = self.index_key(tenant);
        let mut deleted = 0;
        loop {
            let reply = self.store.query(
                redis::cmd("ZRANGE")
                    .arg(&index)
                    .arg(0)
                    .arg(BATCH as i64 - 1),
            )?;
            let members = match reply {
                Reply::Array(items) => items,
                other => return Err(self.store.unexpected("ZRANGE", &other).into()),
            };
            if members.is_empty() {
                return Ok(deleted);
            }
            let members: Vec<Vec<u8>> = members
                .into_iter()
                .filter_map(|m| match m {
                    Reply::BulkString(b) => Some(b),
                    _ => None,
                })
                .collect();
            deleted += self.delete_batch(tenant, &members)?;
        }
    }

    /// Deletes the keys of `members` (index members of `tenant`) and the
    /// members themselves.
    fn delete_batch(&self, tenant: &TenantId, members: &[Vec<u8>]) -> Result<usize, StateError> {
        let index = self.index_key(tenant);
        let sizes = self.sizes_key(tenant);
        let tag = tenant_tag_prefix(&self.prefix, tenant);
        // A member that is not UTF-8 was not written by us: its member goes,
        // there is no key of ours to delete.
        let keys: Vec<String> = members
            .iter()
            .filter_map(|m| std::str::from_utf8(m).ok())
            .map(|m| format!("{tag}{m}"))
            .collect();
        let mut all: Vec<&str> = Vec::with_capacity(keys.len() + 2);
        all.push(&index);
        all.push(&sizes);
        all.extend(keys.iter().map(String::as_str));
        let args: Vec<Arg<'_>> = members.iter().map(|m| Arg::Bytes(m)).collect();
        match self.store.eval(&SCRIPTS.delete_batch, &all, &args)? {
            Reply::Int(n) => Ok(n.max(0) as usize),
            other => Err(self.store.unexpected("delete_tenant", &other).into()),
        }
    }

    /// Removes every key of `space`, of `tenant` (walking its index) or of
    /// every tenant (`SCAN` of each server for the space's key pattern: an
    /// administrative purge, like djust's `clear --all`). Returns how many
    /// keys existed.
    pub fn delete_space(
        &self,
        tenant: Option<&TenantId>,
        space: Space,
    ) -> Result<usize, StateError> {
        let pattern_kind = format!("{}:*", space.kind().as_str());
        match tenant {
            Some(tenant) => {
                let index = self.index_key(tenant);
                let mut deleted = 0;
                let mut cursor = 0u64;
                loop {
                    let reply = self.store.query(
                        redis::cmd("ZSCAN")
                            .arg(&index)
                            .arg(cursor)
                            .arg("MATCH")
                            .arg(&pattern_kind)
                            .arg("COUNT")
                            .arg(BATCH),
                    )?;
                    let (next, items) =
                        scan_reply(&reply).ok_or_else(|| self.store.unexpected("ZSCAN", &reply))?;
                    // ZSCAN returns member, score pairs.
                    let members: Vec<Vec<u8>> = items.into_iter().step_by(2).collect();
                    if !members.is_empty() {
                        deleted += self.delete_batch(tenant, &members)?;
                    }
                    if next == 0 {
                        return Ok(deleted);
                    }
                    cursor = next;
                }
            }
            None => self.purge_space(space),
        }
    }

    fn purge_space(&self, space: Space) -> Result<usize, StateError> {
        let pattern = format!(
            "{}:{{tenant:*}}:{}:*",
            glob_escape(self.prefix.as_str()),
            space.kind().as_str()
        );
        let primaries = self.store.cluster_primaries()?;
        let nodes: Vec<Option<&(String, u16)>> = if primaries.is_empty() {
            vec![None]
        } else {
            primaries.iter().map(Some).collect()
        };
        let mut deleted = 0;
        for node in nodes {
            let mut cursor = 0u64;
            loop {
                let reply = self.store.query_node(
                    node,
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(BATCH),
                )?;
                let (next, keys) =
                    scan_reply(&reply).ok_or_else(|| self.store.unexpected("SCAN", &reply))?;
                // Group by tenant: one script per tenant (one slot each).
                let mut groups: Vec<(String, TenantId, Vec<Vec<u8>>)> = Vec::new();
                for key in keys {
                    let Ok(text) = std::str::from_utf8(&key) else {
                        continue;
                    };
                    let Some(parts) = parse_key(text) else {
                        continue;
                    };
                    let Ok(tenant) = TenantId::parse(parts.tenant) else {
                        continue;
                    };
                    if parts.prefix != self.prefix.as_str() || parts.kind != space.kind() {
                        continue;
                    }
                    let tag = tenant_tag_prefix(&self.prefix, &tenant);
                    let member = text.as_bytes()[tag.len()..].to_vec();
                    match groups.iter_mut().find(|(t, _, _)| *t == tag) {
                        Some((_, _, members)) => members.push(member),
                        None => groups.push((tag, tenant, vec![member])),
                    }
                }
                for (_, tenant, members) in &groups {
                    deleted += self.delete_batch(tenant, members)?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(deleted)
    }

    /// Members of the tenant's index: its live keys (both spaces), give or
    /// take keys expired since the tenant's last write.
    pub fn tenant_key_count(&self, tenant: &TenantId) -> Result<u64, StateError> {
        match self
            .store
            .query(redis::cmd("ZCARD").arg(self.index_key(tenant)))?
        {
            Reply::Int(n) => Ok(n.max(0) as u64),
            other => Err(self.store.unexpected("ZCARD", &other).into()),
        }
    }

    /// Round-trip time of a `PING`.
    pub fn ping(&self) -> Result<Duration, StateError> {
        Ok(self.store.ping()?)
    }
}

/// `(next cursor, items)` of a `SCAN`/`ZSCAN` reply.
fn scan_reply(reply: &Reply) -> Option<(u64, Vec<Vec<u8>>)> {
    let Reply::Array(parts) = reply else {
        return None;
    };
    let [cursor, Reply::Array(items)] = parts.as_slice() else {
        return None;
    };
    let cursor = match cursor {
        Reply::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok()?,
        Reply::SimpleString(s) => s.parse().ok()?,
        Reply::Int(i) => u64::try_from(*i).ok()?,
        _ => return None,
    };
    let items = items
        .iter()
        .filter_map(|i| match i {
            Reply::BulkString(b) => Some(b.clone()),
            _ => None,
        })
        .collect();
    Some((cursor, items))
}

/// `s` with Redis glob metacharacters escaped.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis_store::tests::Server;
    use crate::redis_store::{StoreError, StoreOptions};
    use crate::state::{decode, Decoded};
    use std::time::Instant;

    fn t(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    #[test]
    fn keys_follow_the_layout() {
        let store = RedisStore::shared("redis://127.0.0.1:1/0", StoreOptions::default()).unwrap();
        let s = RedisState::new(store, KeyPrefix::default());
        assert_eq!(
            s.key(&t("acme"), Space::Data, "a:b"),
            "djust:{tenant:acme}:state:a:b"
        );
        assert_eq!(
            s.key(&t("acme"), Space::View, "x"),
            "djust:{tenant:acme}:view-state:x"
        );
        assert_eq!(s.index_key(&t("acme")), "djust:{tenant:acme}:state-index:");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn operations_against_a_real_server() {
        let server = Server::require();
        let store = RedisStore::shared(&server.url(), StoreOptions::default()).unwrap();
        let s = RedisState::new(Arc::clone(&store), KeyPrefix::new("p*").unwrap());
        let (a, b) = (t("a"), t("b"));

        s.set(&a, Space::Data, "k", &Value::Json(b"{\"x\":1}"), None)
            .unwrap();
        s.set(&b, Space::Data, "k", &Value::Bytes(b"\x00B"), None)
            .unwrap();
        assert_eq!(
            decode(&s.get(&a, Space::Data, "k").unwrap().unwrap()),
            Some(Decoded::Json(b"{\"x\":1}"))
        );
        assert_eq!(s.get(&b, Space::Data, "k").unwrap().unwrap(), b"b\x00B");
        assert_eq!(s.get(&a, Space::View, "k").unwrap(), None);
        assert_eq!(s.ttl(&a, Space::Data, "k").unwrap(), Ttl::Persistent);
        assert_eq!(s.ttl(&a, Space::Data, "nope").unwrap(), Ttl::Missing);

        s.set(
            &a,
            Space::Data,
            "short",
            &Value::Int(1),
            Some(Duration::from_millis(80)),
        )
        .unwrap();
        assert!(
            matches!(s.ttl(&a, Space::Data, "short").unwrap(), Ttl::Expires(d) if d <= Duration::from_millis(80))
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.exists(&a, Space::Data, "short").unwrap() {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        }

        assert_eq!(s.incr(&a, Space::Data, "n", 5).unwrap(), 5);
        assert_eq!(s.incr(&a, Space::Data, "n", -7).unwrap(), -2);
        assert!(matches!(
            s.incr(&a, Space::Data, "k", 1),
            Err(StateError::NotAnInteger { .. })
        ));
        s.set(&a, Space::Data, "max", &Value::Int(i64::MAX), None)
            .unwrap();
        assert!(matches!(
            s.incr(&a, Space::Data, "max", 1),
            Err(StateError::Overflow { .. })
        ));

        assert!(s.delete(&a, Space::Data, "n").unwrap());
        assert!(!s.delete(&a, Space::Data, "n").unwrap());

        for i in 0..2500 {
            s.set(&a, Space::Data, &format!("bulk{i}"), &Value::Int(i), None)
                .unwrap();
        }
        s.set(&a, Space::View, "v", &Value::Bytes(b"view"), None)
            .unwrap();
        s.set(&b, Space::View, "v", &Value::Bytes(b"view"), None)
            .unwrap();
        assert_eq!(s.delete_space(Some(&a), Space::View).unwrap(), 1);
        assert!(s.exists(&b, Space::View, "v").unwrap());
        // k, max and 2500 bulk keys (the expired "short" is not counted).
        assert_eq!(s.delete_tenant(&a).unwrap(), 2502);
        assert_eq!(s.get(&a, Space::Data, "bulk7").unwrap(), None);
        assert_eq!(s.tenant_key_count(&a).unwrap(), 0);
        assert_eq!(s.get(&b, Space::Data, "k").unwrap().unwrap(), b"b\x00B");
        assert_eq!(s.delete_space(None, Space::View).unwrap(), 1);
        assert_eq!(s.tenant_key_count(&b).unwrap(), 1);

        drop(server);
        let start = Instant::now();
        let err = s.get(&b, Space::Data, "k").unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(
            matches!(err, StateError::Store(StoreError::Unavailable { .. })),
            "{err}"
        );
    }

    #[test]
    fn state_bytes_follow_writes_deletes_and_expiry() {
        let server = Server::require();
        let store = RedisStore::shared(&server.url(), StoreOptions::default()).unwrap();
        let s = RedisState::new(store, KeyPrefix::new("sz").unwrap());
        let (a, b) = (t("a"), t("b"));
        let sizes = |tenant: &TenantId| -> Option<String> {
            let reply = s
                .store()
                .query(redis::cmd("HGET").arg(s.sizes_key(tenant)).arg("*"))
                .unwrap();
            match reply {
                Reply::BulkString(v) => Some(String::from_utf8(v).unwrap()),
                _ => None,
            }
        };
        // A value counts its stored bytes ('b' + data) and its member name.
        let one = (1 + 10) + "state:x".len() as u64;
        assert_eq!(
            s.set(&a, Space::Data, "x", &Value::Bytes(&[7; 10]), None)
                .unwrap(),
            one
        );
        // Overwritten: the new size replaces the old one.
        let smaller = (1 + 4) + "state:x".len() as u64;
        assert_eq!(
            s.set(&a, Space::Data, "x", &Value::Bytes(&[7; 4]), None)
                .unwrap(),
            smaller
        );
        let view = (1 + 100) + "view-state:v".len() as u64;
        assert_eq!(
            s.set(&a, Space::View, "v", &Value::Bytes(&[1; 100]), None)
                .unwrap(),
            smaller + view
        );
        // Another tenant's writes never move a's figure.
        s.set(&b, Space::Data, "x", &Value::Bytes(&[7; 999]), None)
            .unwrap();
        assert_eq!(sizes(&a).as_deref(), Some(&*(smaller + view).to_string()));
        // incr: a new counter counts, a longer number grows it.
        assert_eq!(s.incr(&a, Space::Data, "n", 9).unwrap(), 9);
        let n1 = 1 + "state:n".len() as u64;
        assert_eq!(sizes(&a), Some((smaller + view + n1).to_string()));
        s.incr(&a, Space::Data, "n", 1).unwrap();
        assert_eq!(sizes(&a), Some((smaller + view + n1 + 1).to_string()));
        assert!(s.delete(&a, Space::Data, "n").unwrap());
        assert!(s.delete(&a, Space::Data, "x").unwrap());
        assert_eq!(sizes(&a), Some(view.to_string()));
        // An expired key leaves the figure with the next write's upkeep.
        s.set(
            &a,
            Space::Data,
            "short",
            &Value::Bytes(&[0; 50]),
            Some(Duration::from_millis(30)),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(60));
        let y = (1 + 1) + "state:y".len() as u64;
        assert_eq!(
            s.set(&a, Space::Data, "y", &Value::Bytes(b"y"), None)
                .unwrap(),
            view + y
        );
        // Deleting the tenant leaves no sizes behind; b keeps its own.
        assert_eq!(s.delete_tenant(&a).unwrap(), 2);
        assert_eq!(sizes(&a), None);
        assert_eq!(sizes(&b), Some(((1 + 999) + "state:x".len()).to_string()));
        assert_eq!(s.delete_space(None, Space::Data).unwrap(), 1);
        assert_eq!(sizes(&b), None);
    }
}
