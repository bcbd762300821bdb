//! The one parser for `settings.DJUST_CONFIG`.
//!
//! The bindings turn the Python dict into [`Value`]s; this module checks every
//! key tenantry reads and produces typed [`Settings`], or every problem at once
//! as [`ConfigError`]s naming the key and the value (Django shows the first as
//! `ImproperlyConfigured`; `manage.py check` lists them all).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::keys::KeyPrefix;
use crate::redis_store::{self, StoreOptions};
use crate::redis_url;
use crate::tenant_id::TenantId;

/// A config value as seen from Rust. Python objects that are neither plain
/// data nor lists (callables, classes) are kept on the Python side and named
/// here by `handle`, an index into the bindings' object table.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    /// A dict with str keys (in its order).
    Map(Vec<(String, Value)>),
    Object {
        type_name: String,
        callable: bool,
        handle: usize,
    },
}

impl Value {
    /// A short rendering for error messages.
    pub fn describe(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(b) => if *b { "True" } else { "False" }.into(),
            Value::Int(i) => i.to_string(),
            Value::Float(x) => x.to_string(),
            Value::Str(s) => crate::tenant_id::preview(s),
            Value::List(items) => {
                let inner: Vec<String> = items.iter().take(5).map(Value::describe).collect();
                let more = if items.len() > 5 { ", …" } else { "" };
                format!("[{}{more}]", inner.join(", "))
            }
            Value::Map(items) => {
                let inner: Vec<String> = items
                    .iter()
                    .take(5)
                    .map(|(k, v)| format!("{}: {}", crate::tenant_id::preview(k), v.describe()))
                    .collect();
                let more = if items.len() > 5 { ", …" } else { "" };
                format!("{{{}{more}}}", inner.join(", "))
            }
            Value::Object { type_name, .. } => format!("<{type_name} object>"),
        }
    }
}

/// One problem with one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DJUST_CONFIG[{:?}] {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A callable given either as a dotted import path or as the object itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallableSpec {
    Dotted(String),
    Object(usize),
}

