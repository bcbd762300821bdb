//! State backends for Python: `TenantStateMemoryBackend` and
//! `TenantStateRedisBackend` (one tenant each: `get`, `set`, `delete`,
//! `exists`, `ttl`, `incr`, `delete_tenant`), and `TenantStateRouter`, the
//! store behind tenantry's djust state adapter (it finds the tenant of every
//! call, like the presence router, and keeps djust's serialized view bytes in
//! the tenant's `view-state` space).
//!
//! Values: `bytes` (also `bytearray`, `memoryview`) are stored as bytes and
//! come back as `bytes`; an `int` in the 64-bit range is stored as a decimal
//! integer (what `incr` counts on) and comes back as `int`; anything else is
//! stored as JSON (`json`, compact separators, no ASCII escaping) and comes
//! back decoded, so a value must be JSON-able (`TypeError` otherwise).
//! The GIL is released around every Redis round trip.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyInt, PyMemoryView, PyString, PyType};

use super::config::Compiled;
use super::errors::{self, state_error};
use super::presence::json_encode;
use super::tenant_backend::{
    self, redis_target, tenant_store_classes, KeyedStore, PerTenant, RedisEngine, Routed, Scope,
    StoreEngine, StoreKind, StoreRouter,
};
use super::tenant_info::type_name;
use crate::keys::{KeyPrefix, Unscoped};
use crate::redis_store::RedisStore;
use crate::state::memory::{default_tenant_limit, MemoryState};
use crate::state::redis::RedisState;
use crate::state::{self, check_name, decode, Decoded, Space, Ttl, Value};
use crate::tenant_id::{preview, TenantId};
use crate::usage::Metric;

static JSON_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The process-wide in-memory store, shared by every memory backend object
/// and the router (two objects for one tenant see the same keys).
static MEMORY: LazyLock<MemoryState> = LazyLock::new(MemoryState::new);

/// The keys of `tenant` in this process's memory store (both spaces):
/// counted, or removed (`tenantry.lifecycle`).
pub(super) fn purge_memory(tenant: &TenantId, dry_run: bool) -> usize {
    if dry_run {
        MEMORY.tenant_keys(tenant, Instant::now())
    } else {
        MEMORY.delete_tenant(tenant, Instant::now())
    }
}

/// A Python value ready to store.
enum Incoming<'py> {
    Bytes(Bound<'py, PyBytes>),
    Owned(Vec<u8>),
    Json(String),
    Int(i64),
}

impl Incoming<'_> {
    fn value(&self) -> Value<'_> {
        match self {
            Incoming::Bytes(b) => Value::Bytes(b.as_bytes()),
            Incoming::Owned(b) => Value::Bytes(b),
            Incoming::Json(s) => Value::Json(s.as_bytes()),
            Incoming::Int(i) => Value::Int(*i),
        }
    }
}

fn incoming<'py>(py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Incoming<'py>> {
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(Incoming::Bytes(b.clone()));
    }
    if let Ok(b) = value.cast::<PyByteArray>() {
        return Ok(Incoming::Owned(b.to_vec()));
    }
    if value.is_instance_of::<PyMemoryView>() {
        let b = value.call_method0("tobytes")?;
        return Ok(Incoming::Bytes(b.cast_into::<PyBytes>()?));
    }
    if value.is_instance_of::<PyInt>() && !value.is_instance_of::<PyBool>() {
        if let Ok(i) = value.extract::<i64>() {
            return Ok(Incoming::Int(i));
        }
    }
    match json_encode(py, value) {
        Ok(text) => Ok(Incoming::Json(text)),
        Err(e)
            if e.is_instance_of::<PyTypeError>(py)
                || e.is_instance_of::<pyo3::exceptions::PyValueError>(py) =>
        {
            Err(PyTypeError::new_err(format!(
                "state values must be bytes or JSON-able, not {} ({})",
                type_name(value),
                e.value(py)
            )))
        }
        Err(e) => Err(e),
    }
}

/// A stored value on its way out (decoded outside any store lock).
enum Outgoing {
    Bytes(Py<PyBytes>),
    Json(Vec<u8>),
    Int(i64),
    Foreign,
}

