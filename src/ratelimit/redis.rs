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
/// tolerance; window: max and length), all µs. Returns
/// `{now, allowed, then per key: remaining, retry_after, reset_after}`.
const CHECK: &str = r#"
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local cost = tonumber(ARGV[2])
local BASE = 1000000001
local out = {now, 1}
local store, expires = {}, {}
for i = 1, #KEYS do
  local kind = ARGV[3 * i]
  local a, b = tonumber(ARGV[3 * i + 1]), tonumber(ARGV[3 * i + 2])
  local stored = tonumber(redis.call('GET', KEYS[i]) or '')
  local remaining, retry, reset
  if kind == 'g' then
    local tat = now
    if stored and stored > now then tat = stored end
    local ahead = tat + a * cost - now
    if ahead <= b then
      remaining, retry, reset = math.floor((b - ahead) / a), 0, ahead
      store[i], expires[i] = tat + a * cost, tat + a * cost
    else
      local used = tat - now
      remaining, retry, reset = math.floor(math.max(b - used, 0) / a), ahead - b, used
      out[2] = 0
    end
  else
    local index = math.floor(now / b)
    local ends = (index + 1) * b
    local count = 0
    if stored and math.floor(stored / BASE) == index then count = stored % BASE end
    if count + cost <= a then
      remaining, retry, reset = a - count - cost, 0, ends - now
      store[i], expires[i] = index * BASE + count + cost, ends
    else
      remaining, retry, reset = math.max(a - count, 0), ends - now, ends - now
      out[2] = 0
    end
  end
  out[#out + 1] = remaining
  out[#out + 1] = retry
  out[#out + 1] = reset
end
if out[2] == 1 then
  for i = 1, #KEYS do
    local ms = math.ceil((expires[i] - now) / 1000)
    if ms < 1 then ms = 1 end
    redis.call('SET', KEYS[i], string.format('%.0f', store[i]), 'PX', ms)
  end
end
return out
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
        let Reply::Array(items) = reply else {
            return Err(bad());
        };
        let ints: Vec<u64> = items
            .iter()
            .map(|v| match v {
                Reply::Int(i) if *i >= 0 => Ok(*i as u64),
                _ => Err(bad()),
            })
            .collect::<Result<_, _>>()?;
        if ints.len() != 2 + 3 * checks.len() {
            return Err(bad());
        }
        let allowed = ints[1] == 1;
        let outcomes: Vec<Outcome> = checks
            .iter()
            .zip(ints[2..].chunks_exact(3))
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
