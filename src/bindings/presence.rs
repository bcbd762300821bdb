//! Presence backends for Python: `TenantAwareMemoryBackend`,
//! `TenantAwareRedisBackend` (djust's `PresenceBackend` interface, one
//! tenant each) and `TenantPresenceRouter` (the one object tenantry installs
//! as djust's global presence backend; it finds the tenant of every call).
//!
//! Records are dicts `{"id", "tenant_id", "joined_at", "meta"}`. The memory
//! store keeps each record dict itself (no JSON; `list` only takes new
//! references), like djust's memory backend. Redis stores the meta as JSON
//! and `list` decodes every record of a room with one `json.loads` call.
//! The GIL is released around every Redis round trip.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyBytes, PyDict, PyInt, PyList, PyString, PyType};

use super::errors::{self, presence_error};
use super::tenant_backend::{self, redis_target, RedisEngine, Scope, TenantRouter};
use super::tenant_info::{id_from_py, type_name};
use crate::keys::KeyPrefix;
use crate::presence::memory::{wall_clock, MemoryPresence};
use crate::presence::redis::{RedisPresence, StoredPresence};
use crate::presence::{check_room, check_user, timeout_from_secs};
use crate::redis_store::RedisStore;
use crate::tenant_id::TenantId;

/// The process-wide in-memory store, shared by every memory backend object
/// (two objects for one tenant see the same presences, as in djust).
static MEMORY: LazyLock<MemoryPresence<Py<PyDict>>> = LazyLock::new(MemoryPresence::new);

static JSON_ENCODE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static JSON_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

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

fn json_loads<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let loads = JSON_LOADS.import(py, "json", "loads")?;
    loads.call1((PyBytes::new(py, data),))
}

/// A user id as a Python `str` (ints become their decimal text).
/// Checks the room name and the user id of a per-user operation; the user id
/// as a Python str.
fn checked_user<'py>(room: &str, user: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
    check_room(room).map_err(presence_error)?;
    let user = user_str(user)?;
    check_user(user.to_str()?).map_err(presence_error)?;
    Ok(user)
}

fn user_str<'py>(user: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
    if let Ok(s) = user.cast::<PyString>() {
        return Ok(s.clone());
    }
    if user.is_instance_of::<PyInt>() && !user.is_instance_of::<PyBool>() {
        return user.str();
    }
    Err(PyTypeError::new_err(format!(
        "user_id must be a str or an int, not {}",
        type_name(user)
    )))
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

