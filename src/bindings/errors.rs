//! Every Python exception tenantry raises, and the one mapping from the
//! core's typed errors to them.

use pyo3::create_exception;
use pyo3::exceptions::{
    PyConnectionError, PyLookupError, PyOverflowError, PyPermissionError, PyRuntimeError,
    PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyType};

use crate::config::ConfigError as CoreConfigError;
use crate::keys::CallerKeyError;
use crate::presence::PresenceError;
use crate::ratelimit::RateError;
use crate::redis_store::StoreError;
use crate::state::StateError;
use crate::tenant_id::{preview, InvalidTenantId as CoreInvalidTenantId};

create_exception!(
    tenantry,
    InvalidTenantId,
    PyValueError,
    "A tenant id failed validation (1-128 of A-Z a-z 0-9 . _ -, not starting with . or -)."
);
create_exception!(
    tenantry,
    ConfigError,
    PyValueError,
    "DJUST_CONFIG is invalid; args are (message, [(key, message), ...]). The Django layer re-raises it as ImproperlyConfigured."
);
create_exception!(
    tenantry,
    BackendUnavailable,
    PyConnectionError,
    "A storage backend (Redis) could not be reached in time."
);
create_exception!(
    tenantry,
    BackendError,
    PyRuntimeError,
    "A storage backend (Redis) answered with an error or an unexpected reply."
);
create_exception!(
    tenantry,
    QuotaExceeded,
    BackendError,
    "A store cannot take a write: the in-memory state store's tenant share (STATE_TENANT_MAX_BYTES) or whole size (STATE_MEMORY_MAX_BYTES) is full, a presence user already holds its most connections, a tenant is at a presence cap (PRESENCE_TENANT_MAX_ROOMS/_USERS/_CONNECTIONS), or a presence meta is larger than PRESENCE_MAX_META_BYTES. TenantMiddleware answers 503."
);
create_exception!(
    tenantry,
    TenantMismatchError,
    PyPermissionError,
    "An operation named one tenant while another tenant is bound."
);

/// A tenant-scoped operation ran with no tenant bound. Both a `RuntimeError`
/// and a `ValueError`: djust.tenants raised `ValueError` there, so existing
/// `except ValueError` code keeps catching it. `create_exception!` takes one
/// base, so the class is made once with `type(name, bases, namespace)`.
pub struct TenantNotSetError;

static TENANT_NOT_SET: PyOnceLock<Py<PyType>> = PyOnceLock::new();

impl TenantNotSetError {
    pub fn type_object(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
        let ty = TENANT_NOT_SET.get_or_try_init(py, || -> PyResult<Py<PyType>> {
            let namespace = PyDict::new(py);
            namespace.set_item("__module__", "tenantry")?;
            namespace.set_item(
                "__doc__",
                "A tenant-scoped operation ran with no tenant bound (also a ValueError, \
                 as djust.tenants raised).",
            )?;
            let bases = (
                py.get_type::<PyRuntimeError>(),
                py.get_type::<PyValueError>(),
            );
            Ok(py
                .get_type::<PyType>()
                .call1(("TenantNotSetError", bases, namespace))?
                .cast_into::<PyType>()?
                .unbind())
        })?;
        Ok(ty.bind(py))
    }

    pub fn new_err(message: String) -> PyErr {
        Python::attach(|py| match Self::type_object(py) {
            Ok(ty) => PyErr::from_type(ty.clone(), message),
            Err(err) => err,
        })
    }
}
create_exception!(
    tenantry,
    TenantNotFound,
    PyLookupError,
    "The registry (TENANT_MODEL / TENANT_VALIDATOR) does not know this tenant."
);
create_exception!(
    tenantry,
    InvalidKey,
    PyValueError,
    "A key name or key prefix was refused."
);

pub fn invalid_tenant_id(value: &str, err: &CoreInvalidTenantId) -> PyErr {
    InvalidTenantId::new_err(format!("invalid tenant id {}: {err}", preview(value)))
}

/// A caller-named key a router refused (see `crate::keys::route_caller_key`):
/// a scope with no tenant bound or without its `:` → `InvalidKey`, a bad id
/// in it → `InvalidTenantId`, another tenant's scope → `TenantMismatchError`.
pub fn caller_key_error(err: &CallerKeyError, what: &str) -> PyErr {
    let message = err.message(what);
    match err {
        CallerKeyError::Unbound { .. } | CallerKeyError::Malformed { .. } => {
            InvalidKey::new_err(message)
        }
        CallerKeyError::BadTenant { .. } => InvalidTenantId::new_err(message),
        CallerKeyError::Mismatch { .. } => TenantMismatchError::new_err(message),
    }
}

