//! Tenant-isolated presence: who is in which room, per tenant.
//!
//! Two stores share these semantics (the Python bindings expose them as
//! djust's `PresenceBackend` interface):
//! * [`memory::MemoryPresence`] — in process, sharded, O(1) operations;
//! * [`redis::RedisPresence`] — one Lua script (one round trip) per
//!   operation on keys from [`crate::keys::format_key`].
//!
//! Semantics, identical for both (docs/presence.md, "Connections and
//! diffs"): a room holds users, a user holds connections, each named by a
//! `ref` and carrying its own meta (one per browser tab, Phoenix.Presence's
//! model). A connection is alive while its last heartbeat (or track) is at
//! most `timeout` old; a user is present while any of its connections is.
//! `track` of a known ref replaces that connection's meta and refreshes it
//! but keeps its `online_at`; the user keeps its first `joined_at` while it
//! stays present. `untrack` removes one connection, `leave` all of a user's.
//! A heartbeat never brings back a connection that is gone; `list` and
//! `count` never include expired connections or users without a live one.
//! djust's user-keyed `join(user, meta)` is `track(user, DEFAULT_REF, meta)`.
//! (`list` order: least recently active user first in memory, unspecified
//! in Redis; a user's connections oldest first in both.)

pub mod memory;
pub mod redis;
mod table;

use std::fmt;
use std::time::Duration;

use crate::keys::{self, KeyError};
use crate::redis_store::StoreError;
use crate::tenant_id;

/// Longest user id accepted, in bytes.
pub const MAX_USER_ID_LEN: usize = 1024;
/// Longest connection ref accepted, in bytes.
pub const MAX_REF_LEN: usize = 256;
/// Most connections one user may hold in one room at once: one user cannot
/// grow a room without bound by opening connections.
pub const MAX_CONNECTIONS_PER_USER: usize = 64;
/// The ref of the connection djust's user-keyed `join(user, meta)` tracks.
pub const DEFAULT_REF: &str = "";
/// Longest presence timeout accepted, in seconds (one day, like
/// `PRESENCE_TIMEOUT`).
pub const MAX_TIMEOUT_SECS: f64 = 86_400.0;

#[derive(Clone, Debug, PartialEq)]
pub enum PresenceError {
    /// The room name (presence key) was refused.
    Room(KeyError),
    UserIdTooLong {
        len: usize,
    },
    RefTooLong {
        len: usize,
    },
    /// A new connection would take the user past
    /// [`MAX_CONNECTIONS_PER_USER`] in the room.
    TooManyConnections {
        user: String,
        room: String,
    },
    BadTimeout {
        value: f64,
    },
    /// A track would take the tenant past one of its caps in the memory
    /// store (`PRESENCE_TENANT_MAX_*`).
    TenantCap {
        tenant: String,
        cap: memory::Cap,
        limit: usize,
    },
    /// A user id in a space of shared rooms (`-rooms.<owner>`) that is not
    /// a member id `<tenant>:<user>` (see [`member_tenant`]).
    NotAMember {
        space: String,
        user: String,
    },
    /// A call into a space of shared rooms with a tenant bound that did
    /// not come through a room that tenant opened (see [`check_rooms_call`]).
    RoomNotOpened {
        space: String,
        bound: String,
        what: &'static str,
    },
    /// A call into a space of shared rooms naming a member of another
    /// tenant than the bound one (see [`check_rooms_call`]).
    OtherTenantsMember {
        space: String,
        bound: String,
        user: String,
        what: &'static str,
    },
    /// A meta larger than `PRESENCE_MAX_META_BYTES`.
    MetaTooLarge {
        len: usize,
        limit: usize,
    },
    Store(StoreError),
}

/// Default of `PRESENCE_MAX_META_BYTES`: one connection's meta (as JSON).
pub const DEFAULT_MAX_META_BYTES: usize = 8192;

