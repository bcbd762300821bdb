//! What is limited: scopes, their limits and what each counts by. Built by
//! the config parser (`crate::config`, for `TENANT_RATE_LIMITS`,
//! `TENANT_QUOTAS` and a tenant's own `rate_limits` / `quotas` settings).

use std::collections::BTreeMap;

use super::{Period, Rate, RateError};
use crate::keys::{check_name, MAX_NAME_LEN};

/// Longest scope name.
pub const MAX_SCOPE_LEN: usize = 64;

/// What a key counts besides the tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyPart {
    User,
    Ip,
    View,
}

/// What one limit counts within the bound tenant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeySpec {
    /// `"tenant"`, `"tenant+user"`, `"user+ip"`…: the tenant, and these
    /// parts of the request (sorted, deduplicated; empty = the tenant).
    Parts(Vec<KeyPart>),
    /// Any other string: counted as itself, under the tenant.
    Custom(String),
}

impl KeySpec {
    pub const TENANT: KeySpec = KeySpec::Parts(Vec::new());

    /// `"tenant"`, `"user"`, `"ip"`, `"view"` joined by `+`; anything else
    /// (not empty, at most 1024 bytes) is a key of its own.
    pub fn parse(text: &str) -> Result<KeySpec, RateError> {
        if text.is_empty() {
            return Err(RateError::Range {
                text: String::new(),
                reason: "a key may not be empty (use 'tenant' for the whole tenant)".into(),
            });
        }
        check_name(text)?;
        let mut parts = Vec::new();
        for token in text.split('+') {
            match token {
                "tenant" => {}
                "user" => parts.push(KeyPart::User),
                "ip" => parts.push(KeyPart::Ip),
                "view" => parts.push(KeyPart::View),
                _ => return Ok(KeySpec::Custom(text.to_owned())),
            }
        }
        parts.sort_unstable();
        parts.dedup();
        Ok(KeySpec::Parts(parts))
    }

    pub fn needs(&self, part: KeyPart) -> bool {
        matches!(self, KeySpec::Parts(p) if p.contains(&part))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QuotaWindow {
    Hour,
    Day,
}

impl QuotaWindow {
    pub fn micros(self) -> u64 {
        match self {
            QuotaWindow::Hour => Period::Hour.micros(),
            QuotaWindow::Day => Period::Day.micros(),
        }
    }

    pub fn unit(self) -> char {
        match self {
            QuotaWindow::Hour => 'h',
            QuotaWindow::Day => 'd',
        }
    }
}

/// At most `max` per calendar hour or day (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    pub max: u64,
    pub window: QuotaWindow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limit {
    Rate(Rate),
    Quota(Quota),
}

/// One limit of a scope and what it counts by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LimitSpec {
    pub limit: Limit,
    pub key: KeySpec,
}

/// Scopes and their limits: the defaults (`DJUST_CONFIG`) or one tenant's
/// plan. A `None` entry says "no limit" (a plan lifting a default).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub rates: BTreeMap<String, Option<Vec<LimitSpec>>>,
    /// `(scope, window)` → the most per window.
    pub quotas: BTreeMap<(String, QuotaWindow), Option<u64>>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.rates.is_empty() && self.quotas.is_empty()
    }

    /// True when `scope` has a rate or a quota here.
    pub fn mentions(&self, scope: &str) -> bool {
        self.rates.contains_key(scope) || self.quotas.keys().any(|(s, _)| s == scope)
    }

    /// The scopes with a rate counted per user (`"tenant+user"`, `"user+view"`,
    /// ...): what needs `request.user` set before it is checked.
    pub fn scopes_counting_users(&self) -> Vec<&str> {
        self.rates
            .iter()
            .filter(|(_, specs)| {
                specs
                    .iter()
                    .flatten()
                    .any(|spec| spec.key.needs(KeyPart::User))
            })
            .map(|(scope, _)| scope.as_str())
            .collect()
    }

    /// What applies to `scope`: the plan's entries where it has them, these
    /// defaults otherwise (rates per scope, quotas per scope and window).
    pub fn effective(&self, plan: Option<&Limits>, scope: &str) -> Vec<LimitSpec> {
        let rates = plan
            .and_then(|p| p.rates.get(scope))
            .or_else(|| self.rates.get(scope));
        let mut out: Vec<LimitSpec> = rates.cloned().flatten().unwrap_or_default();
        for window in [QuotaWindow::Hour, QuotaWindow::Day] {
            let key = (scope.to_owned(), window);
            let max = plan
                .and_then(|p| p.quotas.get(&key))
                .or_else(|| self.quotas.get(&key));
            if let Some(Some(max)) = max {
                out.push(LimitSpec {
                    limit: Limit::Quota(Quota { max: *max, window }),
                    key: KeySpec::TENANT,
                });
            }
        }
        out
    }
}

