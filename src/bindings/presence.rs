//! Presence backends for Python: `TenantAwareMemoryBackend`,
//! `TenantAwareRedisBackend` (djust's `PresenceBackend` interface, one
//! tenant each) and `TenantPresenceRouter` (the one object tenantry installs
//! as djust's global presence backend; it finds the tenant of every call).
//!
//! Records are dicts `{"id", "tenant_id", "joined_at", "meta", "metas"}`:
//! djust's record plus one meta entry per connection (`{**meta, "ref",
//! "online_at"}`). `track`/`untrack` return diffs `{"joins": {user:
//! record}, "leaves": {user: record}}` whose records carry the connections
//! that changed. The memory store keeps each meta as a [`Frozen`] value —
//! its dicts and lists rebuilt in Rust, its leaves the immutable `str`,
//! `int`, `float`, `bool` and `None` objects — so nothing a caller holds
//! (the dict it passed, a nested dict shared by two tenants' views, a
//! listed record it decorates) is ever stored state: every record and
//! every diff is built of fresh dicts and lists (under the lock `list`
//! only clones `Arc`s). Redis stores metas as JSON; they are decoded in
//! Rust ([`crate::json`]) straight into the records' dicts. The GIL is
//! released around every Redis round trip.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyType};

use super::config::Compiled;
use super::errors::{self, presence_error};
use super::json::PySink;
use super::tenant_backend::{
    self, redis_target, tenant_store_classes, KeyedStore, PerTenant, RedisEngine, Routed, Scope,
    StoreEngine, StoreKind, StoreRouter,
};
use super::tenant_info::{id_from_py, type_name};
use crate::keys::{KeyPrefix, Unscoped};
use crate::presence::memory::{wall_clock, Cap, Caps, MemoryPresence, Tracked};
use crate::presence::redis::{Listing, RedisPresence};
use crate::presence::{
    check_member, check_ref, check_room, check_user, counted_tenant, is_shared_space,
    member_tenant, timeout_from_secs, PresenceError, DEFAULT_MAX_META_BYTES, DEFAULT_REF,
};
use crate::redis_store::RedisStore;
use crate::tenant_id::TenantId;
use crate::usage::Metric;

/// The process-wide in-memory store, shared by every memory backend object
/// (two objects for one tenant see the same presences, as in djust).
/// Per user it keeps the user-level meta, per connection its meta (the
/// entry dict is built on each read, from the connection's ref and time).
static MEMORY: LazyLock<MemoryPresence<Stored>> = LazyLock::new(MemoryPresence::new);

/// A meta as the memory store keeps it.
type Stored = Arc<StoredMeta>;

/// A [`Frozen`] meta, and for a user-level meta the template of its user's
/// record (`id`, `tenant_id`, `joined_at`: fixed while the user stays),
/// made by the first `list` that needs it, so later lists copy one dict
/// instead of building it.
pub(super) struct StoredMeta {
    frozen: Frozen,
    record: OnceLock<Py<PyDict>>,
}

impl StoredMeta {
    fn new(frozen: Frozen) -> Stored {
        Arc::new(StoredMeta {
            frozen,
            record: OnceLock::new(),
        })
    }
}

impl std::ops::Deref for StoredMeta {
    type Target = Frozen;

    fn deref(&self) -> &Frozen {
        &self.frozen
    }
}

/// A presence meta owned by the memory store, rebuilt from what the caller
/// passed: every dict and list of it is the store's own *template* (a
/// Python dict or list never handed out), its leaves the immutable exact
/// `str`, `int`, `float`, `bool` and `None` objects (subclasses are
/// converted: an instance of one may carry mutable state). Tuples become
/// lists and dict keys strings (ints, floats, bools and `None` turned into
/// their JSON text), so the memory store keeps what Redis would (JSON-able
/// values; anything else is a `TypeError`). A read copies the templates
/// (`dict.copy()`, `list[:]`: one C call each) and fills in the nested
/// containers, also copied: no caller ever holds a stored object.
pub(super) enum Frozen {
    Leaf(Py<PyAny>),
    Dict {
        /// The dict with its leaves, and `None` where a container goes.
        template: Py<PyDict>,
        nested: Box<[(Py<PyString>, Frozen)]>,
    },
    List {
        template: Py<PyList>,
        nested: Box<[(usize, Frozen)]>,
    },
}

/// Deepest nesting of containers a meta may have (JSON encoders stop
/// around a thousand; metas are small).
const MAX_META_DEPTH: usize = 100;

impl Frozen {
    /// The store's own copy of `value`.
    fn of(value: &Bound<'_, PyAny>) -> PyResult<Frozen> {
        Self::nested(value, 0)
    }

    fn nested(value: &Bound<'_, PyAny>, depth: usize) -> PyResult<Frozen> {
        let py = value.py();
        if depth > MAX_META_DEPTH {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "a presence meta may nest at most {MAX_META_DEPTH} dicts and lists"
            )));
        }
        if let Ok(d) = value.cast::<PyDict>() {
            let template = PyDict::new(py);
            let mut nested = Vec::new();
            for (k, v) in d.iter() {
                let key = json_key(&k)?;
                if is_container(&v) {
                    template.set_item(&key, py.None())?;
                    nested.push((key.unbind(), Self::nested(&v, depth + 1)?));
                } else {
                    template.set_item(&key, immutable_leaf(py, &v)?)?;
                }
            }
            return Ok(Frozen::Dict {
                template: template.unbind(),
                nested: nested.into_boxed_slice(),
            });
        }
        let items = if let Ok(l) = value.cast::<PyList>() {
            l.iter().collect::<Vec<_>>()
        } else if let Ok(t) = value.cast::<PyTuple>() {
            t.iter().collect::<Vec<_>>()
        } else {
            return Ok(Frozen::Leaf(immutable_leaf(py, value)?.unbind()));
        };
        let template = PyList::empty(py);
        let mut nested = Vec::new();
        for (i, v) in items.iter().enumerate() {
            if is_container(v) {
                template.append(py.None())?;
                nested.push((i, Self::nested(v, depth + 1)?));
            } else {
                template.append(immutable_leaf(py, v)?)?;
            }
        }
        Ok(Frozen::List {
            template: template.unbind(),
            nested: nested.into_boxed_slice(),
        })
    }

    /// Another handle on the same (never changed) templates and leaves.
    fn share(&self, py: Python<'_>) -> Frozen {
        match self {
            Frozen::Leaf(v) => Frozen::Leaf(v.clone_ref(py)),
            Frozen::Dict { template, nested } => Frozen::Dict {
                template: template.clone_ref(py),
                nested: nested
                    .iter()
                    .map(|(k, f)| (k.clone_ref(py), f.share(py)))
                    .collect(),
            },
            Frozen::List { template, nested } => Frozen::List {
                template: template.clone_ref(py),
                nested: nested.iter().map(|(i, f)| (*i, f.share(py))).collect(),
            },
        }
    }

    /// A fresh Python value: new dicts and lists, the same immutable leaves.
    fn thaw<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Frozen::Leaf(v) => Ok(v.bind(py).clone()),
            Frozen::Dict { template, nested } => {
                let d = template.bind(py).copy()?;
                for (k, f) in nested.iter() {
                    d.set_item(k.bind(py), f.thaw(py)?)?;
                }
                Ok(d.into_any())
            }
            Frozen::List { template, nested } => {
                let l = template.bind(py).get_slice(0, usize::MAX);
                for (i, f) in nested.iter() {
                    l.set_item(*i, f.thaw(py)?)?;
                }
                Ok(l.into_any())
            }
        }
    }

    /// The template of a connection's entry in a record's `metas`: the meta
    /// (a dict; any other meta under `"value"`) with the connection's `ref`
    /// and `online_at`.
    fn entry_of(
        &self,
        py: Python<'_>,
        conn_ref: &Bound<'_, PyString>,
        online_at: f64,
    ) -> PyResult<Frozen> {
        let (template, nested) = match self {
            Frozen::Dict { template, nested } => (
                template.bind(py).copy()?,
                nested
                    .iter()
                    .map(|(k, f)| (k.clone_ref(py), f.share(py)))
                    .collect(),
            ),
            Frozen::Leaf(v) => {
                let d = PyDict::new(py);
                d.set_item(intern!(py, "value"), v.bind(py))?;
                (d, Vec::new())
            }
            list => {
                let d = PyDict::new(py);
                d.set_item(intern!(py, "value"), py.None())?;
                let key = intern!(py, "value").clone().unbind();
                (d, vec![(key, list.share(py))])
            }
        };
        template.set_item(intern!(py, "ref"), conn_ref)?;
        template.set_item(intern!(py, "online_at"), online_at)?;
        Ok(Frozen::Dict {
            template: template.unbind(),
            nested: nested.into_boxed_slice(),
        })
    }

    /// A fresh entry from an [`Frozen::entry_of`] template.
    fn entry<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        Ok(self.thaw(py)?.cast_into::<PyDict>()?)
    }
}

