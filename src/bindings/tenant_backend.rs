//! The one "tenant backend" shape every per-tenant store of the bindings
//! (presence, saved view state, rate limits) is built from:
//!
//! * [`Engine`]: where calls go — the process's memory store, or a Redis
//!   store (one shared pool per URL) — built from a [`BackendSettings`] by
//!   [`Engine::from_settings`], or for one object by [`redis_target`];
//! * [`Scope`]: one tenant's identity, held by per-tenant backend objects;
//! * [`TenantRouter`]: a process-wide object that follows the current
//!   config ([`EngineSlot`]) and finds the tenant of every call — from the
//!   `tenant:<id>:` prefix `TenantMixin` puts on djust's key and the tenant
//!   bound in the current context, by the one rule for caller-named keys
//!   (`crate::keys::route_caller_key`): a scoped key needs its own tenant
//!   bound (none: `InvalidKey`; another: `TenantMismatchError`), and a key
//!   without the scope is the bound tenant's, or, with no tenant bound (and
//!   for saved views of views that are not tenant views, always), the
//!   shared space no tenant's id can name ([`TenantId::shared`]);
//! * [`redis_health`]: the Redis half of every `health_check()`.
//!
//! Presence and saved state are built from one generic shape on top of
//! these: a kind implements [`StoreKind`]; its per-tenant classes wrap a
//! [`PerTenant`], its router a [`StoreRouter`], both [`KeyedStore`]s; and
//! `tenant_store_classes!` assembles the kind's three Python classes, each
//! method written once (docs/architecture.md).

use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyType};

use super::config::{self as bconfig, Compiled};
use super::errors::{self, store_error};
use super::tenant_info::id_from_py;
use crate::config::{BackendKind, BackendSettings};
use crate::keys::{route_caller_key, KeyPrefix, Unscoped};
use crate::redis_store::{self, RedisStore, StoreOptions};
use crate::tenant_id::{check_named, TenantId};

/// The bound tenant's id, if any. Accepts tenantry's `TenantInfo`, any
/// object with an `id` (djust's own `TenantInfo`), or a plain id.
pub fn bound_tenant(py: Python<'_>, current_tenant: &Py<PyAny>) -> PyResult<Option<TenantId>> {
    super::crossings::note(super::crossings::Callback::ContextVar);
    let bound = current_tenant.bind(py).call_method0(intern!(py, "get"))?;
    if bound.is_none() {
        return Ok(None);
    }
    Ok(Some(tenant_id_of(&bound)?))
}

/// The id of a tenant object: tenantry's `TenantInfo`, any object with an
/// `id` (djust's own `TenantInfo`), or a plain id.
pub fn tenant_id_of(tenant: &Bound<'_, PyAny>) -> PyResult<TenantId> {
    if let Ok(id) = id_from_py(tenant) {
        return Ok(id);
    }
    let id = tenant.getattr(intern!(tenant.py(), "id"))?;
    id_from_py(&id)
}

/// `tenantry.context._current`, the bound tenant's `ContextVar`, found once
/// (for the calls that are not made through a router holding it).
static CURRENT_TENANT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn current_tenant_variable(py: Python<'_>) -> PyResult<&Py<PyAny>> {
    CURRENT_TENANT.get_or_try_init(py, || {
        Ok(py.import("tenantry.context")?.getattr("_current")?.unbind())
    })
}

/// Refuses `what` naming `named` while another tenant is bound
/// (`crate::tenant_id::check_named`: `TenantMismatchError`); every
/// tenant-naming maintenance call of the bindings, and of the Python
/// package through [`refuse_other_tenant`], goes through here.
pub fn refuse_naming_another(py: Python<'_>, named: &TenantId, what: &str) -> PyResult<()> {
    let bound = bound_tenant(py, current_tenant_variable(py)?)?;
    check_named(bound.as_ref(), named, what).map_err(|e| errors::other_tenant_bound(&e))
}

/// Refuses `what` (a process-wide maintenance call: every tenant's caps,
/// every tenant's rooms) while any tenant is bound: trusted code runs it
/// with none bound (docs/presence.md#memory-backend-extras).
pub fn refuse_while_bound(py: Python<'_>, what: &str) -> PyResult<()> {
    match bound_tenant(py, current_tenant_variable(py)?)? {
        None => Ok(()),
        Some(bound) => Err(errors::process_wide_while_bound(what, &bound)),
    }
}

