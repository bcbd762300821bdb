//! Per-tenant rate limits and quotas (SPEC §12), with no Python types.
//!
//! * [`Rate`]: `"100/s"`, `"1000/m"`, `"10000/h"`, `"100000/d"`, optionally
//!   followed by `burst N` (`"100/m burst 20"`), parsed by [`Rate::parse`].
//! * GCRA ([`gcra`]): a rate is an emission interval `T = period / count`
//!   and a tolerance `burst × T`; each key stores one number, its
//!   theoretical arrival time (TAT). `burst` requests pass at once (default:
//!   `count`), then one per `T`. `retry_after` and `reset_after` are exact.
//! * Quotas ([`window`]): at most `max` per calendar hour or day (UTC),
//!   counted in one number per key that expires at the window's end.
//! * [`Check`]: every limit that applies to one request (tenant, tenant+user,
//!   endpoint, quotas), decided together: all pass and all are consumed, or
//!   none is ([`Decision::combine`]).
//!
//! Times are microseconds of the wall clock (Redis' `TIME` for the Redis
//! store, so every process shares one clock). A key whose stored time has
//! passed holds nothing: both stores drop it then.

pub mod memory;
pub mod redis;
pub mod spec;

use std::fmt;

pub use spec::{KeyPart, KeySpec, Limit, LimitSpec, Limits, Quota, QuotaWindow};

use crate::keys::{check_name, KeyError};

/// A tenant's plan: the keys of its registry settings (`TenantInfo.settings`)
/// that override the config's limits: `rate_limits` (like
/// `TENANT_RATE_LIMITS`) and `quotas` (like `TENANT_QUOTAS`).
pub const PLAN_RATE_LIMITS_KEY: &str = "rate_limits";
pub const PLAN_QUOTAS_KEY: &str = "quotas";
/// Both plan keys, in that order.
pub const PLAN_KEYS: [&str; 2] = [PLAN_RATE_LIMITS_KEY, PLAN_QUOTAS_KEY];

pub const MICROS: u64 = 1_000_000;
/// Largest count of a rate or quota: keeps every product below 2^53 µs,
/// so the Lua side (doubles) computes exactly what Rust does.
pub const MAX_COUNT: u64 = 1_000_000_000;
/// Largest burst.
pub const MAX_BURST: u64 = 1_000_000;
/// Largest cost of one check.
pub const MAX_COST: u64 = 1_000_000;

/// Per-second to per-day periods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Period {
    Second,
    Minute,
    Hour,
    Day,
}

impl Period {
    pub fn micros(self) -> u64 {
        MICROS
            * match self {
                Period::Second => 1,
                Period::Minute => 60,
                Period::Hour => 3600,
                Period::Day => 86_400,
            }
    }

    pub fn unit(self) -> char {
        match self {
            Period::Second => 's',
            Period::Minute => 'm',
            Period::Hour => 'h',
            Period::Day => 'd',
        }
    }

    fn from_unit(unit: &str) -> Option<Period> {
        Some(match unit {
            "s" => Period::Second,
            "m" => Period::Minute,
            "h" => Period::Hour,
            "d" => Period::Day,
            _ => return None,
        })
    }
}

/// A parsed rate: `count` per `period`, at most `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    pub count: u64,
    pub period: Period,
    pub burst: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RateError {
    /// Not `<count>/<s|m|h|d>[ burst <n>]`.
    Syntax { text: String },
    /// A count, burst or cost out of range.
    Range { text: String, reason: String },
    /// A key or scope name that cannot be stored.
    Key(KeyError),
    /// `cost` larger than a limit's burst: it could never pass.
    CostTooHigh { cost: u64, limit: u64 },
}

impl fmt::Display for RateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateError::Syntax { text } => write!(
                f,
                "{} is not a rate: write '<count>/<s|m|h|d>' with an optional \
                 'burst <n>', like '100/m' or '100/m burst 20'",
                crate::tenant_id::preview(text)
            ),
            RateError::Range { text, reason } => {
                write!(
                    f,
                    "{} is out of range: {reason}",
                    crate::tenant_id::preview(text)
                )
            }
            RateError::Key(e) => write!(f, "{e}"),
            RateError::CostTooHigh { cost, limit } => write!(
                f,
                "a cost of {cost} can never pass a limit of {limit} at once \
                 (raise the burst, or lower the cost)"
            ),
        }
    }
}

