//! `DJUST_CONFIG` → [`crate::config::Settings`] → the compiled resolver.
//!
//! The Python side (`tenantry.conf`) hands over the dict and the resolver
//! registry; this module converts the values, runs the core parser, imports
//! the dotted paths and keeps the result as the process-wide current config
//! until `reset()` (called on Django's `setting_changed`).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple, PyType,
};

use super::errors::{config_error, config_errors};
use super::registry::{DomainMap, Registry};
use super::resolvers::{self, Resolver};
use crate::config::{self, CallableSpec, ConfigError, ResolverSpec, Settings, Value};
use crate::keys::KeyPrefix;

/// The counts namespace ([`set_counts_namespace`]), folded into
/// [`Compiled::counts_prefix`] by every compile.
static COUNTS_NAMESPACE: RwLock<Option<Box<str>>> = RwLock::new(None);

/// Longest counts namespace.
const MAX_NAMESPACE_LEN: usize = 32;

/// `<prefix>:<namespace>`, or `prefix` without a namespace.
fn counts_prefix(prefix: &KeyPrefix) -> Result<KeyPrefix, ConfigError> {
    let Some(namespace) = COUNTS_NAMESPACE.read().clone() else {
        return Ok(prefix.clone());
    };
    KeyPrefix::new(&format!("{}:{namespace}", prefix.as_str())).map_err(|e| ConfigError {
        key: "TENANT_KEY_PREFIX".to_owned(),
        message: format!("with the counts namespace {namespace:?} appended: {e}"),
    })
}

/// `set_counts_namespace(namespace)`: rate-limit counts and usage figures
/// (memory and Redis) go to `<TENANT_KEY_PREFIX>:<namespace>` from the next
/// use of the config on (`None`: back to `TENANT_KEY_PREFIX`). The test kit
/// gives each test its own (`tenantry.testing`, docs/testing.md), so counts
/// carry neither across tests nor across test runs. `namespace`: 1 to 32
/// ASCII letters, digits, `-` or `_`. Drops the current config.
#[pyfunction]
#[pyo3(signature = (namespace))]
pub fn set_counts_namespace(namespace: Option<&str>) -> PyResult<()> {
    if let Some(ns) = namespace {
        if ns.is_empty()
            || ns.len() > MAX_NAMESPACE_LEN
            || !ns
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "counts namespace {ns:?} must be 1 to {MAX_NAMESPACE_LEN} ASCII letters, \
                 digits, '-' or '_'"
            )));
        }
    }
    *COUNTS_NAMESPACE.write() = namespace.map(Into::into);
    reset();
    Ok(())
}

/// Python strings the hot paths look up, made once per config.
pub struct Names {
    pub meta_key: Py<PyString>,
    pub session_key: Py<PyString>,
    pub jwt_claim: Py<PyString>,
    pub user_attribute: Vec<Py<PyString>>,
}

impl Names {
    fn new(py: Python<'_>, settings: &Settings) -> Self {
        Names {
            meta_key: PyString::new(py, &settings.header.meta_key).unbind(),
            session_key: PyString::new(py, &settings.session.session_key).unbind(),
            jwt_claim: PyString::new(py, &settings.session.jwt_claim).unbind(),
            user_attribute: settings
                .session
                .user_attribute
                .iter()
                .flatten()
                .map(|a| PyString::new(py, a).unbind())
                .collect(),
        }
    }
}

/// The current config: parsed settings plus the Python objects they name.
pub struct Compiled {
    pub settings: Settings,
    pub resolver: Resolver,
    /// What `get_tenant_resolver()` returns.
    pub resolver_object: Py<PyAny>,
    pub names: Names,
    /// `TENANT_CUSTOM_RESOLVER`, imported, and how errors name it.
    pub custom_resolver: Option<Py<PyAny>>,
    pub custom_label: String,
    pub membership_check: Option<Py<PyAny>>,
    pub audit_callback: Option<Py<PyAny>>,
    /// `TENANT_MODEL` / `TENANT_VALIDATOR`: which ids are real tenants.
    pub registry: Option<Registry>,
    /// `TENANT_DOMAIN_MODEL`: custom domains → tenant ids.
    pub domains: Option<DomainMap>,
    /// The prefix of rate-limit counts and usage figures: `TENANT_KEY_PREFIX`,
    /// or `<TENANT_KEY_PREFIX>:<namespace>` while a counts namespace is set
    /// ([`set_counts_namespace`], the test kit's per-test key space).
    pub counts_prefix: KeyPrefix,
    /// The `DJUST_CONFIG` dict this was compiled from, for `get_config()`.
    pub source: Py<PyDict>,
    /// The `django.conf.settings` object `source` was read from. When a test
    /// replaces `django.conf.settings` (`patch("django.conf.settings")`),
    /// the next use sees another object and compiles the stand-in's config.
    settings_object: Option<Py<PyAny>>,
}

