//! Presence in Redis: every operation is one Lua script, so one round trip.
//!
//! Per room two keys, both from the one key formatter and so sharing the
//! tenant's hash tag (one cluster slot):
//! * `<prefix>:{tenant:<id>}:presence:<room>` — sorted set, member = user
//!   id, score = last heartbeat (Redis server time, seconds);
//! * `<prefix>:{tenant:<id>}:presence-meta:<room>` — hash, field = user id,
//!   value = `"<joined_at> <user id length> <user id><meta JSON>"` (the
//!   user id is repeated so `list` needs only the values).
//!
//! `list` of a room of any size is one round trip: the script drops expired
//! members and returns the hash's values (`HVALS`) when nothing expired is
//! left, which is the cheapest way out of Lua; the client decodes every meta
//! of the room with one JSON parse.
//!
//! Every write sets both keys' TTL to twice the presence timeout: once the
//! last heartbeat of a room is older than the timeout every member is
//! expired, so a room nobody touches any more vanishes on its own.
//! Expired members are filtered by score in every read (`count` and `list`
//! never include them) and removed in bounded batches by `join` and
//! `list`, and all at once by `cleanup_stale`.
//!
//! Time is Redis' own clock (`TIME`), so app servers with skewed clocks
//! agree on who is present.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Value;

use super::{check_room, check_user, PresenceError};
use crate::keys::{format_key, KeyPrefix, Kind};
use crate::redis_store::{Arg, RedisStore, Script};
use crate::tenant_id::TenantId;

/// Shared head of every script: `now` and the liveness cutoff (a member is
/// alive when its score is at least `cutoff`). ARGV[1] is the timeout.
macro_rules! prelude {
    () => {
        r#"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cutoff = now - tonumber(ARGV[1])
local cut = string.format('%.6f', cutoff)
"#
    };
}

/// ARGV: timeout, ttl_ms, user, `"<user length> <user><meta JSON>"`.
/// Returns joined_at (text).
const JOIN: &str = concat!(
    prelude!(),
    r#"
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. cut, 'LIMIT', 0, 16)
if #stale > 0 then
  redis.call('ZREM', KEYS[1], unpack(stale))
  redis.call('HDEL', KEYS[2], unpack(stale))
end
local joined = false
local score = redis.call('ZSCORE', KEYS[1], ARGV[3])
if score and tonumber(score) >= cutoff then
  local old = redis.call('HGET', KEYS[2], ARGV[3])
  if old then joined = string.match(old, '^([0-9.]+) ') or false end
end
if not joined then joined = t[1] .. '.' .. string.format('%06d', tonumber(t[2])) end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('HSET', KEYS[2], ARGV[3], joined .. ' ' .. ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return joined
"#
);

/// ARGV: timeout, user. Returns the stored value when the user was present.
const LEAVE: &str = concat!(
    prelude!(),
    r#"
local score = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not score then return false end
local rec = redis.call('HGET', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
if rec and tonumber(score) >= cutoff then return rec end
return false
"#
);

/// ARGV: timeout, ttl_ms, user. Returns 1 when refreshed, 0 when not present.
const HEARTBEAT: &str = concat!(
    prelude!(),
    r#"
local score = redis.call('ZSCORE', KEYS[1], ARGV[3])
if not score or tonumber(score) < cutoff then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"#
);

/// ARGV: timeout. O(log n): no scan.
const COUNT: &str = concat!(
    prelude!(),
    r#"
return redis.call('ZCOUNT', KEYS[1], cut, '+inf')
"#
);

/// ARGV: timeout. Returns the stored values of the present users. Expired
/// members are removed first (up to 1000); when none is left the hash holds
/// exactly the present users and `HVALS` returns them (no per-member work in
/// Lua). Otherwise the present ones are fetched by score (HMGET in chunks:
/// Lua's `unpack` has a stack limit of about 8000).
const LIST: &str = concat!(
    prelude!(),
    r#"
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. cut, 'LIMIT', 0, 1000)
if #stale > 0 then
  redis.call('ZREM', KEYS[1], unpack(stale))
  redis.call('HDEL', KEYS[2], unpack(stale))
  if redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. cut) > 0 then
    local ids = redis.call('ZRANGEBYSCORE', KEYS[1], cut, '+inf')
    local out = {}
    local m = 0
    local n = #ids
    local i = 1
    while i <= n do
      local j = math.min(i + 999, n)
      local vals = redis.call('HMGET', KEYS[2], unpack(ids, i, j))
      for k = 1, j - i + 1 do
        if vals[k] then
          m = m + 1
          out[m] = vals[k]
        end
      end
      i = j + 1
    end
    return out
  end
