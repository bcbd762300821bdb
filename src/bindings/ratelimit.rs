//! Rate limits for Python: `Decision` and `TenantRateLimiter`, the
//! process's limiter (a tenant router like presence's and state's: it
//! follows `DJUST_CONFIG` — `TENANT_RATE_LIMITS`, `TENANT_QUOTAS`,
//! `RATE_LIMIT_BACKEND`, `RATE_LIMIT_REDIS_URL`,
//! `TENANT_RATE_LIMIT_FAILURE` — and takes the tenant bound in the current
//! context, whose plan (`settings["rate_limits"]`, `settings["quotas"]`)
//! overrides the defaults).
//!
//! A check is one memory-store lock, or one `EVALSHA` with the GIL
//! released.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyType};

use super::config::to_value;
use super::errors::{self, rate_error, store_error};
use super::tenant_backend::{self, RedisEngine, TenantRouter};
use super::tenant_info::{id_from_py, TenantInfo};
use crate::config::{quota_table, rate_limit_table, FailureMode};
use crate::keys::{KeyPrefix, Unscoped};
use crate::ratelimit::memory::MemoryLimiter;
use crate::ratelimit::redis::RedisLimiter;
use crate::ratelimit::{
    check_cost, checks_for, now_micros, Decision as CoreDecision, Identity, KeyPart, KeySpec,
    Limit, LimitSpec, Limits, Rate, MICROS,
};
use crate::ratelimit::{PLAN_QUOTAS_KEY, PLAN_RATE_LIMITS_KEY};
use crate::redis_store::{RedisStore, StoreError};
use crate::tenant_id::TenantId;
use crate::usage::Metric;

/// The process's memory store, shared by every limiter object.
static MEMORY: LazyLock<MemoryLimiter> = LazyLock::new(MemoryLimiter::new);

/// The counts of `tenant` in this process's memory store: counted, or
/// removed (`tenantry.lifecycle`).
pub(super) fn purge_memory(tenant: &TenantId, dry_run: bool) -> usize {
    if dry_run {
        MEMORY.tenant_keys(tenant)
    } else {
        MEMORY.clear_tenant(tenant)
    }
}

impl RedisEngine for RedisLimiter {
    fn store(&self) -> &RedisStore {
        RedisLimiter::store(self)
    }

    fn prefix(&self) -> &KeyPrefix {
        RedisLimiter::prefix(self)
    }
}

/// The memory store (with the key prefix, part of its logical keys) or
/// Redis.
type Engine = tenant_backend::Engine<KeyPrefix, RedisLimiter>;

/// Tenants whose parsed plan is kept (then the cache starts over).
const PLAN_CACHE: usize = 10_000;

/// The answer to one check. Times are seconds (floats); `limit` and
/// `remaining` are None when no limit applies to the scope.
#[pyclass(module = "tenantry", name = "Decision", frozen, eq)]
#[derive(Clone, Copy, PartialEq)]
pub struct Decision {
    #[pyo3(get)]
    allowed: bool,
    #[pyo3(get)]
    limit: Option<u64>,
    #[pyo3(get)]
    remaining: Option<u64>,
    #[pyo3(get)]
    retry_after: f64,
    #[pyo3(get)]
    reset_after: f64,
}

fn secs(micros: u64) -> f64 {
    micros as f64 / MICROS as f64
}

impl Decision {
    fn from_core(d: CoreDecision, limited: bool) -> Self {
        Decision {
            allowed: d.allowed,
            limit: limited.then_some(d.limit),
            remaining: limited.then_some(d.remaining),
            retry_after: secs(d.retry_after),
            reset_after: secs(d.reset_after),
        }
    }
}

#[pymethods]
impl Decision {
    #[new]
    #[pyo3(signature = (allowed, limit=None, remaining=None, retry_after=0.0, reset_after=0.0))]
    fn new(
        allowed: bool,
        limit: Option<u64>,
        remaining: Option<u64>,
        retry_after: f64,
        reset_after: f64,
    ) -> Self {
        Decision {
            allowed,
            limit,
            remaining,
            retry_after,
            reset_after,
        }
    }

    fn __bool__(&self) -> bool {
        self.allowed
    }

