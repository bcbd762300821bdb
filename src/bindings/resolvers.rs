//! The resolver classes and `resolve_tenant()`: reading a Django request and
//! applying the core rules of [`crate::resolve`].

use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::exceptions::{PyNotImplementedError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};
use pyo3::{intern, PyTypeInfo};

use super::config::{current, overridden, Compiled, Names};
use super::crossings::{self, Callback};
use super::registry::DomainMap;
use super::tenant_info::{id_candidate, type_name, valid_id, Candidate, TenantInfo, ValidId};
use crate::config::Settings;
use crate::host::{split_domain_port, validated_domain, AllowedHosts};
use crate::resolve::{path_tenant, subdomain_tenant};
use crate::tenant_id::TenantId;

/// What a built-in strategy reads: the compiled config, or the values a
/// resolver's own `get_config()` gave for this one call.
pub struct Rules<'a> {
    settings: &'a Settings,
    names: &'a Names,
    custom_resolver: Option<&'a Py<PyAny>>,
    custom_label: &'a str,
    domains: Option<&'a DomainMap>,
}

impl<'a> Rules<'a> {
    fn compiled(c: &'a Compiled) -> Self {
        Rules {
            settings: &c.settings,
            names: &c.names,
            custom_resolver: c.custom_resolver.as_ref(),
            custom_label: &c.custom_label,
            domains: c.domains.as_ref(),
        }
    }
}

/// The built-in strategies, run in Rust.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    Subdomain,
    Path,
    Header,
    Session,
    Custom,
    Domain,
}

/// A compiled resolver tree.
pub enum Resolver {
    Builtin(Builtin),
    /// A user resolver: `obj.resolve(request)` or, for a plain callable,
    /// `obj(request)`.
    Python {
        obj: Py<PyAny>,
        call_resolve: bool,
        label: String,
    },
    Chain(Vec<Resolver>),
}

impl Resolver {
    pub fn python(obj: Py<PyAny>, call_resolve: bool, label: String) -> Self {
        Resolver::Python {
            obj,
            call_resolve,
            label,
        }
    }

    /// Session, user attributes and user code may do blocking I/O.
    pub fn needs_sync(&self) -> bool {
        match self {
            Resolver::Builtin(b) => {
                matches!(b, Builtin::Session | Builtin::Custom | Builtin::Domain)
            }
            Resolver::Python { .. } => true,
            Resolver::Chain(items) => items.iter().any(Resolver::needs_sync),
        }
    }

    pub fn uses_session(&self) -> bool {
        match self {
            Resolver::Builtin(b) => *b == Builtin::Session,
            Resolver::Python { .. } => false,
            Resolver::Chain(items) => items.iter().any(Resolver::uses_session),
        }
    }