fn meta_or_empty<'py>(py: Python<'py>, meta: Option<&Bound<'py, PyAny>>) -> Bound<'py, PyAny> {
    match meta {
        Some(m) if !m.is_none() => m.clone(),
        _ => PyDict::new(py).into_any(),
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

/// How one tenant's (or the router's) presence calls are carried out: the
/// memory store (with the presence timeout) or Redis.
type Engine = tenant_backend::Engine<Duration, RedisPresence>;

impl Engine {
    fn timeout_secs(&self) -> f64 {
        match self {
            Engine::Memory(timeout) => timeout.as_secs_f64(),
            Engine::Redis(r) => r.timeout_secs(),
        }
    }

    fn join<'py>(
        &self,
        py: Python<'py>,
        tenant: &TenantId,
        tenant_py: &Bound<'py, PyString>,
        room: &str,
        user: &Bound<'py, PyAny>,
        meta: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let user = checked_user(room, user)?;
        let user_text = user.to_str()?;
        let meta = meta_or_empty(py, meta);
        match self {
            Engine::Memory(timeout) => {
                let wall = wall_clock();
                let rec = record(py, &user, tenant_py, wall, &meta)?;
                let joined_at = reclaiming(|graveyard| {
                    MEMORY.join(
                        tenant,
                        room,
                        user_text,
                        rec.clone().unbind(),
                        *timeout,
                        Instant::now(),
                        wall,
                        graveyard,
                    )
                });
                if joined_at != wall {
                    rec.set_item(intern!(py, "joined_at"), joined_at)?;
                }
                Ok(rec)
            }
            Engine::Redis(r) => {
                let meta_json = json_encode(py, &meta)?;
                let joined_at = py
                    .detach(|| r.join(tenant, room, user_text, &meta_json))
                    .map_err(presence_error)?;
                record(py, &user, tenant_py, joined_at, &meta)
            }
        }
    }

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
        match self {
            Engine::Memory(timeout) => {
                let gone = reclaiming(|graveyard| {
                    MEMORY.leave(tenant, room, user_text, *timeout, Instant::now(), graveyard)
                });
                Ok(gone.map(|rec| rec.into_bound(py)))
            }
            Engine::Redis(r) => {
                let gone = py
                    .detach(|| r.leave(tenant, room, user_text))
                    .map_err(presence_error)?;
                match gone {
                    None => Ok(None),
                    Some(p) => {
                        let meta =
                            json_loads(py, p.meta_json()).map_err(|e| malformed_meta(r, &e))?;
                        Ok(Some(record(py, &user, tenant_py, p.joined_at, &meta)?))
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
        check_room(room).map_err(presence_error)?;
        match self {
            Engine::Memory(timeout) => {
                let mut out: Vec<Py<PyDict>> = Vec::new();
                reclaiming(|graveyard| {
                    MEMORY.list(
                        tenant,
                        room,
                        *timeout,
                        Instant::now(),
                        graveyard,
                        // Only increfs under the shard lock: no Python code runs.
                        |p| out.push(p.payload.clone_ref(py)),
                    )
                });
                PyList::new(py, out)
            }
            Engine::Redis(r) => {
                let stored = py.detach(|| r.list(tenant, room)).map_err(presence_error)?;
                redis_records(py, r, tenant_py, &stored)
            }
        }
    }

    fn count(&self, py: Python<'_>, tenant: &TenantId, room: &str) -> PyResult<u64> {
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

    fn heartbeat(
        &self,
        py: Python<'_>,
        tenant: &TenantId,
        room: &str,
        user: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let user = checked_user(room, user)?;
        let user_text = user.to_str()?;
        match self {
            Engine::Memory(timeout) => Ok(reclaiming(|graveyard| {
                MEMORY.heartbeat(tenant, room, user_text, *timeout, Instant::now(), graveyard)
            })),
            Engine::Redis(r) => py
                .detach(|| r.heartbeat(tenant, room, user_text))
                .map_err(presence_error),
        }
    }

    fn cleanup_stale(&self, py: Python<'_>, tenant: &TenantId, room: &str) -> PyResult<u64> {
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

    /// Never raises for an unreachable Redis: reports it.
    fn health_check<'py>(
        &self,
        py: Python<'py>,
        tenant: Option<&Bound<'py, PyString>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        self.report_health(py, tenant, |d| {
            let stats = MEMORY.stats();
            d.set_item("total_rooms", stats.rooms)?;
            d.set_item("total_presences", stats.presences)?;
            if let Some(t) = tenant {
                // djust.tenants' key: this tenant's presences, all rooms.
                let id = TenantId::parse(&t.to_string_lossy())
                    .map_err(|e| errors::invalid_tenant_id(&t.to_string_lossy(), &e))?;
                d.set_item("presence_count", MEMORY.tenant_presences(&id))?;
            }
            Ok(())
        })
    }
}

/// Records from Redis. The metas of the whole room are decoded by ONE
/// `json.loads` of a JSON array assembled here; ids, tenant and `joined_at`
/// need no JSON.
fn redis_records<'py>(
    py: Python<'py>,
    r: &RedisPresence,
    tenant_py: &Bound<'py, PyString>,
    stored: &[StoredPresence],
) -> PyResult<Bound<'py, PyList>> {
    let total: usize = stored.iter().map(|p| p.meta_json().len() + 1).sum();
    let mut array = Vec::with_capacity(total + 2);
    array.push(b'[');
    for (i, p) in stored.iter().enumerate() {
        if i > 0 {
            array.push(b',');
        }
        array.extend_from_slice(p.meta_json());
    }
    array.push(b']');
    let metas = json_loads(py, &array).map_err(|e| malformed_meta(r, &e))?;
    let metas = metas.cast_into::<PyList>()?;
    if metas.len() != stored.len() {
        return Err(errors::BackendError::new_err(format!(
            "Redis at {} holds presence metas that are not one JSON value each",
            r.store().url()
        )));
    }
    let records = stored
        .iter()
        .zip(metas.iter())
        .map(|(p, meta)| {
            record(
                py,
                &PyString::new(py, p.user()),
                tenant_py,
                p.joined_at,
                &meta,
            )
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, records)
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
fn reclaiming<R>(op: impl FnOnce(&mut Vec<Py<PyDict>>) -> R) -> R {
    let mut graveyard = Vec::new();
    let result = op(&mut graveyard);
    drop(graveyard);
    result
}

/// In-memory presence for one tenant (the store itself is shared by the
/// process and sharded; see `docs/presence.md`).
#[pyclass(
    module = "tenantry",
    name = "TenantAwareMemoryBackend",
    frozen,
    subclass
)]
pub struct MemoryBackend {
    scope: Scope,
    engine: Engine,
}

/// Redis presence for one tenant; all tenants on one URL share one pool.
#[pyclass(
    module = "tenantry",
    name = "TenantAwareRedisBackend",
    frozen,
    subclass
)]
pub struct RedisBackend {
    scope: Scope,
    engine: Engine,
}

