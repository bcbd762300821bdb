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
    /// One member tenant's users in a shared live room (sorted like
    /// `PresenceUsers`; name `<member tenant>:<room>`): its own count.
    PresenceMembers,
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
    pub const ALL: [Kind; 10] = [
        Kind::PresenceUsers,
        Kind::PresenceConns,
        Kind::PresenceRefs,
        Kind::PresenceData,
        Kind::PresenceMembers,
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
            Kind::PresenceMembers => "presence-members",
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

/// Opens the Redis Cluster hash tag of a tenant's keys: `{tenant:<id>}`.
pub const TENANT_HASH_TAG_OPEN: &str = "{tenant:";
/// Closes it. Tenant ids cannot hold `}`, so the tag ends at the first one.
pub const TENANT_HASH_TAG_CLOSE: &str = "}";

/// `{tenant:<id>}`: the hash tag every store key of one tenant carries
/// (presence, state, rate limits, and Django cache keys made by
/// `tenantry.cache.make_key`), so one tenant's keys share a cluster slot
/// and a tenant's keys can be found by the tag.
pub fn tenant_hash_tag(tenant: &str) -> String {
    let mut tag = String::with_capacity(tenant.len() + 9);
    tag.push_str(TENANT_HASH_TAG_OPEN);
    tag.push_str(tenant);
    tag.push_str(TENANT_HASH_TAG_CLOSE);
    tag
}

/// True when `key` carries a tenant hash tag as one of its `:`-separated
/// parts (`...:{tenant:<id>}...`): a key made for one tenant.
pub fn has_tenant_hash_tag(key: &str) -> bool {
    key.match_indices(TENANT_HASH_TAG_OPEN)
        .any(|(at, _)| key[..at].ends_with(':'))
}

/// `<prefix>:{tenant:<id>}:` — every key of one tenant starts with this.
pub fn tenant_tag_prefix(prefix: &KeyPrefix, tenant: &TenantId) -> String {
    let mut key = String::with_capacity(prefix.as_str().len() + tenant.as_str().len() + 12);
    key.push_str(prefix.as_str());
    key.push(':');
    key.push_str(TENANT_HASH_TAG_OPEN);
    key.push_str(tenant.as_str());
    key.push_str(TENANT_HASH_TAG_CLOSE);
    key.push(':');
    key
}

/// The Redis `SCAN ... MATCH` pattern of every key of `tenant` under
/// `prefix`: [`tenant_tag_prefix`] with the glob characters of the prefix
/// escaped, then `*`. Tenant ids hold no glob character. The pattern names
/// one hash tag, so every key it matches lives in one Redis Cluster slot.
pub fn tenant_key_pattern(prefix: &KeyPrefix, tenant: &TenantId) -> String {
    let mut pattern = glob_escaped(prefix);
    pattern.push(':');
    pattern.push_str(&tenant_hash_tag(tenant.as_str()));
    pattern.push_str(":*");
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

/// The scope djust's `TenantMixin` puts in front of a key it owns
/// (`get_presence_key()`, `get_state_key_prefix()`): `tenant:<id>:<rest>`.
pub const TENANT_SCOPE: &str = "tenant:";

/// `tenant:<id>:`: the scope in front of a key djust's `TenantMixin` owns.
pub fn tenant_scope(tenant: &str) -> String {
    let mut scope = String::with_capacity(TENANT_SCOPE.len() + tenant.len() + 1);
    scope.push_str(TENANT_SCOPE);
    scope.push_str(tenant);
    scope.push(':');
    scope
}

/// `(id, rest)` of a `tenant:<id>:<rest>` key (`id` holds no `:`; either may
/// be empty), or `None` for a key without the scope or with no `:` after
/// the id. Only the exact lowercase `tenant:` at offset 0 is a scope.
pub fn split_tenant_scope(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix(TENANT_SCOPE)?.split_once(':')
}

/// Where a caller's key without the [`TENANT_SCOPE`] goes when a tenant is
/// bound (with none bound it always goes to [`TenantId::shared`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unscoped {
    /// To the bound tenant (presence: the bound request's or event's room).
    Bound,
    /// To the unbound callers' own space, whatever is bound (djust's saved
    /// state of views without `TenantMixin`, which may be saved on a tenant
    /// host and restored over a socket with no tenant).
    Shared,
}

/// Why a caller-named key was refused by [`route_caller_key`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallerKeyError {
    /// A `tenant:`-scoped key and no tenant bound: a key from a caller never
    /// addresses a tenant by itself.
    Unbound { key: String },
    /// `tenant:` with no `:` after the id.
    Malformed { key: String },
    /// The id in the scope is not a valid tenant id.
    BadTenant {
        key: String,
        id: String,
        reason: crate::tenant_id::InvalidTenantId,
    },
    /// The scope names another tenant than the bound one.
    Mismatch {
        key: String,
        named: String,
        bound: String,
    },
}