impl fmt::Display for PresenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PresenceError::Room(e) => write!(f, "invalid presence key: {e}"),
            PresenceError::UserIdTooLong { len } => write!(
                f,
                "user id is {len} bytes long (at most {MAX_USER_ID_LEN} allowed)"
            ),
            PresenceError::RefTooLong { len } => write!(
                f,
                "connection ref is {len} bytes long (at most {MAX_REF_LEN} allowed)"
            ),
            PresenceError::TooManyConnections { user, room } => write!(
                f,
                "user {} already has {MAX_CONNECTIONS_PER_USER} connections in presence room {} \
                 (the most one user may hold): untrack a connection first, or reuse its ref",
                crate::tenant_id::preview(user),
                crate::tenant_id::preview(room)
            ),
            PresenceError::BadTimeout { value } => write!(
                f,
                "presence timeout must be a number of seconds greater than 0 and at most \
                 {MAX_TIMEOUT_SECS}, got {value}"
            ),
            PresenceError::TenantCap { tenant, cap, limit } => write!(
                f,
                "tenant {} already holds {limit} {} in this process's presence store, its \
                 cap (DJUST_CONFIG[\"{}\"]): leave or untrack first, let idle ones expire, \
                 or raise the cap",
                crate::tenant_id::preview(tenant),
                cap.what(),
                cap.key()
            ),
            PresenceError::NotAMember { space, user } => write!(
                f,
                "user id {} in the shared rooms of {} is not a member id \"<tenant>:<user>\" \
                 with a valid tenant id (tenantry.shared_rooms.member_id makes one): a member \
                 is counted against its own tenant's presence caps and usage",
                crate::tenant_id::preview(user),
                crate::tenant_id::preview(space)
            ),
            PresenceError::RoomNotOpened { space, bound, what } => write!(
                f,
                "presence {what} in the shared rooms {} with tenant {} bound: a tenant uses a \
                 shared room only through the room it opened (tenantry.shared_room(obj), \
                 SharedRoomMixin), never through the space's backend",
                crate::tenant_id::preview(space),
                crate::tenant_id::preview(bound)
            ),
            PresenceError::OtherTenantsMember {
                space,
                bound,
                user,
                what,
            } => write!(
                f,
                "presence {what} of user {} in the shared rooms {} with tenant {} bound: a \
                 tenant names only its own members (\"<its id>:<user>\", \
                 tenantry.shared_rooms.member_id)",
                crate::tenant_id::preview(user),
                crate::tenant_id::preview(space),
                crate::tenant_id::preview(bound)
            ),
            PresenceError::MetaTooLarge { len, limit } => write!(
                f,
                "presence meta is {len} bytes as JSON, more than \
                 DJUST_CONFIG[\"PRESENCE_MAX_META_BYTES\"] ({limit}): keep metas small \
                 (a name, a colour, a cursor) and load the rest from the database"
            ),
            PresenceError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for PresenceError {}

impl From<StoreError> for PresenceError {
    fn from(e: StoreError) -> Self {
        PresenceError::Store(e)
    }
}

/// Checks a room name (djust's `presence_key`).
pub fn check_room(room: &str) -> Result<(), PresenceError> {
    keys::check_name(room).map_err(PresenceError::Room)
}

pub fn check_user(user: &str) -> Result<(), PresenceError> {
    if user.len() > MAX_USER_ID_LEN {
        return Err(PresenceError::UserIdTooLong { len: user.len() });
    }
    Ok(())
}

/// Checks a connection ref.
pub fn check_ref(conn_ref: &str) -> Result<(), PresenceError> {
    if conn_ref.len() > MAX_REF_LEN {
        return Err(PresenceError::RefTooLong {
            len: conn_ref.len(),
        });
    }
    Ok(())
}

/// The member tenant of `user` in a space of shared rooms: member ids are
/// `<tenant>:<user id>` (`tenantry.shared_rooms.member_id`), and tenant ids
/// hold no `:`, so the part before the first `:` is the member's tenant.
/// `None` when that part is no valid tenant id or nothing follows it.
pub fn member_tenant(user: &str) -> Option<&str> {
    let (tenant, rest) = user.split_once(':')?;
    (!rest.is_empty() && tenant_id::is_valid(tenant)).then_some(tenant)
}

/// Whether `space` is a space of shared rooms (`-rooms.<owner>`), whose
/// members are counted by their own tenant.
pub fn is_shared_space(space: &str) -> bool {
    space.starts_with(tenant_id::SHARED_ROOMS)
}

/// The tenant a presence of `user` in `space` is counted against, for the
/// memory store's caps (`PRESENCE_TENANT_MAX_*`) and for `peak_presences`
/// usage: the room's own tenant, or in a space of shared rooms the member's
/// own tenant ([`member_tenant`]), so a grantee's members spend the
/// grantee's allowance, never the owner's (docs/collaboration.md#live-rooms).
/// A malformed member (refused by the bindings with
/// [`PresenceError::NotAMember`]) falls back to the space itself.
pub fn counted_tenant<'a>(space: &'a str, user: &'a str) -> &'a str {
    if is_shared_space(space) {
        member_tenant(user).unwrap_or(space)
    } else {
        space
    }
}

/// Checks that `user` may be tracked in `space`: in a space of shared rooms
/// it must be a member id (`<tenant>:<user>`).
pub fn check_member(space: &str, user: &str) -> Result<(), PresenceError> {
    if is_shared_space(space) && member_tenant(user).is_none() {
        return Err(PresenceError::NotAMember {
            space: space.to_owned(),
            user: user.to_owned(),
        });
    }
    Ok(())
}

