//! Every Python exception tenantry raises, and the one mapping from the
//! core's typed errors to them.

use pyo3::create_exception;
use pyo3::exceptions::{PyConnectionError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::config::ConfigError as CoreConfigError;
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
    TenantNotSetError,
    PyRuntimeError,
    "A tenant-scoped operation ran with no tenant bound."
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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("InvalidTenantId", py.get_type::<InvalidTenantId>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("BackendUnavailable", py.get_type::<BackendUnavailable>())?;
    m.add("TenantNotSetError", py.get_type::<TenantNotSetError>())?;
    m.add("InvalidKey", py.get_type::<InvalidKey>())?;
    Ok(())
}