    /// Resolves `request`; with a registry configured, an id the registry
    /// does not know counts as no match, so a chain moves on to its next
    /// resolver.
    pub fn resolve<'py>(
        &self,
        py: Python<'py>,
        c: &Compiled,
        request: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        Ok(self.resolve_sourced(py, c, request)?.map(|(t, _)| t))
    }

    /// [`Resolver::resolve`], also naming the leaf that matched (see
    /// [`Resolver::source`]): admission treats client-chosen sources apart.
    pub fn resolve_sourced<'a, 'py>(
        &'a self,
        py: Python<'py>,
        c: &Compiled,
        request: &Bound<'py, PyAny>,
    ) -> PyResult<Option<(Bound<'py, PyAny>, &'a str)>> {
        if let Resolver::Chain(items) = self {
            for item in items {
                if let Some(found) = item.resolve_sourced(py, c, request)? {
                    return Ok(Some(found));
                }
            }
            return Ok(None);
        }
        match self.resolve_leaf(py, c, request)? {
            Some(found) => Ok(admit(py, c, found)?.map(|t| (t, self.source()))),
            None => Ok(None),
        }
    }

    /// The built-in's name (`"subdomain"`, `"header"`, …) or the label of a
    /// user resolver (its dotted path or class name).
    pub fn source(&self) -> &str {
        match self {
            Resolver::Builtin(b) => b.name(),
            Resolver::Python { label, .. } => label,
            Resolver::Chain(_) => "chain",
        }
    }

    /// The leaves that read the request's host, in chain order.
    pub fn host_builtins(&self, out: &mut Vec<Builtin>) {
        match self {
            Resolver::Builtin(b @ (Builtin::Subdomain | Builtin::Domain)) => out.push(*b),
            Resolver::Chain(items) => items.iter().for_each(|r| r.host_builtins(out)),
            _ => {}
        }
    }

    fn resolve_leaf<'py>(
        &self,
        py: Python<'py>,
        c: &Compiled,
        request: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Found<'py>>> {
        match self {
            Resolver::Builtin(b) => builtin_found(py, &Rules::compiled(c), *b, request),
            Resolver::Python {
                obj,
                call_resolve,
                label,
            } => {
                let obj = obj.bind(py);
                crossings::note(Callback::UserCode);
                let result = if *call_resolve {
                    obj.call_method1(intern!(py, "resolve"), (request,))?
                } else {
                    obj.call1((request,))?
                };
                Ok(normalize(py, result, label)?.map(Found::Info))
            }
            Resolver::Chain(_) => Ok(self.resolve(py, c, request)?.map(Found::Info)),
        }
    }
}

/// What a resolver found: a bare id (the built-ins), or a `TenantInfo`
/// (user code, which may carry a name and settings).
pub enum Found<'py> {
    Id(ValidId<'py>),
    Info(Bound<'py, PyAny>),
}

impl<'py> Found<'py> {
    fn into_tenant(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Found::Id(id) => tenant_from(py, id),
            Found::Info(info) => Ok(info),
        }
    }
}

/// A found tenant as the registry sees it (with its name, settings and row),
/// or `None` when the registry does not know it. Without a registry: as is.
pub(super) fn admit<'py>(
    py: Python<'py>,
    c: &Compiled,
    found: Found<'py>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let Some(registry) = &c.registry else {
        return found.into_tenant(py).map(Some);
    };
    let id = match found {
        Found::Id(ValidId::Py(s)) => s,
        Found::Id(ValidId::Rust(t)) => PyString::new(py, t.as_str()),
        Found::Info(info) => info.cast::<TenantInfo>()?.borrow().id_py(py),
    };
    registry.admit(py, id)
}

impl Builtin {
    /// The name `TENANT_RESOLVER` knows it by.
    pub fn name(self) -> &'static str {
        match self {
            Builtin::Subdomain => "subdomain",
            Builtin::Path => "path",
            Builtin::Header => "header",
            Builtin::Session => "session",
            Builtin::Custom => "custom",
            Builtin::Domain => "domain",
        }
    }

    pub fn is_custom(self) -> bool {
        self == Builtin::Custom
    }

    pub fn is_domain(self) -> bool {
        self == Builtin::Domain
    }
}

/// The built-in strategy a class stands for, if it is exactly one of ours (a
/// Python subclass may override `resolve`, so it runs as Python).
pub fn builtin_for_type(cls: &Bound<'_, PyType>) -> Option<Builtin> {
    let py = cls.py();
    let table = [
        (SubdomainResolver::type_object(py), Builtin::Subdomain),
        (PathResolver::type_object(py), Builtin::Path),
        (HeaderResolver::type_object(py), Builtin::Header),
        (SessionResolver::type_object(py), Builtin::Session),
        (CustomResolver::type_object(py), Builtin::Custom),
        (DomainResolver::type_object(py), Builtin::Domain),
    ];
    table.into_iter().find(|(t, _)| t.is(cls)).map(|(_, b)| b)
}

fn builtin_for_object(obj: &Bound<'_, PyAny>) -> Option<Builtin> {
    builtin_for_type(&obj.get_type())
}