/// The built-in resolver settings read from a resolver's own `get_config()`
/// (a subclass or an instance overriding it), for one resolution.
pub struct Overridden {
    pub settings: Settings,
    pub names: Names,
    pub custom_resolver: Option<Py<PyAny>>,
}

static CURRENT: RwLock<Option<Arc<Compiled>>> = RwLock::new(None);
static CONF_LOADER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static IMPORT_STRING: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static TENANT_LOADER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static DOMAIN_LOADER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static RELOADER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static DJANGO_CONF: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

impl Compiled {
    /// False when `django.conf.settings` is no longer the object this was
    /// compiled from (a test's stand-in came or went). One module attribute
    /// read and a pointer compare.
    fn settings_unchanged(&self, py: Python<'_>) -> PyResult<bool> {
        let Some(compiled_from) = &self.settings_object else {
            return Ok(true);
        };
        // The module's own dict, held since the first use: a replaced
        // `django.conf.settings` (`patch("django.conf.settings")` sets the
        // module attribute) is seen in it; reading it runs no Python code.
        let conf = DJANGO_CONF.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            Ok(py.import("django.conf")?.dict().clone().unbind().into_any())
        })?;
        let current = conf
            .bind(py)
            .cast::<PyDict>()?
            .get_item(pyo3::intern!(py, "settings"))?;
        Ok(current.is_some_and(|s| s.is(compiled_from.bind(py))))
    }
}

/// The current config, loading it through `tenantry.conf` on first use, and
/// again when `django.conf.settings` has been replaced by another object.
pub fn current(py: Python<'_>) -> PyResult<Arc<Compiled>> {
    let cached = CURRENT.read().as_ref().map(Arc::clone);
    if let Some(c) = cached {
        if c.settings_unchanged(py)? {
            return Ok(c);
        }
        super::crossings::note(super::crossings::Callback::ConfigLoad);
        RELOADER
            .import(py, "tenantry.conf", "_settings_replaced")?
            .call0()?;
    } else {
        super::crossings::note(super::crossings::Callback::ConfigLoad);
        CONF_LOADER.import(py, "tenantry.conf", "load")?.call0()?;
    }
    CURRENT
        .read()
        .as_ref()
        .map(Arc::clone)
        .ok_or_else(|| PyRuntimeError::new_err("tenantry.conf.load() did not install a config"))
}

/// Converts the keys tenantry reads; other keys only need their names.
pub(super) fn to_value(obj: &Bound<'_, PyAny>, objects: &mut Vec<Py<PyAny>>) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::None);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i128>() {
            return Ok(Value::Int(i));
        }
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Value::Float(f.value()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::Str(s.to_string_lossy().into_owned()));
    }
    if obj.is_instance_of::<PyList>()
        || obj.is_instance_of::<PyTuple>()
        || obj.is_instance_of::<PySet>()
        || obj.is_instance_of::<PyFrozenSet>()
    {
        let mut items = Vec::new();
        for item in obj.try_iter()? {
            items.push(to_value(&item?, objects)?);
        }
        return Ok(Value::List(items));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut items = Vec::with_capacity(d.len());
        for (k, v) in d.iter() {
            let Ok(k) = k.cast::<PyString>() else {
                return Ok(Value::Object {
                    type_name: "dict with non-str keys".into(),
                    callable: false,
                    handle: usize::MAX,
                });
            };
            items.push((k.to_string_lossy().into_owned(), to_value(&v, objects)?));
        }
        return Ok(Value::Map(items));
    }
    objects.push(obj.clone().unbind());
    Ok(Value::Object {
        type_name: super::tenant_info::type_name(obj),
        callable: obj.is_callable(),
        handle: objects.len() - 1,
    })
}

/// The converted dict and the Python objects its `Value::Object`s point at.
type ReadMap = (BTreeMap<String, Value>, Vec<Py<PyAny>>);
/// `(errors as (key, message), unknown keys as (key, warning message))`.
type CheckResult = (Vec<(String, String)>, Vec<(String, String)>);

fn read_map(djust_config: &Bound<'_, PyDict>) -> PyResult<ReadMap> {
    let mut map = BTreeMap::new();
    let mut objects = Vec::new();
    for (key, value) in djust_config.iter() {
        let Ok(key) = key.cast::<PyString>() else {
            continue;
        };
        let key = key.to_string_lossy().into_owned();
        let value = if config::KNOWN_KEYS.contains(&key.as_str()) {
            to_value(&value, &mut objects)?
        } else {
            Value::None
        };
        map.insert(key, value);
    }
    Ok((map, objects))
}