/// `tenantry.context._room_member`: the tenant a call into a space of
/// shared rooms was admitted for (set by `tenantry.shared_rooms` around the
/// calls of a room the bound tenant opened), found once.
static ROOM_MEMBER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// [`crate::presence::check_rooms_call`] with the bound tenant and the
/// admitted member read from their context variables (only for a space of
/// shared rooms: other presence calls read nothing).
pub fn check_rooms_call(
    py: Python<'_>,
    space: &TenantId,
    user: Option<&str>,
    what: &'static str,
) -> PyResult<()> {
    if space.shared_rooms_owner().is_none() {
        return Ok(());
    }
    let bound = bound_tenant(py, current_tenant_variable(py)?)?;
    let admitted = ROOM_MEMBER
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(
                py.import("tenantry.context")?
                    .getattr("_room_member")?
                    .unbind(),
            )
        })?
        .bind(py)
        .call_method0(intern!(py, "get"))?;
    let admitted: Option<String> = admitted.extract()?;
    crate::presence::check_rooms_call(
        space.as_str(),
        bound.as_ref().map(TenantId::as_str),
        admitted.as_deref(),
        user,
        what,
    )
    .map_err(errors::presence_error)
}

/// `refuse_other_tenant(tenant_id, what) -> str`: the validated id of
/// `tenant_id`, or `TenantMismatchError` when another tenant is bound
/// ([`refuse_naming_another`]); for the Python package's own
/// tenant-naming calls (`tenantry.cache.clear_tenant`, `tenantry.usage`,
/// `tenantry.lifecycle`).
#[pyfunction]
pub fn refuse_other_tenant(
    py: Python<'_>,
    tenant_id: &Bound<'_, PyAny>,
    what: &str,
) -> PyResult<String> {
    let named = id_from_py(tenant_id)?;
    refuse_naming_another(py, &named, what)?;
    Ok(named.as_str().to_owned())
}

/// What a router routes, for its error messages.
pub struct Routed {
    /// "presence key", "saved view key"
    pub what: &'static str,
    /// Where a key without the `tenant:` scope goes when a tenant is bound.
    pub unscoped: Unscoped,
}

/// `(tenant, rest of the key)` for a key a caller named: the one rule of
/// `crate::keys::route_caller_key`, with the bound tenant of this context.
pub fn route<'k>(
    py: Python<'_>,
    current_tenant: &Py<PyAny>,
    key: &'k str,
    routed: &Routed,
) -> PyResult<(TenantId, &'k str)> {
    let bound = bound_tenant(py, current_tenant)?;
    route_caller_key(key, bound.as_ref(), routed.unscoped)
        .map_err(|e| errors::caller_key_error(&e, routed.what))
}

/// A router's engine, built from the config current at its first use and
/// rebuilt when `DJUST_CONFIG` changes (the compiled config is compared by
/// identity, so the common path is one read lock and a pointer compare).
pub struct EngineSlot<E>(RwLock<Option<(Arc<Compiled>, Arc<E>)>>);

impl<E> EngineSlot<E> {
    pub fn new() -> Self {
        EngineSlot(RwLock::new(None))
    }

    pub fn get(
        &self,
        py: Python<'_>,
        build: impl FnOnce(&Compiled) -> PyResult<E>,
    ) -> PyResult<Arc<E>> {
        let compiled = bconfig::current(py)?;
        if let Some((from, engine)) = self.0.read().as_ref() {
            if Arc::ptr_eq(from, &compiled) {
                return Ok(Arc::clone(engine));
            }
        }
        let engine = Arc::new(build(&compiled)?);
        // The replaced engine is dropped after the lock is released.
        let old = self.0.write().replace((compiled, Arc::clone(&engine)));
        drop(old);
        Ok(engine)
    }
}

/// A Redis-backed store of one kind (presence, state, rate limits).
pub trait RedisEngine {
    fn store(&self) -> &RedisStore;
    fn prefix(&self) -> &KeyPrefix;
}

/// Where a backend's calls go: the process's memory store (with `M`, what
/// that kind needs to know, e.g. presence's timeout) or Redis.
pub enum Engine<M, R> {
    Memory(M),
    Redis(R),
}