/// `TENANT_RESOLVER` after parsing. Names are looked up in the Python-side
/// `RESOLVER_REGISTRY` (users may add entries), so they are not checked here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolverSpec {
    Named(String),
    Dotted(String),
    Object(usize),
    Chain(Vec<ResolverSpec>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubdomainRules {
    /// Lowercased, without leading or trailing dots.
    pub main_domain: Option<String>,
    /// How many labels a subdomain of `main_domain` may have.
    pub depth: usize,
    /// Lowercased.
    pub exclude: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathRules {
    /// 1-based segment of `request.path_info`.
    pub position: usize,
    /// Lowercased; compared case-insensitively.
    pub exclude: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderRule {
    pub name: String,
    /// The `request.META` key Django stores the header under.
    pub meta_key: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRules {
    pub session_key: String,
    pub jwt_claim: String,
    /// Attribute path on `request.user`, split on dots; `None` disables it.
    pub user_attribute: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strictness {
    Raise,
    Empty,
}

/// `TENANT_RLS`: how PostgreSQL row-level security (the second wall) learns
/// the bound tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RlsMode {
    /// `False` (the default): no connection settings are sent.
    Off,
    /// `True`: session settings, sent when a connection's tenant changes.
    Session,
    /// `"transaction"`: transaction-local settings, for transaction-pooling
    /// proxies (pgbouncer) that hand each transaction to another session.
    Transaction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Memory,
    Redis,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BackendSettings {
    pub kind: BackendKind,
    /// True for the `tenant_*` names: tenantry then also serves djust's own
    /// backend slot.
    pub install_into_djust: bool,
    pub redis_url: String,
}

/// The tenant registry (SPEC §5): which resolved ids are real tenants.
#[derive(Clone, Debug, PartialEq)]
pub struct RegistrySettings {
    /// `"app_label.ModelName"` of the tenant model.
    pub model: Option<String>,
    pub id_field: String,
    pub name_field: Option<String>,
    pub settings_field: Option<String>,
    /// `TENANT_DATABASE_FIELD`: the field of `model` naming the tenant's
    /// database alias (empty: the default database), or None (every tenant
    /// on the default database).
    pub database_field: Option<String>,
    /// `f(tenant_id) -> TenantInfo | None`, the alternative to a model.
    pub validator: Option<CallableSpec>,
    /// Seconds a lookup (found or not) is cached; 0 disables caching.
    pub cache_ttl: f64,
    /// Entries kept, for found and for unknown ids each.
    pub cache_size: usize,
    /// `"app_label.ModelName"` mapping custom domains to tenants.
    pub domain_model: Option<String>,
    pub domain_field: String,
    pub domain_tenant_field: String,
}

impl RegistrySettings {
    /// True when resolved ids must be looked up before they count.
    pub fn enabled(&self) -> bool {
        self.model.is_some() || self.validator.is_some()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub resolver: ResolverSpec,
    pub subdomain: SubdomainRules,
    pub path: PathRules,
    pub header: HeaderRule,
    pub session: SessionRules,
    pub custom_resolver: Option<CallableSpec>,
    pub required: bool,
    pub default_tenant: Option<TenantId>,
    pub context_name: String,
    pub exempt_paths: Vec<String>,
    pub strict: Strictness,
    pub rls: RlsMode,
    pub membership_check: Option<CallableSpec>,
    pub audit_callback: Option<CallableSpec>,
    pub key_prefix: KeyPrefix,
    pub presence: BackendSettings,
    /// Seconds without a heartbeat after which a presence is gone.
    pub presence_timeout: f64,
    /// Each tenant's caps in the memory presence store.
    pub presence_caps: crate::presence::memory::Caps,
    /// Largest presence meta, as JSON (memory and Redis).
    pub presence_max_meta_bytes: usize,
    pub state: BackendSettings,
    /// Byte bound of the process's in-memory state store.
    pub state_memory_max_bytes: usize,
    /// Bytes one tenant's keys may take of that store (its fair share).
    pub state_tenant_max_bytes: usize,
    pub registry: RegistrySettings,
    /// Connect and I/O timeouts of every Redis connection (presence, state).
    pub redis_options: StoreOptions,
    /// Unknown `TENANT_*` keys (likely typos), reported as warnings.
    pub unknown_keys: Vec<String>,
    /// Rate limits, quotas and their store (SPEC §12).
    pub rate_limits: RateLimitSettings,
    /// Seconds an open live view's admission holds before its next event
    /// or server turn admits its tenant again (0: every turn).
    pub readmit_interval: f64,
    /// djust's `SESSION_TTL`: seconds a saved view is kept (0 or less: no
    /// expiry). Tenantry's djust state backend applies it to its entries.
    pub session_ttl: i64,
    /// `TENANT_AUDIT_STORE`: where audit events are kept besides the log.
    pub audit_store: AuditStore,
    /// `TENANT_AUDIT_RETENTION_DAYS`: days a stored audit event is kept
    /// (None: for ever).
    pub audit_retention_days: Option<u32>,
    /// Per-tenant Prometheus metrics (SPEC §23).
    pub metrics: MetricsSettings,
    /// `TENANT_FLAGS`: each feature flag's default, under a tenant's own
    /// `settings["flags"]`.
    pub tenant_flags: crate::flags::FlagDefaults,
}

/// `TENANT_METRICS`, `TENANT_METRICS_TOP`, `TENANT_METRICS_TOKEN`.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsSettings {
    /// Whether the request, event, job and refusal paths feed the
    /// `tenantry_*` metrics (off: they pay nothing for them).
    pub enabled: bool,
    /// Tenants labelled by name; later ones share the label `other`.
    pub top: usize,
    /// A bearer token that opens the metrics view to a scraper with no
    /// staff session.
    pub token: Option<String>,
}

/// `TENANT_AUDIT_STORE`: audit events go to the `tenantry.audit` logger and
/// the callback only (`None`, the default), or are also stored as rows of
/// `tenantry.AuditEvent`, chained per tenant incarnation (`"database"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditStore {
    LogOnly,
    Database,
}

/// At most a century of retention.
const MAX_AUDIT_RETENTION_DAYS: i128 = 36_500;

/// djust's default `SESSION_TTL`.
pub const DEFAULT_SESSION_TTL: i64 = 3600;

/// Every key this parser reads. Append only: the system check ids
/// (`tenantry.E001`…) are positions in this list.
pub const KNOWN_KEYS: &[&str] = &[
    "TENANT_RESOLVER",
    "TENANT_SUBDOMAIN_EXCLUDE",
    "TENANT_MAIN_DOMAIN",
    "TENANT_SUBDOMAIN_DEPTH",
    "TENANT_PATH_POSITION",
    "TENANT_PATH_EXCLUDE",
    "TENANT_HEADER",
    "TENANT_SESSION_KEY",
    "TENANT_JWT_CLAIM",
    "TENANT_USER_ATTRIBUTE",
    "TENANT_CUSTOM_RESOLVER",
    "TENANT_REQUIRED",
    "TENANT_DEFAULT",
    "TENANT_CONTEXT_NAME",
    "TENANT_EXEMPT_PATHS",
    "TENANT_STRICT",
    "TENANT_MEMBERSHIP_CHECK",
    "TENANT_AUDIT_CALLBACK",
    "TENANT_KEY_PREFIX",
    "PRESENCE_BACKEND",
    "PRESENCE_REDIS_URL",
    "PRESENCE_TIMEOUT",
    "STATE_BACKEND",
    "STATE_REDIS_URL",
    "REDIS_URL",
    "TENANT_MODEL",
    "TENANT_MODEL_ID_FIELD",
    "TENANT_MODEL_NAME_FIELD",
    "TENANT_MODEL_SETTINGS_FIELD",
    "TENANT_VALIDATOR",
    "TENANT_CACHE_TTL",
    "TENANT_CACHE_SIZE",
    "TENANT_DOMAIN_MODEL",
    "TENANT_DOMAIN_FIELD",
    "TENANT_DOMAIN_TENANT_FIELD",
    "REDIS_CONNECT_TIMEOUT",
    "REDIS_SOCKET_TIMEOUT",
    "STATE_MEMORY_MAX_BYTES",
    "STATE_TENANT_MAX_BYTES",
    "TENANT_RLS",
    // Rate limits and quotas (SPEC §12).
    "TENANT_RATE_LIMITS",
    "RATE_LIMIT_BACKEND",
    "RATE_LIMIT_REDIS_URL",
    "TENANT_RATE_LIMIT_FAILURE",
    "TENANT_QUOTAS",
    // Per-tenant presence caps (SPEC §19).
    "PRESENCE_TENANT_MAX_ROOMS",
    "PRESENCE_TENANT_MAX_USERS",
    "PRESENCE_TENANT_MAX_CONNECTIONS",
    "PRESENCE_MAX_META_BYTES",
    "TENANT_READMIT_INTERVAL",
    // djust's own key, read here so Python reads no key itself.
    "SESSION_TTL",
    // The stored audit trail (SPEC §22).
    "TENANT_AUDIT_STORE",
    "TENANT_AUDIT_RETENTION_DAYS",
    // Per-tenant metrics (SPEC §23).
    "TENANT_METRICS",
    "TENANT_METRICS_TOP",
    "TENANT_METRICS_TOKEN",
    // Per-tenant feature flags' defaults (docs/operations.md#feature-flags).
    "TENANT_FLAGS",
    // A database per tenant (docs/postgresql.md#a-database-per-tenant).
    "TENANT_DATABASE_FIELD",
];

pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/0";
const MAX_PRESENCE_TIMEOUT: f64 = 86_400.0;
const MAX_SUBDOMAIN_DEPTH: i128 = 10;
const MAX_CACHE_TTL: f64 = 86_400.0;
const MAX_CACHE_SIZE: i128 = 10_000_000;
const MIN_STATE_MEMORY: i128 = 64 * 1024;
const MAX_STATE_MEMORY: i128 = 1 << 48;
const MIN_TENANT_STATE: i128 = 4 * 1024;
const MAX_PRESENCE_CAP: i128 = 1 << 32;
const MAX_PRESENCE_META: i128 = 16 * 1024 * 1024;
/// An admission older than this is not "bounded" any more.
const MAX_READMIT_INTERVAL: f64 = 3_600.0;
/// Labels per metric beyond which a time-series database suffers.
const MAX_METRICS_TOP: i128 = 10_000;
/// A token shorter than this is guessable by a scraper of the internet.
const MIN_METRICS_TOKEN: usize = 16;

/// Collects errors so one `manage.py check` shows all of them.
struct Parser<'a> {
    map: &'a BTreeMap<String, Value>,
    errors: Vec<ConfigError>,
}

impl<'a> Parser<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    fn fail(&mut self, key: &str, message: String) {
        self.errors.push(ConfigError {
            key: key.to_owned(),
            message,
        });
    }

    fn fail_value(&mut self, key: &str, expected: &str, value: &Value) {
        self.fail(key, format!("must be {expected}, got {}", value.describe()));
    }

    fn bool(&mut self, key: &str, default: bool) -> bool {
        match self.get(key) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                self.fail_value(key, "True or False", v);
                default
            }
        }
    }

    fn int_at_least(&mut self, key: &str, default: usize, min: i128, max: i128) -> usize {
        match self.get(key) {
            None => default,
            Some(Value::Int(i)) if (min..=max).contains(i) => *i as usize,
            Some(v) => {
                self.fail_value(key, &format!("an integer from {min} to {max}"), v);
                default
            }
        }
    }

    fn string(&mut self, key: &str, default: &str) -> String {
        match self.get(key) {
            None => default.to_owned(),
            Some(Value::Str(s)) if !s.is_empty() => s.clone(),
            Some(v) => {
                self.fail_value(key, "a non-empty string", v);
                default.to_owned()
            }
        }
    }

    fn string_list(&mut self, key: &str, default: &[&str]) -> Vec<String> {
        match self.get(key) {
            None => default.iter().map(|s| (*s).to_owned()).collect(),
            Some(Value::List(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::Str(s) => out.push(s.clone()),
                        other => {
                            self.fail(
                                key,
                                format!(
                                    "must be a list of strings, but contains {}",
                                    other.describe()
                                ),
                            );
                            return Vec::new();
                        }
                    }
                }
                out
            }
            Some(v) => {
                self.fail_value(key, "a list of strings", v);
                Vec::new()
            }
        }
    }

    /// A positive number of seconds (int or float) for a Redis timeout.
    fn redis_timeout(&mut self, key: &str, default: Duration) -> Duration {
        let secs = match self.get(key) {
            None => return default,
            Some(Value::Int(i)) => *i as f64,
            Some(Value::Float(x)) => *x,
            Some(v) => {
                self.fail_value(key, "a number of seconds greater than 0 (at most 300)", v);
                return default;
            }
        };
        match redis_store::timeout_from_secs(key, secs) {
            Ok(d) => d,
            Err(_) => {
                let v = self.get(key).cloned().unwrap_or(Value::None);
                self.fail_value(key, "a number of seconds greater than 0 (at most 300)", &v);
                default
            }
        }
    }

    fn callable(&mut self, key: &str) -> Option<CallableSpec> {
        match self.get(key) {
            None | Some(Value::None) => None,
            Some(Value::Str(s)) if is_dotted_path(s) => Some(CallableSpec::Dotted(s.clone())),
            Some(Value::Object {
                callable: true,
                handle,
                ..
            }) => Some(CallableSpec::Object(*handle)),
            Some(v) => {
                self.fail_value(key, "a dotted import path or a callable", v);
                None
            }
        }
    }

    fn resolver(&mut self) -> ResolverSpec {
        const KEY: &str = "TENANT_RESOLVER";
        let default = ResolverSpec::Named("subdomain".into());
        let Some(value) = self.get(KEY) else {
            return default;
        };
        match value {
            Value::List(items) if items.is_empty() => {
                self.fail(KEY, "must name at least one resolver, got []".into());
                default
            }
            Value::List(items) => {
                let mut chain = Vec::with_capacity(items.len());
                for item in items {
                    match self.single_resolver(item) {
                        Some(spec) => chain.push(spec),
                        None => return default,
                    }
                }
                ResolverSpec::Chain(chain)
            }
            other => self.single_resolver(other).unwrap_or(default),
        }
    }

    fn single_resolver(&mut self, value: &Value) -> Option<ResolverSpec> {
        const KEY: &str = "TENANT_RESOLVER";
        match value {
            Value::Str(s) if s.contains('.') && is_dotted_path(s) => {
                Some(ResolverSpec::Dotted(s.clone()))
            }
            Value::Str(s) if is_identifier(s) => Some(ResolverSpec::Named(s.clone())),
            Value::Object {
                callable: true,
                handle,
                ..
            } => Some(ResolverSpec::Object(*handle)),
            other => {
                self.fail_value(
                    KEY,
                    "a resolver name, a list of names, a dotted path or a callable",
                    other,
                );
                None
            }
        }
    }

    /// `"app_label.ModelName"` or None.
    fn model_label(&mut self, key: &str) -> Option<String> {
        match self.get(key) {
            None | Some(Value::None) => None,
            Some(Value::Str(s)) if s.split('.').count() == 2 && s.split('.').all(is_identifier) => {
                Some(s.clone())
            }
            Some(v) => {
                self.fail_value(key, "a model label like 'tenants.Tenant'", v);
                None
            }
        }
    }

    /// A model field name, or None when `optional` allows it.
    fn field_name(&mut self, key: &str, default: &str, optional: bool) -> Option<String> {
        match self.get(key) {
            None => Some(default.to_owned()),
            Some(Value::None) if optional => None,
            Some(Value::Str(s)) if is_identifier(s) => Some(s.clone()),
            Some(v) => {
                let expected = if optional {
                    "a model field name or None"
                } else {
                    "a model field name"
                };
                self.fail_value(key, expected, v);
                Some(default.to_owned())
            }
        }
    }

    fn seconds(&mut self, key: &str, default: f64, max: f64, allow_zero: bool) -> f64 {
        let ok = |x: f64| (x > 0.0 || (allow_zero && x == 0.0)) && x <= max;
        match self.get(key) {
            None => default,
            Some(Value::Int(i)) if ok(*i as f64) => *i as f64,
            Some(Value::Float(x)) if ok(*x) => *x,
            Some(v) => {
                let low = if allow_zero {
                    "0 or more"
                } else {
                    "greater than 0"
                };
                self.fail_value(
                    key,
                    &format!("a number of seconds, {low} (at most {max})"),
                    v,
                );
                default
            }
        }
    }

    fn registry(&mut self) -> RegistrySettings {
        let model = self.model_label("TENANT_MODEL");
        let validator = self.callable("TENANT_VALIDATOR");
        if model.is_some() && validator.is_some() {
            self.fail(
                "TENANT_VALIDATOR",
                "cannot be combined with TENANT_MODEL: set one of them".into(),
            );
        }
        let database_field = self.database_field(model.is_some());
        RegistrySettings {
            model,
            id_field: self
                .field_name("TENANT_MODEL_ID_FIELD", "slug", false)
                .unwrap_or_else(|| "slug".into()),
            name_field: self.field_name("TENANT_MODEL_NAME_FIELD", "name", true),
            settings_field: self.field_name("TENANT_MODEL_SETTINGS_FIELD", "settings", true),
            database_field,
            validator,
            cache_ttl: self.seconds("TENANT_CACHE_TTL", 60.0, MAX_CACHE_TTL, true),
            cache_size: self.int_at_least("TENANT_CACHE_SIZE", 10_000, 0, MAX_CACHE_SIZE),
            domain_model: self.model_label("TENANT_DOMAIN_MODEL"),
            domain_field: self
                .field_name("TENANT_DOMAIN_FIELD", "domain", false)
                .unwrap_or_else(|| "domain".into()),
            domain_tenant_field: self
                .field_name("TENANT_DOMAIN_TENANT_FIELD", "tenant_id", false)
                .unwrap_or_else(|| "tenant_id".into()),
        }
    }

    /// `TENANT_DATABASE_FIELD`: None (the default) or a field name of
    /// `TENANT_MODEL`, which it requires (a `TENANT_VALIDATOR` gives
    /// `TenantInfo(..., database=...)` itself).
    fn database_field(&mut self, has_model: bool) -> Option<String> {
        const KEY: &str = "TENANT_DATABASE_FIELD";
        match self.get(KEY) {
            None | Some(Value::None) => None,
            Some(Value::Str(s)) if is_identifier(s) => {
                if !has_model {
                    self.fail(
                        KEY,
                        "needs TENANT_MODEL: it names a field of the tenant model (with a \
                         TENANT_VALIDATOR, return TenantInfo(..., database=alias) instead)"
                            .into(),
                    );
                    return None;
                }
                Some(s.clone())
            }
            Some(v) => {
                self.fail_value(KEY, "a field name of TENANT_MODEL, or None", v);
                None
            }
        }
    }

    /// `TENANT_AUDIT_STORE`: None or "database".
    fn audit_store(&mut self) -> AuditStore {
        const KEY: &str = "TENANT_AUDIT_STORE";
        match self.get(KEY) {
            None | Some(Value::None) => AuditStore::LogOnly,
            Some(Value::Str(s)) if s == "database" => AuditStore::Database,
            Some(v) => {
                self.fail_value(
                    KEY,
                    "None (events go to the tenantry.audit log only) or 'database' \
                     (also stored as tenantry.AuditEvent rows)",
                    v,
                );
                AuditStore::LogOnly
            }
        }
    }

    /// `TENANT_AUDIT_RETENTION_DAYS`: None (keep every event) or whole days.
    fn audit_retention_days(&mut self) -> Option<u32> {
        const KEY: &str = "TENANT_AUDIT_RETENTION_DAYS";
        match self.get(KEY) {
            None | Some(Value::None) => None,
            Some(Value::Int(i)) if (1..=MAX_AUDIT_RETENTION_DAYS).contains(i) => {
                u32::try_from(*i).ok()
            }
            Some(v) => {
                self.fail_value(
                    KEY,
                    &format!(
                        "None (keep every event) or a whole number of days from 1 to \
                         {MAX_AUDIT_RETENTION_DAYS}"
                    ),
                    v,
                );
                None
            }
        }
    }

    /// `TENANT_FLAGS`: `{"NAME": True/False}`, each name an identifier.
    fn tenant_flags(&mut self) -> crate::flags::FlagDefaults {
        const KEY: &str = "TENANT_FLAGS";
        let items = match self.get(KEY) {
            None | Some(Value::None) => return crate::flags::FlagDefaults::default(),
            Some(Value::Map(items)) => items,
            Some(v) => {
                self.fail_value(KEY, "a dict of flag names to True or False", v);
                return crate::flags::FlagDefaults::default();
            }
        };
        let mut defaults = Vec::with_capacity(items.len());
        for (name, value) in items {
            if let Err(why) = crate::flags::check_name(name) {
                self.fail(KEY, format!("{}: {why}", crate::tenant_id::preview(name)));
                continue;
            }
            match value {
                Value::Bool(on) => defaults.push((name.clone(), *on)),
                other => self.fail(
                    KEY,
                    format!(
                        "[{}] must be True or False, got {}",
                        crate::tenant_id::preview(name),
                        other.describe()
                    ),
                ),
            }
        }
        crate::flags::FlagDefaults::new(defaults)
    }

    /// djust's `SESSION_TTL`: whole seconds (a float is truncated, as djust
    /// does); 0 or less keeps saved views without expiry.
    fn metrics(&mut self) -> MetricsSettings {
        let enabled = self.bool("TENANT_METRICS", false);
        let top = self.int_at_least("TENANT_METRICS_TOP", 100, 1, MAX_METRICS_TOP);
        let token = match self.get("TENANT_METRICS_TOKEN") {
            None | Some(Value::None) => None,
            Some(Value::Str(t))
                if t.len() >= MIN_METRICS_TOKEN && t.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Some(t.clone())
            }
            Some(Value::Str(t)) if t.len() < MIN_METRICS_TOKEN => {
                self.fail(
                    "TENANT_METRICS_TOKEN",
                    format!(
                        "must be at least {MIN_METRICS_TOKEN} characters (a guessable token \
                         opens every tenant's figures), got {}",
                        t.len()
                    ),
                );
                None
            }
            Some(v) => {
                self.fail_value(
                    "TENANT_METRICS_TOKEN",
                    "a string of printable ASCII without spaces, or None",
                    v,
                );
                None
            }
        };
        MetricsSettings {
            enabled,
            top,
            token,
        }
    }

    fn session_ttl(&mut self) -> i64 {
        const KEY: &str = "SESSION_TTL";
        const BOUND: f64 = 1e15;
        match self.get(KEY) {
            None | Some(Value::None) => DEFAULT_SESSION_TTL,
            Some(Value::Int(i)) if i.unsigned_abs() <= BOUND as u128 => *i as i64,
            Some(Value::Float(x)) if x.is_finite() && x.abs() <= BOUND => x.trunc() as i64,
            Some(v) => {
                self.fail_value(
                    KEY,
                    "a number of seconds (0 or less: saved views never expire)",
                    v,
                );
                DEFAULT_SESSION_TTL
            }
        }
    }

    fn backend(&mut self, key: &str, url_key: &str) -> BackendSettings {
        let name = self.string(key, "tenant_memory");
        let (kind, install_into_djust) = match name.as_str() {
            "tenant_memory" => (BackendKind::Memory, true),
            "tenant_redis" => (BackendKind::Redis, true),
            "memory" => (BackendKind::Memory, false),
            "redis" => (BackendKind::Redis, false),
            _ => {
                self.fail(
                    key,
                    format!(
                        "must be one of 'tenant_memory', 'tenant_redis', 'memory', 'redis', got {}",
                        crate::tenant_id::preview(&name)
                    ),
                );
                (BackendKind::Memory, false)
            }
        };
        let url_source = if self.get(url_key).is_some() {
            url_key
        } else {
            "REDIS_URL"
        };
        let redis_url = self.string(url_source, DEFAULT_REDIS_URL);
        if let Err(e) = redis_url::check(&redis_url) {
            self.fail(url_source, format!("is not a usable Redis URL: {e}"));
        }
        BackendSettings {
            kind,
            install_into_djust,
            redis_url,
        }
    }
}