fn import_string<'py>(
    py: Python<'py>,
    key: &str,
    path: &str,
) -> Result<Bound<'py, PyAny>, ConfigError> {
    let imported = IMPORT_STRING
        .import(py, "django.utils.module_loading", "import_string")
        .and_then(|f| f.call1((path,)));
    imported.map_err(|e| config_error(key, format!("could not import {path:?}: {e}")))
}

fn callable(
    py: Python<'_>,
    key: &str,
    spec: &Option<CallableSpec>,
    objects: &[Py<PyAny>],
) -> Result<Option<Py<PyAny>>, ConfigError> {
    let obj = match spec {
        None => return Ok(None),
        Some(CallableSpec::Object(h)) => objects[*h].bind(py).clone(),
        Some(CallableSpec::Dotted(path)) => import_string(py, key, path)?,
    };
    if !obj.is_callable() {
        return Err(config_error(
            key,
            format!(
                "must name a callable, got {}",
                super::tenant_info::type_name(&obj)
            ),
        ));
    }
    Ok(Some(obj.unbind()))
}

/// The label a resolver is named by in error messages.
fn label_of(obj: &Bound<'_, PyAny>) -> String {
    let module = obj
        .getattr("__module__")
        .and_then(|m| m.extract::<String>())
        .ok();
    let name = obj
        .getattr("__qualname__")
        .and_then(|m| m.extract::<String>())
        .ok();
    match (module, name) {
        (Some(m), Some(n)) => format!("{m}.{n}"),
        _ => obj
            .repr()
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "resolver".to_owned()),
    }
}

struct Materializer<'a, 'py> {
    py: Python<'py>,
    objects: &'a [Py<PyAny>],
    registry: &'a Bound<'py, PyDict>,
    has_custom: bool,
    has_domains: bool,
}

impl<'py> Materializer<'_, 'py> {
    fn spec(&self, spec: &ResolverSpec) -> Result<(Resolver, Bound<'py, PyAny>), ConfigError> {
        const KEY: &str = "TENANT_RESOLVER";
        match spec {
            ResolverSpec::Named(name) => {
                let cls = self.registry.get_item(name).ok().flatten().ok_or_else(|| {
                    let known: Vec<String> = self
                        .registry
                        .keys()
                        .iter()
                        .map(|k| k.to_string())
                        .collect();
                    let hint = config::closest(name, known.iter().map(String::as_str))
                        .map(|near| format!("; did you mean {near:?}?"))
                        .unwrap_or_default();
                    config_error(
                        KEY,
                        format!(
                            "names an unknown resolver {name:?}{hint} (known: {}; add others to RESOLVER_REGISTRY)",
                            known.join(", ")
                        ),
                    )
                })?;
                self.object(&cls)
            }
            ResolverSpec::Dotted(path) => self.object(&import_string(self.py, KEY, path)?),
            ResolverSpec::Object(handle) => self.object(self.objects[*handle].bind(self.py)),
            ResolverSpec::Chain(specs) => {
                let mut tree = Vec::with_capacity(specs.len());
                let mut objs = Vec::with_capacity(specs.len());
                for s in specs {
                    let (r, o) = self.spec(s)?;
                    tree.push(r);
                    objs.push(o.unbind());
                }
                let chained = resolvers::new_chained(self.py, objs)
                    .map_err(|e| config_error(KEY, e.to_string()))?;
                Ok((Resolver::Chain(tree), chained))
            }
        }
    }

    /// A class (instantiated), a resolver instance, or a plain callable.
    fn object(
        &self,
        obj: &Bound<'py, PyAny>,
    ) -> Result<(Resolver, Bound<'py, PyAny>), ConfigError> {
        const KEY: &str = "TENANT_RESOLVER";
        let err = |e: PyErr| config_error(KEY, format!("could not set up {}: {e}", label_of(obj)));
        if let Ok(cls) = obj.cast::<PyType>() {
            if let Some(builtin) = resolvers::builtin_for_type(cls) {
                if builtin.is_custom() && !self.has_custom {
                    return Err(config_error(
                        "TENANT_CUSTOM_RESOLVER",
                        "must be set (a dotted path to a callable) when TENANT_RESOLVER uses 'custom'"
                            .into(),
                    ));
                }
                if builtin.is_domain() && !self.has_domains {
                    return Err(config_error(
                        "TENANT_DOMAIN_MODEL",
                        "must be set (a model label like 'tenants.Domain') when TENANT_RESOLVER uses 'domain'"
                            .into(),
                    ));
                }
                let instance = cls.call0().map_err(err)?;
                return Ok((Resolver::Builtin(builtin), instance));
            }
            let instance = cls.call0().map_err(err)?;
            return self.object(&instance);
        }
        let label = label_of(obj);
        if obj.hasattr("resolve").map_err(err)? {
            return Ok((
                Resolver::python(obj.clone().unbind(), true, label),
                obj.clone(),
            ));
        }
        if obj.is_callable() {
            let wrapped = resolvers::new_callable(self.py, obj.clone().unbind()).map_err(err)?;
            return Ok((
                Resolver::python(obj.clone().unbind(), false, label),
                wrapped,
            ));
        }
        Err(config_error(
            KEY,
            format!(
                "must be a resolver class, instance or callable, got {}",
                super::tenant_info::type_name(obj)
            ),
        ))
    }
}