/// The djust-facing methods, identical for both per-tenant classes.
/// (PyO3 allows one `#[pymethods]` block per class: the class's own methods
/// are passed in.)
macro_rules! tenant_backend_methods {
    ($class:ty, { $($own:tt)* }) => {
        #[pymethods]
        impl $class {
            $($own)*

            #[getter]
            fn tenant_id(&self, py: Python<'_>) -> Py<PyString> {
                self.scope.tenant_py.clone_ref(py)
            }

            /// Seconds without a heartbeat after which a presence is gone.
            #[getter]
            fn timeout(&self) -> f64 {
                self.engine.timeout_secs()
            }

            #[pyo3(signature = (presence_key, user_id, meta=None))]
            fn join<'py>(
                &self,
                py: Python<'py>,
                presence_key: &str,
                user_id: &Bound<'py, PyAny>,
                meta: Option<&Bound<'py, PyAny>>,
            ) -> PyResult<Bound<'py, PyDict>> {
                let tenant_py = self.scope.tenant_py.bind(py);
                self.engine.join(py, &self.scope.tenant, tenant_py, presence_key, user_id, meta)
            }

            fn leave<'py>(
                &self,
                py: Python<'py>,
                presence_key: &str,
                user_id: &Bound<'py, PyAny>,
            ) -> PyResult<Option<Bound<'py, PyDict>>> {
                let tenant_py = self.scope.tenant_py.bind(py);
                self.engine.leave(py, &self.scope.tenant, tenant_py, presence_key, user_id)
            }

            fn list<'py>(
                &self,
                py: Python<'py>,
                presence_key: &str,
            ) -> PyResult<Bound<'py, PyList>> {
                let tenant_py = self.scope.tenant_py.bind(py);
                self.engine.list(py, &self.scope.tenant, tenant_py, presence_key)
            }

            fn count(&self, py: Python<'_>, presence_key: &str) -> PyResult<u64> {
                self.engine.count(py, &self.scope.tenant, presence_key)
            }

            /// Refreshes the user's heartbeat (a user that is gone stays gone).
            fn heartbeat(
                &self,
                py: Python<'_>,
                presence_key: &str,
                user_id: &Bound<'_, PyAny>,
            ) -> PyResult<()> {
                self.engine
                    .heartbeat(py, &self.scope.tenant, presence_key, user_id)
                    .map(|_| ())
            }

            fn cleanup_stale(&self, py: Python<'_>, presence_key: &str) -> PyResult<u64> {
                self.engine.cleanup_stale(py, &self.scope.tenant, presence_key)
            }

            fn health_check<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
                self.engine
                    .health_check(py, Some(self.scope.tenant_py.bind(py)))
            }

            fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
                let this = slf.get();
                Ok(format!(
                    "{}(tenant_id={:?}, timeout={})",
                    slf.get_type().qualname()?.to_cow()?,
                    this.scope.tenant.as_str(),
                    this.engine.timeout_secs()
                ))
            }
        }
    };
}

tenant_backend_methods!(MemoryBackend, {
    #[new]
    #[pyo3(signature = (tenant_id, timeout=60.0))]
    fn new(py: Python<'_>, tenant_id: &Bound<'_, PyAny>, timeout: f64) -> PyResult<Self> {
        Ok(MemoryBackend {
            scope: Scope::new(py, tenant_id)?,
            engine: Engine::Memory(checked_timeout(timeout)?),
        })
    }

    /// Removes every presence of `tenant_id`; returns how many went.
    #[classmethod]
    fn clear_tenant(_cls: &Bound<'_, PyType>, tenant_id: &Bound<'_, PyAny>) -> PyResult<usize> {
        let tenant = id_from_py(tenant_id)?;
        Ok(reclaiming(|graveyard| {
            MEMORY.clear_tenant(&tenant, graveyard)
        }))
    }

    /// Removes every presence of every tenant; returns how many went.
    #[classmethod]
    fn clear_all(_cls: &Bound<'_, PyType>) -> usize {
        reclaiming(|graveyard| MEMORY.clear_all(graveyard))
    }

    /// Frees every room whose presences have all expired, now (this also
    /// happens a few rooms at a time on every operation). Returns how many
    /// rooms went.
    #[classmethod]
    fn reclaim_expired(_cls: &Bound<'_, PyType>) -> usize {
        reclaiming(|graveyard| MEMORY.reclaim_expired(Instant::now(), graveyard))
    }

    /// `(rooms, presences)` held by the whole process store, expired but
    /// not yet reclaimed ones included.
    #[classmethod]
    fn store_stats(_cls: &Bound<'_, PyType>) -> (usize, usize) {
        let stats = MEMORY.stats();
        (stats.rooms, stats.presences)
    }
});