/// True for `a.b.c` where every part is a Python identifier.
pub fn is_dotted_path(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(is_identifier)
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// Django's `request.META` key for an HTTP header name: `X-Tenant-ID` →
/// `HTTP_X_TENANT_ID`. A name already in META form is kept.
pub fn header_meta_key(name: &str) -> Result<String, String> {
    if let Some(rest) = name.strip_prefix("HTTP_") {
        if !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            return Ok(name.to_owned());
        }
    }
    // Underscores are refused: servers drop such headers (Django's runserver,
    // nginx by default) because `X_Tenant` and `X-Tenant` would share a key.
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(format!(
            "must be an HTTP header name of letters, digits and '-' (like 'X-Tenant-ID'), got {}",
            crate::tenant_id::preview(name)
        ));
    }
    Ok(format!(
        "HTTP_{}",
        name.to_ascii_uppercase().replace('-', "_")
    ))
}

fn normalize_main_domain(raw: &str) -> Result<String, String> {
    let lowered = raw.to_ascii_lowercase();
    let trimmed = lowered.trim_matches('.');
    let ok = !trimmed.is_empty()
        && trimmed.is_ascii()
        && trimmed.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if ok {
        Ok(trimmed.to_owned())
    } else {
        Err(format!(
            "must be a domain name like 'example.com', got {}",
            crate::tenant_id::preview(raw)
        ))
    }
}