fn loader_error(key: &str, e: PyErr) -> ConfigError {
    config_error(key, format!("could not set up the registry lookup: {e}"))
}

/// The tenant lookup for `TENANT_MODEL` or `TENANT_VALIDATOR`, if either is set.
fn tenant_registry(
    py: Python<'_>,
    r: &config::RegistrySettings,
    objects: &[Py<PyAny>],
) -> Result<Option<Registry>, ConfigError> {
    if !r.enabled() {
        return Ok(None);
    }
    let validator = callable(py, "TENANT_VALIDATOR", &r.validator, objects)?;
    let key = if r.model.is_some() {
        "TENANT_MODEL"
    } else {
        "TENANT_VALIDATOR"
    };
    let make = TENANT_LOADER
        .import(py, "tenantry.registry", "make_tenant_loader")
        .map_err(|e| loader_error(key, e))?;
    let loader = make
        .call1((
            r.model.as_deref(),
            r.id_field.as_str(),
            r.name_field.as_deref(),
            r.settings_field.as_deref(),
            r.database_field.as_deref(),
            validator,
        ))
        .map_err(|e| loader_error(key, e))?;
    Ok(Some(Registry::new(loader.unbind(), r)))
}

/// The custom-domain lookup for `TENANT_DOMAIN_MODEL`, if set.
fn domain_map(
    py: Python<'_>,
    r: &config::RegistrySettings,
) -> Result<Option<DomainMap>, ConfigError> {
    let Some(model) = &r.domain_model else {
        return Ok(None);
    };
    let make = DOMAIN_LOADER
        .import(py, "tenantry.registry", "make_domain_loader")
        .map_err(|e| loader_error("TENANT_DOMAIN_MODEL", e))?;
    let loader = make
        .call1((
            model.as_str(),
            r.domain_field.as_str(),
            r.domain_tenant_field.as_str(),
            r.id_field.as_str(),
        ))
        .map_err(|e| loader_error("TENANT_DOMAIN_MODEL", e))?;
    Ok(Some(DomainMap::new(loader.unbind(), r)))
}

/// Parses and materializes; every problem comes back as a `ConfigError`.
fn compile(
    py: Python<'_>,
    djust_config: &Bound<'_, PyDict>,
    registry: &Bound<'_, PyDict>,
) -> PyResult<Result<Compiled, Vec<ConfigError>>> {
    let (map, objects) = read_map(djust_config)?;
    // Leniently, so the parts below are set up (and report their own
    // problems, e.g. a misspelt resolver name) even when a plain value is
    // bad: `manage.py check` lists every problem in one run.
    let (settings, parse_errors) = config::parse_lenient(&map);
    let mut errors = Vec::new();
    let custom_resolver = callable(
        py,
        "TENANT_CUSTOM_RESOLVER",
        &settings.custom_resolver,
        &objects,
    )
    .unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    let custom_label = match (&settings.custom_resolver, &custom_resolver) {
        (Some(CallableSpec::Dotted(path)), _) => path.clone(),
        (_, Some(f)) => label_of(f.bind(py)),
        _ => String::new(),
    };
    let tenants = tenant_registry(py, &settings.registry, &objects).unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    let domains = domain_map(py, &settings.registry).unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    let m = Materializer {
        py,
        objects: &objects,
        registry,
        has_custom: custom_resolver.is_some(),
        has_domains: domains.is_some(),
    };
    let resolved = m.spec(&settings.resolver);
    let membership_check = callable(
        py,
        "TENANT_MEMBERSHIP_CHECK",
        &settings.membership_check,
        &objects,
    );
    let audit_callback = callable(
        py,
        "TENANT_AUDIT_CALLBACK",
        &settings.audit_callback,
        &objects,
    );
    let (resolver, resolver_object) = match resolved {
        Ok(pair) => pair,
        Err(e) => {
            errors.push(e);
            (Resolver::Chain(Vec::new()), py.None().into_bound(py))
        }
    };
    let membership_check = membership_check.unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    let audit_callback = audit_callback.unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    let counts_prefix = counts_prefix(&settings.key_prefix).unwrap_or_else(|e| {
        errors.push(e);
        settings.key_prefix.clone()
    });
    if !parse_errors.is_empty() || !errors.is_empty() {
        // A key the parser refused was replaced by its default above: what
        // setting that default up says about the key is not news.
        errors.retain(|e| parse_errors.iter().all(|p| p.key != e.key));
        return Ok(Err(parse_errors.into_iter().chain(errors).collect()));
    }
    let names = Names::new(py, &settings);
    Ok(Ok(Compiled {
        counts_prefix,
        settings,
        resolver,
        resolver_object: resolver_object.unbind(),
        names,
        custom_resolver,
        custom_label,
        membership_check,
        audit_callback,
        registry: tenants,
        domains,
        source: djust_config.clone().unbind(),
        settings_object: None,
    }))
}