/// The rule of a call into a space of shared rooms (`-rooms.<owner>`,
/// docs/collaboration.md#live-rooms), given the bound tenant and the tenant
/// the call was admitted for (the member that opened the room the call
/// comes through). Outside such a space, or with no tenant bound (tenantry's
/// own disconnects, sweeper and watcher; operator code), every call passes.
/// With one bound, the call must have been admitted for it, and every user
/// id it names must be one of its members: a tenant's code never lists,
/// joins, bills or removes members of a room through the space's backend,
/// nor names another tenant's member.
pub fn check_rooms_call(
    space: &str,
    bound: Option<&str>,
    admitted: Option<&str>,
    user: Option<&str>,
    what: &'static str,
) -> Result<(), PresenceError> {
    let Some(bound) = bound.filter(|_| is_shared_space(space)) else {
        return Ok(());
    };
    if admitted != Some(bound) {
        return Err(PresenceError::RoomNotOpened {
            space: space.to_owned(),
            bound: bound.to_owned(),
            what,
        });
    }
    match user {
        Some(user) if member_tenant(user) != Some(bound) => {
            Err(PresenceError::OtherTenantsMember {
                space: space.to_owned(),
                bound: bound.to_owned(),
                user: user.to_owned(),
                what,
            })
        }
        _ => Ok(()),
    }
}

/// A presence timeout in seconds (ints and floats from Python).
pub fn timeout_from_secs(value: f64) -> Result<Duration, PresenceError> {
    if !(value > 0.0 && value <= MAX_TIMEOUT_SECS) {
        return Err(PresenceError::BadTimeout { value });
    }
    Duration::try_from_secs_f64(value).map_err(|_| PresenceError::BadTimeout { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_checked() {
        assert_eq!(timeout_from_secs(0.2).unwrap(), Duration::from_millis(200));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 86_401.0] {
            assert!(timeout_from_secs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bound_tenant_uses_a_shared_room_only_as_admitted_and_as_itself() {
        let space = "-rooms.acme";
        // Unbound (tenantry's own sweeper, watcher, disconnects) and outside
        // a rooms space: anything passes.
        assert!(check_rooms_call(space, None, None, Some("initech:1"), "join").is_ok());
        assert!(check_rooms_call("acme", Some("globex"), None, Some("7"), "join").is_ok());
        // Bound: only through a room it opened, and only its own members.
        assert!(check_rooms_call(
            space,
            Some("globex"),
            Some("globex"),
            Some("globex:1"),
            "join"
        )
        .is_ok());
        assert!(check_rooms_call(space, Some("globex"), Some("globex"), None, "list").is_ok());
        for (admitted, user) in [
            (None, Some("globex:1")),
            (Some("acme"), Some("globex:1")),
            (Some("globex"), Some("initech:1")),
            (Some("globex"), Some("acme:ann")),
            (Some("globex"), Some("globex")),
            (None, None),
        ] {
            let refused = check_rooms_call(space, Some("globex"), admitted, user, "join");
            assert!(
                matches!(
                    refused,
                    Err(PresenceError::RoomNotOpened { .. }
                        | PresenceError::OtherTenantsMember { .. })
                ),
                "{admitted:?} {user:?}"
            );
        }
    }

    #[test]
    fn members_of_shared_rooms_count_against_their_own_tenant() {
        assert_eq!(member_tenant("globex:anon_e30:1x"), Some("globex"));
        assert_eq!(member_tenant("globex:7"), Some("globex"));
        for bad in [
            "globex",
            "globex:",
            ":7",
            "-rooms.acme:7",
            "gl ob:7",
            ".x:7",
        ] {
            assert_eq!(member_tenant(bad), None, "{bad}");
        }
        assert_eq!(counted_tenant("-rooms.acme", "globex:7"), "globex");
        assert_eq!(counted_tenant("-rooms.acme", "acme:7"), "acme");
        assert_eq!(counted_tenant("-rooms.acme", "7"), "-rooms.acme");
        // Outside shared rooms the room's tenant, whatever the user id.
        assert_eq!(counted_tenant("acme", "globex:7"), "acme");
        assert!(check_member("acme", "7").is_ok());
        assert!(check_member("-rooms.acme", "globex:7").is_ok());
        let msg = check_member("-rooms.acme", "7").unwrap_err().to_string();
        assert!(
            msg.contains("member id") && msg.contains("-rooms.acme"),
            "{msg}"
        );
    }

    #[test]
    fn names_are_bounded() {
        assert!(check_room(&"r".repeat(1024)).is_ok());
        assert!(check_room(&"r".repeat(1025)).is_err());
        assert!(check_user(&"u".repeat(1025)).is_err());
        let msg = check_user(&"u".repeat(2000)).unwrap_err().to_string();
        assert!(msg.contains("2000"), "{msg}");
        assert!(check_ref(&"c".repeat(256)).is_ok());
        let msg = check_ref(&"c".repeat(257)).unwrap_err().to_string();
        assert!(msg.contains("257") && msg.contains("ref"), "{msg}");
    }
}