/// A resolver result → a `TenantInfo` or `None`. Invalid ids are "no tenant";
/// a value of the wrong type is a bug in the resolver and raises.
fn normalize<'py>(
    py: Python<'py>,
    value: Bound<'py, PyAny>,
    label: &str,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    if value.is_none() {
        return Ok(None);
    }
    if value.is_instance_of::<TenantInfo>() {
        return Ok(Some(value));
    }
    match id_candidate(&value)? {
        Candidate::Valid(id) => Ok(Some(tenant(py, &id)?)),
        Candidate::Invalid(..) => Ok(None),
        Candidate::WrongType => Err(PyTypeError::new_err(format!(
            "tenant resolver {label} returned a {}; expected a str, an int, a TenantInfo or None",
            type_name(&value)
        ))),
    }
}

fn tenant<'py>(py: Python<'py>, id: &TenantId) -> PyResult<Bound<'py, PyAny>> {
    Ok(Bound::new(py, TenantInfo::from_id(py, id))?.into_any())
}

fn tenant_from<'py>(py: Python<'py>, id: ValidId<'py>) -> PyResult<Bound<'py, PyAny>> {
    Ok(Bound::new(py, TenantInfo::from_valid(py, id))?.into_any())
}

fn resolve_builtin<'py>(
    py: Python<'py>,
    rules: &Rules<'_>,
    builtin: Builtin,
    request: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    builtin_found(py, rules, builtin, request)?
        .map(|f| f.into_tenant(py))
        .transpose()
}

/// The `DJUST_CONFIG` keys each built-in reads through `get_config()`.
fn config_keys(builtin: Builtin) -> &'static [&'static str] {
    match builtin {
        Builtin::Subdomain => &[
            "TENANT_MAIN_DOMAIN",
            "TENANT_SUBDOMAIN_EXCLUDE",
            "TENANT_SUBDOMAIN_DEPTH",
        ],
        Builtin::Path => &["TENANT_PATH_POSITION", "TENANT_PATH_EXCLUDE"],
        Builtin::Header => &["TENANT_HEADER"],
        Builtin::Session => &[
            "TENANT_SESSION_KEY",
            "TENANT_JWT_CLAIM",
            "TENANT_USER_ATTRIBUTE",
        ],
        Builtin::Custom => &["TENANT_CUSTOM_RESOLVER"],
        Builtin::Domain => &[],
    }
}

static BASE_GET_CONFIG: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// True when `obj` reads its settings from the compiled config: neither its
/// class nor the instance itself (`patch.object(resolver, "get_config")`)
/// replaces `TenantResolver.get_config`. Otherwise its `get_config()` is
/// the authority, as in djust.tenants, and is asked on every call.
fn uses_compiled_config(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = obj.py();
    let name = intern!(py, "get_config");
    let base = BASE_GET_CONFIG.get_or_try_init(py, || {
        TenantResolver::type_object(py)
            .getattr(name)
            .map(Bound::unbind)
    })?;
    if !obj.get_type().getattr(name)?.is(base.bind(py)) {
        return Ok(false);
    }
    match obj.getattr_opt(intern!(py, "__dict__"))? {
        Some(attrs) => match attrs.cast::<PyDict>() {
            Ok(attrs) => Ok(!attrs.contains(name)?),
            Err(_) => Ok(true),
        },
        None => Ok(true),
    }
}

/// Resolves with the built-in strategy `builtin` as the resolver object
/// `obj` is configured: the compiled config (the fast path), or, when `obj`
/// overrides `get_config`, the values it answers for this call.
fn resolve_as<'py>(
    py: Python<'py>,
    builtin: Builtin,
    obj: &Bound<'py, PyAny>,
    request: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let c = current(py)?;
    if uses_compiled_config(obj)? {
        return resolve_builtin(py, &Rules::compiled(&c), builtin, request);
    }
    let get_config = obj.getattr(intern!(py, "get_config"))?;
    let mut overrides = Vec::new();
    for key in config_keys(builtin) {
        overrides.push((*key, get_config.call1((*key, py.None()))?));
    }
    let owner = type_name(obj);
    let o = overridden(py, &c, &overrides, &owner)?;
    let rules = Rules {
        settings: &o.settings,
        names: &o.names,
        custom_resolver: o.custom_resolver.as_ref(),
        custom_label: &owner,
        domains: c.domains.as_ref(),
    };
    resolve_builtin(py, &rules, builtin, request)
}