impl<M, R: RedisEngine> Engine<M, R> {
    /// From `PRESENCE_BACKEND`-style settings: `memory()` for the memory
    /// store, `redis(store, prefix)` with the shared pool of the URL.
    pub fn from_settings(
        backend: &BackendSettings,
        options: StoreOptions,
        prefix: &KeyPrefix,
        memory: impl FnOnce() -> M,
        redis: impl FnOnce(Arc<RedisStore>, KeyPrefix) -> R,
    ) -> PyResult<Self> {
        Ok(match backend.kind {
            BackendKind::Memory => Engine::Memory(memory()),
            BackendKind::Redis => {
                let store = RedisStore::shared(&backend.redis_url, options).map_err(store_error)?;
                Engine::Redis(redis(store, prefix.clone()))
            }
        })
    }

    /// `"tenant_memory"` or `"tenant_redis"`.
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Memory(_) => "tenant_memory",
            Engine::Redis(_) => "tenant_redis",
        }
    }

    pub fn redis(&self) -> Option<&R> {
        match self {
            Engine::Memory(_) => None,
            Engine::Redis(r) => Some(r),
        }
    }

    /// The Redis URL (password hidden); `""` for memory.
    pub fn redis_url(&self) -> &str {
        self.redis().map_or("", |r| r.store().url())
    }

    /// The key prefix of Redis keys; `""` for memory.
    pub fn key_prefix(&self) -> &str {
        self.redis().map_or("", |r| r.prefix().as_str())
    }

    /// "the memory store" / "Redis at <url>", for messages.
    pub fn location(&self) -> String {
        match self.redis() {
            None => "the memory store".to_owned(),
            Some(r) => format!("Redis at {}", r.store().url()),
        }
    }

    /// `health_check()`: `memory(dict)` fills in the memory store's figures;
    /// Redis is pinged (never raises for an unreachable server).
    pub fn report_health<'py>(
        &self,
        py: Python<'py>,
        tenant: Option<&Bound<'py, PyString>>,
        memory: impl FnOnce(&Bound<'py, PyDict>) -> PyResult<()>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        match self {
            Engine::Memory(_) => {
                d.set_item("status", "healthy")?;
                d.set_item("backend", self.name())?;
                if let Some(t) = tenant {
                    d.set_item("tenant_id", t)?;
                }
                memory(&d)?;
            }
            Engine::Redis(r) => redis_health(py, &d, self.name(), tenant, r.store())?,
        }
        Ok(d)
    }
}

/// The Redis half of `health_check()`: one `PING` through the shared store
/// (GIL released), reported, never raised.
pub fn redis_health<'py>(
    py: Python<'py>,
    d: &Bound<'py, PyDict>,
    backend: &str,
    tenant: Option<&Bound<'py, PyString>>,
    store: &RedisStore,
) -> PyResult<()> {
    let start = Instant::now();
    let result = py.detach(|| store.ping());
    let latency_ms = (start.elapsed().as_secs_f64() * 100_000.0).round() / 100.0;
    d.set_item(
        "status",
        if result.is_ok() {
            "healthy"
        } else {
            "unhealthy"
        },
    )?;
    d.set_item("backend", backend)?;
    if let Some(t) = tenant {
        d.set_item("tenant_id", t)?;
    }
    d.set_item("url", store.url())?;
    d.set_item("cluster", store.is_cluster())?;
    d.set_item("latency_ms", latency_ms)?;
    if let Err(e) = result {
        d.set_item("error", e.to_string())?;
    }
    Ok(())
}

/// The shared pool and key prefix a per-tenant Redis backend is made with;
/// checks every argument, connects to nothing.
pub fn redis_target(
    redis_url: &str,
    key_prefix: &str,
    connect_timeout: f64,
    socket_timeout: f64,
) -> PyResult<(Arc<RedisStore>, KeyPrefix)> {
    let prefix =
        KeyPrefix::new(key_prefix).map_err(|e| errors::InvalidKey::new_err(e.to_string()))?;
    let options = StoreOptions {
        connect_timeout: redis_store::timeout_from_secs("connect_timeout", connect_timeout)
            .map_err(store_error)?,
        io_timeout: redis_store::timeout_from_secs("socket_timeout", socket_timeout)
            .map_err(store_error)?,
    };
    let store = RedisStore::shared(redis_url, options).map_err(store_error)?;
    Ok((store, prefix))
}

/// One tenant's identity, held by the per-tenant backends.
pub struct Scope {
    pub tenant: TenantId,
    pub tenant_py: Py<PyString>,
}