impl std::error::Error for RateError {}

impl From<KeyError> for RateError {
    fn from(e: KeyError) -> Self {
        RateError::Key(e)
    }
}

/// Longest rate text accepted (a hostile config cannot make the parser
/// work on megabytes).
const MAX_RATE_TEXT: usize = 64;

fn number(text: &str, part: &str) -> Result<u64, RateError> {
    if part.is_empty() || part.len() > 10 || !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RateError::Syntax {
            text: text.to_owned(),
        });
    }
    part.parse::<u64>().map_err(|_| RateError::Syntax {
        text: text.to_owned(),
    })
}

impl Rate {
    /// `"<count>/<s|m|h|d>"`, optionally `" burst <n>"`; spaces around the
    /// parts are allowed, nothing else.
    pub fn parse(text: &str) -> Result<Rate, RateError> {
        let syntax = || RateError::Syntax {
            text: text.to_owned(),
        };
        if text.len() > MAX_RATE_TEXT || !text.is_ascii() {
            return Err(syntax());
        }
        let mut words = text.split_ascii_whitespace();
        let head = words.next().ok_or_else(syntax)?;
        let burst = match (words.next(), words.next(), words.next()) {
            (None, None, None) => None,
            (Some("burst"), Some(n), None) => Some(number(text, n)?),
            _ => return Err(syntax()),
        };
        let (count, unit) = head.split_once('/').ok_or_else(syntax)?;
        let count = number(text, count)?;
        let period = Period::from_unit(unit).ok_or_else(syntax)?;
        let range = |reason: String| RateError::Range {
            text: text.to_owned(),
            reason,
        };
        if count == 0 || count > MAX_COUNT {
            return Err(range(format!("the count must be 1 to {MAX_COUNT}")));
        }
        if count > period.micros() {
            return Err(range(format!(
                "at most {} per {} (one per microsecond)",
                period.micros(),
                period.unit()
            )));
        }
        let burst = burst.unwrap_or(count);
        if burst == 0 || burst > MAX_BURST {
            return Err(range(format!("the burst must be 1 to {MAX_BURST}")));
        }
        Ok(Rate {
            count,
            period,
            burst,
        })
    }

    /// Microseconds between two requests at the sustained rate.
    pub fn interval(&self) -> u64 {
        (self.period.micros() / self.count).max(1)
    }

    /// How far ahead of now the TAT may run: `burst` intervals.
    pub fn tolerance(&self) -> u64 {
        self.interval() * self.burst
    }

    /// The canonical text, also the rate's part of its keys (a changed rate
    /// starts from a fresh budget).
    pub fn canonical(&self) -> String {
        if self.burst == self.count {
            format!("{}/{}", self.count, self.period.unit())
        } else {
            format!("{}/{} burst {}", self.count, self.period.unit(), self.burst)
        }
    }
}

/// What one limit says about one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    /// The most that may pass at once (a rate's burst, a quota's max).
    pub limit: u64,
    pub remaining: u64,
    /// Microseconds until this check could pass (0 when it passed).
    pub retry_after: u64,
    /// Microseconds until the key is back to its full allowance.
    pub reset_after: u64,
    /// The value to store when every limit of the check passed, and when it
    /// dies (absolute µs).
    pub store: u64,
    pub expires: u64,
}

/// GCRA: `stored` is the key's TAT (None, or in the past: a fresh key).
pub fn gcra(stored: Option<u64>, now: u64, rate: &Rate, cost: u64) -> Outcome {
    let interval = rate.interval();
    let tolerance = rate.tolerance();
    let tat = stored.filter(|&t| t > now).unwrap_or(now);
    let new_tat = tat + interval * cost;
    let ahead = new_tat - now;
    if ahead <= tolerance {
        Outcome {
            allowed: true,
            limit: rate.burst,
            remaining: (tolerance - ahead) / interval,
            retry_after: 0,
            reset_after: ahead,
            store: new_tat,
            expires: new_tat,
        }
    } else {
        let used = tat - now;
        Outcome {
            allowed: false,
            limit: rate.burst,
            remaining: tolerance.saturating_sub(used) / interval,
            retry_after: ahead - tolerance,
            reset_after: used,
            store: tat,
            expires: tat,
        }
    }
}

