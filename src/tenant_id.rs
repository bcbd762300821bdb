//! Tenant identifiers: the one validation rule every entry point shares.
//!
//! An id is 1–128 characters from `A-Z a-z 0-9 . _ -` and does not start with
//! `.` or `-`. That alphabet is what makes the key layout in [`crate::keys`]
//! injective and closes key injection (`:`, `{`, `}`, `*`, whitespace, control
//! characters cannot appear).

use std::fmt;

/// Longest accepted id, in characters (all accepted characters are ASCII).
pub const MAX_LEN: usize = 128;

/// A validated tenant id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Box<str>);

/// Why a candidate id was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvalidTenantId {
    Empty,
    TooLong {
        len: usize,
    },
    BadChar {
        ch: char,
        index: usize,
    },
    BadStart {
        ch: char,
    },
    /// A value of a type that cannot be an id (only str and int can).
    WrongType {
        type_name: String,
    },
}

impl TenantId {
    /// Validates `candidate` exactly as given: no trimming, no case folding.
    pub fn parse(candidate: &str) -> Result<Self, InvalidTenantId> {
        check(candidate)?;
        Ok(TenantId(candidate.into()))
    }

    /// Ids given as integers are their decimal string (`42` → `"42"`, `-1` is
    /// refused because ids may not start with `-`).
    pub fn from_int(value: i128) -> Result<Self, InvalidTenantId> {
        Self::parse(&value.to_string())
    }

    /// For ids read from a host name: lowercased first (host names are
    /// case-insensitive), then validated.
    pub fn parse_host_label(label: &str) -> Result<Self, InvalidTenantId> {
        if label.bytes().any(|b| b.is_ascii_uppercase()) {
            Self::parse(&label.to_ascii_lowercase())
        } else {
            Self::parse(label)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The owner of data that belongs to no tenant (djust's saved state of
    /// views without `TenantMixin`). Its name starts with `-`, which
    /// [`TenantId::parse`] refuses, so no tenant's id can ever name it.
    pub fn shared() -> Self {
        TenantId(SHARED.into())
    }

    /// Where usage figures go that no tenant's own slot could take (see
    /// `crate::usage`). Like [`TenantId::shared`], no tenant's id can name it.
    pub fn other() -> Self {
        TenantId(OTHER.into())
    }

    /// The presence space of the shared live rooms `owner` hosts on the
    /// rows it granted to other tenants (docs/collaboration.md#live-rooms):
    /// `-rooms.<owner>`. It starts with `-`, so no tenant's id (and no
    /// caller-named key, which always lands in a valid id's space or in
    /// [`TenantId::shared`]) can name it, and the owner's id follows a
    /// fixed prefix, so two owners never share it.
    pub fn shared_rooms_of(owner: &TenantId) -> Self {
        let mut id = String::with_capacity(SHARED_ROOMS.len() + owner.as_str().len());
        id.push_str(SHARED_ROOMS);
        id.push_str(owner.as_str());
        TenantId(id.into())
    }

    /// The owner of a [`TenantId::shared_rooms_of`] space, else `None`.
    pub fn shared_rooms_owner(&self) -> Option<TenantId> {
        let owner = self.0.strip_prefix(SHARED_ROOMS)?;
        TenantId::parse(owner).ok()
    }
}

/// See [`TenantId::shared`].
pub const SHARED: &str = "-shared";
/// See [`TenantId::other`].
pub const OTHER: &str = "-other";
/// See [`TenantId::shared_rooms_of`].
pub const SHARED_ROOMS: &str = "-rooms.";

/// True when `candidate` would be accepted by [`TenantId::parse`].
pub fn is_valid(candidate: &str) -> bool {
    check(candidate).is_ok()
}

fn check(candidate: &str) -> Result<(), InvalidTenantId> {
    let bytes = candidate.as_bytes();
    let first = match bytes.first() {
        None => return Err(InvalidTenantId::Empty),
        Some(&b) => b,
    };
    // Length is checked on characters, but any non-ASCII character is refused
    // below anyway, so counting chars only matters for the message.
    if bytes.len() > MAX_LEN {
        let len = candidate.chars().count();
        if len > MAX_LEN {
            return Err(InvalidTenantId::TooLong { len });
        }
    }
    for (index, ch) in candidate.chars().enumerate() {
        if !(ch.is_ascii_alphanumeric() || ch == '.' || ch == '_' || ch == '-') {
            return Err(InvalidTenantId::BadChar { ch, index });
        }
    }
    if first == b'.' || first == b'-' {
        return Err(InvalidTenantId::BadStart { ch: first as char });
    }
    Ok(())
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TenantId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InvalidTenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidTenantId::Empty => f.write_str("it is empty"),
            InvalidTenantId::TooLong { len } => {
                write!(f, "it is {len} characters long (at most {MAX_LEN} allowed)")
            }
            InvalidTenantId::BadChar { ch, index } => write!(
                f,
                "character {} at position {index} is not allowed (use A-Z a-z 0-9 . _ -)",
                escape_char(*ch)
            ),
            InvalidTenantId::BadStart { ch } => write!(f, "it may not start with '{ch}'"),
            InvalidTenantId::WrongType { type_name } => {
                write!(f, "a tenant id must be a str or an int, not {type_name}")
            }
        }
    }
}

impl std::error::Error for InvalidTenantId {}

fn escape_char(ch: char) -> String {
    if ch.is_control() || ch.is_whitespace() {
        format!("{:?}", ch)
    } else {
        format!("'{ch}'")
    }
}

/// A short, printable rendering of untrusted input for error messages, so a
/// 1 MiB header never ends up in a log line verbatim.
pub fn preview(value: &str) -> String {
    const LIMIT: usize = 40;
    let mut out: String = value.chars().take(LIMIT).collect();
    if value.chars().nth(LIMIT).is_some() {
        out.push('…');
    }
    format!("{:?}", out)
}

/// A call that names a tenant to change or read its data from the outside
/// (clearing its counts, figures, presence or saved state, recording usage
/// for it) while another tenant is bound: the one rule for every such call
/// (`tenantry.cache.clear_tenant`, usage, rate limits, state, presence, the
/// lifecycle purges). Allowed with no tenant bound (a management command, a
/// job) or for the bound tenant itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtherTenantBound {
    /// What was called, for the message (`"usage.record"`).
    pub what: String,
    pub named: String,
    pub bound: String,
}

