//! Tenant-scoped key-value state: `get`, `set` (with a TTL), `delete`,
//! `exists`, `ttl`, `incr` and `delete_tenant`, with two stores sharing these
//! semantics (the Python bindings put them behind one interface):
//! * [`memory::MemoryState`] — in process, sharded, bounded, expiry without
//!   scans;
//! * [`redis::RedisState`] — one round trip per operation on keys from
//!   [`crate::keys::format_key`], single server or Redis Cluster.
//!
//! A key is `(tenant, space, name)`: the tenant is a validated [`TenantId`],
//! the space tells application state ([`Space::Data`], key kind `state`)
//! from djust's saved views ([`Space::View`], key kind `view-state`), and the
//! name is any non-empty string up to [`crate::keys::MAX_NAME_LEN`] bytes.
//! Two tenants never share a key: in Redis the tenant is the key's hash tag,
//! in memory it selects the table.
//!
//! Values are stored as bytes with a one-byte tag, identically in both
//! stores (see [`Value`]): `b` + raw bytes, `j` + JSON text, or a bare
//! decimal integer (no tag, so Redis' own `INCRBY` works on it).
//!
//! [`TenantId`]: crate::tenant_id::TenantId

pub mod memory;
pub mod redis;
mod table;

use std::fmt;
use std::time::Duration;

use crate::keys::{self, KeyError, Kind};
use crate::redis_store::StoreError;

/// Longest TTL accepted, in seconds (ten years).
pub const MAX_TTL_SECS: f64 = 315_360_000.0;
/// Largest value accepted, in bytes (Redis' own limit for a string).
pub const MAX_VALUE_LEN: usize = 512 * 1024 * 1024;

/// Tag of a value stored as raw bytes.
pub const TAG_BYTES: u8 = b'b';
/// Tag of a value stored as JSON text.
pub const TAG_JSON: u8 = b'j';

/// Which namespace of a tenant a key lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    /// Application state (`get_tenant_state_backend(...).set(...)`).
    Data,
    /// djust's saved view state (the djust adapter).
    View,
}

impl Space {
    pub fn kind(self) -> Kind {
        match self {
            Space::Data => Kind::State,
            Space::View => Kind::ViewState,
        }
    }

    const fn byte(self) -> u8 {
        match self {
            Space::Data => 0,
            Space::View => 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum StateError {
    /// The key name was refused (too long).
    Name(KeyError),
    EmptyName,
    BadTtl {
        value: f64,
    },
    ValueTooLarge {
        len: usize,
    },
    /// `incr` of a value that is not an integer.
    NotAnInteger {
        name: String,
    },
    /// `incr` past the range of a signed 64-bit integer.
    Overflow {
        name: String,
    },
    /// The memory store reached its byte limit.
    Full {
        limit: usize,
    },
    /// The tenant's keys in the memory store reached its share
    /// (`STATE_TENANT_MAX_BYTES`), and its saved views could not free enough.
    TenantFull {
        tenant: String,
        limit: usize,
    },
    Store(StoreError),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Name(e) => write!(f, "invalid state key: {e}"),
            StateError::EmptyName => f.write_str("invalid state key: it is empty"),
            StateError::BadTtl { value } => write!(
                f,
                "ttl must be a number of seconds greater than 0 and at most {MAX_TTL_SECS} \
                 (or None for no expiry), got {value}"
            ),
            StateError::ValueTooLarge { len } => write!(
                f,
                "state value is {len} bytes long (at most {MAX_VALUE_LEN} allowed)"
            ),
            StateError::NotAnInteger { name } => write!(
                f,
                "state key {} holds a value that is not an integer; incr() needs an int",
                crate::tenant_id::preview(name)
            ),
            StateError::Overflow { name } => write!(
                f,
                "incr() of state key {} would overflow a 64-bit integer",
                crate::tenant_id::preview(name)
            ),
            StateError::Full { limit } => write!(
                f,
                "the in-memory state store is full ({limit} bytes, \
                 DJUST_CONFIG[\"STATE_MEMORY_MAX_BYTES\"]); delete keys, use TTLs, \
                 or raise the limit"
            ),
            StateError::TenantFull { tenant, limit } => write!(
                f,
                "tenant {} has used its share of the in-memory state store ({limit} bytes, \
                 DJUST_CONFIG[\"STATE_TENANT_MAX_BYTES\"]) and its saved views cannot free \
                 enough for this write; delete some of its keys, use TTLs, or raise the share",
                crate::tenant_id::preview(tenant)
            ),
            StateError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StateError {}

impl From<StoreError> for StateError {
    fn from(e: StoreError) -> Self {
        StateError::Store(e)
    }
}

/// Checks an application-supplied key name.
pub fn check_name(name: &str) -> Result<(), StateError> {
    if name.is_empty() {
        return Err(StateError::EmptyName);
    }
    keys::check_name(name).map_err(StateError::Name)
}

/// A TTL in seconds (ints and floats from Python).
pub fn ttl_from_secs(value: f64) -> Result<Duration, StateError> {
    if !(value > 0.0 && value <= MAX_TTL_SECS) {
        return Err(StateError::BadTtl { value });
    }
    Duration::try_from_secs_f64(value).map_err(|_| StateError::BadTtl { value })
}

/// Milliseconds of a TTL, at least 1 (Redis' `PX` and the memory store both
/// count in milliseconds; a sub-millisecond TTL still expires).
pub fn ttl_millis(ttl: Duration) -> u64 {
    let ms = ttl.as_micros().div_ceil(1000);
    u64::try_from(ms).unwrap_or(u64::MAX).max(1)
}

/// What `ttl` reports for a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttl {
    Missing,
    /// The key exists and never expires.
    Persistent,
    Expires(Duration),
}

/// A value to store, before its tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Bytes(&'a [u8]),
    /// JSON text (the bindings produce it with `json`).
    Json(&'a [u8]),
    Int(i64),
}

impl Value<'_> {
    /// The stored form: `b<bytes>`, `j<json>` or the integer's decimal text.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.write_to(&mut out);
        out
    }

    pub fn encoded_len(&self) -> usize {
        match self {
            Value::Bytes(b) | Value::Json(b) => b.len() + 1,
            Value::Int(i) => int_len(*i),
        }
    }

    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Value::Bytes(b) => {
                out.push(TAG_BYTES);
                out.extend_from_slice(b);
            }
            Value::Json(b) => {
                out.push(TAG_JSON);
                out.extend_from_slice(b);
            }
            Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        }
    }

    /// The stored form must not exceed [`MAX_VALUE_LEN`].
    pub fn check(&self) -> Result<(), StateError> {
        let len = self.encoded_len();
        if len > MAX_VALUE_LEN {
            return Err(StateError::ValueTooLarge { len });
        }
        Ok(())
    }
}