    /// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (whole
    /// seconds, rounded up) and, when refused, `Retry-After`; empty when no
    /// limit applies.
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        if let (Some(limit), Some(remaining)) = (self.limit, self.remaining) {
            d.set_item("RateLimit-Limit", limit.to_string())?;
            d.set_item("RateLimit-Remaining", remaining.to_string())?;
            d.set_item("RateLimit-Reset", whole_secs(self.reset_after).to_string())?;
            if !self.allowed {
                d.set_item("Retry-After", whole_secs(self.retry_after).to_string())?;
            }
        }
        Ok(d)
    }

    fn __repr__(&self) -> String {
        let opt = |v: Option<u64>| v.map_or("None".to_owned(), |v| v.to_string());
        format!(
            "Decision(allowed={}, limit={}, remaining={}, retry_after={:?}, reset_after={:?})",
            if self.allowed { "True" } else { "False" },
            opt(self.limit),
            opt(self.remaining),
            self.retry_after,
            self.reset_after
        )
    }
}

/// Seconds rounded up (a client told "0" would retry too early).
fn whole_secs(s: f64) -> u64 {
    s.ceil().max(0.0) as u64
}

/// A tenant's plan, kept while its settings objects stay the same ones.
struct Plan {
    rates: Option<Py<PyAny>>,
    quotas: Option<Py<PyAny>>,
    limits: Arc<Limits>,
}

fn same(a: &Option<Py<PyAny>>, b: &Option<Bound<'_, PyAny>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.as_ptr() == b.as_ptr(),
        _ => false,
    }
}

/// `tenantry.ratelimit`'s engine: see the module docs.
#[pyclass(module = "tenantry", name = "TenantRateLimiter", frozen)]
pub struct Limiter {
    router: TenantRouter<Engine>,
    plans: Mutex<HashMap<TenantId, Plan>>,
}

const ROUTED: tenant_backend::Routed = tenant_backend::Routed {
    what: "rate-limit key",
    unscoped: Unscoped::Bound,
};

/// A tenant object's `settings` (not tenantry's `TenantInfo`: user code).
fn plan_settings<'py>(tenant: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    super::crossings::note(super::crossings::Callback::UserCode);
    tenant.getattr("settings").ok().filter(|s| !s.is_none())
}

/// `(tenant, source, outcome)` of [`Limiter::resolve_and_check_http`].
type Resolved<'py> = (
    Option<Bound<'py, PyAny>>,
    Option<String>,
    Option<Bound<'py, PyAny>>,
);

/// What a check needs from the request, read only when a key counts it.
fn identity_of(
    request: Option<&Bound<'_, PyAny>>,
    parts: &[KeyPart],
    endpoint: Option<&str>,
) -> PyResult<(Option<String>, Option<String>, Option<String>)> {
    let (mut user, mut ip, mut view) = (None, None, endpoint.map(str::to_owned));
    let Some(request) = request.filter(|r| !r.is_none()) else {
        return Ok((user, ip, view));
    };
    let py = request.py();
    if !parts.is_empty()
        && (parts.contains(&KeyPart::User)
            || parts.contains(&KeyPart::Ip)
            || parts.contains(&KeyPart::View))
    {
        super::crossings::note(super::crossings::Callback::Request);
    }
    if parts.contains(&KeyPart::User) || parts.contains(&KeyPart::Ip) {
        if let Ok(meta) = request.getattr(intern!(py, "META")) {
            if let Ok(addr) = meta.get_item(intern!(py, "REMOTE_ADDR")) {
                if !addr.is_none() {
                    ip = Some(addr.str()?.to_string_lossy().into_owned());
                }
            }
        }
    }
    if parts.contains(&KeyPart::User) {
        // No `user` (no auth middleware) or None: anonymous.
        let user_obj = request.getattr(intern!(py, "user")).ok();
        if let Some(u) = user_obj.filter(|u| !u.is_none()) {
            // Errors propagate (a lazy user that cannot load here must not
            // be counted as anonymous): async callers load it first, see
            // `needs_user`.
            if u.getattr(intern!(py, "is_authenticated"))?.is_truthy()? {
                let pk = u.getattr(intern!(py, "pk"))?;
                user = Some(pk.str()?.to_string_lossy().into_owned());
            }
        }
    }
    if parts.contains(&KeyPart::View) && view.is_none() {
        let matched = request.getattr(intern!(py, "resolver_match")).ok();
        let name = match matched.filter(|m| !m.is_none()) {
            Some(m) => m.getattr(intern!(py, "view_name"))?,
            None => request.getattr(intern!(py, "path_info"))?,
        };
        view = Some(name.str()?.to_string_lossy().into_owned());
    }
    Ok((user, ip, view))
}

