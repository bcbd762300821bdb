//! Rate limits in Redis (single server or cluster): ONE `EVALSHA` checks
//! every limit of a request and, when all pass, consumes them — atomically,
//! on the server's clock (`TIME`), so every process and host shares one
//! clock and one count.
//!
//! Keys come from the one formatter and share the tenant's hash tag, so a
//! multi-key check is one slot on a cluster:
//! `<prefix>:{tenant:<id>}:ratelimit:<scope>:<limit>:<parts>` — a string
//! holding the key's TAT (µs) or its window's count, expiring when it dies.
//!
//! The script is the same arithmetic as [`super::gcra`] and
//! [`super::window`], on integers below 2^53 (exact in Lua's doubles); the
//! Rust tests run both side by side on a stepped clock.

use std::sync::{Arc, LazyLock};

use redis::Value as Reply;

use super::{Check, Decision, Limit, Outcome};
use crate::keys::{format_key, KeyPrefix, Kind};
use crate::redis_store::{Arg, RedisStore, Script, StoreError};
use crate::tenant_id::TenantId;

/// KEYS: one per limit. ARGV: now in µs ('' = Redis' TIME), cost, then per
/// key a kind ('g' GCRA, 'w' window) and two numbers (GCRA: interval and
/// tolerance; window: max and length), all µs. Returns one string,
/// `"<allowed> then per key: <remaining> <retry_after> <reset_after>"`.
///
/// Written for the server's time (it runs once per request): three Redis
/// commands for one limit (`TIME`, `GET`, `SET … PX`), no table is made —
/// a passing key's new value and TTL go back into its ARGV slots until every
/// limit has passed — and the reply is one string (Redis converts a Lua
/// table reply field by field, which cost more than the whole arithmetic).
const CHECK: &str = r#"
local now = ARGV[1]
if now == '' then
  local t = redis.call('TIME')
  now = t[1] * 1000000 + t[2]
else
  now = tonumber(now)
end
local cost = tonumber(ARGV[2])
local floor, fmt = math.floor, string.format
local ok, reply = 1, ''
for i = 1, #KEYS do
  local j = 3 * i
  local a, b = tonumber(ARGV[j + 1]), tonumber(ARGV[j + 2])
  local stored = tonumber(redis.call('GET', KEYS[i]) or '')
  local remaining, retry, reset
  if ARGV[j] == 'g' then
    local tat = now
    if stored and stored > now then tat = stored end
    local ahead = tat + a * cost - now
    if ahead <= b then
      remaining, retry, reset = floor((b - ahead) / a), 0, ahead
      ARGV[j + 1], ARGV[j + 2] = tat + a * cost, ahead
    else
      reset = tat - now
      remaining, retry = b > reset and floor((b - reset) / a) or 0, ahead - b
      ok = 0
    end
  else
    local index = floor(now / b)
    local ends = (index + 1) * b - now
    local count = 0
    if stored and floor(stored / 1000000001) == index then count = stored % 1000000001 end
    if count + cost <= a then
      remaining, retry, reset = a - count - cost, 0, ends
      ARGV[j + 1], ARGV[j + 2] = index * 1000000001 + count + cost, ends
    else
      remaining, retry, reset = a > count and a - count or 0, ends, ends
      ok = 0
    end
  end
  reply = reply .. fmt(' %.0f %.0f %.0f', remaining, retry, reset)
end
if ok == 1 then
  for i = 1, #KEYS do
    local j = 3 * i
    local ms = math.ceil(ARGV[j + 2] / 1000)
    if ms < 1 then ms = 1 end
    redis.call('SET', KEYS[i], fmt('%.0f', ARGV[j + 1]), 'PX', ms)
  end
end
return ok .. reply
"#;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(CHECK));

pub struct RedisLimiter {
    store: Arc<RedisStore>,
    prefix: KeyPrefix,
}

impl RedisLimiter {
    pub fn new(store: Arc<RedisStore>, prefix: KeyPrefix) -> Self {
        RedisLimiter { store, prefix }
    }

    pub fn store(&self) -> &RedisStore {
        &self.store
    }

    pub fn prefix(&self) -> &KeyPrefix {
        &self.prefix
    }

