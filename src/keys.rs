//! The one key formatter for every backend (memory and Redis):
//! `<prefix>:{tenant:<id>}:<kind>:<name>`.
//!
//! The braces are a Redis Cluster hash tag, so all of one tenant's keys share a
//! slot. The layout is injective: the prefix holds no `{`, the id holds no `}`
//! and the kind holds no `:`, so [`parse_key`] recovers every part and no two
//! (prefix, tenant, kind, name) tuples ever produce the same key.

use std::fmt;

use crate::tenant_id::TenantId;

/// Longest key name accepted, in bytes. Names come from application code
/// (presence room names, state keys); the bound keeps one bad caller from
/// storing megabyte keys.
pub const MAX_NAME_LEN: usize = 1024;
/// Longest prefix accepted, in bytes.
pub const MAX_PREFIX_LEN: usize = 64;

/// What a key stores. Each backend uses its own kind, so presence and state
/// never collide even for the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A presence room's users (sorted by their newest heartbeat).
    PresenceUsers,
    /// A presence room's connections (sorted by last heartbeat).
    PresenceConns,
    /// A presence room's connections again, in lexical order (one user's
    /// connections are one range).
    PresenceRefs,
    /// A presence room's user and connection records.
    PresenceData,
    /// Tenant-scoped key-value state.
    State,
    /// The per-tenant index of state keys (lets `delete_tenant` avoid `KEYS`).
    StateIndex,
    /// djust's saved view state (serialized `RustLiveView` bytes), kept apart
    /// from application state so the two never collide.
    ViewState,
    /// A rate limit's or quota's count (see `crate::ratelimit`).
    RateLimit,
    /// Usage counters, per hour and per day (see `crate::usage`).
    Usage,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::PresenceUsers,
        Kind::PresenceConns,
        Kind::PresenceRefs,
        Kind::PresenceData,
        Kind::State,
        Kind::StateIndex,
        Kind::ViewState,
        Kind::RateLimit,
        Kind::Usage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::PresenceUsers => "presence-users",
            Kind::PresenceConns => "presence-conns",
            Kind::PresenceRefs => "presence-refs",
            Kind::PresenceData => "presence-data",
            Kind::State => "state",
            Kind::StateIndex => "state-index",
            Kind::ViewState => "view-state",
            Kind::RateLimit => "ratelimit",
            Kind::Usage => "usage",
        }
    }

    fn from_str(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A validated key prefix (`TENANT_KEY_PREFIX`, default `djust`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyPrefix(Box<str>);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    BadPrefix {
        prefix: String,
        reason: &'static str,
    },
    NameTooLong {
        len: usize,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::BadPrefix { prefix, reason } => {
                write!(
                    f,
                    "invalid key prefix {}: {reason}",
                    crate::tenant_id::preview(prefix)
                )
            }
            KeyError::NameTooLong { len } => {
                write!(
                    f,
                    "key name is {len} bytes long (at most {MAX_NAME_LEN} allowed)"
                )
            }
        }
    }
}

impl std::error::Error for KeyError {}