impl Scope {
    /// The scope of a per-tenant backend made for `tenant_id`: refused
    /// while another tenant is bound (one tenant's code never makes a
    /// backend of another's; jobs and operators make it with none bound).
    pub fn new(py: Python<'_>, tenant_id: &Bound<'_, PyAny>) -> PyResult<Scope> {
        let tenant = id_from_py(tenant_id)?;
        refuse_naming_another(py, &tenant, "a per-tenant backend")?;
        let tenant_py = PyString::intern(py, tenant.as_str()).unbind();
        Ok(Scope { tenant, tenant_py })
    }
}

/// The process-wide half of a backend: the current tenant's `ContextVar`
/// and the engine following the config.
pub struct TenantRouter<E> {
    current_tenant: Py<PyAny>,
    slot: EngineSlot<E>,
    routed: &'static Routed,
}

impl<E> TenantRouter<E> {
    pub fn new(current_tenant: Py<PyAny>, routed: &'static Routed) -> Self {
        TenantRouter {
            current_tenant,
            slot: EngineSlot::new(),
            routed,
        }
    }

    /// `(tenant, rest of the key)` for a djust key.
    pub fn route<'k>(&self, py: Python<'_>, key: &'k str) -> PyResult<(TenantId, &'k str)> {
        route(py, &self.current_tenant, key, self.routed)
    }

    /// The bound tenant, if any.
    pub fn bound(&self, py: Python<'_>) -> PyResult<Option<TenantId>> {
        bound_tenant(py, &self.current_tenant)
    }

    /// The bound tenant object itself (a `TenantInfo`, usually), if any.
    pub fn bound_object<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        super::crossings::note(super::crossings::Callback::ContextVar);
        let bound = self
            .current_tenant
            .bind(py)
            .call_method0(intern!(py, "get"))?;
        Ok((!bound.is_none()).then_some(bound))
    }

    /// The engine for the current config, built by `build` when it changed.
    pub fn engine(
        &self,
        py: Python<'_>,
        build: impl FnOnce(&Compiled) -> PyResult<E>,
    ) -> PyResult<Arc<E>> {
        self.slot.get(py, build)
    }
}

/// One kind of per-tenant store (presence, saved state): what its engines
/// are made of, how a router builds one from the config, and the few things
/// the shared binding shape ([`PerTenant`], [`StoreRouter`] and the
/// `tenant_store_classes!` macro) asks of a kind. Everything generic over a
/// kind is monomorphised: the hot path has no dynamic dispatch.
pub trait StoreKind: Sized + 'static {
    /// What the memory engine needs (presence: its timeout; state: nothing).
    type Memory: Send + Sync;
    type Redis: RedisEngine + Send + Sync;
    /// How the kind's router reads a key.
    const ROUTED: &'static Routed;
    /// The Python name of the kind's router (its `repr`).
    const ROUTER_NAME: &'static str;

    /// The router's engine for the current config (applying the config's
    /// bounds of the process's memory store on the way).
    fn router_engine(compiled: &Compiled) -> PyResult<StoreEngine<Self>>;

    /// The memory store's figures in `health_check()` (`tenant`: the
    /// per-tenant backend's id; `None` for the router).
    fn memory_health(d: &Bound<'_, PyDict>, tenant: Option<&Bound<'_, PyString>>) -> PyResult<()>;

    /// What the router's `resolve()` checks of the name a key leaves within
    /// its tenant.
    fn check_resolved(name: &str) -> PyResult<()>;

    /// What a per-tenant backend's `repr` shows after its tenant id (e.g.
    /// `", timeout=60"`).
    fn repr_fields(_engine: &StoreEngine<Self>) -> String {
        String::new()
    }
}

/// The engine of a kind.
pub type StoreEngine<K> = Engine<<K as StoreKind>::Memory, <K as StoreKind>::Redis>;

/// `health_check()` of a kind's engine: the memory store's figures, or a
/// Redis ping (never raises for an unreachable server).
pub fn health_check<'py, K: StoreKind>(
    engine: &StoreEngine<K>,
    py: Python<'py>,
    tenant: Option<&Bound<'py, PyString>>,
) -> PyResult<Bound<'py, PyDict>> {
    engine.report_health(py, tenant, |d| K::memory_health(d, tenant))
}

/// Where one keyed call lands: the tenant and the name within its space
/// (a presence room, a state key).
pub struct Target<'a> {
    pub tenant: &'a TenantId,
    pub name: &'a str,
    /// The tenant id as a Python str, when the caller holds one already.
    tenant_py: Option<&'a Py<PyString>>,
}