impl CallerKeyError {
    /// `what` names the key in messages ("presence key", "saved view key").
    pub fn message(&self, what: &str) -> String {
        use crate::tenant_id::preview;
        match self {
            CallerKeyError::Unbound { key } => format!(
                "{what} {} names a tenant ('tenant:<id>:') but no tenant is bound: a key \
                 from a caller never addresses a tenant by itself. Bind the tenant \
                 (TenantMixin resolves it for its view; tenantry.tenant_context(...) in \
                 code), or use a key without the 'tenant:' scope (kept in the space of \
                 callers without a tenant, which no tenant can read)",
                preview(key)
            ),
            CallerKeyError::Malformed { key } => format!(
                "{what} {} starts with 'tenant:' but has no ':' after the tenant id \
                 (the form is 'tenant:<id>:<name>')",
                preview(key)
            ),
            CallerKeyError::BadTenant { key, id, reason } => format!(
                "{what} {} names invalid tenant id {}: {reason}",
                preview(key),
                preview(id)
            ),
            CallerKeyError::Mismatch { key, named, bound } => format!(
                "{what} {} belongs to tenant {named:?} but tenant {bound:?} is bound; \
                 refusing to touch another tenant's data",
                preview(key)
            ),
        }
    }
}

/// The one rule for a key a caller names (a presence room, a saved view's
/// key, anything that reaches a store through a router): `(owner, name)`.
///
/// * `tenant:<id>:<rest>` with a tenant bound: `(<id>, rest)` when `<id>` is
///   the bound tenant, otherwise [`CallerKeyError::Mismatch`].
/// * `tenant:<id>:<rest>` with no tenant bound: [`CallerKeyError::Unbound`].
///   Nothing a caller spells can reach a tenant it is not bound to.
/// * any other key: the bound tenant's (or, for [`Unscoped::Shared`], the
///   shared space's) with no tenant bound, the shared space
///   ([`TenantId::shared`]), which no tenant id can name, so it is isolated
///   both ways.
///
/// Only the exact lowercase `tenant:` at offset 0 is a scope: `TENANT:x:`,
/// ` tenant:x:`, `tenant%3Ax` are ordinary names in the caller's own space.
pub fn route_caller_key<'k>(
    key: &'k str,
    bound: Option<&TenantId>,
    unscoped: Unscoped,
) -> Result<(TenantId, &'k str), CallerKeyError> {
    if !key.starts_with(TENANT_SCOPE) {
        return Ok(match (bound, unscoped) {
            (Some(tenant), Unscoped::Bound) => (tenant.clone(), key),
            _ => (TenantId::shared(), key),
        });
    };
    let Some(bound) = bound else {
        return Err(CallerKeyError::Unbound {
            key: key.to_owned(),
        });
    };
    let Some((id, rest)) = split_tenant_scope(key) else {
        return Err(CallerKeyError::Malformed {
            key: key.to_owned(),
        });
    };
    if id != bound.as_str() {
        return Err(match TenantId::parse(id) {
            Err(reason) => CallerKeyError::BadTenant {
                key: key.to_owned(),
                id: id.to_owned(),
                reason,
            },
            Ok(_) => CallerKeyError::Mismatch {
                key: key.to_owned(),
                named: id.to_owned(),
                bound: bound.as_str().to_owned(),
            },
        });
    }
    Ok((bound.clone(), rest))
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
    let rest = key.get(brace..)?.strip_prefix(TENANT_HASH_TAG_OPEN)?;
    let close = rest.find(TENANT_HASH_TAG_CLOSE)?;
    let tenant = &rest[..close];
    let rest = rest[close..]
        .strip_prefix(TENANT_HASH_TAG_CLOSE)?
        .strip_prefix(':')?;
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

    #[test]
    fn a_scoped_key_needs_its_own_tenant_bound() {
        let acme = id("acme");
        let shared = TenantId::shared();
        for unscoped in [Unscoped::Bound, Unscoped::Shared] {
            // No tenant bound: a scope never reaches a tenant.
            for key in [
                "tenant:globex:board",
                "tenant:globex",
                "tenant::x",
                "tenant:a b:x",
            ] {
                assert_eq!(
                    route_caller_key(key, None, unscoped),
                    Err(CallerKeyError::Unbound {
                        key: key.to_owned()
                    }),
                    "{key}"
                );
            }
            // Bound: the scope must be the bound tenant.
            assert_eq!(
                route_caller_key("tenant:acme:board", Some(&acme), unscoped),
                Ok((acme.clone(), "board"))
            );
            assert!(matches!(
                route_caller_key("tenant:globex:board", Some(&acme), unscoped),
                Err(CallerKeyError::Mismatch { .. })
            ));
            assert!(matches!(
                route_caller_key("tenant:ACME:board", Some(&acme), unscoped),
                Err(CallerKeyError::Mismatch { .. })
            ));
            assert!(matches!(
                route_caller_key("tenant:a b:board", Some(&acme), unscoped),
                Err(CallerKeyError::BadTenant { .. })
            ));
            assert!(matches!(
                route_caller_key("tenant:acme", Some(&acme), unscoped),
                Err(CallerKeyError::Malformed { .. })
            ));
        }
        // Unscoped keys: the bound tenant's, or the shared space.
        assert_eq!(
            route_caller_key("board", Some(&acme), Unscoped::Bound),
            Ok((acme.clone(), "board"))
        );
        assert_eq!(
            route_caller_key("board", Some(&acme), Unscoped::Shared),
            Ok((shared.clone(), "board"))
        );
        assert_eq!(
            route_caller_key("board", None, Unscoped::Bound),
            Ok((shared.clone(), "board"))
        );
        // Look-alikes are names, never scopes.
        for key in [
            "TENANT:globex:board",
            " tenant:globex:board",
            "tenant%3Aglobex%3Aboard",
            "Tenant:globex:board",
            "tenant_globex:board",
            "\u{0}tenant:globex:board",
        ] {
            assert_eq!(
                route_caller_key(key, None, Unscoped::Bound),
                Ok((shared.clone(), key))
            );
            assert_eq!(
                route_caller_key(key, Some(&acme), Unscoped::Bound),
                Ok((acme.clone(), key))
            );
        }
        let msg = CallerKeyError::Unbound {
            key: "tenant:globex:board".into(),
        }
        .message("presence key");
        assert!(msg.contains("tenant:globex:board") && msg.contains("no tenant is bound"));
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

        /// Whatever a caller spells, with no tenant bound its key lands in
        /// the shared space or is refused; with a tenant bound, in that
        /// tenant or the shared space.
        #[test]
        fn a_caller_key_never_reaches_a_tenant_that_is_not_bound(
            key in "(tenant:|TENANT:| tenant:)?[a-c:]{0,3}(:[a-z]{0,3})?",
            bound in prop::option::of("[a-c]{1,2}"),
            shared in any::<bool>(),
        ) {
            let bound = bound.map(|b| id(&b));
            let unscoped = if shared { Unscoped::Shared } else { Unscoped::Bound };
            if let Ok((owner, _)) = route_caller_key(&key, bound.as_ref(), unscoped) {
                prop_assert!(owner == TenantId::shared() || Some(&owner) == bound.as_ref());
            }
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

    #[test]
    fn tenant_scope_is_built_and_split_by_one_rule() {
        assert_eq!(tenant_scope("acme"), "tenant:acme:");
        let key = format!("{}board:1", tenant_scope("acme"));
        assert_eq!(split_tenant_scope(&key), Some(("acme", "board:1")));
        assert_eq!(split_tenant_scope("tenant:acme"), None);
        assert_eq!(split_tenant_scope("TENANT:acme:x"), None);
        assert_eq!(split_tenant_scope(" tenant:acme:x"), None);
        assert_eq!(split_tenant_scope("tenant::x"), Some(("", "x")));
        // The router uses the same split.
        let bound = id("acme");
        assert_eq!(
            route_caller_key(&key, Some(&bound), Unscoped::Bound).unwrap(),
            (bound.clone(), "board:1")
        );
    }

    #[test]
    fn tenant_hash_tag_is_built_and_found_by_one_rule() {
        assert_eq!(tenant_hash_tag("acme"), "{tenant:acme}");
        let prefix = KeyPrefix::new("djust").unwrap();
        let head = tenant_tag_prefix(&prefix, &id("acme"));
        assert_eq!(head, format!("djust:{}:", tenant_hash_tag("acme")));
        assert!(has_tenant_hash_tag(&head));
        assert!(has_tenant_hash_tag("cache:1:{tenant:acme}:42:k"));
        assert!(!has_tenant_hash_tag("{tenant:acme}:k"));
        assert!(!has_tenant_hash_tag("cache:1:shared:k"));
        let key = format_key(&prefix, &id("acme"), Kind::State, "x");
        let parts = parse_key(&key).unwrap();
        assert_eq!(parts.tenant, "acme");
    }
}