impl Limiter {
    fn engine(&self, py: Python<'_>) -> PyResult<(Arc<Engine>, Arc<super::config::Compiled>)> {
        let compiled = super::config::current(py)?;
        let engine = self.router.engine(py, |compiled| {
            let settings = &compiled.settings;
            Engine::from_settings(
                &settings.rate_limits.backend,
                settings.redis_options,
                &compiled.counts_prefix,
                || compiled.counts_prefix.clone(),
                RedisLimiter::new,
            )
        })?;
        Ok((engine, compiled))
    }

    /// The bound tenant object and its id.
    fn tenant<'py>(
        &self,
        py: Python<'py>,
        tenant: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<(Bound<'py, PyAny>, TenantId)>> {
        let Some(named) = tenant.filter(|t| !t.is_none()) else {
            let Some(obj) = self.router.bound_object(py)? else {
                return Ok(None);
            };
            let id = tenant_backend::tenant_id_of(&obj)?;
            return Ok(Some((obj, id)));
        };
        // A tenant named by the caller: not another one than the bound
        // one (its allowance is not the caller's to spend).
        let id = tenant_backend::tenant_id_of(named)?;
        tenant_backend::refuse_naming_another(py, &id, "TenantRateLimiter.check")?;
        Ok(Some((named.clone(), id)))
    }

    /// The tenant's plan (its `rate_limits` / `quotas` settings), parsed
    /// once per settings object.
    fn plan(
        &self,
        py: Python<'_>,
        tenant: &Bound<'_, PyAny>,
        id: &TenantId,
    ) -> PyResult<Option<Arc<Limits>>> {
        if tenant.is_instance_of::<PyString>() {
            return Ok(None); // a bare id has no plan
        }
        let (rates, quotas) = match tenant.cast::<TenantInfo>() {
            Ok(info) => {
                let info = info.borrow();
                (
                    info.setting(py, PLAN_RATE_LIMITS_KEY)?,
                    info.setting(py, PLAN_QUOTAS_KEY)?,
                )
            }
            Err(_) => match plan_settings(tenant) {
                Some(s) => (
                    s.call_method1("get", (PLAN_RATE_LIMITS_KEY,)).ok(),
                    s.call_method1("get", (PLAN_QUOTAS_KEY,)).ok(),
                ),
                None => (None, None),
            },
        };
        let rates = rates.filter(|r| !r.is_none());
        let quotas = quotas.filter(|q| !q.is_none());
        if rates.is_none() && quotas.is_none() {
            return Ok(None);
        }
        if let Some(plan) = self.plans.lock().get(id) {
            if same(&plan.rates, &rates) && same(&plan.quotas, &quotas) {
                return Ok(Some(Arc::clone(&plan.limits)));
            }
        }
        let mut limits = Limits::default();
        let bad = |what: &str, e: String| {
            errors::ConfigError::new_err(format!(
                "TenantInfo.settings[{what:?}] of tenant {:?} {e}",
                id.as_str()
            ))
        };
        let mut objects = Vec::new();
        if let Some(r) = &rates {
            limits.rates = rate_limit_table(&to_value(r, &mut objects)?)
                .map_err(|e| bad(PLAN_RATE_LIMITS_KEY, e))?;
        }
        if let Some(q) = &quotas {
            limits.quotas =
                quota_table(&to_value(q, &mut objects)?).map_err(|e| bad(PLAN_QUOTAS_KEY, e))?;
        }
        let limits = Arc::new(limits);
        let old = {
            let mut plans = self.plans.lock();
            let old = if plans.len() >= PLAN_CACHE {
                std::mem::take(&mut *plans)
            } else {
                HashMap::new()
            };
            plans.insert(
                id.clone(),
                Plan {
                    rates: rates.map(Bound::unbind),
                    quotas: quotas.map(Bound::unbind),
                    limits: Arc::clone(&limits),
                },
            );
            old
        };
        drop(old); // Python objects dropped outside the lock
        Ok(Some(limits))
    }