fn is_container(v: &Bound<'_, PyAny>) -> bool {
    v.is_instance_of::<PyDict>() || v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>()
}

/// A dict key as JSON writes it: a str (an exact one), or an int, float,
/// bool or `None` turned into its JSON text.
fn json_key<'py>(key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
    let py = key.py();
    if key.is_exact_instance_of::<PyString>() {
        return Ok(key.cast::<PyString>()?.clone());
    }
    let text = if let Ok(s) = key.cast::<PyString>() {
        s.to_str()?.to_owned()
    } else if key.is_none() {
        "null".to_owned()
    } else if key.is_instance_of::<PyBool>() {
        if key.is_truthy()? { "true" } else { "false" }.to_owned()
    } else if key.is_instance_of::<PyInt>() {
        py.get_type::<PyInt>()
            .call1((key,))?
            .str()?
            .to_str()?
            .to_owned()
    } else if key.is_instance_of::<PyFloat>() {
        PyFloat::new(py, key.extract::<f64>()?)
            .repr()?
            .to_str()?
            .to_owned()
    } else {
        return Err(PyTypeError::new_err(format!(
            "presence meta keys must be str, int, float, bool or None, not {}",
            type_name(key)
        )));
    };
    Ok(PyString::new(py, &text))
}

/// `value` as an exact immutable JSON leaf (subclasses of `str`, `int` and
/// `float` are converted: an instance of one may carry mutable state).
fn immutable_leaf<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if value.is_none()
        || value.is_exact_instance_of::<PyString>()
        || value.is_exact_instance_of::<PyInt>()
        || value.is_exact_instance_of::<PyFloat>()
        || value.is_instance_of::<PyBool>()
    {
        return Ok(value.clone());
    }
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(PyString::new(py, s.to_str()?).into_any());
    }
    if value.is_instance_of::<PyInt>() {
        return py.get_type::<PyInt>().call1((value,));
    }
    if value.is_instance_of::<PyFloat>() {
        return Ok(PyFloat::new(py, value.extract::<f64>()?).into_any());
    }
    Err(PyTypeError::new_err(format!(
        "presence meta values must be JSON-able (str, int, float, bool, None, and lists, \
         tuples and dicts of them), not {}",
        type_name(value)
    )))
}