/// Window counts are stored as `window index × WINDOW_BASE + count`, so a
/// count outliving its window by a rounding of its expiry still reads as 0.
pub const WINDOW_BASE: u64 = MAX_COUNT + 1;

/// A fixed calendar window: `stored` is the encoded count (see
/// [`WINDOW_BASE`]); one of another window counts as nothing.
pub fn window(stored: Option<u64>, now: u64, quota: &Quota, cost: u64) -> Outcome {
    let length = quota.window.micros();
    let index = now / length;
    let ends = (index + 1) * length;
    let count = stored
        .filter(|v| v / WINDOW_BASE == index)
        .map_or(0, |v| v % WINDOW_BASE);
    let left = ends - now;
    let encoded = |count: u64| index * WINDOW_BASE + count;
    if count + cost <= quota.max {
        Outcome {
            allowed: true,
            limit: quota.max,
            remaining: quota.max - count - cost,
            retry_after: 0,
            reset_after: left,
            store: encoded(count + cost),
            expires: ends,
        }
    } else {
        Outcome {
            allowed: false,
            limit: quota.max,
            remaining: quota.max.saturating_sub(count),
            retry_after: left,
            reset_after: left,
            store: encoded(count),
            expires: ends,
        }
    }
}

/// One limit of one check, with the key it counts under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub limit: Limit,
    /// The name under the tenant (see [`key_name`]).
    pub name: String,
}

impl Check {
    pub fn decide(&self, stored: Option<u64>, now: u64, cost: u64) -> Outcome {
        match &self.limit {
            Limit::Rate(rate) => gcra(stored, now, rate, cost),
            Limit::Quota(quota) => window(stored, now, quota, cost),
        }
    }

    pub fn limit_of(&self) -> u64 {
        match &self.limit {
            Limit::Rate(rate) => rate.burst,
            Limit::Quota(quota) => quota.max,
        }
    }
}

/// Refuses a cost no limit of `checks` could ever let through.
pub fn check_cost(checks: &[Check], cost: u64) -> Result<(), RateError> {
    if cost == 0 || cost > MAX_COST {
        return Err(RateError::Range {
            text: cost.to_string(),
            reason: format!("a cost must be 1 to {MAX_COST}"),
        });
    }
    for c in checks {
        if cost > c.limit_of() {
            return Err(RateError::CostTooHigh {
                cost,
                limit: c.limit_of(),
            });
        }
    }
    Ok(())
}

/// The answer to one request (times in microseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    pub retry_after: u64,
    pub reset_after: u64,
}

impl Decision {
    /// No limit applies.
    pub const UNLIMITED: Decision = Decision {
        allowed: true,
        limit: 0,
        remaining: 0,
        retry_after: 0,
        reset_after: 0,
    };

    /// Every limit must pass. The headers describe the tightest limit: on a
    /// refusal, the one that makes the client wait longest; otherwise the
    /// one with the fewest remaining.
    pub fn combine(outcomes: &[Outcome]) -> Decision {
        let allowed = outcomes.iter().all(|o| o.allowed);
        let pick = if allowed {
            outcomes
                .iter()
                .min_by_key(|o| (o.remaining, std::cmp::Reverse(o.reset_after)))
        } else {
            outcomes
                .iter()
                .filter(|o| !o.allowed)
                .max_by_key(|o| (o.retry_after, o.reset_after))
        };
        match pick {
            None => Decision::UNLIMITED,
            Some(o) => Decision {
                allowed,
                limit: o.limit,
                remaining: if allowed { o.remaining } else { 0 },
                retry_after: o.retry_after,
                reset_after: o.reset_after,
            },
        }
    }
}

/// Escapes `%` and `:` so the parts of a key name stay apart.
fn escape(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            c => out.push(c),
        }
    }
}

/// What a request is, for the parts of a key other than the tenant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity<'a> {
    /// An authenticated user's id; None for anonymous users (then `user`
    /// keys count the client address instead).
    pub user: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub view: Option<&'a str>,
}