/// `c`'s settings with `overrides` (key → value, `None` for "not set")
/// applied, as a resolver's own `get_config()` answers them. Bad values
/// raise `ConfigError` naming the key and `owner`.
pub fn overridden(
    py: Python<'_>,
    c: &Compiled,
    overrides: &[(&str, Bound<'_, PyAny>)],
    owner: &str,
) -> PyResult<Overridden> {
    let source = c.source.bind(py).copy()?;
    for (key, value) in overrides {
        if value.is_none() {
            if source.contains(*key)? {
                source.del_item(*key)?;
            }
        } else {
            source.set_item(*key, value)?;
        }
    }
    let (map, objects) = read_map(&source)?;
    let from_owner = |mut e: ConfigError| {
        e.message = format!("{} (from {owner}.get_config)", e.message);
        e
    };
    let settings = config::parse(&map).map_err(|errors| {
        config_errors(py, &errors.into_iter().map(from_owner).collect::<Vec<_>>())
    })?;
    let custom_resolver = callable(
        py,
        "TENANT_CUSTOM_RESOLVER",
        &settings.custom_resolver,
        &objects,
    )
    .map_err(|e| config_errors(py, &[from_owner(e)]))?;
    Ok(Overridden {
        names: Names::new(py, &settings),
        settings,
        custom_resolver,
    })
}

/// Compiles `djust_config` and makes it the current config. `settings_object`
/// is the `django.conf.settings` it was read from (see [`current`]).
#[pyfunction]
#[pyo3(signature = (djust_config, registry, settings_object=None))]
pub fn configure(
    py: Python<'_>,
    djust_config: &Bound<'_, PyDict>,
    registry: &Bound<'_, PyDict>,
    settings_object: Option<Py<PyAny>>,
) -> PyResult<()> {
    match compile(py, djust_config, registry)? {
        Ok(mut compiled) => {
            compiled.settings_object = settings_object;
            *CURRENT.write() = Some(Arc::new(compiled));
            Ok(())
        }
        Err(errors) => Err(config_errors(py, &errors)),
    }
}

/// Forgets the current config; the next use compiles it again.
#[pyfunction]
pub fn reset() {
    // Drop outside the lock: dropping Python objects may run arbitrary code.
    let old = CURRENT.write().take();
    drop(old);
}

/// Every problem with `djust_config` as `(key, message)` pairs, plus unknown
/// `TENANT_*` keys as warnings, without installing anything (system checks).
#[pyfunction]
pub fn check_config(
    py: Python<'_>,
    djust_config: &Bound<'_, PyDict>,
    registry: &Bound<'_, PyDict>,
) -> PyResult<CheckResult> {
    let unknown = |keys: &[String]| -> Vec<(String, String)> {
        keys.iter()
            .map(|k| (k.clone(), config::unknown_key_message(k)))
            .collect()
    };
    match compile(py, djust_config, registry)? {
        Ok(compiled) => Ok((Vec::new(), unknown(&compiled.settings.unknown_keys))),
        // A bad value must not hide a typo'd key: list both.
        Err(errors) => Ok((
            errors
                .iter()
                .map(|e| (e.key.clone(), e.to_string()))
                .collect(),
            unknown(&config::unknown_keys(&read_map(djust_config)?.0)),
        )),
    }
}

/// Read-only view of the current settings for the Django layer.
#[pyclass(module = "tenantry._core", frozen)]
pub struct CurrentConfig {
    inner: Arc<Compiled>,
}

#[pymethods]
impl CurrentConfig {
    #[getter]
    fn required(&self) -> bool {
        self.inner.settings.required
    }
    #[getter]
    fn context_name(&self) -> &str {
        &self.inner.settings.context_name
    }
    #[getter]
    fn strict(&self) -> &'static str {
        match self.inner.settings.strict {
            config::Strictness::Raise => "raise",
            config::Strictness::Empty => "empty",
        }
    }
    /// `TENANT_RLS`: "off", "session" (True) or "transaction".
    #[getter]
    fn rls(&self) -> &'static str {
        match self.inner.settings.rls {
            config::RlsMode::Off => "off",
            config::RlsMode::Session => "session",
            config::RlsMode::Transaction => "transaction",
        }
    }
    #[getter]
    fn exempt_paths(&self) -> Vec<String> {
        self.inner.settings.exempt_paths.clone()
    }
    fn is_exempt(&self, path: &str) -> bool {
        self.inner.settings.is_exempt(path)
    }
    #[getter]
    fn default_tenant(&self) -> Option<String> {
        self.inner
            .settings
            .default_tenant
            .as_ref()
            .map(|t| t.as_str().to_owned())
    }
    #[getter]
    fn session_key(&self) -> &str {
        &self.inner.settings.session.session_key
    }
    #[getter]
    fn key_prefix(&self) -> &str {
        self.inner.settings.key_prefix.as_str()
    }
    /// Where rate-limit counts and usage figures are kept:
    /// `key_prefix`, plus `.<namespace>` under the test kit.
    #[getter]
    fn counts_key_prefix(&self) -> &str {
        self.inner.counts_prefix.as_str()
    }
    #[getter]
    fn membership_check(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.inner
            .membership_check
            .as_ref()
            .map(|f| f.clone_ref(py))
    }
    #[getter]
    fn audit_callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.inner.audit_callback.as_ref().map(|f| f.clone_ref(py))
    }
    #[getter]
    fn presence_backend(&self) -> (&'static str, bool, &str) {
        backend_tuple(&self.inner.settings.presence)
    }
    #[getter]
    fn presence_timeout(&self) -> f64 {
        self.inner.settings.presence_timeout
    }
    /// Connect timeout of Redis connections, in seconds.
    #[getter]
    fn redis_connect_timeout(&self) -> f64 {
        self.inner
            .settings
            .redis_options
            .connect_timeout
            .as_secs_f64()
    }
    /// Read/write timeout of Redis connections, in seconds.
    #[getter]
    fn redis_socket_timeout(&self) -> f64 {
        self.inner.settings.redis_options.io_timeout.as_secs_f64()
    }
    #[getter]
    fn state_backend(&self) -> (&'static str, bool, &str) {
        backend_tuple(&self.inner.settings.state)
    }
    /// Byte bound of the in-memory state store.
    #[getter]
    fn state_memory_max_bytes(&self) -> usize {
        self.inner.settings.state_memory_max_bytes
    }
    /// Bytes one tenant may take of the in-memory state store.
    #[getter]
    fn state_tenant_max_bytes(&self) -> usize {
        self.inner.settings.state_tenant_max_bytes
    }
    /// True when resolving may touch the session, the user, user code or
    /// the database (admission's membership check loads the user), so
    /// async callers must run it in a thread.
    #[getter]
    fn resolution_needs_sync(&self) -> bool {
        self.inner.resolver.needs_sync()
            || self.inner.registry.is_some()
            || self.inner.domains.is_some()
            || self.inner.membership_check.is_some()
    }
    /// True when `TENANT_RATE_LIMITS` or `TENANT_QUOTAS` limit `scope` (a
    /// tenant's plan may limit others): the request and event paths skip the
    /// store's check for a scope nothing limits.
    fn limits_scope(&self, scope: &str) -> bool {
        self.inner.settings.rate_limits.limits.mentions(scope)
    }
    /// The scopes of `TENANT_RATE_LIMITS` with a rate counted per user (a
    /// tenant's plan may add others): the middleware-order check reads it.
    #[getter]
    fn scopes_counting_users(&self) -> Vec<String> {
        self.inner
            .settings
            .rate_limits
            .limits
            .scopes_counting_users()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }
    /// True when `TENANT_MODEL` or `TENANT_VALIDATOR` is set (a registry
    /// answers lookups; suspension rides on them).
    #[getter]
    fn has_registry(&self) -> bool {
        self.inner.registry.is_some()
    }
    /// `TENANT_FLAGS`: each feature flag's default.
    #[getter]
    fn tenant_flags(&self) -> Vec<(String, bool)> {
        self.inner
            .settings
            .tenant_flags
            .iter()
            .map(|(n, v)| (n.to_owned(), v))
            .collect()
    }
    /// `TENANT_READMIT_INTERVAL`: seconds between re-admissions of an open
    /// live view's tenant.
    #[getter]
    fn readmit_interval(&self) -> f64 {
        self.inner.settings.readmit_interval
    }
    /// `TENANT_METRICS`: whether the `tenantry_*` metrics are fed.
    #[getter]
    fn metrics_enabled(&self) -> bool {
        self.inner.settings.metrics.enabled
    }
    /// `TENANT_METRICS_TOP`: tenants labelled by name in the metrics.
    #[getter]
    fn metrics_top(&self) -> usize {
        self.inner.settings.metrics.top
    }
    /// `TENANT_METRICS_TOKEN`: the bearer token of the metrics view, or None.
    #[getter]
    fn metrics_token(&self) -> Option<String> {
        self.inner.settings.metrics.token.clone()
    }
    /// `(model label, id field)` of `TENANT_MODEL`, or None.
    #[getter]
    fn tenant_model(&self) -> Option<(String, String)> {
        let r = &self.inner.settings.registry;
        r.model.clone().map(|m| (m, r.id_field.clone()))
    }
    /// Lowercased model labels whose saves invalidate the registry caches.
    #[getter]
    fn registry_models(&self) -> Vec<String> {
        let r = &self.inner.settings.registry;
        [&r.model, &r.domain_model]
            .into_iter()
            .flatten()
            .map(|m| m.to_lowercase())
            .collect()
    }
    /// Cached registry entries: (found, not found).
    #[getter]
    fn registry_cache_sizes(&self) -> (usize, usize) {
        self.inner
            .registry
            .as_ref()
            .map_or((0, 0), Registry::cached)
    }
    /// True when the resolver reads `request.session` or `request.user`.
    #[getter]
    fn uses_session(&self) -> bool {
        self.inner.resolver.uses_session()
    }
    /// `TENANT_MAIN_DOMAIN`, normalised (lowercase, no outer dots), or None.
    #[getter]
    fn main_domain(&self) -> Option<&str> {
        self.inner.settings.subdomain.main_domain.as_deref()
    }
    /// `TENANT_SUBDOMAIN_DEPTH`.
    #[getter]
    fn subdomain_depth(&self) -> usize {
        self.inner.settings.subdomain.depth
    }
    /// `TENANT_SUBDOMAIN_EXCLUDE`, lowercased.
    #[getter]
    fn subdomain_exclude(&self) -> Vec<String> {
        self.inner.settings.subdomain.exclude.clone()
    }
    /// `TENANT_PATH_POSITION` (1-based).
    #[getter]
    fn path_position(&self) -> usize {
        self.inner.settings.path.position
    }
    /// `TENANT_PATH_EXCLUDE`, lowercased.
    #[getter]
    fn path_exclude(&self) -> Vec<String> {
        self.inner.settings.path.exclude.clone()
    }
    /// `TENANT_HEADER`, as configured.
    #[getter]
    fn header(&self) -> &str {
        &self.inner.settings.header.name
    }
    /// The `request.META` key `TENANT_HEADER` arrives under.
    #[getter]
    fn header_meta_key(&self) -> &str {
        &self.inner.settings.header.meta_key
    }
    /// `TENANT_JWT_CLAIM`.
    #[getter]
    fn jwt_claim(&self) -> &str {
        &self.inner.settings.session.jwt_claim
    }
    /// `TENANT_USER_ATTRIBUTE` (a dotted path), or None when disabled.
    #[getter]
    fn user_attribute(&self) -> Option<String> {
        self.inner
            .settings
            .session
            .user_attribute
            .as_ref()
            .map(|parts| parts.join("."))
    }
    /// `TENANT_MODEL` label, or None.
    #[getter]
    fn tenant_model_label(&self) -> Option<&str> {
        self.inner.settings.registry.model.as_deref()
    }
    /// `TENANT_MODEL_ID_FIELD`.
    #[getter]
    fn tenant_id_field(&self) -> &str {
        &self.inner.settings.registry.id_field
    }
    /// `TENANT_MODEL_NAME_FIELD`, or None (the model has no name).
    #[getter]
    fn tenant_name_field(&self) -> Option<&str> {
        self.inner.settings.registry.name_field.as_deref()
    }
    /// `TENANT_MODEL_SETTINGS_FIELD`, or None (the model has no settings).
    #[getter]
    fn tenant_settings_field(&self) -> Option<&str> {
        self.inner.settings.registry.settings_field.as_deref()
    }
    /// `TENANT_DATABASE_FIELD`, or None (every tenant on the default database).
    #[getter]
    fn tenant_database_field(&self) -> Option<&str> {
        self.inner.settings.registry.database_field.as_deref()
    }
    /// `TENANT_DOMAIN_MODEL` label, or None.
    #[getter]
    fn domain_model(&self) -> Option<&str> {
        self.inner.settings.registry.domain_model.as_deref()
    }
    /// `TENANT_DOMAIN_FIELD`.
    #[getter]
    fn domain_field(&self) -> &str {
        &self.inner.settings.registry.domain_field
    }
    /// `TENANT_DOMAIN_TENANT_FIELD`.
    #[getter]
    fn domain_tenant_field(&self) -> &str {
        &self.inner.settings.registry.domain_tenant_field
    }
    /// `TENANT_CACHE_TTL`, seconds.
    #[getter]
    fn cache_ttl(&self) -> f64 {
        self.inner.settings.registry.cache_ttl
    }
    /// `TENANT_CACHE_SIZE`.
    #[getter]
    fn cache_size(&self) -> usize {
        self.inner.settings.registry.cache_size
    }
    /// djust's `SESSION_TTL`, seconds (0 or less: no expiry).
    #[getter]
    fn session_ttl(&self) -> i64 {
        self.inner.settings.session_ttl
    }
    /// `TENANT_AUDIT_STORE`: "database", or None (the log only).
    #[getter]
    fn audit_store(&self) -> Option<&'static str> {
        match self.inner.settings.audit_store {
            config::AuditStore::LogOnly => None,
            config::AuditStore::Database => Some("database"),
        }
    }
    /// `TENANT_AUDIT_RETENTION_DAYS`: days stored audit events are kept, or
    /// None (for ever).
    #[getter]
    fn audit_retention_days(&self) -> Option<u32> {
        self.inner.settings.audit_retention_days
    }
}