fn outgoing(py: Python<'_>, stored: &[u8]) -> Outgoing {
    match decode(stored) {
        // Allocating a bytes object runs no Python code: safe under a lock.
        Some(Decoded::Bytes(b)) => Outgoing::Bytes(PyBytes::new(py, b).unbind()),
        Some(Decoded::Json(j)) => Outgoing::Json(j.to_vec()),
        Some(Decoded::Int(i)) => Outgoing::Int(i),
        None => Outgoing::Foreign,
    }
}

fn foreign(engine: &Engine, name: &str) -> PyErr {
    errors::BackendError::new_err(format!(
        "state key {} in {} holds a value that is not tenantry state",
        preview(name),
        engine.location()
    ))
}

fn to_python<'py>(
    py: Python<'py>,
    engine: &Engine,
    name: &str,
    out: Outgoing,
) -> PyResult<Bound<'py, PyAny>> {
    match out {
        Outgoing::Bytes(b) => Ok(b.into_bound(py).into_any()),
        Outgoing::Int(i) => Ok(i.into_pyobject(py)?.into_any()),
        Outgoing::Json(j) => {
            let invalid = |e: &dyn std::fmt::Display| {
                errors::BackendError::new_err(format!(
                    "state key {} in {} holds invalid JSON: {e}",
                    preview(name),
                    engine.location()
                ))
            };
            // json.loads of a str skips the encoding sniffing bytes get.
            let text = std::str::from_utf8(&j).map_err(|e| invalid(&e))?;
            let loads = JSON_LOADS.import(py, "json", "loads")?;
            loads
                .call1((PyString::new(py, text),))
                .map_err(|e| invalid(&e))
        }
        Outgoing::Foreign => Err(foreign(engine, name)),
    }
}

fn checked_ttl(ttl: Option<f64>) -> PyResult<Option<Duration>> {
    ttl.map(state::ttl_from_secs)
        .transpose()
        .map_err(state_error)
}

fn checked_name(name: &str) -> PyResult<()> {
    check_name(name).map_err(state_error)
}

impl RedisEngine for RedisState {
    fn store(&self) -> &RedisStore {
        RedisState::store(self)
    }

    fn prefix(&self) -> &KeyPrefix {
        RedisState::prefix(self)
    }
}

/// Saved state, as a kind of per-tenant store: its engine is the process's
/// memory store or Redis.
pub struct State;

type Engine = StoreEngine<State>;

/// The memory store's bounds from `settings` (`STATE_MEMORY_MAX_BYTES`,
/// `STATE_TENANT_MAX_BYTES`).
pub(super) fn apply_configured_limits(settings: &crate::config::Settings) {
    MEMORY.set_limits(
        settings.state_memory_max_bytes,
        settings.state_tenant_max_bytes,
    );
}

impl StoreKind for State {
    type Memory = ();
    type Redis = RedisState;
    /// A key without the `tenant:` scope is a view that is not a tenant view
    /// (djust saves nothing for a tenant view without a tenant): it goes to
    /// the shared space, which no tenant's space can read or be read from.
    const ROUTED: &'static Routed = &Routed {
        what: "saved view key",
        unscoped: Unscoped::Shared,
    };
    const ROUTER_NAME: &'static str = "TenantStateRouter";

    fn router_engine(compiled: &Compiled) -> PyResult<Engine> {
        let settings = &compiled.settings;
        apply_configured_limits(settings);
        Engine::from_settings(
            &settings.state,
            settings.redis_options,
            &settings.key_prefix,
            || (),
            RedisState::new,
        )
    }

    fn memory_health(d: &Bound<'_, PyDict>, _tenant: Option<&Bound<'_, PyString>>) -> PyResult<()> {
        let stats = MEMORY.stats();
        d.set_item("total_keys", stats.entries)?;
        d.set_item("used_bytes", stats.bytes)?;
        d.set_item("max_bytes", stats.limit)
    }

    fn check_resolved(name: &str) -> PyResult<()> {
        checked_name(name)
    }
}