/// `request.path_info`, or `request.path` for a request-like object whose
/// `path_info` is missing or not a str (djust.tenants read `path`).
fn request_path<'py>(
    py: Python<'py>,
    request: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyString>>> {
    crossings::note(Callback::Request);
    if let Some(path) = request.getattr_opt(intern!(py, "path_info"))? {
        if let Ok(p) = path.cast_into::<PyString>() {
            return Ok(Some(p));
        }
    }
    Ok(request
        .getattr_opt(intern!(py, "path"))?
        .and_then(|p| p.cast_into::<PyString>().ok()))
}

fn builtin_found<'py>(
    py: Python<'py>,
    rules: &Rules<'_>,
    builtin: Builtin,
    request: &Bound<'py, PyAny>,
) -> PyResult<Option<Found<'py>>> {
    let id = match builtin {
        Builtin::Subdomain => subdomain(py, rules, request)?.map(ValidId::Rust),
        Builtin::Path => match request_path(py, request)? {
            Some(p) => path_tenant(&p.to_string_lossy(), &rules.settings.path).map(ValidId::Rust),
            None => None,
        },
        Builtin::Header => {
            // The value counts only as a str holding a valid id, exactly as
            // sent: "  acme " is not acme.
            crossings::note(Callback::Request);
            match request.getattr_opt(intern!(py, "META"))? {
                Some(meta) => match meta.cast::<PyDict>() {
                    Ok(meta) => match meta.get_item(rules.names.meta_key.bind(py))? {
                        Some(value) => valid_id(&value, false)?,
                        None => None,
                    },
                    Err(_) => None,
                },
                None => None,
            }
        }
        Builtin::Session => session(py, rules.names, request)?,
        Builtin::Domain => match (rules.domains, request_domain(py, request)?) {
            (Some(domains), Some(domain)) => domains.tenant_of(py, &domain)?,
            _ => None,
        },
        Builtin::Custom => {
            crossings::note(Callback::UserCode);
            return match rules.custom_resolver {
                Some(f) => Ok(
                    normalize(py, f.bind(py).call1((request,))?, rules.custom_label)?
                        .map(Found::Info),
                ),
                None => Ok(None),
            };
        }
    };
    Ok(id.map(Found::Id))
}

static SESSION_BASE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
/// The last session class seen, and whether it reads like Django's own
/// `SessionBase` (same `get` and `_get_session`).
static SESSION_CLASS: Mutex<Option<(Py<PyType>, bool)>> = Mutex::new(None);

fn is_plain_session_class(py: Python<'_>, cls: &Bound<'_, PyType>) -> PyResult<bool> {
    if let Some((seen, plain)) = SESSION_CLASS.lock().as_ref() {
        if seen.bind(py).is(cls) {
            return Ok(*plain);
        }
    }
    let base = SESSION_BASE.import(py, "django.contrib.sessions.backends.base", "SessionBase")?;
    let mut plain = true;
    for name in [
        intern!(py, "get"),
        intern!(py, "_get_session"),
        intern!(py, "_session"),
    ] {
        plain &= cls.getattr(name)?.is(&base.getattr(name)?);
    }
    *SESSION_CLASS.lock() = Some((cls.clone().unbind(), plain));
    Ok(plain)
}

/// `session.get(key)`. For Django's own session classes with their data
/// already loaded this reads the loaded dict directly and marks the session
/// accessed, exactly what `SessionBase.get` does, without its two Python
/// calls; anything else goes through `get`.
fn session_get<'py>(
    py: Python<'py>,
    session: &Bound<'py, PyAny>,
    key: &Bound<'py, PyString>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    if let Ok(d) = session.cast::<PyDict>() {
        return d.get_item(key);
    }
    if is_plain_session_class(py, &session.get_type())? {
        if let Some(attrs) = session.getattr_opt(intern!(py, "__dict__"))? {
            if let Ok(attrs) = attrs.cast::<PyDict>() {
                if let Some(cache) = attrs.get_item(intern!(py, "_session_cache"))? {
                    if let Ok(cache) = cache.cast::<PyDict>() {
                        // Keeps `Vary: Cookie` on the response, as Django does.
                        session.setattr(intern!(py, "accessed"), true)?;
                        return cache.get_item(key);
                    }
                }
            }
        }
    }
    Ok(Some(session.call_method1(intern!(py, "get"), (key,))?))
}