    /// Logs through `logging.getLogger("tenantry.ratelimit")`.
    fn warn(py: Python<'_>, message: String) -> PyResult<()> {
        py.import("logging")?
            .call_method1("getLogger", ("tenantry.ratelimit",))?
            .call_method1("warning", (message,))?;
        Ok(())
    }
}

#[pymethods]
impl Limiter {
    #[new]
    fn new(current_tenant: Py<PyAny>) -> Self {
        Limiter {
            router: TenantRouter::new(current_tenant, &ROUTED),
            plans: Mutex::new(HashMap::new()),
        }
    }

    /// Checks and consumes `cost` from every limit of `scope` for the bound
    /// tenant (or `tenant`). `key` replaces the configured key of each rate
    /// (`"tenant"`, `"tenant+user"`, `"tenant+ip"`, `"view"`, combinations,
    /// or any other string counted as itself); `rate` is the scope's default
    /// when `TENANT_RATE_LIMITS` has none (`@tenant_ratelimit`); `endpoint`
    /// names the view for `view` keys (else the request's URL name).
    ///
    /// Returns None when no tenant is bound and `required` is false
    /// (`TenantNotSetError` when it is true). A scope without any limit
    /// answers an allowed `Decision` with `limit=None`.
    #[pyo3(signature = (scope, key=None, cost=1, request=None, *, rate=None, endpoint=None, tenant=None, required=true, usage=None))]
    #[allow(clippy::too_many_arguments)]
    fn check(
        &self,
        py: Python<'_>,
        scope: &str,
        key: Option<&str>,
        cost: u64,
        request: Option<&Bound<'_, PyAny>>,
        rate: Option<&str>,
        endpoint: Option<&str>,
        tenant: Option<&Bound<'_, PyAny>>,
        required: bool,
        usage: Option<&str>,
    ) -> PyResult<Option<Decision>> {
        crate::ratelimit::spec::check_scope(scope).map_err(errors::InvalidKey::new_err)?;
        let Some((tenant_obj, tenant)) = self.tenant(py, tenant)? else {
            if required {
                return Err(errors::TenantNotSetError::new_err(format!(
                    "rate limit scope {scope:?} is counted per tenant and no tenant is bound: \
                     run it in a request TenantMiddleware resolved, a TenantMixin view, or \
                     tenantry.tenant_context(...)"
                )));
            }
            return Ok(None);
        };
        self.decide(
            py,
            scope,
            key,
            cost,
            request,
            rate,
            endpoint,
            &tenant_obj,
            &tenant,
            usage,
        )
        .map(Some)
    }