impl KeyPrefix {
    pub fn new(prefix: &str) -> Result<Self, KeyError> {
        let bad = |reason| {
            Err(KeyError::BadPrefix {
                prefix: prefix.to_owned(),
                reason,
            })
        };
        if prefix.is_empty() {
            return bad("it is empty");
        }
        if prefix.len() > MAX_PREFIX_LEN {
            return bad("it is longer than 64 bytes");
        }
        // `{`/`}` would move the Redis Cluster hash tag and break injectivity.
        if prefix.contains(['{', '}']) {
            return bad("it may not contain '{' or '}'");
        }
        if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad("it may not contain whitespace or control characters");
        }
        Ok(KeyPrefix(prefix.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for KeyPrefix {
    fn default() -> Self {
        KeyPrefix("djust".into())
    }
}

/// Checks an application-supplied key name.
pub fn check_name(name: &str) -> Result<(), KeyError> {
    if name.len() > MAX_NAME_LEN {
        return Err(KeyError::NameTooLong { len: name.len() });
    }
    Ok(())
}

/// `<prefix>:{tenant:<id>}:<kind>:<name>`. Callers check `name` with
/// [`check_name`] where it comes from outside.
pub fn format_key(prefix: &KeyPrefix, tenant: &TenantId, kind: Kind, name: &str) -> String {
    let mut key = tenant_tag_prefix(prefix, tenant);
    key.reserve(kind.as_str().len() + 2 + name.len());
    key.push_str(kind.as_str());
    key.push(':');
    key.push_str(name);
    key
}

/// `<prefix>:{tenant:<id>}:` — every key of one tenant starts with this.
pub fn tenant_tag_prefix(prefix: &KeyPrefix, tenant: &TenantId) -> String {
    let mut key = String::with_capacity(prefix.as_str().len() + tenant.as_str().len() + 12);
    key.push_str(prefix.as_str());
    key.push_str(":{tenant:");
    key.push_str(tenant.as_str());
    key.push_str("}:");
    key
}

/// The Redis `SCAN ... MATCH` pattern of every key of `tenant` under
/// `prefix`: [`tenant_tag_prefix`] with the glob characters of the prefix
/// escaped, then `*`. Tenant ids hold no glob character. The pattern names
/// one hash tag, so every key it matches lives in one Redis Cluster slot.
pub fn tenant_key_pattern(prefix: &KeyPrefix, tenant: &TenantId) -> String {
    let mut pattern = glob_escaped(prefix);
    pattern.push_str(":{tenant:");
    pattern.push_str(tenant.as_str());
    pattern.push_str("}:*");
    pattern
}

/// `prefix` with Redis glob characters escaped, to start a `MATCH` pattern.
pub fn glob_escaped(prefix: &KeyPrefix) -> String {
    let mut pattern = String::with_capacity(prefix.as_str().len() * 2 + 32);
    for c in prefix.as_str().chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern
}

/// The parts of a key, as recovered by [`parse_key`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyParts<'a> {
    pub prefix: &'a str,
    pub tenant: &'a str,
    pub kind: Kind,
    pub name: &'a str,
}

/// Inverse of [`format_key`]; `None` for anything it would never produce.
pub fn parse_key(key: &str) -> Option<KeyParts<'_>> {
    let brace = key.find('{')?;
    let prefix = key.get(..brace)?.strip_suffix(':')?;
    let rest = key.get(brace..)?.strip_prefix("{tenant:")?;
    let close = rest.find('}')?;
    let tenant = &rest[..close];
    let rest = rest[close..].strip_prefix("}:")?;
    let colon = rest.find(':')?;
    let kind = Kind::from_str(&rest[..colon])?;
    let name = &rest[colon + 1..];
    Some(KeyParts {
        prefix,
        tenant,
        kind,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    #[test]
    fn layout_matches_the_spec() {
        let key = format_key(
            &KeyPrefix::default(),
            &id("acme"),
            Kind::PresenceUsers,
            "room:1",
        );
        assert_eq!(key, "djust:{tenant:acme}:presence-users:room:1");
    }

    #[test]
    fn prefixes_that_would_move_the_hash_tag_are_refused() {
        for bad in ["", "a{b", "a}b", "a b", "a\nb", &"p".repeat(65)] {
            assert!(KeyPrefix::new(bad).is_err(), "{bad:?}");
        }
        assert!(KeyPrefix::new("myapp:prod").is_ok());
    }

    #[test]
    fn the_hash_tag_is_the_tenant() {
        // Redis hashes the text between the first `{` and the next `}`.
        let key = format_key(
            &KeyPrefix::new("p:q").unwrap(),
            &id("t-1"),
            Kind::State,
            "{x}",
        );
        let open = key.find('{').unwrap();
        let close = open + key[open..].find('}').unwrap();
        assert_eq!(&key[open + 1..close], "tenant:t-1");
    }

    #[test]
    fn long_names_are_refused() {
        assert!(check_name(&"n".repeat(MAX_NAME_LEN)).is_ok());
        assert_eq!(
            check_name(&"n".repeat(MAX_NAME_LEN + 1)),
            Err(KeyError::NameTooLong {
                len: MAX_NAME_LEN + 1
            })
        );
    }

    /// Redis's glob for the patterns [`tenant_key_pattern`] makes: literal
    /// characters, `\\x` escapes and a trailing `*`.
    fn glob_matches(pattern: &str, key: &str) -> bool {
        let mut literal = String::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => literal.push(chars.next().unwrap()),
                '*' => {
                    assert!(chars.next().is_none(), "only a trailing *");
                    return key.starts_with(&literal);
                }
                '?' | '[' | ']' => panic!("unescaped glob character in {pattern:?}"),
                c => literal.push(c),
            }
        }
        key == literal
    }

    #[test]
    fn the_tenant_pattern_escapes_the_prefix() {
        let p = KeyPrefix::new("a*b?[c]\\d^").unwrap();
        assert_eq!(
            tenant_key_pattern(&p, &id("acme")),
            "a\\*b\\?\\[c\\]\\\\d\\^:{tenant:acme}:*"
        );
    }

    fn kind_strategy() -> impl Strategy<Value = Kind> {
        prop::sample::select(Kind::ALL.to_vec())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]

        /// Round trip: the key determines its (prefix, tenant, kind, name).
        #[test]
        fn keys_parse_back_to_their_parts(
            prefix in "[a-z:._-]{1,10}",
            tenant in "[A-Za-z0-9_][A-Za-z0-9._-]{0,20}",
            kind in kind_strategy(),
            name in "\\PC{0,30}",
        ) {
            let p = KeyPrefix::new(&prefix).unwrap();
            let t = id(&tenant);
            let key = format_key(&p, &t, kind, &name);
            let parts = parse_key(&key).expect("formatted keys parse");
            prop_assert_eq!(parts, KeyParts { prefix: &prefix, tenant: &tenant, kind, name: &name });
        }

        /// Distinct triples never share a key, even when the name is crafted to
        /// look like another tenant's key.
        #[test]
        fn distinct_triples_never_collide(
            t1 in "[a-c][a-c.:_-]{0,4}", t2 in "[a-c][a-c._-]{0,4}",
            k1 in kind_strategy(), k2 in kind_strategy(),
            n1 in "[a-c:{}]{0,8}", n2 in "[a-c:{}]{0,8}",
        ) {
            let p = KeyPrefix::default();
            if let (Ok(t1), Ok(t2)) = (TenantId::parse(&t1), TenantId::parse(&t2)) {
                let a = format_key(&p, &t1, k1, &n1);
                let b = format_key(&p, &t2, k2, &n2);
                if (&t1, k1, &n1) != (&t2, k2, &n2) {
                    prop_assert_ne!(a, b);
                } else {
                    prop_assert_eq!(a, b);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// The pattern matches every key of the tenant, and no key of any
        /// other tenant or prefix (ids that extend it included).
        #[test]
        fn the_tenant_pattern_matches_that_tenant_only(
            prefix in "[a-z:*?\\[\\]\\\\^._-]{1,10}",
            other_prefix in "[a-z:*?._-]{1,10}",
            tenant in "[A-Za-z0-9_][A-Za-z0-9._-]{0,12}",
            other in "[A-Za-z0-9_][A-Za-z0-9._-]{0,12}",
            kind in kind_strategy(),
            name in "\\PC{0,20}",
        ) {
            let p = KeyPrefix::new(&prefix).unwrap();
            let pattern = tenant_key_pattern(&p, &id(&tenant));
            prop_assert!(glob_matches(&pattern, &format_key(&p, &id(&tenant), kind, &name)));
            if other != tenant {
                let key = format_key(&p, &id(&other), kind, &name);
                prop_assert!(!glob_matches(&pattern, &key), "{} matched {}", pattern, key);
            }
            if other_prefix != prefix {
                let q = KeyPrefix::new(&other_prefix).unwrap();
                let key = format_key(&q, &id(&tenant), kind, &name);
                prop_assert!(!glob_matches(&pattern, &key), "{} matched {}", pattern, key);
            }
        }
    }
}