fn session<'py>(
    py: Python<'py>,
    names: &Names,
    request: &Bound<'py, PyAny>,
) -> PyResult<Option<ValidId<'py>>> {
    crossings::note(Callback::Request);
    if let Some(session) = request.getattr_opt(intern!(py, "session"))? {
        if !session.is_none() {
            if let Some(value) = session_get(py, &session, names.session_key.bind(py))? {
                if let Some(id) = valid_id(&value, true)? {
                    return Ok(Some(id));
                }
            }
        }
    }
    let Some(user) = request.getattr_opt(intern!(py, "user"))? else {
        return Ok(None);
    };
    if user.is_none() {
        return Ok(None);
    }
    if let Some(payload) = user.getattr_opt(intern!(py, "jwt_payload"))? {
        let claim = names.jwt_claim.bind(py);
        let value = if let Ok(d) = payload.cast::<PyDict>() {
            d.get_item(claim)?
        } else if !payload.is_none() && payload.hasattr(intern!(py, "get"))? {
            Some(payload.call_method1(intern!(py, "get"), (claim,))?)
        } else {
            None
        };
        if let Some(value) = value {
            if let Some(id) = valid_id(&value, true)? {
                return Ok(Some(id));
            }
        }
    }
    if names.user_attribute.is_empty() {
        return Ok(None);
    }
    let mut obj = user;
    for attr in &names.user_attribute {
        match obj.getattr_opt(attr.bind(py))? {
            Some(next) if !next.is_none() => obj = next,
            _ => return Ok(None),
        }
    }
    valid_id(&obj, true)
}

/// `settings.ALLOWED_HOSTS`, `DEBUG` and `USE_X_FORWARDED_HOST` compiled,
/// together with the objects they were compiled from. They are re-read on
/// every request because Django's test runner assigns them directly (no
/// `setting_changed` signal); recompiling happens only when they change.
pub(super) struct HostSnapshot {
    list: Py<PyAny>,
    items: Vec<Py<PyAny>>,
    debug: bool,
    pub(super) rules: AllowedHosts,
}

static HOSTS: Mutex<Option<Arc<HostSnapshot>>> = Mutex::new(None);
static DJANGO_SETTINGS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static SETTINGS_CACHE: PyOnceLock<Py<PyDict>> = PyOnceLock::new();

/// `getattr(django.conf.settings, name)` without its cost: `LazySettings`
/// runs a Python-level `__getattribute__` (~0.7 µs a read) but caches every
/// value it has read in its own `__dict__`, and drops cached entries when a
/// setting is assigned or overridden. Reading that dict is exact; on a miss
/// the normal lookup runs and refills it.
fn django_setting<'py>(
    py: Python<'py>,
    name: &Bound<'py, PyString>,
) -> PyResult<Bound<'py, PyAny>> {
    let settings = DJANGO_SETTINGS.import(py, "django.conf", "settings")?;
    let cache = SETTINGS_CACHE.get_or_try_init(py, || {
        settings
            .getattr(intern!(py, "__dict__"))?
            .cast_into::<PyDict>()
            .map(Bound::unbind)
            .map_err(PyErr::from)
    })?;
    match cache.bind(py).get_item(name)? {
        Some(value) => Ok(value),
        None => {
            crossings::note(Callback::SettingsMiss);
            settings.getattr(name)
        }
    }
}

