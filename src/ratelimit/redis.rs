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
/// tolerance; window: max and length), all µs.
///
/// The script decides and consumes; it replies with what it read, and the
/// client derives every figure of the decision with the same Rust functions
/// the memory store uses ([`Check::decide`]), so there is one rule, not a
/// Rust one and a Lua one for headers:
/// - one GCRA limit (the common case): an integer, the key's TAT minus now
///   (0 for a fresh key);
/// - otherwise: a string, `"<now> <stored 1> … <stored n>"` (0 = nothing).
///
/// A stored value that is not a number below 2^53 (a key written by
/// something else, NaN, infinity) counts as a fresh key, never as a reply
/// the client cannot read.
///
/// Written for the server's time (it runs once per request). Numbers are
/// formatted with `%d`: Lua's own number-to-string (`%.14g`) would lose
/// digits of a µs timestamp, and `%.0f` goes through glibc's multi-precision
/// float printer, which was a measurable share of the script. No table is
/// made, and a passing key's new value and TTL go back into its ARGV slots
/// until every limit has passed.
const CHECK: &str = r#"
local now = ARGV[1]
if now == '' then
  local t = redis.call('TIME')
  now = t[1] * 1000000 + t[2]
else
  now = tonumber(now)
end
local cost = tonumber(ARGV[2])
local fmt, floor, ceil = string.format, math.floor, math.ceil
if #KEYS == 1 and ARGV[3] == 'g' then
  local a, b = tonumber(ARGV[4]), tonumber(ARGV[5])
  local tat = tonumber(redis.call('GET', KEYS[1]))
  if not (tat and tat > now and tat < 2 ^ 53) then tat = now end
  local ahead = tat + a * cost - now
  if ahead <= b then
    local ms = ceil(ahead / 1000)
    if ms < 1 then ms = 1 end
    redis.call('SET', KEYS[1], fmt('%d', tat + a * cost), 'PX', fmt('%d', ms))
  end
  return tat - now
end
local ok, reply = true, fmt('%d', now)
for i = 1, #KEYS do
  local j = 3 * i
  local a, b = tonumber(ARGV[j + 1]), tonumber(ARGV[j + 2])
  local stored = tonumber(redis.call('GET', KEYS[i])) or 0
  if not (stored >= 0 and stored < 2 ^ 53) then stored = 0 end
  reply = reply .. fmt(' %d', stored)
  if ARGV[j] == 'g' then
    local tat = now
    if stored > now then tat = stored end
    local ahead = tat + a * cost - now
    if ahead <= b then
      ARGV[j + 1], ARGV[j + 2] = tat + a * cost, ahead
    else
      ok = false
    end
  else
    local index = floor(now / b)
    local count = 0
    if floor(stored / 1000000001) == index then count = stored % 1000000001 end
    if count + cost <= a then
      ARGV[j + 1], ARGV[j + 2] = index * 1000000001 + count + cost, (index + 1) * b - now
    else
      ok = false
    end
  end
end
if ok then
  for i = 1, #KEYS do
    local j = 3 * i
    local ms = ceil(ARGV[j + 2] / 1000)
    if ms < 1 then ms = 1 end
    redis.call('SET', KEYS[i], fmt('%d', ARGV[j + 1]), 'PX', fmt('%d', ms))
  end