end
return redis.call('HVALS', KEYS[2])
"#
);

/// ARGV: timeout. Removes every expired member; returns how many.
const CLEANUP: &str = concat!(
    prelude!(),
    r#"
local removed = 0
while true do
  local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. cut, 'LIMIT', 0, 1000)
  if #stale == 0 then break end
  redis.call('ZREM', KEYS[1], unpack(stale))
  redis.call('HDEL', KEYS[2], unpack(stale))
  removed = removed + #stale
end
return removed
"#
);

/// One stored presence, as read back: the hash value
/// `"<joined_at> <user length> <user><meta>"` kept whole (no copy).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredPresence {
    pub joined_at: f64,
    value: Vec<u8>,
    user: std::ops::Range<usize>,
}

impl StoredPresence {
    /// The value `join` stores after `joined_at` for `user` and `meta_json`.
    pub fn tail(user: &str, meta_json: &str) -> String {
        format!("{} {user}{meta_json}", user.len())
    }

    /// Splits a stored value; `None` when it is not in our format.
    pub fn parse(value: Vec<u8>) -> Option<StoredPresence> {
        let space = value.iter().position(|&b| b == b' ')?;
        let joined_at = parse_f64(&value[..space])?;
        let rest = &value[space + 1..];
        let space2 = rest.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..space2]).ok()?.parse().ok()?;
        let start = space + 1 + space2 + 1;
        let end = start.checked_add(len).filter(|&e| e <= value.len())?;
        std::str::from_utf8(&value[start..end]).ok()?;
        Some(StoredPresence {
            joined_at,
            user: start..end,
            value,
        })
    }

    pub fn user(&self) -> &str {
        // Checked to be UTF-8 in `parse`.
        std::str::from_utf8(&self.value[self.user.clone()]).unwrap_or_default()
    }

    /// The meta JSON exactly as given to `join`.
    pub fn meta_json(&self) -> &[u8] {
        &self.value[self.user.end..]
    }
}

struct Scripts {
    join: Script,
    leave: Script,
    heartbeat: Script,
    count: Script,
    list: Script,
    cleanup: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    join: Script::new(JOIN),
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

    /// The room's sorted-set key and hash key.
    pub fn keys(&self, tenant: &TenantId, room: &str) -> [String; 2] {
        [
            format_key(&self.prefix, tenant, Kind::Presence, room),
            format_key(&self.prefix, tenant, Kind::PresenceMeta, room),
        ]
    }