impl Target<'_> {
    /// The tenant id as a Python str (made only by the calls that return
    /// it in their records, and only when no backend holds it).
    pub fn tenant_py<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        match self.tenant_py {
            Some(t) => t.bind(py).clone(),
            None => PyString::new(py, self.tenant.as_str()),
        }
    }
}

/// A store a call reaches by key: a per-tenant backend (its own tenant, the
/// key as given) or a router (the key's tenant, by the one routing rule).
/// Every keyed method of the bindings is written once over this.
pub trait KeyedStore<K: StoreKind> {
    /// Runs `op` on the engine with the call's [`Target`].
    fn at<R>(
        &self,
        py: Python<'_>,
        key: &str,
        op: impl FnOnce(&StoreEngine<K>, Target<'_>) -> PyResult<R>,
    ) -> PyResult<R>;
}

/// A backend object of one tenant: its identity and its engine.
pub struct PerTenant<K: StoreKind> {
    pub scope: Scope,
    pub engine: StoreEngine<K>,
}

impl<K: StoreKind> PerTenant<K> {
    pub fn new(
        py: Python<'_>,
        tenant_id: &Bound<'_, PyAny>,
        engine: StoreEngine<K>,
    ) -> PyResult<Self> {
        Ok(PerTenant {
            scope: Scope::new(py, tenant_id)?,
            engine,
        })
    }

    /// The backend's `repr`: `Class(tenant_id="acme"...)`.
    pub fn repr(&self, class: &Bound<'_, PyType>) -> PyResult<String> {
        Ok(format!(
            "{}(tenant_id={:?}{})",
            class.qualname()?.to_cow()?,
            self.scope.tenant.as_str(),
            K::repr_fields(&self.engine),
        ))
    }
}

// `at` is every keyed call's first step: always inlined, so a call through
// the shape compiles to what a hand-written method did (measured: the
// router's `count`, ~270 ns, was 5% slower with the default hints).
impl<K: StoreKind> KeyedStore<K> for PerTenant<K> {
    #[inline(always)]
    fn at<R>(
        &self,
        _py: Python<'_>,
        key: &str,
        op: impl FnOnce(&StoreEngine<K>, Target<'_>) -> PyResult<R>,
    ) -> PyResult<R> {
        op(
            &self.engine,
            Target {
                tenant: &self.scope.tenant,
                name: key,
                tenant_py: Some(&self.scope.tenant_py),
            },
        )
    }
}

/// The process-wide router of a kind: a [`TenantRouter`] whose engine the
/// kind builds from the current config.
pub struct StoreRouter<K: StoreKind>(TenantRouter<StoreEngine<K>>);

impl<K: StoreKind> StoreRouter<K> {
    pub fn new(current_tenant: Py<PyAny>) -> Self {
        StoreRouter(TenantRouter::new(current_tenant, K::ROUTED))
    }

    /// The engine of the current config.
    #[inline]
    pub fn engine(&self, py: Python<'_>) -> PyResult<Arc<StoreEngine<K>>> {
        self.0.engine(py, K::router_engine)
    }

    /// `(tenant, rest of the key)` for a djust key.
    #[inline]
    pub fn route<'k>(&self, py: Python<'_>, key: &'k str) -> PyResult<(TenantId, &'k str)> {
        self.0.route(py, key)
    }

    /// The bound tenant, if any.
    pub fn bound(&self, py: Python<'_>) -> PyResult<Option<TenantId>> {
        self.0.bound(py)
    }

    /// `resolve(key)`: `(tenant_id, name)` a call for `key` would use.
    pub fn resolve(&self, py: Python<'_>, key: &str) -> PyResult<(String, String)> {
        let (tenant, name) = self.route(py, key)?;
        K::check_resolved(name)?;
        Ok((tenant.as_str().to_owned(), name.to_owned()))
    }

    /// The router's `health_check()`: its engine's, marked `per-tenant`.
    pub fn health_check<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = health_check::<K>(&*self.engine(py)?, py, None)?;
        d.set_item("routing", "per-tenant")?;
        Ok(d)
    }

    /// `Router(backend="tenant_memory")`, or `Router(unconfigured)`.
    pub fn repr(&self, py: Python<'_>) -> String {
        match self.engine(py) {
            Ok(e) => format!("{}(backend={:?})", K::ROUTER_NAME, e.name()),
            Err(_) => format!("{}(unconfigured)", K::ROUTER_NAME),
        }
    }
}