impl Engine {
    fn get_out(
        &self,
        py: Python<'_>,
        tenant: &TenantId,
        space: Space,
        name: &str,
    ) -> PyResult<Option<Outgoing>> {
        checked_name(name)?;
        match self {
            Engine::Memory(()) => {
                Ok(MEMORY.get_with(tenant, space, name, Instant::now(), |v| outgoing(py, v)))
            }
            Engine::Redis(r) => {
                let stored = py
                    .detach(|| r.get(tenant, space, name))
                    .map_err(state_error)?;
                Ok(stored.map(|s| outgoing(py, &s)))
            }
        }
    }

    fn get<'py>(
        &self,
        py: Python<'py>,
        tenant: &TenantId,
        space: Space,
        name: &str,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.get_out(py, tenant, space, name)?
            .map(|out| to_python(py, self, name, out))
            .transpose()
    }

    fn set(
        &self,
        py: Python<'_>,
        tenant: &TenantId,
        space: Space,
        name: &str,
        value: &Value<'_>,
        ttl: Option<Duration>,
    ) -> PyResult<()> {
        checked_name(name)?;
        let bytes = match self {
            Engine::Memory(()) => MEMORY
                .set(tenant, space, name, value, ttl, Instant::now())
                .map(|b| b as u64),
            Engine::Redis(r) => py.detach(|| r.set(tenant, space, name, value, ttl)),
        }
        .map_err(state_error)?;
        // The store returns the tenant's bytes with the write: its usage
        // peak costs no lookup and no round trip (batched, see usage.rs).
        super::usage::record(py, tenant, Metric::StateBytes, bytes)
    }

    fn delete(
        &self,
        py: Python<'_>,
        tenant: &TenantId,
        space: Space,
        name: &str,
    ) -> PyResult<bool> {
        checked_name(name)?;
        match self {
            Engine::Memory(()) => Ok(MEMORY.delete(tenant, space, name, Instant::now())),
            Engine::Redis(r) => py
                .detach(|| r.delete(tenant, space, name))
                .map_err(state_error),
        }
    }

    fn exists(
        &self,
        py: Python<'_>,
        tenant: &TenantId,
        space: Space,
        name: &str,
    ) -> PyResult<bool> {
        checked_name(name)?;
        match self {
            Engine::Memory(()) => Ok(MEMORY.exists(tenant, space, name, Instant::now())),
            Engine::Redis(r) => py
                .detach(|| r.exists(tenant, space, name))
                .map_err(state_error),
        }
    }

    /// django-redis' convention: seconds left, `None` for a key that never
    /// expires, `0` for a missing key.
    fn ttl(
        &self,
        py: Python<'_>,
        tenant: &TenantId,
        space: Space,
        name: &str,
    ) -> PyResult<Option<f64>> {
        checked_name(name)?;
        let ttl = match self {
            Engine::Memory(()) => MEMORY.ttl(tenant, space, name, Instant::now()),
            Engine::Redis(r) => py
                .detach(|| r.ttl(tenant, space, name))
                .map_err(state_error)?,
        };
        Ok(match ttl {
            Ttl::Missing => Some(0.0),
            Ttl::Persistent => None,
            Ttl::Expires(d) => Some(d.as_secs_f64()),
        })
    }

    fn incr(
        &self,
        py: Python<'_>,
        tenant: &TenantId,
        space: Space,
        name: &str,
        by: i64,
    ) -> PyResult<i64> {
        checked_name(name)?;
        match self {
            Engine::Memory(()) => MEMORY.incr(tenant, space, name, by, Instant::now()),
            Engine::Redis(r) => py.detach(|| r.incr(tenant, space, name, by)),
        }
        .map_err(state_error)
    }

    fn delete_tenant(&self, py: Python<'_>, tenant: &TenantId) -> PyResult<usize> {
        match self {
            Engine::Memory(()) => Ok(MEMORY.delete_tenant(tenant, Instant::now())),
            Engine::Redis(r) => py.detach(|| r.delete_tenant(tenant)).map_err(state_error),
        }
    }

    fn delete_space(
        &self,
        py: Python<'_>,
        tenant: Option<&TenantId>,
        space: Space,
    ) -> PyResult<usize> {
        match self {
            Engine::Memory(()) => Ok(MEMORY.delete_space(tenant, space, Instant::now())),
            Engine::Redis(r) => py
                .detach(|| r.delete_space(tenant, space))
                .map_err(state_error),
        }
    }
}