pub(super) fn host_rules(py: Python<'_>) -> PyResult<(Arc<HostSnapshot>, bool)> {
    let list = django_setting(py, intern!(py, "ALLOWED_HOSTS"))?;
    let debug = django_setting(py, intern!(py, "DEBUG"))?.is_truthy()?;
    let use_xfh = django_setting(py, intern!(py, "USE_X_FORWARDED_HOST"))?.is_truthy()?;
    let cached = HOSTS.lock().clone();
    if let Some(snap) = cached {
        if snap.debug == debug && snap.list.bind(py).is(&list) && same_items(&snap, &list)? {
            return Ok((snap, use_xfh));
        }
    }
    let mut items = Vec::new();
    let mut patterns = Vec::new();
    for item in list.try_iter()? {
        let item = item?;
        patterns.push(item.str()?.to_string_lossy().into_owned());
        items.push(item.unbind());
    }
    let snap = Arc::new(HostSnapshot {
        list: list.unbind(),
        items,
        debug,
        rules: AllowedHosts::new(&patterns, debug),
    });
    *HOSTS.lock() = Some(Arc::clone(&snap));
    Ok((snap, use_xfh))
}

/// The list may be mutated in place; compare its items by identity.
fn same_items(snap: &HostSnapshot, list: &Bound<'_, PyAny>) -> PyResult<bool> {
    if let Ok(l) = list.cast::<PyList>() {
        if l.len() != snap.items.len() {
            return Ok(false);
        }
        return Ok(l.iter().zip(&snap.items).all(|(a, b)| a.is(b)));
    }
    if let Ok(t) = list.cast::<PyTuple>() {
        return Ok(t.len() == snap.items.len() && t.iter().zip(&snap.items).all(|(a, b)| a.is(b)));
    }
    Ok(false)
}

/// The request's domain as Django's `get_host()` validates it: lowercased,
/// without port and trailing dot. A host Django refuses raises Django's own
/// `DisallowedHost`.
fn request_domain(py: Python<'_>, request: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    let (hosts, use_xfh) = host_rules(py)?;
    crossings::note(Callback::Request);
    let meta = request.getattr_opt(intern!(py, "META"))?;
    if let Some(Ok(meta)) = meta.as_ref().map(|m| m.cast::<PyDict>()) {
        // Django's `_get_raw_host()` order.
        let mut raw = None;
        if use_xfh {
            raw = meta.get_item(intern!(py, "HTTP_X_FORWARDED_HOST"))?;
        }
        if raw.is_none() {
            raw = meta.get_item(intern!(py, "HTTP_HOST"))?;
        }
        if let Some(raw) = raw {
            if let Ok(raw) = raw.cast::<PyString>() {
                if let Ok(domain) = validated_domain(&raw.to_string_lossy(), &hosts.rules) {
                    return Ok(Some(domain.into_owned()));
                }
            }
        }
    }
    // No Host header (the SERVER_NAME path), a host Django refuses, or a
    // request-like object without a META dict (a test's Mock): ask its
    // get_host(), so the answer, and Django's DisallowedHost, are its own.
    crossings::note(Callback::GetHost);
    let host = request.call_method0(intern!(py, "get_host"))?;
    let Ok(host) = host.cast::<PyString>() else {
        return Ok(None);
    };
    Ok(match split_domain_port(&host.to_string_lossy()) {
        Some((domain, _)) if !domain.is_empty() => Some(domain.into_owned()),
        _ => None,
    })
}

fn subdomain(
    py: Python<'_>,
    rules: &Rules<'_>,
    request: &Bound<'_, PyAny>,
) -> PyResult<Option<TenantId>> {
    Ok(request_domain(py, request)?.and_then(|d| subdomain_tenant(&d, &rules.settings.subdomain)))
}

/// Base class of every resolver. Subclass it in Python and implement
/// `resolve(request)`; subclasses work in chains next to the built-ins.
#[pyclass(module = "tenantry", name = "TenantResolver", subclass, dict)]
pub struct TenantResolver;