pub fn invalid_tenant_type(type_name: String) -> PyErr {
    let err = CoreInvalidTenantId::WrongType { type_name };
    InvalidTenantId::new_err(format!("invalid tenant id: {err}"))
}

/// One `ConfigError` carrying every problem; the message is the first one.
pub fn config_errors(py: Python<'_>, errors: &[CoreConfigError]) -> PyErr {
    let message = match errors.first() {
        Some(first) if errors.len() > 1 => {
            format!("{first} (and {} more problems)", errors.len() - 1)
        }
        Some(first) => first.to_string(),
        None => "invalid DJUST_CONFIG".to_owned(),
    };
    let pairs: Vec<(String, String)> = errors
        .iter()
        .map(|e| (e.key.clone(), e.to_string()))
        .collect();
    match PyList::new(py, pairs) {
        Ok(list) => ConfigError::new_err((message, list.unbind())),
        Err(e) => e,
    }
}

pub fn config_error(key: &str, message: String) -> CoreConfigError {
    CoreConfigError {
        key: key.to_owned(),
        message,
    }
}

/// Presence errors: bad names, user ids and refs → `InvalidKey`, a user
/// past its connection limit → `QuotaExceeded`, bad timeouts or URLs →
/// `ValueError`, Redis down → `BackendUnavailable`, Redis errors →
/// `BackendError`.
pub fn presence_error(err: PresenceError) -> PyErr {
    match err {
        PresenceError::Room(_)
        | PresenceError::UserIdTooLong { .. }
        | PresenceError::RefTooLong { .. } => InvalidKey::new_err(err.to_string()),
        PresenceError::TooManyConnections { .. }
        | PresenceError::TenantCap { .. }
        | PresenceError::MetaTooLarge { .. } => QuotaExceeded::new_err(err.to_string()),
        PresenceError::BadTimeout { .. } => PyValueError::new_err(err.to_string()),
        PresenceError::Store(e) => store_error(e),
    }
}

/// State errors: bad names → `InvalidKey`, bad TTLs, oversized values and
/// `incr` of a non-integer → `ValueError`, `incr` overflow → `OverflowError`,
/// a full memory store or tenant share → `QuotaExceeded` (a `BackendError`),
/// Redis as for presence.
pub fn state_error(err: StateError) -> PyErr {
    match err {
        StateError::Name(_) | StateError::EmptyName => InvalidKey::new_err(err.to_string()),
        StateError::BadTtl { .. }
        | StateError::ValueTooLarge { .. }
        | StateError::NotAnInteger { .. } => PyValueError::new_err(err.to_string()),
        StateError::Overflow { .. } => PyOverflowError::new_err(err.to_string()),
        StateError::Full { .. } | StateError::TenantFull { .. } => {
            QuotaExceeded::new_err(err.to_string())
        }
        StateError::Store(e) => store_error(e),
    }
}

/// Rate-limit errors: bad keys and scopes → `InvalidKey`, bad rates, costs
/// and counts → `ValueError`.
pub fn rate_error(err: RateError) -> PyErr {
    match err {
        RateError::Key(_) => InvalidKey::new_err(err.to_string()),
        RateError::Syntax { .. } | RateError::Range { .. } | RateError::CostTooHigh { .. } => {
            PyValueError::new_err(err.to_string())
        }
    }
}

pub fn store_error(err: StoreError) -> PyErr {
    match err {
        StoreError::InvalidConfig { .. } => PyValueError::new_err(err.to_string()),
        StoreError::Unavailable { .. } => BackendUnavailable::new_err(err.to_string()),
        StoreError::Failed { .. } => BackendError::new_err(err.to_string()),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("InvalidTenantId", py.get_type::<InvalidTenantId>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("BackendUnavailable", py.get_type::<BackendUnavailable>())?;
    m.add("TenantNotSetError", TenantNotSetError::type_object(py)?)?;
    m.add("BackendError", py.get_type::<BackendError>())?;
    m.add("QuotaExceeded", py.get_type::<QuotaExceeded>())?;
    m.add("TenantMismatchError", py.get_type::<TenantMismatchError>())?;
    m.add("InvalidKey", py.get_type::<InvalidKey>())?;
    m.add("TenantNotFound", py.get_type::<TenantNotFound>())?;
    Ok(())
}