impl fmt::Display for OtherTenantBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}({}) while tenant {} is bound: a tenant may name only itself here (clear, \
             delete or change only its own; run it with no tenant bound: a management \
             command or a job)",
            self.what,
            preview(&self.named),
            preview(&self.bound)
        )
    }
}

impl std::error::Error for OtherTenantBound {}

/// Checks [`OtherTenantBound`]'s rule for a call of `what` naming `named`.
pub fn check_named(
    bound: Option<&TenantId>,
    named: &TenantId,
    what: &str,
) -> Result<(), OtherTenantBound> {
    match bound {
        Some(bound) if bound != named => Err(OtherTenantBound {
            what: what.to_owned(),
            named: named.as_str().to_owned(),
            bound: bound.as_str().to_owned(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn no_tenant_id_names_a_shared_room_space() {
        let acme = TenantId::parse("acme").unwrap();
        let space = TenantId::shared_rooms_of(&acme);
        assert_eq!(space.as_str(), "-rooms.acme");
        assert!(!is_valid(space.as_str()));
        assert_eq!(space.shared_rooms_owner(), Some(acme.clone()));
        assert_eq!(acme.shared_rooms_owner(), None);
        assert_eq!(TenantId::shared().shared_rooms_owner(), None);
        for other in ["acm", "acme.", "acme-x", "rooms.acme"] {
            let other = TenantId::parse(other).unwrap();
            assert_ne!(TenantId::shared_rooms_of(&other), space);
            assert_ne!(other, space);
        }
        assert_ne!(space, TenantId::shared());
        assert_ne!(space, TenantId::other());
    }

    #[test]
    fn no_tenant_id_names_the_shared_space() {
        assert!(TenantId::parse(SHARED).is_err());
        assert!(!is_valid(TenantId::shared().as_str()));
        assert_ne!(TenantId::shared(), TenantId::parse("shared").unwrap());
    }

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in [
            "acme",
            "ACME",
            "a",
            "a.b",
            "a_b",
            "a-b",
            "_x",
            "42",
            "a".repeat(128).as_str(),
        ] {
            assert!(TenantId::parse(ok).is_ok(), "{ok:?} should be valid");
        }
    }

    #[test]
    fn refuses_injection_characters_and_bad_shapes() {
        let bad = [
            "", "a:b", "a{b", "a}b", "a*", " acme", "acme ", "  acme ", "a\nb", "acme\n", "a\u{0}",
            ".acme", "-acme", "a/b", "a%0A", "é", "a b", "\t",
        ];
        for b in bad {
            assert!(TenantId::parse(b).is_err(), "{b:?} should be refused");
        }
        assert_eq!(
            TenantId::parse(&"a".repeat(129)),
            Err(InvalidTenantId::TooLong { len: 129 })
        );
        assert_eq!(
            TenantId::parse(&"x".repeat(10_000)),
            Err(InvalidTenantId::TooLong { len: 10_000 })
        );
    }

    #[test]
    fn ints_become_decimal_strings() {
        assert_eq!(TenantId::from_int(42).unwrap().as_str(), "42");
        assert_eq!(TenantId::from_int(0).unwrap().as_str(), "0");
        assert!(TenantId::from_int(-1).is_err());
    }

    #[test]
    fn host_labels_are_lowercased() {
        assert_eq!(TenantId::parse_host_label("ACME").unwrap().as_str(), "acme");
    }

    #[test]
    fn messages_name_the_problem() {
        let err = TenantId::parse("a:b").unwrap_err().to_string();
        assert!(err.contains("':'") && err.contains("position 1"), "{err}");
        let err = TenantId::parse("a\nb").unwrap_err().to_string();
        assert!(err.contains("'\\n'"), "{err}");
        assert!(preview(&"y".repeat(1000)).len() < 60);
    }

    proptest! {
        #[test]
        fn valid_ids_never_contain_key_metacharacters(s in "\\PC{0,140}") {
            if let Ok(id) = TenantId::parse(&s) {
                let forbidden = [':', '{', '}', '*', ' ', '\n'];
                prop_assert!(!id.as_str().contains(forbidden), "{:?}", id);
                prop_assert!(id.as_str().len() <= MAX_LEN);
            }
        }

        #[test]
        fn every_generated_valid_id_is_accepted(s in "[A-Za-z0-9_][A-Za-z0-9._-]{0,127}") {
            prop_assert!(TenantId::parse(&s).is_ok());
        }
    }

    #[test]
    fn naming_another_tenant_is_refused_only_while_one_is_bound() {
        let (acme, globex) = (
            TenantId::parse("acme").unwrap(),
            TenantId::parse("globex").unwrap(),
        );
        assert!(check_named(None, &globex, "x").is_ok());
        assert!(check_named(Some(&globex), &globex, "x").is_ok());
        let err = check_named(Some(&acme), &globex, "usage.record").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("usage.record(\"globex\")") && msg.contains("\"acme\""),
            "{msg}"
        );
    }
}