#[pymethods]
impl TenantResolver {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        TenantResolver
    }

    /// Return a `TenantInfo`, a str or int id, or None.
    fn resolve(&self, _request: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        Err(PyNotImplementedError::new_err(
            "TenantResolver subclasses must implement resolve(request)",
        ))
    }

    /// A value from `DJUST_CONFIG` (compatible with djust.tenants).
    #[pyo3(signature = (key, default=None))]
    fn get_config(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let c = current(py)?;
        let value = c.source.bind(py).get_item(key)?;
        Ok(value.map_or_else(|| default.unwrap_or_else(|| py.None()), Bound::unbind))
    }
}

macro_rules! builtin_resolver {
    ($name:ident, $py_name:literal, $builtin:expr, $doc:literal) => {
        #[doc = $doc]
        #[pyclass(module = "tenantry", name = $py_name, extends = TenantResolver, subclass)]
        pub struct $name;

        #[pymethods]
        impl $name {
            #[new]
            #[pyo3(signature = (*_args, **_kwargs))]
            fn new(
                _args: &Bound<'_, PyTuple>,
                _kwargs: Option<&Bound<'_, PyDict>>,
            ) -> PyClassInitializer<Self> {
                PyClassInitializer::from(TenantResolver).add_subclass($name)
            }

            /// Honours a `get_config` overridden by a subclass or patched
            /// on the instance (read on every call); otherwise the compiled
            /// config.
            fn resolve<'py>(
                slf: &Bound<'py, Self>,
                request: &Bound<'py, PyAny>,
            ) -> PyResult<Option<Bound<'py, PyAny>>> {
                resolve_as(slf.py(), $builtin, slf.as_any(), request)
            }
        }
    };
}

builtin_resolver!(
    SubdomainResolver,
    "SubdomainResolver",
    Builtin::Subdomain,
    "`acme.example.com` → `acme` (TENANT_MAIN_DOMAIN, TENANT_SUBDOMAIN_DEPTH, TENANT_SUBDOMAIN_EXCLUDE)."
);
builtin_resolver!(
    PathResolver,
    "PathResolver",
    Builtin::Path,
    "`/acme/dashboard` → `acme` (TENANT_PATH_POSITION, TENANT_PATH_EXCLUDE)."
);
builtin_resolver!(
    HeaderResolver,
    "HeaderResolver",
    Builtin::Header,
    "`X-Tenant-ID: acme` → `acme` (TENANT_HEADER)."
);
builtin_resolver!(
    SessionResolver,
    "SessionResolver",
    Builtin::Session,
    "Session key, then JWT claim, then user attribute (TENANT_SESSION_KEY, TENANT_JWT_CLAIM, TENANT_USER_ATTRIBUTE)."
);
builtin_resolver!(
    DomainResolver,
    "DomainResolver",
    Builtin::Domain,
    "Custom domains (`shop.acme-corp.com` → `acme`) from TENANT_DOMAIN_MODEL."
);
builtin_resolver!(
    CustomResolver,
    "CustomResolver",
    Builtin::Custom,
    "Calls TENANT_CUSTOM_RESOLVER(request)."
);

/// Tries each resolver in order; the first non-None result wins and later
/// resolvers are not called.
#[pyclass(module = "tenantry", name = "ChainedResolver", extends = TenantResolver, subclass)]
pub struct ChainedResolver {
    resolvers: Vec<Py<PyAny>>,
}

#[pymethods]
impl ChainedResolver {
    #[new]
    #[pyo3(signature = (resolvers, *_args, **_kwargs))]
    fn new(
        resolvers: &Bound<'_, PyAny>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let mut items = Vec::new();
        for r in resolvers.try_iter()? {
            let r = r?;
            if !r.hasattr("resolve")? {
                return Err(PyTypeError::new_err(format!(
                    "ChainedResolver takes resolver instances (with a resolve(request) method), got {}",
                    type_name(&r)
                )));
            }
            items.push(r.unbind());
        }
        Ok(PyClassInitializer::from(TenantResolver)
            .add_subclass(ChainedResolver { resolvers: items }))
    }