/// The keys of `map` tenantry does not read but that look meant for it
/// (usually typos): every unknown `TENANT_*` key (any case), and any other
/// key within [`closest`]'s reach of a key tenantry reads
/// (`PRESENCE_BAKEND`, `tenant_main_domain`). djust's own keys (lowercase
/// names such as `rate_limit`) are far from all of them and stay silent.
pub fn unknown_keys(map: &BTreeMap<String, Value>) -> Vec<String> {
    map.keys()
        .filter(|k| {
            !KNOWN_KEYS.contains(&k.as_str())
                && (k.to_ascii_uppercase().starts_with("TENANT_")
                    || closest(k, KNOWN_KEYS.iter().copied()).is_some())
        })
        .cloned()
        .collect()
}

/// The W001 message for an unknown key `key` (see [`unknown_keys`]), with
/// "did you mean" when a key tenantry reads is close.
pub fn unknown_key_message(key: &str) -> String {
    let quoted = python_str(key);
    match closest(key, KNOWN_KEYS.iter().copied()) {
        Some(known) => format!(
            "DJUST_CONFIG[{quoted}] is not a tenantry setting and is ignored; did you mean {}?",
            python_str(known)
        ),
        None => format!("DJUST_CONFIG[{quoted}] is not a tenantry setting and is ignored."),
    }
}

/// `s` as Python's `repr()` shows a plain string (single quotes unless it
/// holds one), so messages read like the settings file.
fn python_str(s: &str) -> String {
    if s.contains('\'') {
        format!("{s:?}")
    } else {
        format!("'{s}'")
    }
}

/// The one "did you mean" rule (misspelt keys, resolver names): the
/// candidate nearest to `word`, compared without case, if it is at most a
/// couple of edits away (one per six characters, at least one, at most three;
/// a swap of two neighbours is one edit). Ties go to the first candidate.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word: Vec<char> = word.to_lowercase().chars().collect();
    let reach = (word.len() / 6).clamp(1, 3);
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let lowered: Vec<char> = candidate.to_lowercase().chars().collect();
        if lowered.len().abs_diff(word.len()) > reach {
            continue;
        }
        let d = edit_distance(&word, &lowered);
        if d <= reach && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// Optimal string alignment distance: insertions, deletions, substitutions
/// and swaps of two neighbours each count one.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let width = b.len() + 1;
    let mut rows = vec![0usize; (a.len() + 1) * width];
    for (j, cell) in rows.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        rows[i * width] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[(i - 1) * width + j] + 1)
                .min(rows[i * width + j - 1] + 1)
                .min(rows[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[(i - 2) * width + j - 2] + 1);
            }
            rows[i * width + j] = d;
        }
    }
    rows[a.len() * width + b.len()]
}

/// Parses `DJUST_CONFIG`. Keys tenantry does not read are ignored (djust's
/// own keys live in the same dict), except unknown `TENANT_*` keys, which are
/// listed in [`Settings::unknown_keys`].
pub fn parse(map: &BTreeMap<String, Value>) -> Result<Settings, Vec<ConfigError>> {
    let (settings, errors) = parse_lenient(map);
    if errors.is_empty() {
        Ok(settings)
    } else {
        Err(errors)
    }
}

/// [`parse`], but every bad value is replaced by its default and the
/// settings come back with the errors: the system checks look at the keys
/// that are fine even when another key is not (a bad value elsewhere must
/// not hide a typo'd model field).
pub fn parse_lenient(map: &BTreeMap<String, Value>) -> (Settings, Vec<ConfigError>) {
    let mut p = Parser {
        map,
        errors: Vec::new(),
    };

    let resolver = p.resolver();

    let main_domain = match p.get("TENANT_MAIN_DOMAIN") {
        None | Some(Value::None) => None,
        Some(Value::Str(s)) => match normalize_main_domain(s) {
            Ok(d) => Some(d),
            Err(msg) => {
                p.fail("TENANT_MAIN_DOMAIN", msg);
                None
            }
        },
        Some(v) => {
            p.fail_value("TENANT_MAIN_DOMAIN", "a domain name or None", v);
            None
        }
    };
    let depth = p.int_at_least("TENANT_SUBDOMAIN_DEPTH", 1, 1, MAX_SUBDOMAIN_DEPTH);
    let sub_exclude = p
        .string_list("TENANT_SUBDOMAIN_EXCLUDE", &["www", "api", "admin"])
        .into_iter()
        .map(|s| s.to_lowercase())
        .collect();
    let position = p.int_at_least("TENANT_PATH_POSITION", 1, 1, i128::from(u16::MAX));
    let path_exclude = p
        .string_list("TENANT_PATH_EXCLUDE", &["admin", "api", "static", "media"])
        .into_iter()
        .map(|s| s.to_lowercase())
        .collect();

    let header_name = p.string("TENANT_HEADER", "X-Tenant-ID");
    let meta_key = match header_meta_key(&header_name) {
        Ok(k) => k,
        Err(msg) => {
            p.fail("TENANT_HEADER", msg);
            String::new()
        }
    };

    let session_key = p.string("TENANT_SESSION_KEY", "tenant_id");
    let jwt_claim = p.string("TENANT_JWT_CLAIM", "tenant_id");
    let user_attribute = match p.get("TENANT_USER_ATTRIBUTE") {
        None => Some(vec!["tenant_id".to_owned()]),
        Some(Value::None) => None,
        Some(Value::Str(s)) if is_dotted_path(s) => Some(s.split('.').map(str::to_owned).collect()),
        Some(v) => {
            p.fail_value(
                "TENANT_USER_ATTRIBUTE",
                "an attribute name (dots allowed) or None",
                v,
            );
            None
        }
    };

    let custom_resolver = p.callable("TENANT_CUSTOM_RESOLVER");
    let required = p.bool("TENANT_REQUIRED", true);
    let default_tenant = match p.get("TENANT_DEFAULT") {
        None | Some(Value::None) => None,
        Some(Value::Str(s)) => match TenantId::parse(s) {
            Ok(id) => Some(id),
            Err(e) => {
                p.fail(
                    "TENANT_DEFAULT",
                    format!(
                        "is not a valid tenant id ({}): {e}",
                        crate::tenant_id::preview(s)
                    ),
                );
                None
            }
        },
        Some(Value::Int(i)) => match TenantId::from_int(*i) {
            Ok(id) => Some(id),
            Err(e) => {
                p.fail(
                    "TENANT_DEFAULT",
                    format!("is not a valid tenant id ({i}): {e}"),
                );
                None
            }
        },
        Some(v) => {
            p.fail_value("TENANT_DEFAULT", "a tenant id (str or int) or None", v);
            None
        }
    };
    let context_name = p.string("TENANT_CONTEXT_NAME", "tenant");
    if !is_identifier(&context_name) {
        p.fail(
            "TENANT_CONTEXT_NAME",
            format!(
                "must be a valid template variable name, got {}",
                crate::tenant_id::preview(&context_name)
            ),
        );
    }
    let exempt_paths = p.string_list("TENANT_EXEMPT_PATHS", &[]);
    if let Some(bad) = exempt_paths.iter().find(|s| !s.starts_with('/')) {
        let msg = format!(
            "must list path prefixes starting with '/', got {}",
            crate::tenant_id::preview(bad)
        );
        p.fail("TENANT_EXEMPT_PATHS", msg);
    }
    let strict = match p.string("TENANT_STRICT", "raise").as_str() {
        "raise" => Strictness::Raise,
        "empty" => Strictness::Empty,
        other => {
            let msg = format!(
                "must be 'raise' or 'empty', got {}",
                crate::tenant_id::preview(other)
            );
            p.fail("TENANT_STRICT", msg);
            Strictness::Raise
        }
    };
    let rls = match p.get("TENANT_RLS") {
        None | Some(Value::Bool(false)) => RlsMode::Off,
        Some(Value::Bool(true)) => RlsMode::Session,
        Some(Value::Str(s)) if s == "transaction" => RlsMode::Transaction,
        Some(v) => {
            p.fail_value("TENANT_RLS", "False, True or 'transaction'", v);
            RlsMode::Off
        }
    };
    let membership_check = p.callable("TENANT_MEMBERSHIP_CHECK");
    let audit_callback = p.callable("TENANT_AUDIT_CALLBACK");
    let key_prefix = match KeyPrefix::new(&p.string("TENANT_KEY_PREFIX", "djust")) {
        Ok(prefix) => prefix,
        Err(e) => {
            p.fail("TENANT_KEY_PREFIX", format!("is not usable: {e}"));
            KeyPrefix::default()
        }
    };

    let presence = p.backend("PRESENCE_BACKEND", "PRESENCE_REDIS_URL");
    let presence_timeout = p.seconds("PRESENCE_TIMEOUT", 60.0, MAX_PRESENCE_TIMEOUT, false);
    let caps = crate::presence::memory::DEFAULT_CAPS;
    let presence_caps = crate::presence::memory::Caps {
        rooms: p.int_at_least("PRESENCE_TENANT_MAX_ROOMS", caps.rooms, 1, MAX_PRESENCE_CAP),
        users: p.int_at_least("PRESENCE_TENANT_MAX_USERS", caps.users, 1, MAX_PRESENCE_CAP),
        connections: p.int_at_least(
            "PRESENCE_TENANT_MAX_CONNECTIONS",
            caps.connections,
            1,
            MAX_PRESENCE_CAP,
        ),
    };
    let presence_max_meta_bytes = p.int_at_least(
        "PRESENCE_MAX_META_BYTES",
        crate::presence::DEFAULT_MAX_META_BYTES,
        64,
        MAX_PRESENCE_META,
    );
    let state = p.backend("STATE_BACKEND", "STATE_REDIS_URL");
    let state_memory_max_bytes = p.int_at_least(
        "STATE_MEMORY_MAX_BYTES",
        crate::state::memory::DEFAULT_LIMIT,
        MIN_STATE_MEMORY,
        MAX_STATE_MEMORY,
    );
    let state_tenant_max_bytes = p.int_at_least(
        "STATE_TENANT_MAX_BYTES",
        crate::state::memory::default_tenant_limit(state_memory_max_bytes),
        MIN_TENANT_STATE,
        MAX_STATE_MEMORY,
    );
    if state_tenant_max_bytes > state_memory_max_bytes {
        p.fail(
            "STATE_TENANT_MAX_BYTES",
            format!(
                "must not exceed STATE_MEMORY_MAX_BYTES ({state_memory_max_bytes}), \
                 got {state_tenant_max_bytes}: one tenant's share is part of the store"
            ),
        );
    }
    let registry = p.registry();
    let defaults = StoreOptions::default();
    let redis_options = StoreOptions {
        connect_timeout: p.redis_timeout("REDIS_CONNECT_TIMEOUT", defaults.connect_timeout),
        io_timeout: p.redis_timeout("REDIS_SOCKET_TIMEOUT", defaults.io_timeout),
    };

    let rate_limits = p.rate_limits();
    let readmit_interval = p.seconds("TENANT_READMIT_INTERVAL", 5.0, MAX_READMIT_INTERVAL, true);

    let session_ttl = p.session_ttl();
    let tenant_flags = p.tenant_flags();
    let audit_store = p.audit_store();
    let audit_retention_days = p.audit_retention_days();
    let metrics = p.metrics();

    let unknown_keys = unknown_keys(map);

    let settings = Settings {
        resolver,
        subdomain: SubdomainRules {
            main_domain,
            depth,
            exclude: sub_exclude,
        },
        path: PathRules {
            position,
            exclude: path_exclude,
        },
        header: HeaderRule {
            name: header_name,
            meta_key,
        },
        session: SessionRules {
            session_key,
            jwt_claim,
            user_attribute,
        },
        custom_resolver,
        required,
        default_tenant,
        context_name,
        exempt_paths,
        strict,
        rls,
        membership_check,
        audit_callback,
        key_prefix,
        presence,
        presence_timeout,
        presence_caps,
        presence_max_meta_bytes,
        state,
        state_memory_max_bytes,
        state_tenant_max_bytes,
        registry,
        redis_options,
        unknown_keys,
        rate_limits,
        readmit_interval,
        session_ttl,
        audit_store,
        audit_retention_days,
        metrics,
        tenant_flags,
    };
    (settings, p.errors)
}