fn int_len(i: i64) -> usize {
    let mut n = i.unsigned_abs();
    let mut len = usize::from(i < 0) + 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

/// A stored value, read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    Bytes(&'a [u8]),
    Json(&'a [u8]),
    Int(i64),
}

/// Reads a stored value; `None` when it is not in tenantry's format
/// (written by something else).
pub fn decode(stored: &[u8]) -> Option<Decoded<'_>> {
    match *stored.first()? {
        TAG_BYTES => Some(Decoded::Bytes(&stored[1..])),
        TAG_JSON => Some(Decoded::Json(&stored[1..])),
        _ => parse_int(stored).map(Decoded::Int),
    }
}

/// A canonical decimal integer as Redis writes it (`0`, `-12`, no `+`, no
/// leading zeros, no spaces), in range for `i64`.
pub fn parse_int(stored: &[u8]) -> Option<i64> {
    let digits = stored.strip_prefix(b"-").unwrap_or(stored);
    let canonical = match digits {
        [] => false,
        [b'0'] => stored.len() == 1,
        [first, ..] => *first != b'0' && digits.iter().all(u8::is_ascii_digit),
    };
    if !canonical {
        return None;
    }
    std::str::from_utf8(stored).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_their_tags() {
        for (value, stored) in [
            (Value::Bytes(b"\x00\xffraw"), &b"b\x00\xffraw"[..]),
            (Value::Bytes(b""), b"b"),
            (Value::Json(br#"{"a":[1,2]}"#), br#"j{"a":[1,2]}"#),
            (Value::Int(0), b"0"),
            (Value::Int(-42), b"-42"),
            (Value::Int(i64::MIN), b"-9223372036854775808"),
            (Value::Int(i64::MAX), b"9223372036854775807"),
        ] {
            let encoded = value.encode();
            assert_eq!(encoded, stored);
            assert_eq!(value.encoded_len(), stored.len());
            let back = match decode(&encoded).unwrap() {
                Decoded::Bytes(b) => Value::Bytes(b),
                Decoded::Json(b) => Value::Json(b),
                Decoded::Int(i) => Value::Int(i),
            };
            assert_eq!(back, value);
        }
    }

    #[test]
    fn foreign_values_are_not_decoded() {
        for bad in [
            &b""[..],
            b"x",
            b"01",
            b"-0",
            b"+1",
            b" 1",
            b"1.5",
            b"-",
            b"99999999999999999999",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names_and_ttls_are_checked() {
        assert_eq!(check_name(""), Err(StateError::EmptyName));
        assert!(check_name(&"k".repeat(1024)).is_ok());
        assert!(matches!(
            check_name(&"k".repeat(1025)),
            Err(StateError::Name(_))
        ));
        assert_eq!(ttl_from_secs(0.05).unwrap(), Duration::from_millis(50));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, MAX_TTL_SECS * 2.0] {
            assert!(ttl_from_secs(bad).is_err(), "{bad}");
        }
        assert_eq!(ttl_millis(Duration::from_micros(1)), 1);
        assert_eq!(ttl_millis(Duration::from_micros(1500)), 2);
        assert_eq!(ttl_millis(Duration::from_secs(2)), 2000);
    }

    #[test]
    fn messages_name_the_problem() {
        let msg = StateError::NotAnInteger {
            name: "hits".into(),
        }
        .to_string();
        assert!(msg.contains("\"hits\"") && msg.contains("integer"), "{msg}");
        let msg = StateError::Full { limit: 10 }.to_string();
        assert!(msg.contains("STATE_MEMORY_MAX_BYTES"), "{msg}");
        let msg = StateError::TenantFull {
            tenant: "acme".into(),
            limit: 10,
        }
        .to_string();
        assert!(
            msg.contains("\"acme\"") && msg.contains("STATE_TENANT_MAX_BYTES"),
            "{msg}"
        );
    }
}