static JSON_ENCODE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode`
pub(super) fn json_encode<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<String> {
    let encode = JSON_ENCODE.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        let json = py.import("json")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("ensure_ascii", false)?;
        kwargs.set_item("separators", (",", ":"))?;
        let encoder = json.getattr("JSONEncoder")?.call((), Some(&kwargs))?;
        Ok(encoder.getattr("encode")?.unbind())
    })?;
    encode.bind(py).call1((value,))?.extract()
}

/// Checks the room name and the user id of a per-user operation; the user id
/// as a Python str.
fn checked_user<'py>(room: &str, user: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
    check_room(room).map_err(presence_error)?;
    let user = id_str("user_id", user)?;
    check_user(user.to_str()?).map_err(presence_error)?;
    Ok(user)
}

/// Checks a connection ref; the ref as a Python str.
fn checked_ref<'py>(conn_ref: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
    let conn_ref = id_str("ref", conn_ref)?;
    check_ref(conn_ref.to_str()?).map_err(presence_error)?;
    Ok(conn_ref)
}

/// A user id or ref as a Python `str` (ints become their decimal text).
fn id_str<'py>(what: &str, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(s.clone());
    }
    if value.is_instance_of::<PyInt>() && !value.is_instance_of::<PyBool>() {
        return value.str();
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be a str or an int, not {}",
        type_name(value)
    )))
}

/// One connection's entry in a record's `metas`: a shallow copy of `meta`
/// (a dict; any other meta is kept under `"value"`) with its `ref` and
/// `online_at` set.
fn meta_entry<'py>(
    py: Python<'py>,
    meta: &Bound<'py, PyAny>,
    conn_ref: &Bound<'py, PyString>,
    online_at: f64,
) -> PyResult<Bound<'py, PyDict>> {
    let entry = match meta.cast::<PyDict>() {
        Ok(d) => d.copy()?,
        Err(_) => {
            let d = PyDict::new(py);
            d.set_item(intern!(py, "value"), meta)?;
            d
        }
    };
    entry.set_item(intern!(py, "ref"), conn_ref)?;
    entry.set_item(intern!(py, "online_at"), online_at)?;
    Ok(entry)
}

/// What one `track`/`untrack`/`join` changed for one user: the connection
/// that joined and/or the one that left (a re-tracked ref: both).
struct Change<'py> {
    user: Bound<'py, PyString>,
    joined_at: f64,
    /// The user-level meta after the change (for a user that left, its last).
    meta: Bound<'py, PyAny>,
    joined: Option<Bound<'py, PyAny>>,
    left: Option<Bound<'py, PyAny>>,
}

impl<'py> Change<'py> {
    fn record(
        &self,
        tenant: &Bound<'py, PyString>,
        entry: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let py = tenant.py();
        let rec = record(py, &self.user, tenant, self.joined_at, &self.meta)?;
        rec.set_item(intern!(py, "metas"), PyList::new(py, [entry])?)?;
        Ok(rec)
    }

    /// `{"joins": {user: record}, "leaves": {user: record}}`.
    fn diff(&self, tenant: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyDict>> {
        let py = tenant.py();
        let side = |entry: &Option<Bound<'py, PyAny>>| -> PyResult<Bound<'py, PyDict>> {
            let d = PyDict::new(py);
            if let Some(entry) = entry {
                d.set_item(&self.user, self.record(tenant, entry)?)?;
            }
            Ok(d)
        };
        let diff = PyDict::new(py);
        diff.set_item(intern!(py, "joins"), side(&self.joined)?)?;
        diff.set_item(intern!(py, "leaves"), side(&self.left)?)?;
        Ok(diff)
    }
}

fn empty_diff(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let diff = PyDict::new(py);
    diff.set_item(intern!(py, "joins"), PyDict::new(py))?;
    diff.set_item(intern!(py, "leaves"), PyDict::new(py))?;
    Ok(diff)
}

/// `PRESENCE_MAX_META_BYTES`, for every presence backend of the process.
static META_LIMIT: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_META_BYTES);

/// Applies the presence limits of the config to the process's stores.
/// The memory store's caps and largest meta from `settings`
/// (`PRESENCE_TENANT_MAX_*`, `PRESENCE_MAX_META_BYTES`).
pub(super) fn apply_configured_limits(settings: &crate::config::Settings) {
    apply_limits(settings.presence_caps, settings.presence_max_meta_bytes);
}

fn apply_limits(caps: Caps, max_meta_bytes: usize) {
    MEMORY.set_caps(caps);
    META_LIMIT.store(max_meta_bytes, Ordering::Relaxed);
}

/// A flat meta (the usual one: `{"name": ..., "color": ...}`) read in
/// place: an exact dict whose keys are exact strs and whose values are
/// exact strs, ints, floats, bools or `None`. Checking it runs no Python
/// code, so the caller cannot change it meanwhile; its store copy is then
/// one `dict.copy()` (what [`Frozen::of`] would build: the same keys, the
/// same immutable leaves). Its [`meta_size`] and frozen form, or `None`
/// for any other meta (the general path).
fn flat_meta(meta: &Bound<'_, PyAny>, limit: usize) -> PyResult<Option<(usize, Option<Frozen>)>> {
    let Ok(d) = meta.cast_exact::<PyDict>() else {
        return Ok(None);
    };
    // One pass: the check, and the size as [`add_container`] counts it
    // (items counted until the size is past `limit`).
    let mut size = 2 + 2 * d.len();
    let mut nested = Vec::new();
    for (k, v) in d.iter() {
        let leaf = v.is_none()
            || v.is_exact_instance_of::<PyString>()
            || v.is_exact_instance_of::<PyInt>()
            || v.is_exact_instance_of::<PyFloat>()
            || v.is_instance_of::<PyBool>();
        if !(leaf && k.is_exact_instance_of::<PyString>()) {
            return Ok(None);
        }
        if size <= limit {
            add_scalar(&k, limit, &mut size, &mut nested)?;
            add_scalar(&v, limit, &mut size, &mut nested)?;
        }
    }
    if size > limit {
        return Ok(Some((size, None)));
    }
    let frozen = Frozen::Dict {
        template: d.copy()?.unbind(),
        nested: Box::new([]),
    };
    Ok(Some((size, Some(frozen))))
}

/// The size of `meta` as compact JSON, from below (a string counts its
/// characters, its UTF-8 bytes only when that could matter; an int its
/// digits; a float 24): no encoding, and the walk stops once past `limit`,
/// so a huge or cyclic meta costs O(limit). Objects JSON cannot encode
/// (refused afterwards by both stores) count their `str()`.
fn meta_size(meta: &Bound<'_, PyAny>, limit: usize) -> PyResult<usize> {
    let mut size = 0usize;
    // Nested containers only: a flat dict (the usual meta) allocates nothing.
    let mut nested: Vec<Bound<'_, PyAny>> = Vec::new();
    if !add_container(meta, limit, &mut size, &mut nested)? {
        add_scalar(meta, limit, &mut size, &mut nested)?;
    }
    while let Some(v) = nested.pop() {
        if size > limit {
            break;
        }
        add_container(&v, limit, &mut size, &mut nested)?;
    }
    Ok(size)
}

/// [`meta_size`] of a dict, list or tuple's own items (containers in it
/// are queued); false for anything else.
fn add_container<'py>(
    v: &Bound<'py, PyAny>,
    limit: usize,
    size: &mut usize,
    nested: &mut Vec<Bound<'py, PyAny>>,
) -> PyResult<bool> {
    if let Ok(d) = v.cast::<PyDict>() {
        *size += 2 + 2 * d.len();
        for (k, item) in d.iter() {
            add_scalar(&k, limit, size, nested)?;
            add_scalar(&item, limit, size, nested)?;
            if *size > limit {
                break;
            }
        }
    } else if let Ok(l) = v.cast::<PyList>() {
        *size += 2 + l.len();
        for item in l.iter() {
            add_scalar(&item, limit, size, nested)?;
            if *size > limit {
                break;
            }
        }
    } else if let Ok(t) = v.cast::<PyTuple>() {
        *size += 2 + t.len();
        for item in t.iter() {
            add_scalar(&item, limit, size, nested)?;
            if *size > limit {
                break;
            }
        }
    } else {
        return Ok(false);
    }
    Ok(true)
}

/// [`meta_size`] of one value: counted, or (a container) queued.
fn add_scalar<'py>(
    v: &Bound<'py, PyAny>,
    limit: usize,
    size: &mut usize,
    nested: &mut Vec<Bound<'py, PyAny>>,
) -> PyResult<()> {
    if let Ok(text) = v.cast::<PyString>() {
        let chars = text.len()?;
        *size += 2 + if *size + 4 * chars > limit {
            text.to_cow()?.len()
        } else {
            chars
        };
    } else if v.is_none() || v.is_instance_of::<PyBool>() {
        *size += 5;
    } else if v.is_instance_of::<PyInt>() {
        *size += match v.extract::<i64>() {
            Ok(n) => {
                n.unsigned_abs()
                    .checked_ilog10()
                    .map_or(1, |d| d as usize + 1)
                    + 1
            }
            Err(_) => v.str()?.len()?,
        };
    } else if v.is_instance_of::<PyFloat>() {
        *size += 24;
    } else if v.is_instance_of::<PyDict>()
        || v.is_instance_of::<PyList>()
        || v.is_instance_of::<PyTuple>()
    {
        nested.push(v.clone());
    } else {
        *size += v.str()?.len()?;
    }
    Ok(())
}

fn too_many(user: &str, room: &str) -> PyErr {
    presence_error(PresenceError::TooManyConnections {
        user: user.to_owned(),
        room: room.to_owned(),
    })
}

fn record<'py>(
    py: Python<'py>,
    user: &Bound<'py, PyString>,
    tenant: &Bound<'py, PyString>,
    joined_at: f64,
    meta: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "id"), user)?;
    d.set_item(intern!(py, "tenant_id"), tenant)?;
    d.set_item(intern!(py, "joined_at"), joined_at)?;
    d.set_item(intern!(py, "meta"), meta)?;
    Ok(d)
}

/// The meta to keep: a shallow copy of a dict (the caller's own dict is
/// never stored, so no later change of it, or of a listed record, reaches
/// the other), any other value as is, `{}` for none.
fn meta_or_empty<'py>(
    py: Python<'py>,
    meta: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    match meta {
        Some(m) if !m.is_none() => match m.cast::<PyDict>() {
            Ok(d) => Ok(d.copy()?.into_any()),
            Err(_) => Ok(m.clone()),
        },
        _ => Ok(PyDict::new(py).into_any()),
    }
}

impl RedisEngine for RedisPresence {
    fn store(&self) -> &RedisStore {
        RedisPresence::store(self)
    }

    fn prefix(&self) -> &KeyPrefix {
        RedisPresence::prefix(self)
    }
}

/// Presence, as a kind of per-tenant store: its engine is the memory store
/// (with the presence timeout) or Redis.
pub struct Presence;

type Engine = StoreEngine<Presence>;

impl StoreKind for Presence {
    type Memory = Duration;
    type Redis = RedisPresence;
    /// A key without the `tenant:` scope is the bound tenant's, or, with no
    /// tenant bound, lives in the space no tenant's id can name.
    const ROUTED: &'static Routed = &Routed {
        what: "presence key",
        unscoped: Unscoped::Bound,
    };
    const ROUTER_NAME: &'static str = "TenantPresenceRouter";

    fn router_engine(compiled: &Compiled) -> PyResult<Engine> {
        let settings = &compiled.settings;
        let timeout = checked_timeout(settings.presence_timeout)?;
        apply_configured_limits(settings);
        Engine::from_settings(
            &settings.presence,
            settings.redis_options,
            &settings.key_prefix,
            || timeout,
            |store, prefix| RedisPresence::new(store, prefix, timeout),
        )
    }

    fn memory_health(d: &Bound<'_, PyDict>, tenant: Option<&Bound<'_, PyString>>) -> PyResult<()> {
        let stats = MEMORY.stats();
        d.set_item("total_rooms", stats.rooms)?;
        d.set_item("total_presences", stats.presences)?;
        d.set_item("total_connections", stats.connections)?;
        if let Some(t) = tenant {
            // djust.tenants' key: this tenant's presences, all rooms.
            let id = TenantId::parse(&t.to_string_lossy())
                .map_err(|e| errors::invalid_tenant_id(&t.to_string_lossy(), &e))?;
            d.set_item("presence_count", MEMORY.tenant_presences(&id))?;
        }
        Ok(())
    }

    /// The room as routed: `tenantry.channels` and the live presence mixin
    /// name groups from it; the calls themselves check it.
    fn check_resolved(_room: &str) -> PyResult<()> {
        Ok(())
    }

    fn repr_fields(engine: &Engine) -> String {
        format!(", timeout={}", engine.timeout_secs())
    }
}

impl Engine {
    fn timeout_secs(&self) -> f64 {
        match self {
            Engine::Memory(timeout) => timeout.as_secs_f64(),
            Engine::Redis(r) => r.timeout_secs(),
        }
    }

    /// Tracks connection `conn_ref` of `user`; what changed. Every track
    /// and join of every tenantry presence object comes through here, so
    /// this is where the tenant's `peak_presences` usage is raised to the
    /// room's count after the track: the memory store counts it under the
    /// track's own lock and records it only when it rose above what that
    /// room's part of the tenant recorded in the same usage hour and
    /// generation (peaks keep the largest value, so the rest are no-ops;
    /// [`super::usage::PeakMeter`]); the Redis track script returns it (no
    /// second round trip) and it goes into the batched counters (usage.rs).
    #[allow(clippy::too_many_arguments)]
    fn track_change<'py>(
        &self,
        py: Python<'py>,
        tenant: &TenantId,
        room: &str,
        user: &Bound<'py, PyAny>,
        conn_ref: &Bound<'py, PyString>,
        meta: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Change<'py>> {
        let user = checked_user(room, user)?;
        let user_text = user.to_str()?;
        tenant_backend::check_rooms_call(py, tenant, Some(user_text), "track")?;
        check_member(tenant.as_str(), user_text).map_err(presence_error)?;
        // In a shared live room each member tenant's peak is its own
        // members' count there (docs/collaboration.md#live-rooms): a
        // grantee's users are never the owner's usage.
        let member = match member_tenant(user_text).filter(|_| is_shared_space(tenant.as_str())) {
            Some(m) => Some(TenantId::parse(m).map_err(|e| errors::invalid_tenant_id(m, &e))?),
            None => None,
        };
        let billed = member.as_ref().unwrap_or(tenant);
        let ref_text = conn_ref.to_str()?;
        let meta_limit = META_LIMIT.load(Ordering::Relaxed);
        match self {
            Engine::Memory(timeout) => {
                // A flat meta of exact JSON types is read in place (no
                // Python code can run meanwhile, so nothing can change it)
                // and copied once, as its template; any other is copied
                // first, then measured and frozen from the copy.
                let given = meta.filter(|m| !m.is_none());
                let flat = match given {
                    Some(m) => flat_meta(m, meta_limit)?,
                    None => None,
                };
                let meta = match flat {
                    Some(_) => given.map_or_else(|| PyDict::new(py).into_any(), Clone::clone),
                    None => meta_or_empty(py, meta)?,
                };
                let (size, frozen) = match flat {
                    Some(flat) => flat,
                    None => (meta_size(&meta, meta_limit)?, None),
                };
                if size > meta_limit {
                    return Err(presence_error(PresenceError::MetaTooLarge {
                        len: size,
                        limit: meta_limit,
                    }));
                }
                let wall = wall_clock();
                let frozen = match frozen {
                    Some(frozen) => frozen,
                    None => Frozen::of(&meta)?,
                };
                let frozen: Stored = StoredMeta::new(frozen);
                let stored_entry: Stored = StoredMeta::new(frozen.entry_of(py, conn_ref, wall)?);
                let entry = stored_entry.entry(py)?;
                let meta = frozen.thaw(py)?;
                // The peak is metered under the store's lock: recorded when
                // it rose above what this room's part of the tenant last
                // recorded in the usage hour (or the figures changed since).
                let meter = super::usage::PeakMeter::new(py, wall as u64)?;
                let metered = reclaiming(|graveyard| {
                    MEMORY.track_metered(
                        tenant,
                        room,
                        user_text,
                        ref_text,
                        Arc::clone(&frozen),
                        stored_entry,
                        *timeout,
                        Instant::now(),
                        wall,
                        meter.period(),
                        graveyard,
                    )
                })
                .map_err(|refused| match refused.cap {
                    None => too_many(user_text, room),
                    Some(cap) => presence_error(PresenceError::TenantCap {
                        tenant: counted_tenant(tenant.as_str(), user_text).to_owned(),
                        cap,
                        limit: match cap {
                            Cap::Rooms => MEMORY.caps().rooms,
                            Cap::Users => MEMORY.caps().users,
                            Cap::Connections => MEMORY.caps().connections,
                        },
                    }),
                })?;
                if metered.meter_due {
                    meter.record(py, billed, metered.users as u64)?;
                }
                // A replaced user-level meta is dropped here, after the lock.
                let (joined_at, left) = match metered.tracked {
                    Tracked::UserJoined { joined_at } | Tracked::ConnAdded { joined_at, .. } => {
                        (joined_at, None)
                    }
                    Tracked::ConnUpdated {
                        joined_at,
                        online_at,
                        old,
                        ..
                    } => {
                        if online_at != wall {
                            // The connection keeps its first time: store the
                            // entry with it (a second track of the same live
                            // connection only replaces its entry).
                            entry.set_item(intern!(py, "online_at"), online_at)?;
                            let fixed: Stored =
                                StoredMeta::new(frozen.entry_of(py, conn_ref, online_at)?);
                            // What it replaces is dropped after the lock.
                            let replaced = reclaiming(|graveyard| {
                                MEMORY.track(
                                    tenant,
                                    room,
                                    user_text,
                                    ref_text,
                                    Arc::clone(&frozen),
                                    fixed,
                                    *timeout,
                                    Instant::now(),
                                    wall,
                                    graveyard,
                                )
                            });
                            drop(replaced);
                        }
                        (joined_at, Some(old.entry(py)?.into_any()))
                    }
                };
                Ok(Change {
                    user,
                    joined_at,
                    meta,
                    joined: Some(entry.into_any()),
                    left,
                })
            }
            Engine::Redis(r) => {
                let meta = meta_or_empty(py, meta)?;
                let meta_json = json_encode(py, &meta)?;
                if meta_json.len() > meta_limit {
                    return Err(presence_error(PresenceError::MetaTooLarge {
                        len: meta_json.len(),
                        limit: meta_limit,
                    }));
                }
                let tracked = py
                    .detach(|| r.track(tenant, room, user_text, ref_text, &meta_json))
                    .map_err(presence_error)?;
                let entry = meta_entry(py, &meta, conn_ref, tracked.online_at)?;
                let left = match &tracked.replaced {
                    None => None,
                    Some(old) => {
                        let old = decode_meta(&mut PySink::new(py), r, old)?;
                        Some(own_entry(py, old, conn_ref, tracked.online_at)?.into_any())
                    }
                };
                super::usage::record(py, billed, Metric::PeakPresences, tracked.users_after)?;
                Ok(Change {
                    user,
                    joined_at: tracked.joined_at,
                    meta,
                    joined: Some(entry.into_any()),
                    left,
                })
            }
        }
    }

    /// Removes connection `conn_ref` of `user`; `None` when it was not live.
    fn untrack_change<'py>(
        &self,
        py: Python<'py>,
        tenant: &TenantId,
        room: &str,
        user: &Bound<'py, PyAny>,
        conn_ref: &Bound<'py, PyString>,
    ) -> PyResult<Option<Change<'py>>> {
        let user = checked_user(room, user)?;
        let user_text = user.to_str()?;
        tenant_backend::check_rooms_call(py, tenant, Some(user_text), "untrack")?;
        let ref_text = conn_ref.to_str()?;
        match self {
            Engine::Memory(timeout) => {
                let gone = reclaiming(|graveyard| {
                    MEMORY.untrack(
                        tenant,
                        room,
                        user_text,
                        ref_text,
                        *timeout,
                        Instant::now(),
                        graveyard,
                        Arc::clone,
                    )
                });
                gone.map(|g| {
                    Ok(Change {
                        user,
                        joined_at: g.joined_at,
                        meta: g.meta.thaw(py)?,
                        joined: None,
                        left: Some(g.payload.entry(py)?.into_any()),
                    })
                })
                .transpose()
            }
            Engine::Redis(r) => {
                let gone = py
                    .detach(|| r.untrack(tenant, room, user_text, ref_text))
                    .map_err(presence_error)?;
                let Some(g) = gone else {
                    return Ok(None);
                };
                let mut sink = PySink::new(py);
                let meta = decode_meta(&mut sink, r, &g.meta_json)?;
                let conn_meta = decode_meta(&mut sink, r, &g.conn_meta_json)?;
                let entry = own_entry(py, conn_meta, conn_ref, g.online_at)?;
                Ok(Some(Change {
                    user,
                    joined_at: g.joined_at,
                    meta,
                    joined: None,
                    left: Some(entry.into_any()),
                }))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn track<'py>(
        &self,
        py: Python<'py>,
        tenant: &TenantId,
        tenant_py: &Bound<'py, PyString>,
        room: &str,
        user: &Bound<'py, PyAny>,
        conn_ref: &Bound<'py, PyAny>,
        meta: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let conn_ref = checked_ref(conn_ref)?;
        self.track_change(py, tenant, room, user, &conn_ref, meta)?
            .diff(tenant_py)
    }

    fn untrack<'py>(
        &self,
        py: Python<'py>,
        tenant: &TenantId,
        tenant_py: &Bound<'py, PyString>,
        room: &str,
        user: &Bound<'py, PyAny>,
        conn_ref: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let conn_ref = checked_ref(conn_ref)?;
        match self.untrack_change(py, tenant, room, user, &conn_ref)? {
            Some(change) => change.diff(tenant_py),
            None => empty_diff(py),
        }
    }

    /// djust's `join`: tracks the connection [`DEFAULT_REF`]; the user's
    /// record with that connection's entry.
    fn join<'py>(
        &self,
        py: Python<'py>,
        tenant: &TenantId,
        tenant_py: &Bound<'py, PyString>,
        room: &str,
        user: &Bound<'py, PyAny>,
        meta: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let conn_ref = PyString::new(py, DEFAULT_REF);
        let change = self.track_change(py, tenant, room, user, &conn_ref, meta)?;
        let entry = change
            .joined
            .as_ref()
            .ok_or_else(|| errors::BackendError::new_err("presence join tracked no connection"))?;
        change.record(tenant_py, entry)
    }

    /// djust's `leave`: removes the user with every connection; its record
    /// with the removed connections' entries, or `None`.
    fn leave<'py>(
        &self,
        py: Python<'py>,
        tenant: &TenantId,
        tenant_py: &Bound<'py, PyString>,
        room: &str,
        user: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let user = checked_user(room, user)?;
        let user_text = user.to_str()?;
        tenant_backend::check_rooms_call(py, tenant, Some(user_text), "leave")?;
        match self {
            Engine::Memory(timeout) => {
                let gone = reclaiming(|graveyard| {
                    MEMORY.leave(tenant, room, user_text, *timeout, Instant::now(), graveyard)
                });
                let Some(gone) = gone else {
                    return Ok(None);
                };
                let metas = gone
                    .conns
                    .iter()
                    .map(|(_, _, entry)| entry.entry(py))
                    .collect::<PyResult<Vec<_>>>()?;
                let rec = record(py, &user, tenant_py, gone.joined_at, &gone.meta.thaw(py)?)?;
                rec.set_item(intern!(py, "metas"), PyList::new(py, metas)?)?;
                Ok(Some(rec))
            }
            Engine::Redis(r) => {
                let gone = py
                    .detach(|| r.leave(tenant, room, user_text))
                    .map_err(presence_error)?;
                match gone {
                    None => Ok(None),
                    Some(u) => {
                        let conns = u
                            .conns
                            .iter()
                            .map(|c| (c.conn_ref.as_str(), c.online_at, &c.meta_json[..]));
                        let template = record(py, tenant_py, tenant_py, 0.0, py.None().bind(py))?;
                        let rec = user_record(
                            &mut PySink::new(py),
                            &mut RefMemo::default(),
                            &mut MetaMemo::default(),
                            r,
                            &template,
                            &u.user,
                            u.joined_at,
                            &u.meta_json,
                            conns,
                        )?;
                        Ok(Some(rec))
                    }
                }
            }
        }
    }

    fn list<'py>(
        &self,
        py: Python<'py>,
        tenant: &TenantId,
        tenant_py: &Bound<'py, PyString>,
        room: &str,
    ) -> PyResult<Bound<'py, PyList>> {
        tenant_backend::check_rooms_call(py, tenant, None, "list")?;
        check_room(room).map_err(presence_error)?;
        match self {
            Engine::Memory(timeout) => {
                // Under the shard lock: only `Arc` clones and Rust copies,
                // no Python code; the records are built after, every dict
                // and list of them new.
                // Every user's connections in one vector (a user's are the
                // next `n` of it): no allocation per user.
                let mut users: Vec<Listed> = Vec::new();
                let mut conns: Vec<Stored> = Vec::new();
                reclaiming(|graveyard| {
                    MEMORY.list(tenant, room, *timeout, Instant::now(), graveyard, |p| {
                        // The user id is copied only for a record not made yet.
                        let user = p.meta.record.get().is_none().then(|| p.user.to_owned());
                        conns.extend(p.conns.iter().map(|c| Arc::clone(c.payload())));
                        users.push((user, p.joined_at, Arc::clone(p.meta), p.conns.len()))
                    })
                });
                let mut conns = conns.iter();
                let records = users
                    .into_iter()
                    .map(|(user, joined_at, meta, n)| {
                        let template = match (meta.record.get(), user) {
                            (Some(template), _) => template.bind(py).clone(),
                            (None, user) => {
                                let user = PyString::new(py, user.as_deref().unwrap_or_default());
                                let template =
                                    record(py, &user, tenant_py, joined_at, py.None().bind(py))?;
                                let _ = meta.record.set(template.clone().unbind());
                                template
                            }
                        };
                        let rec = template.copy()?;
                        rec.set_item(intern!(py, "meta"), meta.thaw(py)?)?;
                        let mut entries = conns.by_ref().take(n).map(|entry| entry.entry(py));
                        let metas = match (n, entries.next()) {
                            // The usual user: one connection, no vector.
                            (1, Some(only)) => PyList::new(py, [only?])?,
                            (_, first) => PyList::new(
                                py,
                                first
                                    .into_iter()
                                    .chain(entries)
                                    .collect::<PyResult<Vec<_>>>()?,
                            )?,
                        };
                        rec.set_item(intern!(py, "metas"), metas)?;
                        Ok(rec)
                    })
                    .collect::<PyResult<Vec<_>>>()?;
                PyList::new(py, records)
            }
            Engine::Redis(r) => {
                let listing = py.detach(|| r.list(tenant, room)).map_err(presence_error)?;
                redis_records(py, r, tenant_py, &listing)
            }
        }
    }

    fn count(&self, py: Python<'_>, tenant: &TenantId, room: &str) -> PyResult<u64> {
        tenant_backend::check_rooms_call(py, tenant, None, "count")?;
        check_room(room).map_err(presence_error)?;
        match self {
            Engine::Memory(timeout) => {
                let n = reclaiming(|graveyard| {
                    MEMORY.count(tenant, room, *timeout, Instant::now(), graveyard)
                });
                Ok(n as u64)
            }
            Engine::Redis(r) => py.detach(|| r.count(tenant, room)).map_err(presence_error),
        }
    }

    /// Refreshes one connection of the user, or all of them (`conn_ref`
    /// `None`); how many were refreshed.
    fn heartbeat(
        &self,
        py: Python<'_>,
        tenant: &TenantId,
        room: &str,
        user: &Bound<'_, PyAny>,
        conn_ref: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let user = checked_user(room, user)?;
        let user_text = user.to_str()?;
        tenant_backend::check_rooms_call(py, tenant, Some(user_text), "heartbeat")?;
        let conn_ref = conn_ref.map(checked_ref).transpose()?;
        let ref_text = conn_ref.as_ref().map(|r| r.to_str()).transpose()?;
        match self {
            Engine::Memory(timeout) => Ok(reclaiming(|graveyard| {
                MEMORY.heartbeat(
                    tenant,
                    room,
                    user_text,
                    ref_text,
                    *timeout,
                    Instant::now(),
                    graveyard,
                )
            }) as u64),
            Engine::Redis(r) => py
                .detach(|| r.heartbeat(tenant, room, user_text, ref_text))
                .map_err(presence_error),
        }
    }

    fn cleanup_stale(&self, py: Python<'_>, tenant: &TenantId, room: &str) -> PyResult<u64> {
        tenant_backend::check_rooms_call(py, tenant, None, "cleanup")?;
        check_room(room).map_err(presence_error)?;
        match self {
            Engine::Memory(timeout) => {
                let n = reclaiming(|graveyard| {
                    MEMORY.cleanup_stale(tenant, room, *timeout, Instant::now(), graveyard)
                });
                Ok(n as u64)
            }
            Engine::Redis(r) => py
                .detach(|| r.cleanup_stale(tenant, room))
                .map_err(presence_error),
        }
    }
}

/// One user of a memory room, taken out under the shard lock: id (when its
/// record template is not made yet), `joined_at`, user-level meta, and how
/// many connection entries of the listing's vector are its.
type Listed = (Option<String>, f64, Stored, usize);

/// Records from Redis: every meta of the room decoded once, in Rust,
/// straight into the records' dicts (one [`PySink`], so each meta key is
/// made once for the whole room); ids, refs, the tenant and the times need
/// no JSON. Each record is a copy of one template dict holding the five
/// keys (a C-level copy of a clean dict; the four per-user values then
/// replace values in place, no insert, no resize), a connection ref is
/// made once while consecutive connections share it (djust's `join` gives
/// every user the same one), and the lists are made at their final size.
/// Python's collector is paused while they are built (see [`GcPaused`]).
fn redis_records<'py>(
    py: Python<'py>,
    r: &RedisPresence,
    tenant_py: &Bound<'py, PyString>,
    listing: &Listing,
) -> PyResult<Bound<'py, PyList>> {
    let _paused = GcPaused::new(py);
    let mut sink = PySink::new(py);
    let template = record(py, tenant_py, tenant_py, 0.0, py.None().bind(py))?;
    template.set_item(intern!(py, "metas"), py.None())?;
    let mut refs = RefMemo::default();
    let mut metas = MetaMemo::default();
    let mut records = Vec::with_capacity(listing.len());
    for u in listing.users() {
        let conns = u.conns().map(|c| (c.conn_ref, c.online_at, c.meta_json));
        let rec = user_record(
            &mut sink,
            &mut refs,
            &mut metas,
            r,
            &template,
            u.user,
            u.joined_at,
            u.meta_json,
            conns,
        )?;
        records.push(rec);
    }
    PyList::new(py, records)
}

/// The last connection ref made, reused while the next is the same text.
#[derive(Default)]
struct RefMemo<'py> {
    last: Option<(String, Bound<'py, PyString>)>,
}

impl<'py> RefMemo<'py> {
    fn get(&mut self, py: Python<'py>, conn_ref: &str) -> Bound<'py, PyString> {
        match &self.last {
            Some((text, made)) if text == conn_ref => made.clone(),
            _ => {
                let made = PyString::new(py, conn_ref);
                self.last = Some((conn_ref.to_owned(), made.clone()));
                made
            }
        }
    }
}

/// The last user-level meta decoded, while it is a flat dict: the next
/// user whose meta has the same JSON gets a copy of it (one C call) instead
/// of a parse. A flat dict's str, int and float leaves are immutable, so
/// the copies share nothing a caller can change; no Python code runs while
/// the records are built, so the dict copied is still as decoded.
#[derive(Default)]
struct MetaMemo<'py, 'a> {
    last: Option<(&'a [u8], Bound<'py, PyDict>)>,
}

impl<'py, 'a> MetaMemo<'py, 'a> {
    fn decode(
        &mut self,
        sink: &mut PySink<'py>,
        r: &RedisPresence,
        meta_json: &'a [u8],
    ) -> PyResult<(Bound<'py, PyAny>, bool)> {
        if let Some((json, dict)) = &self.last {
            if *json == meta_json {
                return Ok((dict.copy()?.into_any(), true));
            }
        }
        let (meta, flat) = sink
            .decode_flat(meta_json)
            .map_err(|e| malformed_meta(r, &e))?;
        self.last = match meta.cast::<PyDict>() {
            Ok(d) if flat => Some((meta_json, d.clone())),
            _ => None,
        };
        Ok((meta, flat))
    }
}

/// One user's record from what Redis holds: a copy of `template` (the
/// record's keys, the tenant filled in) with this user's values.
#[allow(clippy::too_many_arguments)]
fn user_record<'py, 'a>(
    sink: &mut PySink<'py>,
    refs: &mut RefMemo<'py>,
    metas: &mut MetaMemo<'py, 'a>,
    r: &RedisPresence,
    template: &Bound<'py, PyDict>,
    user: &str,
    joined_at: f64,
    meta_json: &'a [u8],
    conns: impl Iterator<Item = (&'a str, f64, &'a [u8])>,
) -> PyResult<Bound<'py, PyDict>> {
    let py = template.py();
    let (meta, flat) = metas.decode(sink, r, meta_json)?;
    let rec = template.copy()?;
    rec.set_item(intern!(py, "id"), PyString::new(py, user))?;
    rec.set_item(intern!(py, "joined_at"), joined_at)?;
    let mut entries = Vec::with_capacity(1);
    for (conn_ref, online_at, conn_json) in conns {
        // A connection's meta is most often the user-level meta's JSON (a
        // user-keyed `join`, a user's latest tab): a flat dict decoded once
        // is copied (one C call; its str, int and float leaves are
        // immutable, so sharing them shares nothing a caller can change).
        let conn_meta = match meta.cast::<PyDict>() {
            Ok(d) if flat && conn_json == meta_json => d.copy()?.into_any(),
            _ => decode_meta(sink, r, conn_json)?,
        };
        entries.push(own_entry(
            py,
            conn_meta,
            &refs.get(py, conn_ref),
            online_at,
        )?);
    }
    rec.set_item(intern!(py, "meta"), meta)?;
    rec.set_item(intern!(py, "metas"), PyList::new(py, entries)?)?;
    Ok(rec)
}

/// Python's cyclic garbage collector paused while a large result is built
/// (the GIL held throughout, so no other thread sees the pause). Building
/// a 1,000-user listing allocates ~5,000 dicts and lists, and with the
/// collector on that triggers a young-generation collection every 700 of
/// them, each walking what was just built, to find no garbage: about a
/// fifth of the listing's time. Restored on drop (it stays off if it was).
struct GcPaused<'py> {
    py: Python<'py>,
    was_enabled: bool,
}

impl<'py> GcPaused<'py> {
    fn new(py: Python<'py>) -> Self {
        let was_enabled = gc_call(py, "disable").is_ok_and(|was| was);
        GcPaused { py, was_enabled }
    }
}

impl Drop for GcPaused<'_> {
    fn drop(&mut self) {
        if self.was_enabled {
            let _ = gc_call(self.py, "enable");
        }
    }
}

static GC_MODULE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `gc.isenabled()` and then `gc.<name>()`: whether it was enabled.
fn gc_call(py: Python<'_>, name: &str) -> PyResult<bool> {
    let gc = GC_MODULE.get_or_try_init(py, || py.import("gc").map(|m| m.into_any().unbind()))?;
    let gc = gc.bind(py);
    let was = gc.call_method0(intern!(py, "isenabled"))?.is_truthy()?;
    gc.call_method0(name)?;
    Ok(was)
}

/// One stored meta, decoded; malformed JSON is a `BackendError` naming the
/// Redis server.
fn decode_meta<'py>(
    sink: &mut PySink<'py>,
    r: &RedisPresence,
    json: &[u8],
) -> PyResult<Bound<'py, PyAny>> {
    sink.decode(json).map_err(|e| malformed_meta(r, &e))
}

/// [`meta_entry`] of a meta just decoded (so nobody else holds it): a dict
/// gets its `ref` and `online_at` in place, no copy.
fn own_entry<'py>(
    py: Python<'py>,
    meta: Bound<'py, PyAny>,
    conn_ref: &Bound<'py, PyString>,
    online_at: f64,
) -> PyResult<Bound<'py, PyDict>> {
    match meta.cast_into::<PyDict>() {
        Ok(entry) => {
            entry.set_item(intern!(py, "ref"), conn_ref)?;
            entry.set_item(intern!(py, "online_at"), online_at)?;
            Ok(entry)
        }
        Err(e) => meta_entry(py, &e.into_inner(), conn_ref, online_at),
    }
}

fn malformed_meta(r: &RedisPresence, e: &PyErr) -> PyErr {
    errors::BackendError::new_err(format!(
        "Redis at {} holds a presence record whose meta is not JSON: {e}",
        r.store().url()
    ))
}

fn checked_timeout(timeout: f64) -> PyResult<Duration> {
    timeout_from_secs(timeout).map_err(presence_error)
}

/// Runs one memory-store operation. The presences it unlinks (Python
/// dicts) come back in the graveyard and are dropped here, after the shard
/// lock is released, so no Python destructor ever runs under it.
fn reclaiming<R>(op: impl FnOnce(&mut Vec<Stored>) -> R) -> R {
    let mut graveyard = Vec::new();
    let result = op(&mut graveyard);
    drop(graveyard);
    result
}

/// The presences of `tenant` in this process's memory store: counted, or
/// removed (`tenantry.lifecycle`).
pub(super) fn purge_memory(tenant: &TenantId, dry_run: bool) -> usize {
    if dry_run {
        MEMORY.tenant_presences(tenant)
    } else {
        reclaiming(|graveyard| MEMORY.clear_tenant(tenant, graveyard))
    }
}

/// The presence space of the shared live rooms one owner hosts on the rows
/// it granted (`tenantry.sharing.shared_room`, docs/collaboration.md#live-rooms):
/// `TenantId::shared_rooms_of(owner)`, `-rooms.<owner>`, which no tenant id
/// and no caller-named key can name. Only a presence backend takes it in
/// place of a tenant id (`TenantAwareMemoryBackend(SharedRoomSpace("acme"))`);
/// its records carry the space's id as `tenant_id` (tenantry's shared room
/// replaces it with each member's tenant).
#[pyclass(module = "tenantry", name = "SharedRoomSpace", frozen, eq, hash)]
#[derive(PartialEq, Eq, Hash)]
pub struct SharedRoomSpace {
    space: TenantId,
    owner: TenantId,
}

#[pymethods]
impl SharedRoomSpace {
    #[new]
    fn new(owner: &Bound<'_, PyAny>) -> PyResult<Self> {
        let owner = id_from_py(owner)?;
        Ok(SharedRoomSpace {
            space: TenantId::shared_rooms_of(&owner),
            owner,
        })
    }

    /// The tenant that hosts the rooms (the owner of the granted rows).
    #[getter]
    fn owner(&self) -> &str {
        self.owner.as_str()
    }

    /// The space's own id (`-rooms.<owner>`), the tenant of its keys.
    #[getter]
    fn id(&self) -> &str {
        self.space.as_str()
    }

    fn __repr__(&self) -> String {
        format!("SharedRoomSpace({:?})", self.owner.as_str())
    }
}

/// A presence backend's identity: a tenant id, or a [`SharedRoomSpace`].
fn presence_scope(py: Python<'_>, tenant_id: &Bound<'_, PyAny>) -> PyResult<Scope> {
    if let Ok(space) = tenant_id.cast::<SharedRoomSpace>() {
        let tenant = space.get().space.clone();
        let tenant_py = PyString::intern(py, tenant.as_str()).unbind();
        return Ok(Scope { tenant, tenant_py });
    }
    Scope::new(py, tenant_id)
}

/// In-memory presence for one tenant (the store itself is shared by the
/// process and sharded; see `docs/presence.md`).
#[pyclass(
    module = "tenantry",
    name = "TenantAwareMemoryBackend",
    frozen,
    subclass
)]
pub struct MemoryBackend(PerTenant<Presence>);

/// Redis presence for one tenant; all tenants on one URL share one pool.
#[pyclass(
    module = "tenantry",
    name = "TenantAwareRedisBackend",
    frozen,
    subclass
)]
pub struct RedisBackend(PerTenant<Presence>);

/// djust's global presence backend when tenantry is installed into djust:
/// every call finds its tenant from the `tenant:<id>:` prefix that
/// `TenantMixin.get_presence_key()` puts on the key, and/or the tenant bound
/// in the current context. Both present: they must agree. Neither: the call
/// fails (`TenantNotSetError`) instead of landing in a shared space.
///
/// Follows the current config (`PRESENCE_BACKEND`, `PRESENCE_REDIS_URL`,
/// `PRESENCE_TIMEOUT`, `TENANT_KEY_PREFIX`, Redis timeouts): when Django's
/// settings change, the next call uses the new ones.
#[pyclass(module = "tenantry", name = "TenantPresenceRouter", frozen)]
pub struct Router(StoreRouter<Presence>);

tenant_store_classes! {
    kind: Presence,
    router_key: presence_key,

    // djust's `PresenceBackend` interface: the same on the per-tenant
    // backends (the key is the room) and on the router (the key names the
    // tenant and the room).
    keyed {
        #[pyo3(signature = (presence_key, user_id, meta=None))]
        fn join<'py>(
            &self,
            py: Python<'py>,
            presence_key: &str,
            user_id: &Bound<'py, PyAny>,
            meta: Option<&Bound<'py, PyAny>>,
        ) -> PyResult<Bound<'py, PyDict>> {
            self.0.at(py, presence_key, |engine, at| {
                engine.join(py, at.tenant, &at.tenant_py(py), at.name, user_id, meta)
            })
        }

        fn leave<'py>(
            &self,
            py: Python<'py>,
            presence_key: &str,
            user_id: &Bound<'py, PyAny>,
        ) -> PyResult<Option<Bound<'py, PyDict>>> {
            self.0.at(py, presence_key, |engine, at| {
                engine.leave(py, at.tenant, &at.tenant_py(py), at.name, user_id)
            })
        }

        /// Tracks one connection (`ref`) of the user; the diff it caused.
        #[pyo3(signature = (presence_key, user_id, r#ref, meta=None))]
        fn track<'py>(
            &self,
            py: Python<'py>,
            presence_key: &str,
            user_id: &Bound<'py, PyAny>,
            r#ref: &Bound<'py, PyAny>,
            meta: Option<&Bound<'py, PyAny>>,
        ) -> PyResult<Bound<'py, PyDict>> {
            self.0.at(py, presence_key, |engine, at| {
                engine.track(py, at.tenant, &at.tenant_py(py), at.name, user_id, r#ref, meta)
            })
        }

        /// Removes one connection (`ref`) of the user; the diff it caused.
        #[pyo3(signature = (presence_key, user_id, r#ref))]
        fn untrack<'py>(
            &self,
            py: Python<'py>,
            presence_key: &str,
            user_id: &Bound<'py, PyAny>,
            r#ref: &Bound<'py, PyAny>,
        ) -> PyResult<Bound<'py, PyDict>> {
            self.0.at(py, presence_key, |engine, at| {
                engine.untrack(py, at.tenant, &at.tenant_py(py), at.name, user_id, r#ref)
            })
        }

        fn list<'py>(&self, py: Python<'py>, presence_key: &str) -> PyResult<Bound<'py, PyList>> {
            self.0.at(py, presence_key, |engine, at| {
                engine.list(py, at.tenant, &at.tenant_py(py), at.name)
            })
        }

        fn count(&self, py: Python<'_>, presence_key: &str) -> PyResult<u64> {
            self.0.at(py, presence_key, |engine, at| engine.count(py, at.tenant, at.name))
        }

        /// Refreshes one connection of the user, or all of them without
        /// `ref` (what is gone stays gone); how many were refreshed.
        #[pyo3(signature = (presence_key, user_id, r#ref=None))]
        fn heartbeat(
            &self,
            py: Python<'_>,
            presence_key: &str,
            user_id: &Bound<'_, PyAny>,
            r#ref: Option<&Bound<'_, PyAny>>,
        ) -> PyResult<u64> {
            self.0.at(py, presence_key, |engine, at| {
                engine.heartbeat(py, at.tenant, at.name, user_id, r#ref)
            })
        }

        fn cleanup_stale(&self, py: Python<'_>, presence_key: &str) -> PyResult<u64> {
            self.0.at(py, presence_key, |engine, at| {
                engine.cleanup_stale(py, at.tenant, at.name)
            })
        }
    }

    per_tenant {
        /// Seconds without a heartbeat after which a presence is gone.
        #[getter]
        fn timeout(&self) -> f64 {
            self.0.engine.timeout_secs()
        }
    }

    memory MemoryBackend {
        #[new]
        #[pyo3(signature = (tenant_id, timeout=60.0))]
        fn new(py: Python<'_>, tenant_id: &Bound<'_, PyAny>, timeout: f64) -> PyResult<Self> {
            let engine = Engine::Memory(checked_timeout(timeout)?);
            Ok(MemoryBackend(PerTenant {
                scope: presence_scope(py, tenant_id)?,
                engine,
            }))
        }

        /// Removes every presence of `tenant_id`; returns how many went.
        /// With another tenant bound: `TenantMismatchError`.
        #[classmethod]
        fn clear_tenant(cls: &Bound<'_, PyType>, tenant_id: &Bound<'_, PyAny>) -> PyResult<usize> {
            let tenant = id_from_py(tenant_id)?;
            tenant_backend::refuse_naming_another(
                cls.py(),
                &tenant,
                "TenantAwareMemoryBackend.clear_tenant",
            )?;
            Ok(reclaiming(|graveyard| {
                MEMORY.clear_tenant(&tenant, graveyard)
            }))
        }

        /// Removes every presence of every tenant; returns how many went.
        /// Trusted code only, with no tenant bound (`TenantMismatchError`
        /// otherwise: one tenant's code never wipes every tenant's rooms).
        #[classmethod]
        fn clear_all(cls: &Bound<'_, PyType>) -> PyResult<usize> {
            tenant_backend::refuse_while_bound(cls.py(), "TenantAwareMemoryBackend.clear_all()")?;
            Ok(reclaiming(|graveyard| MEMORY.clear_all(graveyard)))
        }

        /// Frees every room whose presences have all expired, now (this also
        /// happens a few rooms at a time on every operation). Returns how many
        /// rooms went.
        #[classmethod]
        fn reclaim_expired(_cls: &Bound<'_, PyType>) -> usize {
            reclaiming(|graveyard| MEMORY.reclaim_expired(Instant::now(), graveyard))
        }

        /// `(rooms, presences)` held by the whole process store (a presence is
        /// a user in a room), expired but not yet reclaimed ones included.
        #[classmethod]
        fn store_stats(_cls: &Bound<'_, PyType>) -> (usize, usize) {
            let stats = MEMORY.stats();
            (stats.rooms, stats.presences)
        }

        /// Connections held by the whole process store (expired but not yet
        /// reclaimed ones included).
        #[classmethod]
        fn store_connections(_cls: &Bound<'_, PyType>) -> usize {
            MEMORY.stats().connections
        }

        /// Sets every tenant's caps in the memory store
        /// (`PRESENCE_TENANT_MAX_ROOMS`, `_USERS`, `_CONNECTIONS`) and the
        /// largest meta of any presence backend (`PRESENCE_MAX_META_BYTES`);
        /// `None` keeps a value. What tenants hold already stays. Trusted
        /// code only, with no tenant bound (`TenantMismatchError` otherwise:
        /// the caps are every tenant's); tenantry applies `DJUST_CONFIG`'s
        /// with `apply_store_limits()`.
        #[classmethod]
        #[pyo3(signature = (*, max_rooms=None, max_users=None, max_connections=None, max_meta_bytes=None))]
        fn set_limits(
            cls: &Bound<'_, PyType>,
            max_rooms: Option<usize>,
            max_users: Option<usize>,
            max_connections: Option<usize>,
            max_meta_bytes: Option<usize>,
        ) -> PyResult<()> {
            tenant_backend::refuse_while_bound(cls.py(), "TenantAwareMemoryBackend.set_limits()")?;
            let caps = MEMORY.caps();
            apply_limits(
                Caps {
                    rooms: max_rooms.unwrap_or(caps.rooms),
                    users: max_users.unwrap_or(caps.users),
                    connections: max_connections.unwrap_or(caps.connections),
                },
                max_meta_bytes.unwrap_or_else(|| META_LIMIT.load(Ordering::Relaxed)),
            );
            Ok(())
        }

        /// `{"max_rooms", "max_users", "max_connections", "max_meta_bytes"}` in
        /// force.
        #[classmethod]
        fn limits<'py>(cls: &Bound<'py, PyType>) -> PyResult<Bound<'py, PyDict>> {
            let caps = MEMORY.caps();
            let d = PyDict::new(cls.py());
            d.set_item("max_rooms", caps.rooms)?;
            d.set_item("max_users", caps.users)?;
            d.set_item("max_connections", caps.connections)?;
            d.set_item("max_meta_bytes", META_LIMIT.load(Ordering::Relaxed))?;
            Ok(d)
        }

        /// `{"rooms", "users", "connections"}` `tenant_id` holds in the memory
        /// store, as its caps count them (O(1)).
        #[classmethod]
        fn tenant_stats<'py>(
            cls: &Bound<'py, PyType>,
            tenant_id: &Bound<'py, PyAny>,
        ) -> PyResult<Bound<'py, PyDict>> {
            let tenant = id_from_py(tenant_id)?;
            tenant_backend::refuse_naming_another(
                cls.py(),
                &tenant,
                "TenantAwareMemoryBackend.tenant_stats",
            )?;
            let held = MEMORY.held(&tenant);
            let d = PyDict::new(cls.py());
            d.set_item("rooms", held.rooms)?;
            d.set_item("users", held.users)?;
            d.set_item("connections", held.connections)?;
            Ok(d)
        }
    }

    redis RedisBackend {
        /// Does not connect: Redis may be down when the backend is made.
        #[new]
        #[pyo3(signature = (
            tenant_id,
            redis_url=crate::config::DEFAULT_REDIS_URL,
            key_prefix="djust",
            timeout=60.0,
            *,
            connect_timeout=1.0,
            socket_timeout=1.0,
        ))]
        fn new(
            py: Python<'_>,
            tenant_id: &Bound<'_, PyAny>,
            redis_url: &str,
            key_prefix: &str,
            timeout: f64,
            connect_timeout: f64,
            socket_timeout: f64,
        ) -> PyResult<Self> {
            let scope = presence_scope(py, tenant_id)?;
            let timeout = checked_timeout(timeout)?;
            let (store, prefix) = redis_target(redis_url, key_prefix, connect_timeout, socket_timeout)?;
            Ok(RedisBackend(PerTenant {
                scope,
                engine: Engine::Redis(RedisPresence::new(store, prefix, timeout)),
            }))
        }

        /// The room's four Redis keys: `(users, connections, refs, data)`
        /// (three sorted sets and a hash).
        fn keys_for(&self, presence_key: &str) -> PyResult<(String, String, String, String)> {
            check_room(presence_key).map_err(presence_error)?;
            match &self.0.engine {
                Engine::Redis(r) => {
                    let [users, conns, refs, data] = r.keys(&self.0.scope.tenant, presence_key);
                    Ok((users, conns, refs, data))
                }
                Engine::Memory(_) => Ok(Default::default()),
            }
        }
    }

    router Router {}
}