    /// `TenantMiddleware`'s one call per request: the request's tenant
    /// resolved (`resolve_tenant_sourced`) and, when one resolved and needs
    /// no admission in Python (no `TENANT_MEMBERSHIP_CHECK`: the core's
    /// registry already admitted it), its `http` limits checked and its
    /// `http_requests` usage counted, for that tenant (the one the
    /// middleware binds next; docs/performance-design.md#crossings-per-request).
    /// Returns `(tenant, source, outcome)`: `outcome` is the `Decision`,
    /// the `BackendUnavailable` a store that is down raised (answered 503),
    /// or None when nothing was checked (no tenant; admission first; or no
    /// limit of `http` applies, and the middleware only counts usage).
    /// Private (`_resolve_and_check_http`): it spends the allowance of
    /// whatever tenant the request names, so only the middleware calls it,
    /// before it binds that tenant (`access.tenant_and_http_outcome`, which
    /// does not fold with a tenant bound); everyone else resolves with
    /// `tenant_for_request` (docs/security.md#naming-another-tenant).
    #[pyo3(name = "_resolve_and_check_http")]
    fn resolve_and_check_http<'py>(
        &self,
        py: Python<'py>,
        request: &Bound<'py, PyAny>,
    ) -> PyResult<Resolved<'py>> {
        let (tenant_obj, source) = super::resolvers::resolve_tenant_sourced(py, request)?;
        let Some(tenant_obj) = tenant_obj else {
            return Ok((None, source, None));
        };
        let compiled = super::config::current(py)?;
        // A membership check admits first; a suspended tenant is refused by
        // admission (503): neither is counted against its limits here.
        let suspended = tenant_obj
            .cast::<TenantInfo>()
            .is_ok_and(|info| info.borrow().is_suspended());
        if compiled.membership_check.is_some() || suspended {
            return Ok((Some(tenant_obj), source, None));
        }
        let tenant = tenant_backend::tenant_id_of(&tenant_obj)?;
        // Nothing limits `http` for it: the middleware only counts the
        // request, held in Python (`tenantry.usage.count`), no store call.
        if !compiled.settings.rate_limits.limits.mentions("http")
            && !self
                .plan(py, &tenant_obj, &tenant)?
                .is_some_and(|p| p.mentions("http"))
        {
            return Ok((Some(tenant_obj), source, None));
        }
        let decided = self.decide(
            py,
            "http",
            None,
            1,
            Some(request),
            None,
            None,
            &tenant_obj,
            &tenant,
            Some("http_requests"),
        );
        let outcome = match decided {
            Ok(d) => Bound::new(py, d)?.into_any(),
            Err(e) if e.is_instance(py, errors::BackendUnavailable::type_object(py)?) => {
                e.into_value(py).into_bound(py).into_any()
            }
            Err(e) => return Err(e),
        };
        Ok((Some(tenant_obj), source, Some(outcome)))
    }
    /// True when a limit of `scope` for the bound tenant counts users
    /// (async callers then load `request.user` in a thread first).
    fn needs_user(&self, py: Python<'_>, scope: &str) -> PyResult<bool> {
        let Some((obj, id)) = self.tenant(py, None)? else {
            return Ok(false);
        };
        let compiled = super::config::current(py)?;
        let plan = self.plan(py, &obj, &id)?;
        Ok(compiled
            .settings
            .rate_limits
            .limits
            .effective(plan.as_deref(), scope)
            .iter()
            .any(|spec| spec.key.needs(KeyPart::User)))
    }

    /// True when `scope` has a limit by default or in the bound tenant's
    /// plan (the middleware skips scopes without one).
    fn has_limits(&self, py: Python<'_>, scope: &str) -> PyResult<bool> {
        let compiled = super::config::current(py)?;
        if compiled.settings.rate_limits.limits.mentions(scope) {
            return Ok(true);
        }
        match self.tenant(py, None)? {
            None => Ok(false),
            Some((obj, id)) => Ok(self.plan(py, &obj, &id)?.is_some_and(|p| p.mentions(scope))),
        }
    }

    /// `"tenant_memory"` or `"tenant_redis"`, per the current config.
    #[getter]
    fn backend(&self, py: Python<'_>) -> PyResult<&'static str> {
        Ok(self.engine(py)?.0.name())
    }

    fn health_check<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (engine, _) = self.engine(py)?;
        engine.report_health(py, None, |d| d.set_item("total_keys", MEMORY.len()))
    }

    /// Forgets the counts of one tenant (memory store); returns how many
    /// keys went.
    #[classmethod]
    fn clear_tenant(cls: &Bound<'_, PyType>, tenant_id: &Bound<'_, PyAny>) -> PyResult<usize> {
        let tenant = id_from_py(tenant_id)?;
        tenant_backend::refuse_naming_another(cls.py(), &tenant, "TenantRateLimiter.clear_tenant")?;
        Ok(MEMORY.clear_tenant(&tenant))
    }

    /// Forgets every count of the memory store. Trusted code only, with no
    /// tenant bound (`TenantMismatchError`: every tenant's limits).
    #[classmethod]
    fn clear_all(cls: &Bound<'_, PyType>) -> PyResult<usize> {
        tenant_backend::refuse_while_bound(cls.py(), "TenantRateLimiter.clear_all()")?;
        Ok(MEMORY.clear_all())
    }

    /// Bounds the memory store (all tenants; default 1,048,576 keys).
    /// Trusted code only, with no tenant bound (`TenantMismatchError`).
    #[classmethod]
    fn set_memory_limit(cls: &Bound<'_, PyType>, max_keys: usize) -> PyResult<()> {
        tenant_backend::refuse_while_bound(cls.py(), "TenantRateLimiter.set_memory_limit()")?;
        MEMORY.set_max_keys(max_keys);
        Ok(())
    }

    /// Keys held by the memory store.
    #[classmethod]
    fn store_size(_cls: &Bound<'_, PyType>) -> usize {
        MEMORY.len()
    }

    /// Drops the parsed plans (the registry's invalidation does it through
    /// new settings objects; this is for tests).
    fn forget_plans(&self) {
        let old = std::mem::take(&mut *self.plans.lock());
        drop(old);
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        match self.engine(py) {
            Ok((e, _)) => format!("TenantRateLimiter(backend={:?})", e.name()),
            Err(_) => "TenantRateLimiter(unconfigured)".to_owned(),
        }
    }
}