/// A scope name: 1–64 of `A-Z a-z 0-9 _ . -` (it is part of keys).
pub fn check_scope(scope: &str) -> Result<(), String> {
    let ok = !scope.is_empty()
        && scope.len() <= MAX_SCOPE_LEN
        && scope
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "scope names are 1-{MAX_SCOPE_LEN} letters, digits, '_', '.' or '-', got {}",
            crate::tenant_id::preview(scope)
        ))
    }
}

/// `events_per_day` → `("events", Day)`; `requests_per_hour` →
/// `("http", Hour)` (HTTP requests are the `http` scope).
pub fn quota_name(name: &str) -> Result<(String, QuotaWindow), String> {
    let bad = || {
        format!(
            "quota names are '<scope>_per_hour' or '<scope>_per_day' (like 'events_per_day', \
             'requests_per_day'), got {}",
            crate::tenant_id::preview(name)
        )
    };
    let (scope, window) = name.rsplit_once("_per_").ok_or_else(bad)?;
    let window = match window {
        "hour" => QuotaWindow::Hour,
        "day" => QuotaWindow::Day,
        _ => return Err(bad()),
    };
    let scope = if scope == "requests" { "http" } else { scope };
    check_scope(scope).map_err(|_| bad())?;
    Ok((scope.to_owned(), window))
}

const _: () = assert!(MAX_SCOPE_LEN < MAX_NAME_LEN);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_into_parts_or_a_key_of_their_own() {
        assert_eq!(KeySpec::parse("tenant").unwrap(), KeySpec::TENANT);
        assert_eq!(
            KeySpec::parse("ip+tenant+user+ip").unwrap(),
            KeySpec::Parts(vec![KeyPart::User, KeyPart::Ip])
        );
        assert_eq!(
            KeySpec::parse("tenant+export").unwrap(),
            KeySpec::Custom("tenant+export".into())
        );
        assert!(KeySpec::parse("").is_err());
        assert!(KeySpec::parse(&"x".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn quota_names() {
        assert_eq!(
            quota_name("events_per_day").unwrap(),
            ("events".into(), QuotaWindow::Day)
        );
        assert_eq!(
            quota_name("requests_per_hour").unwrap(),
            ("http".into(), QuotaWindow::Hour)
        );
        for bad in ["events", "events_per_week", "_per_day", "a b_per_day"] {
            assert!(quota_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plans_override_defaults_per_scope_and_window() {
        let rate = |t| LimitSpec {
            limit: Limit::Rate(Rate::parse(t).unwrap()),
            key: KeySpec::TENANT,
        };
        let mut defaults = Limits::default();
        defaults
            .rates
            .insert("http".into(), Some(vec![rate("10/s")]));
        defaults
            .quotas
            .insert(("http".into(), QuotaWindow::Day), Some(1000));
        let mut plan = Limits::default();
        plan.rates.insert("http".into(), None);
        assert_eq!(defaults.effective(Some(&plan), "http").len(), 1);
        plan.quotas.insert(("http".into(), QuotaWindow::Day), None);
        assert!(defaults.effective(Some(&plan), "http").is_empty());
        assert_eq!(defaults.effective(None, "http").len(), 2);
        assert!(defaults.effective(None, "events").is_empty());
    }
}
