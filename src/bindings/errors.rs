//! Every Python exception tenantry raises, and the one mapping from the
//! core's typed errors to them.

use pyo3::create_exception;
use pyo3::exceptions::{
    PyConnectionError, PyException, PyLookupError, PyOverflowError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple, PyType};
use pyo3::PyErrArguments;

use crate::config::ConfigError as CoreConfigError;
use crate::keys::CallerKeyError;
use crate::presence::PresenceError;
use crate::ratelimit::RateError;
use crate::redis_store::StoreError;
use crate::state::StateError;
use crate::tenant_id::{preview, InvalidTenantId as CoreInvalidTenantId};

create_exception!(
    tenantry,
    TenantError,
    PyException,
    "The base of every exception tenantry raises: `except tenantry.TenantError` catches them all."
);

/// A tenantry exception: a subclass of `TenantError` and of the standard
/// bases it has always had (`ValueError`, `ConnectionError`, ...), so code
/// written against djust.tenants or the standard library keeps catching it.
/// PyO3's `create_exception!` takes one base, so each class is made once,
/// on first use, with `type(name, (TenantError, *bases), namespace)`.
macro_rules! tenant_exception {
    ($name:ident, [$($base:expr),*], $doc:expr) => {
        pub struct $name;

        impl $name {
            pub fn type_object(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
                static TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
                let ty = TYPE.get_or_try_init(py, || -> PyResult<Py<PyType>> {
                    let bases: Vec<Bound<'_, PyType>> = vec![$($base(py)?),*];
                    make_type(py, stringify!($name), bases, $doc)
                })?;
                Ok(ty.bind(py))
            }

            #[allow(dead_code)] // some are raised only by the Python layer
            pub fn new_err<A>(args: A) -> PyErr
            where
                A: PyErrArguments + Send + Sync + 'static,
            {
                Python::attach(|py| match Self::type_object(py) {
                    Ok(ty) => PyErr::from_type(ty.clone(), args),
                    Err(err) => err,
                })
            }
        }
    };
}

fn make_type(
    py: Python<'_>,
    name: &str,
    bases: Vec<Bound<'_, PyType>>,
    doc: &str,
) -> PyResult<Py<PyType>> {
    let namespace = PyDict::new(py);
    namespace.set_item("__module__", "tenantry")?;
    namespace.set_item("__doc__", doc)?;
    let root = py.get_type::<TenantError>();
    let mut all = Vec::with_capacity(bases.len() + 1);
    // A base that is already a TenantError (QuotaExceeded's BackendError)
    // brings it along; naming it again would break the MRO.
    let mut has_root = false;
    for base in &bases {
        has_root |= base.is_subclass(&root)?;
    }
    if !has_root {
        all.push(root);
    }
    all.extend(bases);
    let bases = PyTuple::new(py, all)?;
    Ok(py
        .get_type::<PyType>()
        .call1((name, bases, namespace))?
        .cast_into::<PyType>()?
        .unbind())
}

fn value_error(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    Ok(py.get_type::<PyValueError>())
}

fn runtime_error(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    Ok(py.get_type::<PyRuntimeError>())
}

fn connection_error(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    Ok(py.get_type::<PyConnectionError>())
}

fn lookup_error(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    Ok(py.get_type::<PyLookupError>())
}

fn backend_error(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
    BackendError::type_object(py).cloned()
}

tenant_exception!(
    InvalidTenantId,
    [value_error],
    "A tenant id failed validation (1-128 of A-Z a-z 0-9 . _ -, not starting with . or -)."
);
tenant_exception!(
    ConfigError,
    [value_error],
    "DJUST_CONFIG is invalid; args are (message, [(key, message), ...]). The Django layer re-raises it as ImproperlyConfigured."
);
tenant_exception!(
    BackendUnavailable,
    [connection_error],
    "A storage backend (Redis) could not be reached in time (also a ConnectionError: an I/O failure)."
);
tenant_exception!(
    BackendError,
    [runtime_error],
    "A storage backend (Redis) answered with an error or an unexpected reply."
);
tenant_exception!(
    QuotaExceeded,
    [backend_error],
    "A store cannot take a write: the in-memory state store's tenant share (STATE_TENANT_MAX_BYTES) or whole size (STATE_MEMORY_MAX_BYTES) is full, a presence user already holds its most connections, a tenant is at a presence cap (PRESENCE_TENANT_MAX_ROOMS/_USERS/_CONNECTIONS), or a presence meta is larger than PRESENCE_MAX_META_BYTES. TenantMiddleware answers 503."
);
tenant_exception!(
    TenantMismatchError,
    [],
    "An operation named one tenant while another tenant is bound, or reached another tenant's data: an isolation refusal. Deliberately not an OSError (nor a PermissionError): code that catches OSError around file I/O must never swallow it."
);
tenant_exception!(
    TenantNotSetError,
    [runtime_error, value_error],
    "A tenant-scoped operation ran with no tenant bound (also a ValueError, as djust.tenants raised)."
);
tenant_exception!(
    TenantNotFound,
    [lookup_error],
    "The registry (TENANT_MODEL / TENANT_VALIDATOR) does not know this tenant."
);
tenant_exception!(
    InvalidKey,
    [value_error],
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

/// A call naming another tenant than the bound one (see
/// `crate::tenant_id::check_named`).
pub fn other_tenant_bound(err: &crate::tenant_id::OtherTenantBound) -> PyErr {
    TenantMismatchError::new_err(err.to_string())
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

/// A process-wide maintenance call (every tenant's caps or rooms) made
/// while `bound` is bound → `TenantMismatchError`.
pub fn process_wide_while_bound(what: &str, bound: &crate::tenant_id::TenantId) -> PyErr {
    TenantMismatchError::new_err(format!(
        "{what} acts on every tenant, but tenant {:?} is bound: call it from trusted code \
         with no tenant bound (a management command, start-up, a test's set-up)",
        bound.as_str()
    ))
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
        PresenceError::BadTimeout { .. } | PresenceError::NotAMember { .. } => {
            PyValueError::new_err(err.to_string())
        }
        PresenceError::RoomNotOpened { .. } | PresenceError::OtherTenantsMember { .. } => {
            TenantMismatchError::new_err(err.to_string())
        }
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
    m.add("TenantError", py.get_type::<TenantError>())?;
    m.add("InvalidTenantId", InvalidTenantId::type_object(py)?)?;
    m.add("ConfigError", ConfigError::type_object(py)?)?;
    m.add("BackendUnavailable", BackendUnavailable::type_object(py)?)?;
    m.add("TenantNotSetError", TenantNotSetError::type_object(py)?)?;
    m.add("BackendError", BackendError::type_object(py)?)?;
    m.add("QuotaExceeded", QuotaExceeded::type_object(py)?)?;
    m.add("TenantMismatchError", TenantMismatchError::type_object(py)?)?;
    m.add("InvalidKey", InvalidKey::type_object(py)?)?;
    m.add("TenantNotFound", TenantNotFound::type_object(py)?)?;
    Ok(())
}