/// In-memory state of one tenant (the store itself is shared by the process:
/// see `docs/state.md`).
#[pyclass(
    module = "tenantry",
    name = "TenantStateMemoryBackend",
    frozen,
    subclass
)]
pub struct MemoryBackend(PerTenant<State>);

/// Redis state of one tenant; all tenants on one URL share one pool.
#[pyclass(
    module = "tenantry",
    name = "TenantStateRedisBackend",
    frozen,
    subclass
)]
pub struct RedisBackend(PerTenant<State>);

/// The store behind tenantry's djust state adapter: a call whose key has the
/// `tenant:<id>:` prefix djust puts on the key of a `TenantMixin` view
/// (`get_state_key_prefix()`) goes to that tenant, which must agree with the
/// tenant bound in the current context, if any. The rest of the key is
/// stored in that tenant's `view-state` space, so the same session key under
/// two tenants is two entries, and one tenant's key can never reach
/// another's. A key without the prefix is a view that is not a tenant view
/// (djust saves nothing for a tenant view without a tenant): it goes to the
/// shared space, which no tenant's space can read or be read from.
///
/// Follows the current config (`STATE_BACKEND`, `STATE_REDIS_URL`,
/// `TENANT_KEY_PREFIX`, Redis timeouts, `STATE_MEMORY_MAX_BYTES`,
/// `STATE_TENANT_MAX_BYTES`).
#[pyclass(module = "tenantry", name = "TenantStateRouter", frozen)]
pub struct Router(StoreRouter<State>);