end
return reply
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
        self.decision(checks, cost, &reply)
    }

    /// The decision from what the script read (see [`CHECK`]): the same
    /// [`Check::decide`] as the memory store, on the server's clock.
    fn decision(&self, checks: &[Check], cost: u64, reply: &Reply) -> Result<Decision, StoreError> {
        let bad = || self.store.unexpected("the rate-limit script", reply);
        let outcomes: Vec<Outcome> = match (reply, checks) {
            // One rate: TAT − now, so "now" is 0 and the TAT that offset.
            (Reply::Int(used), [check]) if matches!(check.limit, Limit::Rate(_)) => {
                let stored = u64::try_from(*used).map_err(|_| bad())?;
                vec![check.decide(Some(stored), 0, cost)]
            }
            (Reply::BulkString(text), _) => {
                let mut ints = text.split(|b| *b == b' ').map(|word| {
                    std::str::from_utf8(word)
                        .ok()
                        .and_then(|w| w.parse::<u64>().ok())
                        .ok_or_else(bad)
                });
                let now = ints.next().ok_or_else(bad)??;
                let stored: Vec<u64> = ints.collect::<Result<_, _>>()?;
                if stored.len() != checks.len() {
                    return Err(bad());
                }
                checks
                    .iter()
                    .zip(stored)
                    .map(|(c, s)| c.decide(Some(s), now, cost))
                    .collect()
            }
            _ => return Err(bad()),
        };
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

    /// Runs 300 steps of costs 1 and 2 through both stores; returns what
    /// was admitted (in cost units).
    fn decide_alike(redis: &RedisLimiter, tenant: &str, checks: &[Check]) -> u64 {
        let memory = MemoryLimiter::new();
        let start = 1_700_000_000 * MICROS;
        let mut admitted = 0;
        for step in 0..300u64 {
            let now = start + step * 37_000;
            for cost in [1, 2] {
                let m = memory
                    .check(&KeyPrefix::default(), &t(tenant), checks, cost, now)
                    .unwrap();
                let r = redis.check(&t(tenant), checks, cost, Some(now)).unwrap();
                assert_eq!(m, r, "step {step} cost {cost}");
                admitted += u64::from(m.allowed) * cost;
            }
        }
        admitted
    }

    fn rate(text: &str) -> Check {
        Check {
            limit: Limit::Rate(Rate::parse(text).unwrap()),
            name: format!("http:{text}:tenant"),
        }
    }

    #[test]
    fn redis_and_memory_decide_alike_on_a_stepped_clock() {
        let server = Server::require();
        let store = RedisStore::shared(&server.url(), StoreOptions::default()).unwrap();
        let redis = RedisLimiter::new(store, KeyPrefix::default());
        let hourly = Check {
            limit: Limit::Quota(Quota {
                max: 40,
                window: QuotaWindow::Hour,
            }),
            name: "http:quota/h:tenant".into(),
        };
        // A rate and a quota (the script's general reply): the hourly quota
        // is what ends it.
        let both = [rate("5/s burst 3"), hourly];
        assert_eq!(decide_alike(&redis, "acme", &both), 40);
        // One rate alone (the script's integer reply), refusals included:
        // the burst of 3, then 5/s over the 11.06 s the steps span.
        let one = [rate("5/s burst 3")];
        assert_eq!(decide_alike(&redis, "globex", &one), 3 + 55);
    }

    #[test]
    fn a_corrupted_key_counts_as_fresh_on_both_paths() {
        let server = Server::require();
        let store = RedisStore::shared(&server.url(), StoreOptions::default()).unwrap();
        let redis = RedisLimiter::new(store, KeyPrefix::default());
        let mut raw = redis::Client::open(server.url())
            .unwrap()
            .get_connection()
            .unwrap();
        let one = [rate("10/s")];
        let both = [rate("10/s"), rate("100/m")];
        for value in ["nan", "-nan", "inf", "-5", "1e300", "garbage", "", "0x10"] {
            for checks in [&one[..], &both[..]] {
                for c in checks {
                    let _: () = redis::cmd("SET")
                        .arg(redis.key(&t("acme"), &c.name))
                        .arg(value)
                        .query(&mut raw)
                        .unwrap();
                }
                let d = redis.check(&t("acme"), checks, 1, None).unwrap();
                assert!(d.allowed, "{value:?} with {} limits: {d:?}", checks.len());
                assert_eq!(d.remaining, 9, "{value:?}");
            }
        }
    }
}