    fn eval(
        &self,
        script: &Script,
        tenant: &TenantId,
        room: &str,
        args: &[Arg<'_>],
    ) -> Result<Value, PresenceError> {
        check_room(room)?;
        let [zset, meta] = self.keys(tenant, room);
        Ok(self.store.eval(script, &[&zset, &meta], args)?)
    }

    /// Returns `joined_at`: now for a new presence, the first join's time for
    /// a user still present. `meta_json` must be one JSON value.
    pub fn join(
        &self,
        tenant: &TenantId,
        room: &str,
        user: &str,
        meta_json: &str,
    ) -> Result<f64, PresenceError> {
        check_user(user)?;
        let tail = StoredPresence::tail(user, meta_json);
        let args = [
            Arg::Float(self.timeout_secs),
            Arg::Int(self.ttl_ms),
            Arg::Str(user),
            Arg::Str(&tail),
        ];
        let reply = self.eval(&SCRIPTS.join, tenant, room, &args)?;
        match &reply {
            Value::BulkString(b) => parse_f64(b),
            Value::SimpleString(s) => parse_f64(s.as_bytes()),
            _ => None,
        }
        .ok_or_else(|| self.store.unexpected("join", &reply).into())
    }

    /// The record of the user that left, if it was present.
    pub fn leave(
        &self,
        tenant: &TenantId,
        room: &str,
        user: &str,
    ) -> Result<Option<StoredPresence>, PresenceError> {
        check_user(user)?;
        let args = [Arg::Float(self.timeout_secs), Arg::Str(user)];
        match self.eval(&SCRIPTS.leave, tenant, room, &args)? {
            Value::Nil => Ok(None),
            Value::BulkString(value) => StoredPresence::parse(value)
                .map(Some)
                .ok_or_else(|| self.malformed(tenant, room)),
            other => Err(self.store.unexpected("leave", &other).into()),
        }
    }

    /// Refreshes the user's heartbeat; false when the user is not present.
    pub fn heartbeat(
        &self,
        tenant: &TenantId,
        room: &str,
        user: &str,
    ) -> Result<bool, PresenceError> {
        check_user(user)?;
        let args = [
            Arg::Float(self.timeout_secs),
            Arg::Int(self.ttl_ms),
            Arg::Str(user),
        ];
        match self.eval(&SCRIPTS.heartbeat, tenant, room, &args)? {
            Value::Int(n) => Ok(n == 1),
            other => Err(self.store.unexpected("heartbeat", &other).into()),
        }
    }

    pub fn count(&self, tenant: &TenantId, room: &str) -> Result<u64, PresenceError> {
        match self.eval(
            &SCRIPTS.count,
            tenant,
            room,
            &[Arg::Float(self.timeout_secs)],
        )? {
            Value::Int(n) => Ok(n.max(0) as u64),
            other => Err(self.store.unexpected("count", &other).into()),
        }
    }

    /// Every present user (in no particular order).
    pub fn list(
        &self,
        tenant: &TenantId,
        room: &str,
    ) -> Result<Vec<StoredPresence>, PresenceError> {
        let reply = self.eval(
            &SCRIPTS.list,
            tenant,
            room,
            &[Arg::Float(self.timeout_secs)],
        )?;
        let items = match reply {
            Value::Array(items) => items,
            other => return Err(self.store.unexpected("list", &other).into()),
        };
        items
            .into_iter()
            .map(|item| match item {
                Value::BulkString(value) => StoredPresence::parse(value),
                _ => None,
            })
            .map(|p| p.ok_or_else(|| self.malformed(tenant, room)))
            .collect()
    }

    fn malformed(&self, tenant: &TenantId, room: &str) -> PresenceError {
        let [_, meta] = self.keys(tenant, room);
        PresenceError::Store(crate::redis_store::StoreError::Failed {
            url: self.store.url().to_owned(),
            detail: format!(
                "{} holds a value that is not a tenantry presence record",
                crate::tenant_id::preview(&meta)
            ),
        })
    }

    /// Removes the room's expired users now; returns how many.
    pub fn cleanup_stale(&self, tenant: &TenantId, room: &str) -> Result<u64, PresenceError> {
        match self.eval(
            &SCRIPTS.cleanup,
            tenant,
            room,
            &[Arg::Float(self.timeout_secs)],
        )? {
            Value::Int(n) => Ok(n.max(0) as u64),
            other => Err(self.store.unexpected("cleanup_stale", &other).into()),
        }
    }

    /// Round-trip time of a `PING`.
    pub fn ping(&self) -> Result<Duration, PresenceError> {
        Ok(self.store.ping()?)
    }
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
    fn stored_values_split_into_their_parts() {
        let tail = StoredPresence::tail("a b", "{\"a\": 1}");
        let p = StoredPresence::parse(format!("1700000000.250000 {tail}").into_bytes()).unwrap();
        assert_eq!(p.joined_at, 1_700_000_000.25);
        assert_eq!(p.user(), "a b");
        assert_eq!(p.meta_json(), b"{\"a\": 1}");
        for bad in ["garbage", "x 1 a{}", "1.5 9 ab{}", "1.5 x ab", "1.5 1"] {
            assert!(
                StoredPresence::parse(bad.as_bytes().to_vec()).is_none(),
                "{bad}"
            );
        }
    }

    #[test]
    fn keys_follow_the_layout_and_share_the_tenant_hash_tag() {
        let store = RedisStore::shared("redis://127.0.0.1:1/0", StoreOptions::default()).unwrap();
        let p = RedisPresence::new(store, KeyPrefix::default(), Duration::from_secs(60));
        let t = TenantId::parse("acme").unwrap();
        assert_eq!(
            p.keys(&t, "room:1"),
            [
                "djust:{tenant:acme}:presence:room:1",
                "djust:{tenant:acme}:presence-meta:room:1"
            ]
        );
        assert_eq!(p.ttl_ms(), 120_000);
    }

    #[test]
    fn scripts_against_a_real_server() {
        let server = Server::require();
        let url = server.url();
        let store = RedisStore::shared(&url, StoreOptions::default()).unwrap();
        let p = RedisPresence::new(store, KeyPrefix::default(), Duration::from_millis(300));
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());

        let first = p.join(&a, "r", "u1", "{\"n\":1}").unwrap();
        assert!(first > 1.0e9);
        assert_eq!(p.join(&a, "r", "u1", "{\"n\":2}").unwrap(), first);
        p.join(&a, "r", "u2", "null").unwrap();
        p.join(&b, "r", "u1", "{}").unwrap();
        assert_eq!(p.count(&a, "r").unwrap(), 2);
        let mut listed = p.list(&a, "r").unwrap();
        listed.sort_by(|x, y| x.user().cmp(y.user()));
        assert_eq!(listed.len(), 2);
        assert_eq!((listed[0].user(), listed[0].joined_at), ("u1", first));
        assert_eq!(listed[0].meta_json(), b"{\"n\":2}");
        let left = p.leave(&a, "r", "u2").unwrap().unwrap();
        assert_eq!((left.user(), left.meta_json()), ("u2", &b"null"[..]));
        assert_eq!(p.leave(&a, "r", "u2").unwrap(), None);
        assert!(p.heartbeat(&a, "r", "u1").unwrap());
        assert!(!p.heartbeat(&a, "r", "nobody").unwrap());
        assert_eq!(p.count(&b, "r").unwrap(), 1);

        // Expired and present users mixed: list returns the present ones.
        let slow_a = RedisPresence::new(
            Arc::clone(p.store()),
            KeyPrefix::default(),
            Duration::from_secs(60),
        );
        // More expired members than one list call removes (1000): the
        // present ones are then picked by score.
        for i in 0..1001 {
            slow_a.join(&a, "mixed", &format!("old{i}"), "1").unwrap();
        }
        // Joined with a long timeout (so the room's TTL outlives the sleep
        // below), cleaned with the short one: b's "r" may already be gone
        // by TTL when the joins above are slow.
        slow_a.join(&b, "stale", "u1", "{}").unwrap();
        std::thread::sleep(Duration::from_millis(400));
        slow_a.join(&a, "mixed", "new", "2").unwrap();
        let mixed = p.list(&a, "mixed").unwrap();
        assert_eq!(mixed.len(), 1);
        assert_eq!(mixed[0].user(), "new");

        assert_eq!(p.count(&a, "r").unwrap(), 0);
        assert!(p.list(&a, "r").unwrap().is_empty());
        assert!(!p.heartbeat(&b, "r", "u1").unwrap(), "no revival");
        assert_eq!(p.cleanup_stale(&b, "stale").unwrap(), 1);

        // Large rooms come back in one call (past Lua's unpack limit).
        let slow = RedisPresence::new(
            Arc::clone(p.store()),
            KeyPrefix::default(),
            Duration::from_secs(60),
        );
        for i in 0..9000 {
            slow.join(&a, "big", &format!("u{i}"), "1").unwrap();
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