/// Registry model fields `(key, model label, [(field key, field name or
/// None)])` of `TENANT_MODEL` and `TENANT_DOMAIN_MODEL`, from a lenient
/// parse of `djust_config`: a bad value elsewhere (reported by
/// `check_config`) does not hide these from the model checks; a bad value
/// here falls back to its default.
#[pyfunction]
pub fn registry_fields(djust_config: &Bound<'_, PyDict>) -> PyResult<Vec<RegistryFields>> {
    let (map, _objects) = read_map(djust_config)?;
    let r = config::parse_lenient(&map).0.registry;
    let mut wanted = Vec::new();
    if let Some(model) = r.model {
        wanted.push((
            "TENANT_MODEL".to_owned(),
            model,
            vec![
                ("TENANT_MODEL_ID_FIELD".to_owned(), Some(r.id_field.clone())),
                ("TENANT_MODEL_NAME_FIELD".to_owned(), r.name_field),
                ("TENANT_MODEL_SETTINGS_FIELD".to_owned(), r.settings_field),
                ("TENANT_DATABASE_FIELD".to_owned(), r.database_field),
            ],
        ));
    }
    if let Some(model) = r.domain_model {
        wanted.push((
            "TENANT_DOMAIN_MODEL".to_owned(),
            model,
            vec![
                ("TENANT_DOMAIN_FIELD".to_owned(), Some(r.domain_field)),
                (
                    "TENANT_DOMAIN_TENANT_FIELD".to_owned(),
                    Some(r.domain_tenant_field),
                ),
            ],
        ));
    }
    Ok(wanted)
}