/// The key name of one limit under the tenant:
/// `<scope>:<limit>:<parts>` — the scope is an identifier, the limit its
/// canonical text, and each part `user=…`, `ip=…`, `view=…` or `key=…`
/// with `%` and `:` escaped, so distinct (scope, limit, parts) never share
/// a name.
pub fn key_name(
    scope: &str,
    limit: &Limit,
    key: &KeySpec,
    who: &Identity<'_>,
) -> Result<String, RateError> {
    let mut name = String::with_capacity(scope.len() + 32);
    name.push_str(scope);
    name.push(':');
    match limit {
        Limit::Rate(rate) => name.push_str(&rate.canonical()),
        Limit::Quota(quota) => {
            name.push_str("quota/");
            name.push(quota.window.unit());
        }
    }
    match key {
        KeySpec::Parts(parts) if parts.is_empty() => name.push_str(":tenant"),
        KeySpec::Parts(parts) => {
            for part in parts {
                name.push(':');
                let (tag, value) = match part {
                    KeyPart::User => match who.user {
                        Some(user) => ("user=", user),
                        None => ("anon=", who.ip.unwrap_or("")),
                    },
                    KeyPart::Ip => ("ip=", who.ip.unwrap_or("")),
                    KeyPart::View => ("view=", who.view.unwrap_or("")),
                };
                name.push_str(tag);
                escape(value, &mut name);
            }
        }
        KeySpec::Custom(text) => {
            name.push_str(":key=");
            escape(text, &mut name);
        }
    }
    check_name(&name)?;
    Ok(name)
}

/// The checks of `scope` for one request: `limits` are what applies (the
/// tenant's plan or the defaults), `key` the caller's key (None: each
/// limit's own).
pub fn checks_for(
    scope: &str,
    limits: &[LimitSpec],
    key: Option<&KeySpec>,
    who: &Identity<'_>,
) -> Result<Vec<Check>, RateError> {
    limits
        .iter()
        .map(|spec| {
            let key = match (&spec.limit, key) {
                // Quotas are the tenant's whole allowance.
                (Limit::Quota(_), _) => &KeySpec::TENANT,
                (_, Some(k)) => k,
                (_, None) => &spec.key,
            };
            Ok(Check {
                name: key_name(scope, &spec.limit, key, who)?,
                limit: spec.limit,
            })
        })
        .collect()
}