impl Limiter {
    /// [`Limiter::check`] for a known tenant.
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &self,
        py: Python<'_>,
        scope: &str,
        key: Option<&str>,
        cost: u64,
        request: Option<&Bound<'_, PyAny>>,
        rate: Option<&str>,
        endpoint: Option<&str>,
        tenant_obj: &Bound<'_, PyAny>,
        tenant: &TenantId,
        usage: Option<&str>,
    ) -> PyResult<Decision> {
        let tenant = tenant.clone();
        if let Some(name) = usage {
            let metric = Metric::from_name(name).ok_or_else(|| {
                pyo3::exceptions::PyValueError::new_err(format!("unknown usage metric {name:?}"))
            })?;
            super::usage::record(py, &tenant, metric, 1)?;
        }
        let (engine, compiled) = self.engine(py)?;
        let settings = &compiled.settings.rate_limits;
        let plan = self.plan(py, tenant_obj, &tenant)?;
        let key = key.map(KeySpec::parse).transpose().map_err(rate_error)?;
        let mut limits = settings.limits.effective(plan.as_deref(), scope);
        let planned = plan.as_ref().is_some_and(|p| p.rates.contains_key(scope));
        if let (Some(rate), false, false) =
            (rate, planned, settings.limits.rates.contains_key(scope))
        {
            limits.insert(
                0,
                LimitSpec {
                    limit: Limit::Rate(Rate::parse(rate).map_err(rate_error)?),
                    key: KeySpec::TENANT,
                },
            );
        }
        if limits.is_empty() {
            return Ok(Decision::from_core(CoreDecision::UNLIMITED, false));
        }
        let mut parts: Vec<KeyPart> = Vec::new();
        for spec in &limits {
            let k = key.as_ref().unwrap_or(&spec.key);
            for part in [KeyPart::User, KeyPart::Ip, KeyPart::View] {
                if k.needs(part) && !parts.contains(&part) {
                    parts.push(part);
                }
            }
        }
        let (user, ip, view) = identity_of(request, &parts, endpoint)?;
        let who = Identity {
            user: user.as_deref(),
            ip: ip.as_deref(),
            view: view.as_deref(),
        };
        let checks = checks_for(scope, &limits, key.as_ref(), &who).map_err(rate_error)?;
        check_cost(&checks, cost).map_err(rate_error)?;
        let decided = match &*engine {
            tenant_backend::Engine::Memory(prefix) => MEMORY
                .check(prefix, &tenant, &checks, cost, now_micros())
                .map_err(|refused| StoreError::Unavailable {
                    url: "memory".to_owned(),
                    detail: refused.to_string(),
                }),
            tenant_backend::Engine::Redis(r) => py.detach(|| r.check(&tenant, &checks, cost, None)),
        };
        match decided {
            Ok(d) => {
                if !d.allowed {
                    super::usage::record(py, &tenant, Metric::Limited, 1)?;
                }
                Ok(Decision::from_core(d, true))
            }
            Err(e @ StoreError::Unavailable { .. }) if settings.failure == FailureMode::Open => {
                Self::warn(
                    py,
                    format!(
                        "rate limit {scope:?} of tenant {:?} not checked \
                         (TENANT_RATE_LIMIT_FAILURE = 'open'): {e}",
                        tenant.as_str()
                    ),
                )?;
                Ok(Decision::from_core(CoreDecision::UNLIMITED, false))
            }
            Err(e) => Err(store_error(e)),
        }
    }
}