    #[getter]
    fn resolvers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.resolvers.iter().map(|r| r.clone_ref(py)))
    }

    fn resolve<'py>(
        &self,
        py: Python<'py>,
        request: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let mut compiled: Option<Arc<Compiled>> = None;
        for r in &self.resolvers {
            let r = r.bind(py);
            let builtin = match builtin_for_object(r) {
                Some(b) if uses_compiled_config(r)? => Some(b),
                _ => None,
            };
            let found = match builtin {
                Some(b) => {
                    if compiled.is_none() {
                        compiled = Some(current(py)?);
                    }
                    match &compiled {
                        Some(c) => resolve_builtin(py, &Rules::compiled(c), b, request)?,
                        None => None,
                    }
                }
                None => {
                    let result = r.call_method1(intern!(py, "resolve"), (request,))?;
                    normalize(py, result, &type_name(r))?
                }
            };
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }
}

/// Wraps a plain callable `f(request)` given as TENANT_RESOLVER.
#[pyclass(module = "tenantry", name = "CallableResolver", extends = TenantResolver)]
pub struct CallableResolver {
    func: Py<PyAny>,
}

#[pymethods]
impl CallableResolver {
    #[new]
    fn new(func: Py<PyAny>) -> PyClassInitializer<Self> {
        PyClassInitializer::from(TenantResolver).add_subclass(CallableResolver { func })
    }

    #[getter]
    fn func(&self, py: Python<'_>) -> Py<PyAny> {
        self.func.clone_ref(py)
    }

    fn resolve<'py>(
        &self,
        py: Python<'py>,
        request: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let f = self.func.bind(py);
        normalize(py, f.call1((request,))?, &type_name(f))
    }
}

pub fn new_chained<'py>(py: Python<'py>, resolvers: Vec<Py<PyAny>>) -> PyResult<Bound<'py, PyAny>> {
    let init = PyClassInitializer::from(TenantResolver).add_subclass(ChainedResolver { resolvers });
    Ok(Bound::new(py, init)?.into_any())
}

pub fn new_callable(py: Python<'_>, func: Py<PyAny>) -> PyResult<Bound<'_, PyAny>> {
    Ok(Bound::new(py, CallableResolver::new(func))?.into_any())
}

/// Resolves `request` with the configured resolver, then applies
/// `TENANT_DEFAULT` when nothing matched.
#[pyfunction]
pub fn resolve_tenant<'py>(
    py: Python<'py>,
    request: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    Ok(resolve_tenant_sourced(py, request)?.0)
}

/// [`resolve_tenant`] and where the tenant came from: a resolver's name
/// (`"subdomain"`, `"header"`, …, or a user resolver's label), `"default"`
/// for `TENANT_DEFAULT`, `None` when nothing resolved.
#[pyfunction]
pub fn resolve_tenant_sourced<'py>(
    py: Python<'py>,
    request: &Bound<'py, PyAny>,
) -> PyResult<(Option<Bound<'py, PyAny>>, Option<String>)> {
    let c = current(py)?;
    if let Some((found, source)) = c.resolver.resolve_sourced(py, &c, request)? {
        return Ok((Some(found), Some(source.to_owned())));
    }
    match &c.settings.default_tenant {
        Some(id) => {
            let found = admit(py, &c, Found::Id(ValidId::Rust(id.clone())))?;
            let source = found.as_ref().map(|_| "default".to_owned());
            Ok((found, source))
        }
        None => Ok((None, None)),
    }
}

/// The configured resolver object (cached until the config changes).
#[pyfunction]
pub fn get_tenant_resolver(py: Python<'_>) -> PyResult<Py<PyAny>> {
    Ok(current(py)?.resolver_object.clone_ref(py))
}

/// Rust's verdict on a raw host: the domain `get_host()` would accept, or
/// None where Django raises `DisallowedHost`. For the differential test.
#[pyfunction]
#[pyo3(name = "_django_host")]
pub fn django_host(host: &str, allowed_hosts: Vec<String>, debug: bool) -> Option<String> {
    validated_domain(host, &AllowedHosts::new(&allowed_hosts, debug))
        .ok()
        .map(|d| d.into_owned())
}