/// The wall clock in microseconds.
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str) -> Rate {
        Rate::parse(text).unwrap()
    }

    #[test]
    fn every_rate_form_parses() {
        for (text, count, period, burst) in [
            ("100/s", 100, Period::Second, 100),
            ("1000/m", 1000, Period::Minute, 1000),
            ("10000/h", 10000, Period::Hour, 10000),
            ("100000/d", 100_000, Period::Day, 100_000),
            ("100/m burst 20", 100, Period::Minute, 20),
            ("  5/s   burst   7 ", 5, Period::Second, 7),
        ] {
            assert_eq!(
                Rate::parse(text).unwrap(),
                Rate {
                    count,
                    period,
                    burst
                },
                "{text}"
            );
        }
        assert_eq!(rate("100/m burst 20").canonical(), "100/m burst 20");
        assert_eq!(rate("100/m burst 100").canonical(), "100/m");
    }

    #[test]
    fn hostile_rates_are_refused() {
        for bad in [
            "",
            "100",
            "/s",
            "100/",
            "100/x",
            "100/S",
            "-1/s",
            "+1/s",
            "1.5/s",
            "0/s",
            "1e3/s",
            "100/m burst",
            "100/m burst 0",
            "100/m burst -1",
            "100/m bursts 2",
            "100/m burst 2 3",
            "100 / m",
            "99999999999/s",
            "2000000/s",
            "100/m burst 2000000",
            "１００/s",
            "100/s\0",
            &"1".repeat(100),
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad:?}");
        }
        let msg = Rate::parse("ten/s").unwrap_err().to_string();
        assert!(
            msg.contains("'100/m'") && msg.contains("\"ten/s\""),
            "{msg}"
        );
    }

    #[test]
    fn gcra_admits_the_burst_then_one_per_interval() {
        let r = rate("10/s");
        let (mut tat, now) = (None, 1_000_000_000u64);
        for i in 0..10 {
            let o = gcra(tat, now, &r, 1);
            assert!(o.allowed, "{i}");
            assert_eq!(o.remaining, 9 - i);
            tat = Some(o.store);
        }
        let o = gcra(tat, now, &r, 1);
        assert!(!o.allowed);
        assert_eq!(o.retry_after, 100_000, "one interval, exactly");
        assert_eq!(o.reset_after, MICROS);
        assert_eq!(o.remaining, 0);
        // One microsecond early: still refused, by exactly that microsecond.
        let o = gcra(tat, now + 99_999, &r, 1);
        assert_eq!((o.allowed, o.retry_after), (false, 1));
        let o = gcra(tat, now + 100_000, &r, 1);
        assert!(o.allowed);
        assert_eq!(o.remaining, 0);
    }

    #[test]
    fn exact_admitted_counts_over_a_window_with_a_stepped_clock() {
        // 60/m burst 5 hammered every 10 ms for two minutes: the burst,
        // then exactly one a second.
        let r = rate("60/m burst 5");
        let start = 7_000_000u64;
        let mut tat = None;
        let mut admitted = 0;
        let mut now = start;
        while now < start + 120 * MICROS {
            let o = gcra(tat, now, &r, 1);
            if o.allowed {
                admitted += 1;
                tat = Some(o.store);
            }
            now += 10_000;
        }
        assert_eq!(admitted, 5 + 119);
        // And a burst of 3 costs three slots.
        let o = gcra(None, start, &r, 3);
        assert_eq!((o.allowed, o.remaining), (true, 2));
        let o2 = gcra(Some(o.store), start, &r, 3);
        assert!(!o2.allowed);
        assert_eq!(o2.retry_after, MICROS);
    }

    #[test]
    fn quotas_count_per_calendar_window() {
        let q = Quota {
            max: 3,
            window: QuotaWindow::Day,
        };
        let day = 86_400 * MICROS;
        let now = 20 * day + 5;
        let mut stored = None;
        for left in [2, 1, 0] {
            let o = window(stored, now, &q, 1);
            assert!(o.allowed);
            assert_eq!(o.remaining, left);
            assert_eq!(o.expires, 21 * day);
            stored = Some(o.store);
        }
        let o = window(stored, now, &q, 1);
        assert!(!o.allowed);
        assert_eq!(o.retry_after, day - 5);
    }

    #[test]
    fn decisions_describe_the_tightest_limit() {
        let a = gcra(None, 0, &rate("10/s"), 1);
        let b = gcra(None, 0, &rate("100/h"), 1);
        let d = Decision::combine(&[a, b]);
        assert!(d.allowed);
        assert_eq!((d.limit, d.remaining), (10, 9));
        let refused = gcra(Some(3_600 * MICROS), 0, &rate("100/h"), 1);
        let d = Decision::combine(&[a, refused]);
        assert!(!d.allowed);
        assert_eq!(d.limit, 100);
        assert_eq!(d.retry_after, refused.retry_after);
        assert_eq!(d.remaining, 0);
    }

    #[test]
    fn key_names_are_injective_and_bounded() {
        let r = Limit::Rate(rate("1/s"));
        let user = KeySpec::parse("tenant+user").unwrap();
        let who = |u| Identity {
            user: Some(u),
            ip: Some("1.2.3.4"),
            view: None,
        };
        let a = key_name("http", &r, &user, &who("a:ip=b")).unwrap();
        let b = key_name("http", &r, &KeySpec::parse("user+ip").unwrap(), &who("a")).unwrap();
        assert_ne!(a, b);
        assert_eq!(a, "http:1/s:user=a%3Aip=b");
        let anon = Identity {
            user: None,
            ip: Some("1.2.3.4"),
            view: None,
        };
        assert_eq!(
            key_name("http", &r, &user, &anon).unwrap(),
            "http:1/s:anon=1.2.3.4"
        );
        let custom = KeySpec::parse("report:42").unwrap();
        assert_eq!(
            key_name("export", &r, &custom, &anon).unwrap(),
            "export:1/s:key=report%3A42"
        );
        let huge = KeySpec::parse(&"k".repeat(1020)).unwrap();
        assert!(key_name("x", &r, &huge, &anon).is_err());
    }

    #[test]
    fn costs_beyond_a_burst_are_refused() {
        let checks = [Check {
            limit: Limit::Rate(rate("10/s burst 3")),
            name: "x".into(),
        }];
        assert!(check_cost(&checks, 3).is_ok());
        assert_eq!(
            check_cost(&checks, 4),
            Err(RateError::CostTooHigh { cost: 4, limit: 3 })
        );
        assert!(check_cost(&checks, 0).is_err());
    }
}