impl Settings {
    /// The settings of an empty `DJUST_CONFIG`.
    pub fn defaults() -> Settings {
        match parse(&BTreeMap::new()) {
            Ok(s) => s,
            Err(errors) => unreachable!("defaults must parse: {errors:?}"),
        }
    }

    /// True when `path` starts with one of `TENANT_EXEMPT_PATHS`.
    pub fn is_exempt(&self, path: &str) -> bool {
        self.exempt_paths
            .iter()
            .any(|p| path.starts_with(p.as_str()))
    }
}

// ---------------------------------------------------------------------------
// Rate limits and quotas (SPEC §12): `TENANT_RATE_LIMITS`, `TENANT_QUOTAS`,
// `RATE_LIMIT_BACKEND`, `RATE_LIMIT_REDIS_URL`, `TENANT_RATE_LIMIT_FAILURE`.
// A tenant's own `rate_limits` / `quotas` settings go through the same
// functions ([`rate_limit_table`], [`quota_table`]).

/// What happens to a check when the Redis rate-limit store is unreachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureMode {
    /// Refuse (503): the default.
    Closed,
    /// Allow, and log.
    Open,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RateLimitSettings {
    /// The defaults every tenant gets unless its plan says otherwise.
    pub limits: crate::ratelimit::Limits,
    pub backend: BackendSettings,
    pub failure: FailureMode,
}

/// One limit: `"100/m"`, or `{"rate": "100/m", "key": "tenant+user"}`.
fn limit_spec(value: &Value) -> Result<crate::ratelimit::LimitSpec, String> {
    use crate::ratelimit::{KeySpec, Limit, LimitSpec, Rate};
    let (rate, key) = match value {
        Value::Str(rate) => (rate.as_str(), None),
        Value::Map(items) => {
            let mut rate = None;
            let mut key = None;
            for (k, v) in items {
                match (k.as_str(), v) {
                    ("rate", Value::Str(r)) => rate = Some(r.as_str()),
                    ("key", Value::Str(text)) => key = Some(text.as_str()),
                    ("key", Value::None) => {}
                    _ => {
                        return Err(format!(
                        "a limit is a rate string or {{'rate': '100/m', 'key': 'tenant+user'}}; \
                             {} = {} is not understood",
                        crate::tenant_id::preview(k),
                        v.describe()
                    ))
                    }
                }
            }
            let rate = rate.ok_or("a limit given as a dict needs a 'rate'")?;
            (rate, key)
        }
        other => {
            return Err(format!(
                "a limit is a rate string like '100/m' or a dict with 'rate' and 'key', got {}",
                other.describe()
            ))
        }
    };
    let rate = Rate::parse(rate).map_err(|e| e.to_string())?;
    let key = match key {
        None => KeySpec::TENANT,
        Some(text) => KeySpec::parse(text).map_err(|e| format!("key: {e}"))?,
    };
    Ok(LimitSpec {
        limit: Limit::Rate(rate),
        key,
    })
}

/// `{"<scope>": limit | [limit, …] | None}`: `None` lifts a default.
pub fn rate_limit_table(
    value: &Value,
) -> Result<std::collections::BTreeMap<String, Option<Vec<crate::ratelimit::LimitSpec>>>, String> {
    let Value::Map(items) = value else {
        return Err(format!(
            "must be a dict of scope -> rate, like {{'http': '100/s', 'events': '20/s burst 40'}}, \
             got {}",
            value.describe()
        ));
    };
    let mut out = std::collections::BTreeMap::new();
    for (scope, spec) in items {
        crate::ratelimit::spec::check_scope(scope)?;
        let limits = match spec {
            Value::None => None,
            Value::List(list) => Some(
                list.iter()
                    .map(limit_spec)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("[{scope:?}]: {e}"))?,
            ),
            one => Some(vec![
                limit_spec(one).map_err(|e| format!("[{scope:?}]: {e}"))?
            ]),
        };
        out.insert(scope.clone(), limits);
    }
    Ok(out)
}

/// `{"events_per_day": 100000, "requests_per_hour": None, …}`.
#[allow(clippy::type_complexity)]
pub fn quota_table(
    value: &Value,
) -> Result<std::collections::BTreeMap<(String, crate::ratelimit::QuotaWindow), Option<u64>>, String>
{
    let Value::Map(items) = value else {
        return Err(format!(
            "must be a dict like {{'events_per_day': 100000}}, got {}",
            value.describe()
        ));
    };
    let mut out = std::collections::BTreeMap::new();
    for (name, max) in items {
        let key = crate::ratelimit::spec::quota_name(name)?;
        let max = match max {
            Value::None => None,
            Value::Int(n) if (1..=i128::from(crate::ratelimit::MAX_COUNT)).contains(n) => {
                Some(*n as u64)
            }
            other => {
                return Err(format!(
                    "[{name:?}] must be a count from 1 to {} or None, got {}",
                    crate::ratelimit::MAX_COUNT,
                    other.describe()
                ))
            }
        };
        out.insert(key, max);
    }
    Ok(out)
}