tenant_backend_methods!(RedisBackend, {
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
        let scope = Scope::new(py, tenant_id)?;
        let timeout = checked_timeout(timeout)?;
        let (store, prefix) = redis_target(redis_url, key_prefix, connect_timeout, socket_timeout)?;
        Ok(RedisBackend {
            scope,
            engine: Engine::Redis(RedisPresence::new(store, prefix, timeout)),
        })
    }

    /// The Redis URL, password hidden.
    #[getter]
    fn redis_url(&self) -> &str {
        self.engine.redis_url()
    }

    #[getter]
    fn key_prefix(&self) -> &str {
        self.engine.key_prefix()
    }

    /// The room's two Redis keys: `(sorted set, hash)`.
    fn keys_for(&self, presence_key: &str) -> PyResult<(String, String)> {
        check_room(presence_key).map_err(presence_error)?;
        match &self.engine {
            Engine::Redis(r) => {
                let [zset, meta] = r.keys(&self.scope.tenant, presence_key);
                Ok((zset, meta))
            }
            Engine::Memory(_) => Ok((String::new(), String::new())),
        }
    }
});

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
pub struct Router(TenantRouter<Engine>);

const ROUTED: tenant_backend::Routed = tenant_backend::Routed {
    what: "presence key",
    data: "presence",
    hook: "its get_presence_key() adds the prefix",
    unprefixed_shared: false,
};

impl Router {
    fn engine(&self, py: Python<'_>) -> PyResult<Arc<Engine>> {
        self.0.engine(py, |compiled| {
            let settings = &compiled.settings;
            let timeout = checked_timeout(settings.presence_timeout)?;
            Engine::from_settings(
                &settings.presence,
                settings.redis_options,
                &settings.key_prefix,
                || timeout,
                |store, prefix| RedisPresence::new(store, prefix, timeout),
            )
        })
    }

    /// `(tenant, room)` for a djust presence key.
    fn route<'k>(&self, py: Python<'_>, presence_key: &'k str) -> PyResult<(TenantId, &'k str)> {
        self.0.route(py, presence_key)
    }
}

#[pymethods]
impl Router {
    #[new]
    fn new(current_tenant: Py<PyAny>) -> Self {
        Router(TenantRouter::new(current_tenant, &ROUTED))
    }

    /// `(tenant_id, room)` the call for `presence_key` would use (raises as
    /// the operations do).
    fn resolve(&self, py: Python<'_>, presence_key: &str) -> PyResult<(String, String)> {
        let (tenant, room) = self.route(py, presence_key)?;
        Ok((tenant.as_str().to_owned(), room.to_owned()))
    }

    #[pyo3(signature = (presence_key, user_id, meta=None))]
    fn join<'py>(
        &self,
        py: Python<'py>,
        presence_key: &str,
        user_id: &Bound<'py, PyAny>,
        meta: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (tenant, room) = self.route(py, presence_key)?;
        let tenant_py = PyString::new(py, tenant.as_str());
        self.engine(py)?
            .join(py, &tenant, &tenant_py, room, user_id, meta)
    }

    fn leave<'py>(
        &self,
        py: Python<'py>,
        presence_key: &str,
        user_id: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let (tenant, room) = self.route(py, presence_key)?;
        let tenant_py = PyString::new(py, tenant.as_str());
        self.engine(py)?
            .leave(py, &tenant, &tenant_py, room, user_id)
    }

    fn list<'py>(&self, py: Python<'py>, presence_key: &str) -> PyResult<Bound<'py, PyList>> {
        let (tenant, room) = self.route(py, presence_key)?;
        let tenant_py = PyString::new(py, tenant.as_str());
        self.engine(py)?.list(py, &tenant, &tenant_py, room)
    }

    fn count(&self, py: Python<'_>, presence_key: &str) -> PyResult<u64> {
        let (tenant, room) = self.route(py, presence_key)?;
        self.engine(py)?.count(py, &tenant, room)
    }

    fn heartbeat(
        &self,
        py: Python<'_>,
        presence_key: &str,
        user_id: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let (tenant, room) = self.route(py, presence_key)?;
        self.engine(py)?
            .heartbeat(py, &tenant, room, user_id)
            .map(|_| ())
    }

    fn cleanup_stale(&self, py: Python<'_>, presence_key: &str) -> PyResult<u64> {
        let (tenant, room) = self.route(py, presence_key)?;
        self.engine(py)?.cleanup_stale(py, &tenant, room)
    }

    fn health_check<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = self.engine(py)?.health_check(py, None)?;
        d.set_item("routing", "per-tenant")?;
        Ok(d)
    }

    /// `"tenant_memory"` or `"tenant_redis"`, per the current config.
    #[getter]
    fn backend(&self, py: Python<'_>) -> PyResult<&'static str> {
        Ok(self.engine(py)?.name())
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        match self.engine(py) {
            Ok(e) => format!("TenantPresenceRouter(backend={:?})", e.name()),
            Err(_) => "TenantPresenceRouter(unconfigured)".to_owned(),
        }
    }
}