tenant_store_classes! {
    kind: State,
    router_key: key,

    // The router's calls are djust's saved views (below), not these.
    keyed {}

    per_tenant {
        /// The value at `key`, or `default` when it is missing or expired.
        #[pyo3(signature = (key, default=None))]
        fn get<'py>(
            &self,
            py: Python<'py>,
            key: &str,
            default: Option<Bound<'py, PyAny>>,
        ) -> PyResult<Bound<'py, PyAny>> {
            let found = self.0.at(py, key, |engine, at| {
                engine.get(py, at.tenant, Space::Data, at.name)
            })?;
            Ok(found.unwrap_or_else(|| default.unwrap_or_else(|| py.None().into_bound(py))))
        }

        /// Stores `value` (bytes, int, or anything JSON-able) at `key`;
        /// `ttl` in seconds (int or float), `None` for no expiry.
        #[pyo3(signature = (key, value, ttl=None))]
        fn set(
            &self,
            py: Python<'_>,
            key: &str,
            value: &Bound<'_, PyAny>,
            ttl: Option<f64>,
        ) -> PyResult<()> {
            let ttl = checked_ttl(ttl)?;
            let value = incoming(py, value)?;
            self.0.at(py, key, |engine, at| {
                engine.set(py, at.tenant, Space::Data, at.name, &value.value(), ttl)
            })
        }

        /// Removes `key`; True when it existed.
        fn delete(&self, py: Python<'_>, key: &str) -> PyResult<bool> {
            self.0.at(py, key, |engine, at| {
                engine.delete(py, at.tenant, Space::Data, at.name)
            })
        }

        fn exists(&self, py: Python<'_>, key: &str) -> PyResult<bool> {
            self.0.at(py, key, |engine, at| {
                engine.exists(py, at.tenant, Space::Data, at.name)
            })
        }

        /// Seconds until `key` expires; `None` when it never expires,
        /// `0` when it does not exist (django-redis' convention).
        fn ttl(&self, py: Python<'_>, key: &str) -> PyResult<Option<f64>> {
            self.0.at(py, key, |engine, at| {
                engine.ttl(py, at.tenant, Space::Data, at.name)
            })
        }

        /// Adds `amount` to the integer at `key` atomically and returns
        /// the result. A missing key counts as 0 (and is created without
        /// expiry); an existing key keeps its TTL.
        #[pyo3(signature = (key, amount=1))]
        fn incr(&self, py: Python<'_>, key: &str, amount: i64) -> PyResult<i64> {
            self.0.at(py, key, |engine, at| {
                engine.incr(py, at.tenant, Space::Data, at.name, amount)
            })
        }

        /// Removes every state key of this tenant (application state and
        /// djust's saved views), in batches; other tenants are not
        /// touched. Returns how many keys went.
        fn delete_tenant(&self, py: Python<'_>) -> PyResult<usize> {
            tenant_backend::refuse_naming_another(py, &self.0.scope.tenant, "delete_tenant")?;
            self.0.engine.delete_tenant(py, &self.0.scope.tenant)
        }
    }

    memory MemoryBackend {
        #[new]
        fn new(py: Python<'_>, tenant_id: &Bound<'_, PyAny>) -> PyResult<Self> {
            Ok(MemoryBackend(PerTenant::new(py, tenant_id, Engine::Memory(()))?))
        }

        /// Sets the byte bound of the process's memory store
        /// (`STATE_MEMORY_MAX_BYTES`) and one tenant's share of it
        /// (`STATE_TENANT_MAX_BYTES`; None: an eighth of `max_bytes`). Existing
        /// keys stay; writes past a bound make room or raise `QuotaExceeded`.
        #[classmethod]
        #[pyo3(signature = (max_bytes, tenant_max_bytes=None))]
        fn set_memory_limit(
            cls: &Bound<'_, PyType>,
            max_bytes: usize,
            tenant_max_bytes: Option<usize>,
        ) -> PyResult<()> {
            tenant_backend::refuse_while_bound(
                cls.py(),
                "TenantStateMemoryBackend.set_memory_limit()",
            )?;
            let tenant = tenant_max_bytes.unwrap_or_else(|| default_tenant_limit(max_bytes));
            MEMORY.set_limits(max_bytes, tenant);
            Ok(())
        }

        /// `{"keys", "bytes", "max_bytes", "tenant_max_bytes", "tenants",
        /// "effective_share"}` of the whole process store (keys expired but not
        /// yet dropped included; bytes as counted against the bound; tenants
        /// holding keys; one tenant's effective share now,
        /// `min(tenant_max_bytes, max_bytes / tenants)`).
        #[classmethod]
        fn store_stats<'py>(cls: &Bound<'py, PyType>) -> PyResult<Bound<'py, PyDict>> {
            let stats = MEMORY.stats();
            let d = PyDict::new(cls.py());
            d.set_item("keys", stats.entries)?;
            d.set_item("bytes", stats.bytes)?;
            d.set_item("max_bytes", stats.limit)?;
            d.set_item("tenant_max_bytes", stats.tenant_limit)?;
            d.set_item("tenants", stats.tenants)?;
            d.set_item("effective_share", stats.effective_share)?;
            Ok(d)
        }

        /// Bytes this tenant's keys count against its share of the store.
        #[getter]
        fn used_bytes(&self) -> usize {
            MEMORY.tenant_bytes(&self.0.scope.tenant)
        }

        /// Drops every expired key now (this also happens a few keys at a time
        /// on every operation). Returns how many went.
        #[classmethod]
        fn purge_expired(_cls: &Bound<'_, PyType>) -> usize {
            MEMORY.purge_expired(Instant::now())
        }

        /// Removes every key of every tenant; returns how many went.
        /// Trusted code only, with no tenant bound (`TenantMismatchError`).
        #[classmethod]
        fn clear_all(cls: &Bound<'_, PyType>) -> PyResult<usize> {
            tenant_backend::refuse_while_bound(cls.py(), "TenantStateMemoryBackend.clear_all()")?;
            Ok(MEMORY.clear_all())
        }
    }

    redis RedisBackend {
        /// Does not connect: Redis may be down when the backend is made.
        #[new]
        #[pyo3(signature = (
            tenant_id,
            redis_url=crate::config::DEFAULT_REDIS_URL,
            key_prefix="djust",
            *,
            connect_timeout=1.0,
            socket_timeout=1.0,
        ))]
        fn new(
            py: Python<'_>,
            tenant_id: &Bound<'_, PyAny>,
            redis_url: &str,
            key_prefix: &str,
            connect_timeout: f64,
            socket_timeout: f64,
        ) -> PyResult<Self> {
            let scope = Scope::new(py, tenant_id)?;
            let (store, prefix) = redis_target(redis_url, key_prefix, connect_timeout, socket_timeout)?;
            Ok(RedisBackend(PerTenant {
                scope,
                engine: Engine::Redis(RedisState::new(store, prefix)),
            }))
        }

        /// The Redis key holding `key` of this tenant.
        fn key_for(&self, key: &str) -> PyResult<String> {
            checked_name(key)?;
            match &self.0.engine {
                Engine::Redis(r) => Ok(r.key(&self.0.scope.tenant, Space::Data, key)),
                Engine::Memory(()) => Ok(String::new()),
            }
        }

        /// The Redis key of this tenant's index (a sorted set of its keys).
        #[getter]
        fn index_key(&self) -> String {
            match &self.0.engine {
                Engine::Redis(r) => r.index_key(&self.0.scope.tenant),
                Engine::Memory(()) => String::new(),
            }
        }
    }

    router Router {
        /// The saved bytes for djust's `key`, or None.
        fn get<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Option<Bound<'py, PyBytes>>> {
            self.0.at(py, key, |engine, at| {
                match engine.get_out(py, at.tenant, Space::View, at.name)? {
                    None => Ok(None),
                    Some(Outgoing::Bytes(b)) => Ok(Some(b.into_bound(py))),
                    Some(_) => Err(foreign(engine, at.name)),
                }
            })
        }

        /// Saves `data` for djust's `key`; `ttl` in seconds, None for no expiry.
        #[pyo3(signature = (key, data, ttl=None))]
        fn set(
            &self,
            py: Python<'_>,
            key: &str,
            data: &Bound<'_, PyBytes>,
            ttl: Option<f64>,
        ) -> PyResult<()> {
            let ttl = checked_ttl(ttl)?;
            self.0.at(py, key, |engine, at| {
                engine.set(
                    py,
                    at.tenant,
                    Space::View,
                    at.name,
                    &Value::Bytes(data.as_bytes()),
                    ttl,
                )
            })
        }

        fn delete(&self, py: Python<'_>, key: &str) -> PyResult<bool> {
            self.0.at(py, key, |engine, at| {
                engine.delete(py, at.tenant, Space::View, at.name)
            })
        }

        /// Removes saved views: the bound tenant's, or every tenant's and the
        /// shared space's when none is bound (djust's `clear --all`). Returns
        /// how many went.
        fn delete_all(&self, py: Python<'_>) -> PyResult<usize> {
            let tenant = self.0.bound(py)?;
            let engine = self.0.engine(py)?;
            let mut deleted = engine.delete_space(py, tenant.as_ref(), Space::View)?;
            if tenant.is_none() {
                // A purge of every tenant only finds keys of real tenant ids.
                deleted += engine.delete_space(py, Some(&TenantId::shared()), Space::View)?;
            }
            Ok(deleted)
        }

        /// Saved views held (the bound tenant's, or all), for statistics; None
        /// on Redis, where counting would mean scanning.
        fn count(&self, py: Python<'_>) -> PyResult<Option<usize>> {
            let tenant = self.0.bound(py)?;
            match *self.0.engine(py)? {
                Engine::Memory(()) => Ok(Some(MEMORY.count(
                    tenant.as_ref(),
                    Space::View,
                    Instant::now(),
                ))),
                Engine::Redis(_) => Ok(None),
            }
        }

        /// Drops expired entries of the memory store now; 0 on Redis (which
        /// expires keys itself).
        fn purge_expired(&self, py: Python<'_>) -> PyResult<usize> {
            match *self.0.engine(py)? {
                Engine::Memory(()) => Ok(MEMORY.purge_expired(Instant::now())),
                Engine::Redis(_) => Ok(0),
            }
        }
    }
}