impl Parser<'_> {
    fn rate_limits(&mut self) -> RateLimitSettings {
        let mut limits = crate::ratelimit::Limits::default();
        match self.get("TENANT_RATE_LIMITS") {
            None | Some(Value::None) => {}
            Some(v) => match rate_limit_table(v) {
                Ok(rates) => limits.rates = rates,
                Err(e) => self.fail("TENANT_RATE_LIMITS", e),
            },
        }
        match self.get("TENANT_QUOTAS") {
            None | Some(Value::None) => {}
            Some(v) => match quota_table(v) {
                Ok(quotas) => limits.quotas = quotas,
                Err(e) => self.fail("TENANT_QUOTAS", e),
            },
        }
        let backend = self.backend("RATE_LIMIT_BACKEND", "RATE_LIMIT_REDIS_URL");
        let failure = match self.string("TENANT_RATE_LIMIT_FAILURE", "closed").as_str() {
            "closed" => FailureMode::Closed,
            "open" => FailureMode::Open,
            other => {
                let msg = format!(
                    "must be 'closed' (refuse with 503 while Redis is down) or 'open' \
                     (allow, and log), got {}",
                    crate::tenant_id::preview(other)
                );
                self.fail("TENANT_RATE_LIMIT_FAILURE", msg);
                FailureMode::Closed
            }
        };
        RateLimitSettings {
            limits,
            backend,
            failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    fn errors(pairs: &[(&str, Value)]) -> Vec<ConfigError> {
        parse(&map(pairs)).expect_err("should fail")
    }

    #[test]
    fn defaults_match_the_spec() {
        let d = Settings::defaults();
        assert_eq!(d.resolver, ResolverSpec::Named("subdomain".into()));
        assert_eq!(d.subdomain.exclude, ["www", "api", "admin"]);
        assert_eq!(d.path.exclude, ["admin", "api", "static", "media"]);
        assert_eq!(d.path.position, 1);
        assert_eq!(d.header.meta_key, "HTTP_X_TENANT_ID");
        assert_eq!(d.session.session_key, "tenant_id");
        assert!(d.required);
        assert_eq!(d.strict, Strictness::Raise);
        assert_eq!(d.rls, RlsMode::Off);
        assert_eq!(d.key_prefix.as_str(), "djust");
        assert_eq!(d.presence.kind, BackendKind::Memory);
        assert!(d.presence.install_into_djust);
        assert_eq!(d.presence_timeout, 60.0);
        assert_eq!(d.context_name, "tenant");
        assert_eq!(d.redis_options, StoreOptions::default());
    }

    #[test]
    fn redis_timeouts() {
        let parsed = parse(&map(&[
            ("REDIS_CONNECT_TIMEOUT", Value::Float(0.25)),
            ("REDIS_SOCKET_TIMEOUT", Value::Int(3)),
        ]))
        .unwrap();
        assert_eq!(
            parsed.redis_options.connect_timeout,
            Duration::from_millis(250)
        );
        assert_eq!(parsed.redis_options.io_timeout, Duration::from_secs(3));
        for bad in [Value::Int(0), Value::Float(-1.0), Value::Int(301), s("1")] {
            let e = errors(&[("REDIS_SOCKET_TIMEOUT", bad)]);
            assert_eq!(e[0].key, "REDIS_SOCKET_TIMEOUT");
            assert!(e[0].message.contains("seconds"), "{}", e[0]);
        }
    }

    #[test]
    fn resolver_forms() {
        let parsed = parse(&map(&[(
            "TENANT_RESOLVER",
            Value::List(vec![s("header"), s("myapp.resolvers.Mine")]),
        )]))
        .unwrap();
        assert_eq!(
            parsed.resolver,
            ResolverSpec::Chain(vec![
                ResolverSpec::Named("header".into()),
                ResolverSpec::Dotted("myapp.resolvers.Mine".into())
            ])
        );
        let e = errors(&[("TENANT_RESOLVER", Value::List(vec![]))]);
        assert_eq!(e[0].key, "TENANT_RESOLVER");
        let e = errors(&[("TENANT_RESOLVER", Value::Int(3))]);
        assert!(e[0].to_string().contains("got 3"), "{}", e[0]);
    }

    #[test]
    fn errors_name_key_and_value() {
        let e = errors(&[("TENANT_PATH_POSITION", Value::Int(0))]);
        assert_eq!(e[0].key, "TENANT_PATH_POSITION");
        assert!(e[0].to_string().contains("got 0"), "{}", e[0]);
        let e = errors(&[("TENANT_PATH_POSITION", Value::Bool(true))]);
        assert!(e[0].to_string().contains("got True"));
        let e = errors(&[("TENANT_REQUIRED", s("yes"))]);
        assert!(e[0].to_string().contains("TENANT_REQUIRED"));
        let e = errors(&[("TENANT_DEFAULT", s("a:b"))]);
        assert!(e[0].to_string().contains("\"a:b\""), "{}", e[0]);
        let e = errors(&[("TENANT_HEADER", s("X_Tenant"))]);
        assert_eq!(e[0].key, "TENANT_HEADER");
        let e = errors(&[("PRESENCE_REDIS_URL", s("redis://:pw@h:xx"))]);
        assert!(!e[0].to_string().contains("pw"), "{}", e[0]);
        let e = errors(&[("PRESENCE_BACKEND", s("tenant_mongo"))]);
        assert!(e[0].to_string().contains("tenant_mongo"));
    }

    #[test]
    fn rls_modes() {
        for (value, mode) in [
            (Value::Bool(false), RlsMode::Off),
            (Value::Bool(true), RlsMode::Session),
            (s("transaction"), RlsMode::Transaction),
        ] {
            assert_eq!(parse(&map(&[("TENANT_RLS", value)])).unwrap().rls, mode);
        }
        for bad in [s("session"), Value::Int(1), Value::None, s("")] {
            let e = errors(&[("TENANT_RLS", bad)]);
            assert_eq!(e[0].key, "TENANT_RLS");
            assert!(
                e[0].to_string()
                    .contains("must be False, True or 'transaction'"),
                "{}",
                e[0]
            );
        }
    }

    #[test]
    fn all_errors_are_reported_at_once() {
        let e = errors(&[
            ("TENANT_PATH_POSITION", Value::Int(-1)),
            ("TENANT_STRICT", s("maybe")),
            ("PRESENCE_TIMEOUT", Value::Int(0)),
        ]);
        let keys: Vec<_> = e.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["TENANT_PATH_POSITION", "TENANT_STRICT", "PRESENCE_TIMEOUT"]
        );
    }

    #[test]
    fn main_domain_is_normalized() {
        let parsed = parse(&map(&[("TENANT_MAIN_DOMAIN", s("Example.COM."))])).unwrap();
        assert_eq!(parsed.subdomain.main_domain.as_deref(), Some("example.com"));
        assert!(parse(&map(&[("TENANT_MAIN_DOMAIN", s("ex ample.com"))])).is_err());
    }

    #[test]
    fn header_names_map_to_meta_keys() {
        assert_eq!(header_meta_key("X-Org").unwrap(), "HTTP_X_ORG");
        assert_eq!(header_meta_key("HTTP_X_ORG").unwrap(), "HTTP_X_ORG");
        assert!(header_meta_key("X Org").is_err());
    }

    #[test]
    fn registry_keys() {
        let d = Settings::defaults().registry;
        assert!(!d.enabled());
        assert_eq!(
            (d.id_field.as_str(), d.cache_ttl, d.cache_size),
            ("slug", 60.0, 10_000)
        );
        let parsed = parse(&map(&[
            ("TENANT_MODEL", s("tenants.Tenant")),
            ("TENANT_MODEL_SETTINGS_FIELD", Value::None),
            ("TENANT_CACHE_TTL", Value::Int(0)),
        ]))
        .unwrap()
        .registry;
        assert!(parsed.enabled());
        assert_eq!(parsed.settings_field, None);
        assert_eq!(parsed.cache_ttl, 0.0);
        for (key, bad) in [
            ("TENANT_MODEL", s("Tenant")),
            ("TENANT_MODEL_ID_FIELD", s("slug field")),
            ("TENANT_CACHE_TTL", Value::Int(-1)),
            ("TENANT_CACHE_SIZE", s("big")),
            ("TENANT_DOMAIN_MODEL", s("a.b.c")),
        ] {
            let e = errors(&[(key, bad)]);
            assert_eq!(e[0].key, key);
        }
        let e = errors(&[("TENANT_MODEL", s("t.T")), ("TENANT_VALIDATOR", s("m.f"))]);
        assert_eq!(e[0].key, "TENANT_VALIDATOR");
    }

    #[test]
    fn database_field_names_a_field_of_the_tenant_model() {
        assert_eq!(Settings::defaults().registry.database_field, None);
        let parsed = parse(&map(&[
            ("TENANT_MODEL", s("tenants.Tenant")),
            ("TENANT_DATABASE_FIELD", s("database")),
        ]))
        .unwrap()
        .registry;
        assert_eq!(parsed.database_field.as_deref(), Some("database"));
        for bad in [s("data base"), Value::Int(1), s("")] {
            let e = errors(&[
                ("TENANT_MODEL", s("tenants.Tenant")),
                ("TENANT_DATABASE_FIELD", bad),
            ]);
            assert_eq!(e[0].key, "TENANT_DATABASE_FIELD");
            assert!(e[0].message.contains("field name"), "{}", e[0].message);
        }
        // Without TENANT_MODEL there is no field to read.
        let e = errors(&[
            ("TENANT_VALIDATOR", s("m.f")),
            ("TENANT_DATABASE_FIELD", s("database")),
        ]);
        assert_eq!(e[0].key, "TENANT_DATABASE_FIELD");
        assert!(e[0].message.contains("TENANT_MODEL"), "{}", e[0].message);
    }

    #[test]
    fn unknown_tenant_keys_are_listed() {
        let parsed = parse(&map(&[("TENANT_RESOLVERS", s("x")), ("OTHER", s("y"))])).unwrap();
        assert_eq!(parsed.unknown_keys, ["TENANT_RESOLVERS"]);
    }

    #[test]
    fn misspelt_keys_get_did_you_mean() {
        assert_eq!(
            unknown_key_message("TENANT_MAIN_DOMIAN"),
            "DJUST_CONFIG['TENANT_MAIN_DOMIAN'] is not a tenantry setting and is ignored; \
             did you mean 'TENANT_MAIN_DOMAIN'?"
        );
        assert_eq!(
            unknown_key_message("TENANT_RLS_TYPO"),
            "DJUST_CONFIG['TENANT_RLS_TYPO'] is not a tenantry setting and is ignored."
        );
        assert_eq!(
            closest("tenant_strict", KNOWN_KEYS.iter().copied()),
            Some("TENANT_STRICT")
        );
        assert_eq!(
            closest("PRESENCE_BAKEND", KNOWN_KEYS.iter().copied()),
            Some("PRESENCE_BACKEND")
        );
        assert_eq!(
            closest("subdomian", ["subdomain", "path"]),
            Some("subdomain")
        );
        assert_eq!(closest("xyz", ["subdomain", "path"]), None);
        // Keys near a tenantry key are reported even without the TENANT_
        // prefix; djust's own keys are not.
        let parsed = parse(&map(&[
            ("PRESENCE_BAKEND", s("x")),
            ("tenant_main_domain", s("x")),
            ("rate_limit", s("y")),
            ("extensions", s("y")),
            ("use_websocket", s("y")),
            ("PWA_THEME_COLOR", s("y")),
        ]))
        .unwrap();
        assert_eq!(
            parsed.unknown_keys,
            ["PRESENCE_BAKEND", "tenant_main_domain"]
        );
    }

    #[test]
    fn state_settings() {
        let d = Settings::defaults();
        assert_eq!(d.state.kind, BackendKind::Memory);
        assert!(d.state.install_into_djust);
        assert_eq!(
            d.state_memory_max_bytes,
            crate::state::memory::DEFAULT_LIMIT
        );
        let parsed = parse(&map(&[
            ("STATE_BACKEND", s("tenant_redis")),
            ("REDIS_URL", s("redis://r:1/0")),
            ("STATE_MEMORY_MAX_BYTES", Value::Int(1 << 20)),
        ]))
        .unwrap();
        assert_eq!(parsed.state.kind, BackendKind::Redis);
        assert_eq!(parsed.state.redis_url, "redis://r:1/0");
        assert_eq!(parsed.state_memory_max_bytes, 1 << 20);
        // The share defaults to an eighth of the store.
        assert_eq!(parsed.state_tenant_max_bytes, 1 << 17);
        assert_eq!(
            d.state_tenant_max_bytes,
            crate::state::memory::DEFAULT_LIMIT / 8
        );
        let parsed = parse(&map(&[
            ("STATE_MEMORY_MAX_BYTES", Value::Int(1 << 20)),
            ("STATE_TENANT_MAX_BYTES", Value::Int(1 << 20)),
        ]))
        .unwrap();
        assert_eq!(parsed.state_tenant_max_bytes, 1 << 20);
        for bad in [
            Value::Int(100),
            s("1MB"),
            Value::Int(1 << 30),
            Value::Bool(true),
        ] {
            let e = errors(&[("STATE_TENANT_MAX_BYTES", bad)]);
            assert_eq!(e[0].key, "STATE_TENANT_MAX_BYTES");
        }
        let e = errors(&[
            ("STATE_MEMORY_MAX_BYTES", Value::Int(1 << 20)),
            ("STATE_TENANT_MAX_BYTES", Value::Int(1 << 21)),
        ]);
        assert!(
            e[0].to_string().contains("STATE_MEMORY_MAX_BYTES"),
            "{}",
            e[0]
        );
        let parsed = parse(&map(&[(
            "STATE_REDIS_URL",
            s("redis+cluster://:pw@a:7000,b:7001"),
        )]))
        .unwrap();
        assert_eq!(parsed.state.redis_url, "redis+cluster://:pw@a:7000,b:7001");
        for bad in [Value::Int(10), s("1GB"), Value::Float(1e9)] {
            let e = errors(&[("STATE_MEMORY_MAX_BYTES", bad)]);
            assert_eq!(e[0].key, "STATE_MEMORY_MAX_BYTES");
        }
    }

    #[test]
    fn bad_tls_options_are_refused_naming_the_key() {
        for key in ["STATE_REDIS_URL", "PRESENCE_REDIS_URL", "REDIS_URL"] {
            let e = errors(&[(key, s("rediss://:secret@cache:6380/0?ssl_cert_reqs=x"))]);
            let msg = e[0].to_string();
            assert_eq!(e[0].key, key);
            assert!(msg.contains(key) && msg.contains("ssl_cert_reqs"), "{msg}");
            assert!(!msg.contains("secret"), "{msg}");
        }
        let e = errors(&[("STATE_REDIS_URL", s("redis+cluster://a:1/2"))]);
        assert!(e[0].to_string().contains("database"), "{}", e[0]);
    }

    #[test]
    fn rate_limit_keys() {
        use crate::ratelimit::{KeySpec, Limit, QuotaWindow};
        let d = Settings::defaults().rate_limits;
        assert!(d.limits.is_empty());
        assert_eq!(d.backend.kind, BackendKind::Memory);
        assert_eq!(d.failure, FailureMode::Closed);
        let m = |pairs: Vec<(&str, Value)>| {
            Value::Map(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
        };
        let parsed = parse(&map(&[
            (
                "TENANT_RATE_LIMITS",
                m(vec![
                    ("http", s("100/s")),
                    (
                        "events",
                        Value::List(vec![
                            s("10/s burst 20"),
                            m(vec![("rate", s("1000/h")), ("key", s("tenant+user"))]),
                        ]),
                    ),
                    ("export", Value::None),
                ]),
            ),
            (
                "TENANT_QUOTAS",
                m(vec![("events_per_day", Value::Int(100_000))]),
            ),
            ("RATE_LIMIT_BACKEND", s("tenant_redis")),
            ("RATE_LIMIT_REDIS_URL", s("redis://r:1/2")),
            ("TENANT_RATE_LIMIT_FAILURE", s("open")),
        ]))
        .unwrap()
        .rate_limits;
        assert_eq!(parsed.backend.kind, BackendKind::Redis);
        assert_eq!(parsed.backend.redis_url, "redis://r:1/2");
        assert_eq!(parsed.failure, FailureMode::Open);
        let events = parsed.limits.effective(None, "events");
        assert_eq!(events.len(), 3);
        assert_eq!(events[1].key, KeySpec::parse("user").unwrap());
        assert!(
            matches!(events[2].limit, Limit::Quota(q) if q.max == 100_000 && q.window == QuotaWindow::Day)
        );
        assert!(parsed.limits.effective(None, "export").is_empty());
        for (key, bad) in [
            ("TENANT_RATE_LIMITS", s("100/s")),
            ("TENANT_RATE_LIMITS", m(vec![("http", s("100 per second"))])),
            ("TENANT_RATE_LIMITS", m(vec![("http", s("100/s burst 0"))])),
            ("TENANT_RATE_LIMITS", m(vec![("a:b", s("1/s"))])),
            (
                "TENANT_RATE_LIMITS",
                m(vec![("http", m(vec![("key", s("user"))]))]),
            ),
            (
                "TENANT_RATE_LIMITS",
                m(vec![(
                    "http",
                    m(vec![("rate", s("1/s")), ("kee", s("user"))]),
                )]),
            ),
            ("TENANT_RATE_LIMITS", m(vec![("http", Value::Int(5))])),
            ("TENANT_QUOTAS", m(vec![("events_per_week", Value::Int(5))])),
            ("TENANT_QUOTAS", m(vec![("events_per_day", Value::Int(0))])),
            ("TENANT_QUOTAS", m(vec![("events_per_day", s("5"))])),
            ("RATE_LIMIT_BACKEND", s("tenant_mongo")),
            ("RATE_LIMIT_REDIS_URL", s("http://x")),
            ("TENANT_RATE_LIMIT_FAILURE", s("ajar")),
        ] {
            let e = errors(&[(key, bad.clone())]);
            assert_eq!(e[0].key, key, "{bad:?}");
            assert!(e[0].to_string().contains(key), "{}", e[0]);
        }
        let e = errors(&[("TENANT_RATE_LIMITS", m(vec![("http", s("ten/s"))]))]);
        assert!(
            e[0].message.contains("\"ten/s\"") && e[0].message.contains("http"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn metrics_keys() {
        let d = Settings::defaults().metrics;
        assert!(!d.enabled);
        assert_eq!(d.top, 100);
        assert_eq!(d.token, None);
        let token = "t0ken-with-enough-chars";
        let parsed = parse(&map(&[
            ("TENANT_METRICS", Value::Bool(true)),
            ("TENANT_METRICS_TOP", Value::Int(3)),
            ("TENANT_METRICS_TOKEN", s(token)),
        ]))
        .unwrap();
        assert!(parsed.metrics.enabled);
        assert_eq!(parsed.metrics.top, 3);
        assert_eq!(parsed.metrics.token.as_deref(), Some(token));
        for (key, bad) in [
            ("TENANT_METRICS", s("yes")),
            ("TENANT_METRICS_TOP", Value::Int(0)),
            ("TENANT_METRICS_TOP", Value::Int(10_001)),
            ("TENANT_METRICS_TOP", s("100")),
            ("TENANT_METRICS_TOKEN", s("short")),
            ("TENANT_METRICS_TOKEN", s("has a space in it, long enough")),
            ("TENANT_METRICS_TOKEN", Value::Int(12345678901234567)),
        ] {
            let e = errors(&[(key, bad.clone())]);
            assert_eq!(e.len(), 1, "{key} {bad:?}");
            assert_eq!(e[0].key, key, "{bad:?}");
            assert!(e[0].to_string().contains(key), "{bad:?}");
        }
    }

    #[test]
    fn tenant_flags_are_named_booleans() {
        let s = |v: &str| Value::Str(v.into());
        let m = |items: Vec<(&str, Value)>| {
            Value::Map(items.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
        };
        assert!(!Settings::defaults().tenant_flags.default_of("beta"));
        let parsed = parse(&map(&[(
            "TENANT_FLAGS",
            m(vec![
                ("beta", Value::Bool(true)),
                ("old_ui", Value::Bool(false)),
            ]),
        )]))
        .unwrap();
        assert!(parsed.tenant_flags.default_of("beta"));
        assert!(!parsed.tenant_flags.default_of("old_ui"));
        for bad in [
            s("beta"),
            Value::List(vec![s("beta")]),
            m(vec![("beta", Value::Int(1))]),
            m(vec![("beta", s("yes"))]),
            m(vec![("new-ui", Value::Bool(true))]),
            m(vec![("__class__", Value::Bool(true))]),
            m(vec![("", Value::Bool(true))]),
        ] {
            let e = parse(&map(&[("TENANT_FLAGS", bad.clone())])).unwrap_err();
            assert_eq!(e[0].key, "TENANT_FLAGS", "{bad:?}");
            assert!(e[0].to_string().contains("TENANT_FLAGS"), "{}", e[0]);
        }
        let e = parse(&map(&[("TENANT_FLAGS", m(vec![("beta", s("on"))]))])).unwrap_err();
        assert!(e[0].message.contains("beta") && e[0].message.contains("True or False"));
    }

    #[test]
    fn readmit_interval_is_bounded_seconds() {
        assert_eq!(Settings::defaults().readmit_interval, 5.0);
        for (value, want) in [
            (Value::Int(0), 0.0),
            (Value::Float(0.5), 0.5),
            (Value::Int(3600), 3600.0),
        ] {
            let parsed = parse(&map(&[("TENANT_READMIT_INTERVAL", value)])).unwrap();
            assert_eq!(parsed.readmit_interval, want);
        }
        for bad in [
            Value::Int(-1),
            Value::Int(3601),
            Value::Float(f64::NAN),
            s("5"),
            Value::None,
        ] {
            let e = errors(&[("TENANT_READMIT_INTERVAL", bad.clone())]);
            assert_eq!(e[0].key, "TENANT_READMIT_INTERVAL", "{bad:?}");
            assert!(e[0].to_string().contains("seconds"), "{}", e[0]);
        }
    }

    #[test]
    fn exempt_paths_are_prefixes() {
        let parsed = parse(&map(&[(
            "TENANT_EXEMPT_PATHS",
            Value::List(vec![s("/health"), s("/static/")]),
        )]))
        .unwrap();
        assert!(parsed.is_exempt("/healthz"));
        assert!(parsed.is_exempt("/static/app.css"));
        assert!(!parsed.is_exempt("/app"));
        assert!(parse(&map(&[(
            "TENANT_EXEMPT_PATHS",
            Value::List(vec![s("health")])
        )]))
        .is_err());
    }

    #[test]
    fn session_ttl_is_djusts_number_of_seconds() {
        assert_eq!(Settings::defaults().session_ttl, DEFAULT_SESSION_TTL);
        let ttl = |v: Value| parse(&map(&[("SESSION_TTL", v)])).map(|s| s.session_ttl);
        assert_eq!(ttl(Value::Int(60)), Ok(60));
        assert_eq!(ttl(Value::Int(0)), Ok(0));
        assert_eq!(ttl(Value::Int(-1)), Ok(-1));
        assert_eq!(ttl(Value::Float(90.9)), Ok(90));
        assert_eq!(ttl(Value::None), Ok(DEFAULT_SESSION_TTL));
        for bad in [s("3600"), Value::Bool(true), Value::Float(f64::NAN)] {
            let errors = errors(&[("SESSION_TTL", bad)]);
            assert_eq!(errors[0].key, "SESSION_TTL");
            assert!(
                errors[0].to_string().contains("number of seconds"),
                "{errors:?}"
            );
        }
        assert!(KNOWN_KEYS.contains(&"SESSION_TTL"));
        assert!(unknown_keys(&map(&[("SESSION_TTL", Value::Int(1))])).is_empty());
    }

    #[test]
    fn audit_store_and_retention() {
        let defaults = Settings::defaults();
        assert_eq!(defaults.audit_store, AuditStore::LogOnly);
        assert_eq!(defaults.audit_retention_days, None);
        let parsed = parse(&map(&[
            ("TENANT_AUDIT_STORE", s("database")),
            ("TENANT_AUDIT_RETENTION_DAYS", Value::Int(90)),
        ]))
        .unwrap();
        assert_eq!(parsed.audit_store, AuditStore::Database);
        assert_eq!(parsed.audit_retention_days, Some(90));
        let none = parse(&map(&[
            ("TENANT_AUDIT_STORE", Value::None),
            ("TENANT_AUDIT_RETENTION_DAYS", Value::None),
        ]))
        .unwrap();
        assert_eq!(none.audit_store, AuditStore::LogOnly);
        assert_eq!(none.audit_retention_days, None);
        for bad in [s("db"), s("Database"), Value::Bool(true), Value::Int(1)] {
            let e = errors(&[("TENANT_AUDIT_STORE", bad.clone())]);
            assert_eq!(e[0].key, "TENANT_AUDIT_STORE", "{bad:?}");
            assert!(e[0].to_string().contains("'database'"), "{}", e[0]);
        }
        for bad in [
            Value::Int(0),
            Value::Int(-3),
            Value::Int(36_501),
            Value::Float(1.5),
            s("30"),
            Value::Bool(true),
        ] {
            let e = errors(&[("TENANT_AUDIT_RETENTION_DAYS", bad.clone())]);
            assert_eq!(e[0].key, "TENANT_AUDIT_RETENTION_DAYS", "{bad:?}");
            assert!(e[0].to_string().contains("days"), "{}", e[0]);
        }
        assert!(unknown_keys(&map(&[("TENANT_AUDIT_STORE", s("database"))])).is_empty());
    }

    #[test]
    fn lenient_parse_keeps_good_keys_beside_bad_ones() {
        let (settings, errors) = parse_lenient(&map(&[
            ("TENANT_STRICT", s("nope")),
            ("TENANT_MODEL", s("tenants.Tenant")),
            ("TENANT_MODEL_NAME_FIELD", Value::Int(3)),
            ("TENANT_MODEL_SETTINGS_FIELD", Value::None),
        ]));
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["TENANT_STRICT", "TENANT_MODEL_NAME_FIELD"]);
        assert_eq!(settings.registry.model.as_deref(), Some("tenants.Tenant"));
        assert_eq!(settings.registry.name_field.as_deref(), Some("name"));
        assert_eq!(settings.registry.settings_field, None);
        assert_eq!(settings.strict, Strictness::Raise);
        assert_eq!(
            parse(&BTreeMap::new()),
            Ok(parse_lenient(&BTreeMap::new()).0)
        );
    }
}