/// The `TENANT_*` keys of `djust_config` (known or not): whether tenancy is
/// configured at all.
#[pyfunction]
pub fn tenant_keys(djust_config: &Bound<'_, PyDict>) -> Vec<String> {
    djust_config
        .keys()
        .iter()
        .filter_map(|k| {
            k.cast::<PyString>()
                .ok()
                .map(|k| k.to_string_lossy().into_owned())
        })
        .filter(|k| k.starts_with("TENANT_"))
        .collect()
}

/// One entry of [`registry_fields`].
type RegistryFields = (String, String, Vec<(String, Option<String>)>);

fn backend_tuple(b: &config::BackendSettings) -> (&'static str, bool, &str) {
    let kind = match b.kind {
        config::BackendKind::Memory => "memory",
        config::BackendKind::Redis => "redis",
    };
    (kind, b.install_into_djust, &b.redis_url)
}

/// Drops cached registry lookups: one tenant id, or everything (and every
/// cached custom domain) when `tenant_id` is None.
#[pyfunction]
#[pyo3(signature = (tenant_id=None))]
pub fn invalidate_tenant(tenant_id: Option<&str>) {
    let Some(c) = CURRENT.read().as_ref().map(Arc::clone) else {
        return;
    };
    if let Some(r) = &c.registry {
        r.invalidate(tenant_id);
    }
    if tenant_id.is_none() {
        if let Some(d) = &c.domains {
            d.invalidate();
        }
    }
}

/// The current settings (compiling them if needed).
#[pyfunction]
pub fn current_config(py: Python<'_>) -> PyResult<CurrentConfig> {
    Ok(CurrentConfig {
        inner: current(py)?,
    })
}

/// `apply_store_limits()`: the memory stores' bounds set from the current
/// `DJUST_CONFIG` (presence caps and largest meta, state memory bounds),
/// whoever is bound: only what the settings say (tenantry calls it when it
/// makes a memory backend; the public setters refuse a bound tenant).
#[pyfunction]
pub fn apply_store_limits(py: Python<'_>) -> PyResult<()> {
    let compiled = current(py)?;
    super::presence::apply_configured_limits(&compiled.settings);
    super::state::apply_configured_limits(&compiled.settings);
    Ok(())
}