    pub fn key(&self, tenant: &TenantId, name: &str) -> String {
        format_key(&self.prefix, tenant, Kind::RateLimit, name)
    }

    /// One round trip. `now` (µs) replaces Redis' clock (tests).
    ///
    /// Sent again on a fresh connection only when a pooled one turns out to
    /// be dead (Redis restarted): at worst that consumes twice, which errs
    /// on the side of the limit.
    pub fn check(
        &self,
        tenant: &TenantId,
        checks: &[Check],
        cost: u64,
        now: Option<u64>,
    ) -> Result<Decision, StoreError> {
        let keys: Vec<String> = checks.iter().map(|c| self.key(tenant, &c.name)).collect();
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let now_text = now.map(|n| n.to_string()).unwrap_or_default();
        let mut args: Vec<Arg<'_>> = Vec::with_capacity(2 + 3 * checks.len());
        args.push(Arg::Str(&now_text));
        args.push(Arg::Int(cost as i64));
        for c in checks {
            let (kind, a, b) = match &c.limit {
                Limit::Rate(r) => ("g", r.interval(), r.tolerance()),
                Limit::Quota(q) => ("w", q.max, q.window.micros()),
            };
            args.push(Arg::Str(kind));
            args.push(Arg::Int(a as i64));
            args.push(Arg::Int(b as i64));
        }
        let reply = self.store.eval(&SCRIPT, &key_refs, &args)?;
        self.decision(checks, &reply)
    }

    fn decision(&self, checks: &[Check], reply: &Reply) -> Result<Decision, StoreError> {
        let bad = || self.store.unexpected("the rate-limit script", reply);
        let Reply::BulkString(text) = reply else {
            return Err(bad());
        };
        let ints: Vec<u64> = text
            .split(|b| *b == b' ')
            .map(|word| {
                std::str::from_utf8(word)
                    .ok()
                    .and_then(|w| w.parse().ok())
                    .ok_or_else(bad)
            })
            .collect::<Result<_, _>>()?;
        if ints.len() != 1 + 3 * checks.len() {
            return Err(bad());
        }
        let allowed = ints[0] == 1;
        let outcomes: Vec<Outcome> = checks
            .iter()
            .zip(ints[1..].chunks_exact(3))
            .map(|(c, n)| Outcome {
                allowed: allowed || n[1] == 0,
                limit: c.limit_of(),
                remaining: n[0],
                retry_after: n[1],
                reset_after: n[2],
                store: 0,
                expires: 0,
            })
            .collect();
        Ok(Decision::combine(&outcomes))
    }
}

#[cfg(test)]
mod tests {
    use super::super::memory::MemoryLimiter;
    use super::super::{Quota, QuotaWindow, Rate, MICROS};
    use super::*;
    use crate::redis_store::tests::Server;
    use crate::redis_store::StoreOptions;

    fn t(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    #[test]
    fn redis_and_memory_decide_alike_on_a_stepped_clock() {
        let server = Server::require();
        let store = RedisStore::shared(&server.url(), StoreOptions::default()).unwrap();
        let redis = RedisLimiter::new(store, KeyPrefix::default());
        let memory = MemoryLimiter::new();
        let checks = vec![
            Check {
                limit: Limit::Rate(Rate::parse("5/s burst 3").unwrap()),
                name: "http:5/s burst 3:tenant".into(),
            },
            Check {
                limit: Limit::Quota(Quota {
                    max: 40,
                    window: QuotaWindow::Hour,
                }),
                name: "http:quota/h:tenant".into(),
            },
        ];
        let start = 1_700_000_000 * MICROS;
        let mut admitted = 0;
        for step in 0..300u64 {
            let now = start + step * 37_000;
            for cost in [1, 2] {
                let m = memory.check(&KeyPrefix::default(), &t("acme"), &checks, cost, now);
                let r = redis.check(&t("acme"), &checks, cost, Some(now)).unwrap();
                assert_eq!(m, r, "step {step} cost {cost}");
                admitted += u64::from(m.allowed) * cost;
            }
        }
        // The hourly quota is what ended it.
        assert_eq!(admitted, 40);
    }
}