impl<K: StoreKind> KeyedStore<K> for StoreRouter<K> {
    #[inline(always)]
    fn at<R>(
        &self,
        py: Python<'_>,
        key: &str,
        op: impl FnOnce(&StoreEngine<K>, Target<'_>) -> PyResult<R>,
    ) -> PyResult<R> {
        // The key first: a refused key is refused whatever the config.
        let (tenant, name) = self.route(py, key)?;
        let engine = self.engine(py)?;
        op(
            &engine,
            Target {
                tenant: &tenant,
                name,
                tenant_py: None,
            },
        )
    }
}

/// The three Python classes of a kind of store, their methods each written
/// once (PyO3 takes one `#[pymethods]` block per class, so the blocks are
/// assembled here from the parts):
///
/// * `router_key`: the name of the key parameter of the router's
///   `resolve` (`presence_key`, `key`), as Python callers may pass it;
/// * `keyed { .. }`: methods of all three classes, over [`KeyedStore`]
///   (`self.0.at(py, key, ..)`);
/// * `per_tenant { .. }`: methods of both per-tenant classes only;
/// * `memory Class { .. }`, `redis Class { .. }`, `router Class { .. }`:
///   each class's own (constructors, store-wide class methods, the
///   router's saved-view calls);
///
/// plus what every per-tenant backend has (`tenant_id`, `backend`,
/// `health_check`, `repr`; on Redis `redis_url`, `key_prefix`) and what
/// every router has (`new(current_tenant)`, `resolve`, `backend`,
/// `health_check`, `repr`).
macro_rules! tenant_store_classes {
    (
        kind: $kind:ty,
        router_key: $router_key:ident,
        keyed { $($keyed:tt)* }
        per_tenant { $($per_tenant:tt)* }
        memory $memory:ident { $($memory_own:tt)* }
        redis $redis:ident { $($redis_own:tt)* }
        router $router:ident { $($router_own:tt)* }
    ) => {
        $crate::bindings::tenant_backend::tenant_store_classes!(@per_tenant $kind, $memory {
            $($memory_own)*
            $($keyed)*
            $($per_tenant)*
        });

        $crate::bindings::tenant_backend::tenant_store_classes!(@per_tenant $kind, $redis {
            $($redis_own)*
            $($keyed)*
            $($per_tenant)*

            /// The Redis URL, password hidden.
            #[getter]
            fn redis_url(&self) -> &str {
                self.0.engine.redis_url()
            }

            #[getter]
            fn key_prefix(&self) -> &str {
                self.0.engine.key_prefix()
            }
        });

        #[pymethods]
        impl $router {
            $($router_own)*
            $($keyed)*

            #[new]
            fn new(current_tenant: Py<PyAny>) -> Self {
                $router($crate::bindings::tenant_backend::StoreRouter::new(current_tenant))
            }

            /// `(tenant_id, name)` the call for the key would use (raises
            /// as the calls do for the key's tenant).
            fn resolve(&self, py: Python<'_>, $router_key: &str) -> PyResult<(String, String)> {
                self.0.resolve(py, $router_key)
            }

            fn health_check<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
                self.0.health_check(py)
            }

            /// `"tenant_memory"` or `"tenant_redis"`, per the current config.
            #[getter]
            fn backend(&self, py: Python<'_>) -> PyResult<&'static str> {
                Ok(self.0.engine(py)?.name())
            }

            fn __repr__(&self, py: Python<'_>) -> String {
                self.0.repr(py)
            }
        }
    };

    // A per-tenant class: its methods, and what every per-tenant backend has.
    (@per_tenant $kind:ty, $class:ident { $($methods:tt)* }) => {
        #[pymethods]
        impl $class {
            $($methods)*

            #[getter]
            fn tenant_id(&self, py: Python<'_>) -> Py<PyString> {
                self.0.scope.tenant_py.clone_ref(py)
            }

            /// `"tenant_memory"` or `"tenant_redis"`.
            #[getter]
            fn backend(&self) -> &'static str {
                self.0.engine.name()
            }

            fn health_check<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
                $crate::bindings::tenant_backend::health_check::<$kind>(
                    &self.0.engine,
                    py,
                    Some(self.0.scope.tenant_py.bind(py)),
                )
            }

            fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
                slf.get().0.repr(&slf.get_type())
            }
        }
    };
}
pub(crate) use tenant_store_classes;
