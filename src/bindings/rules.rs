//! The rules Python and Rust both apply, written once in the core and
//! exposed here so the Python package calls them instead of spelling them
//! again: the `tenant:<id>:` scope of caller-named keys, the `{tenant:<id>}`
//! hash tag of store and cache keys, custom-domain normalisation, header →
//! `request.META` names, and the plan keys of a tenant's settings.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::{config, host, keys, ratelimit};

/// `tenant:<id>:`, the scope djust's `TenantMixin` puts in front of the keys
/// it owns (presence keys, saved view state).
#[pyfunction]
fn tenant_scope(tenant_id: &str) -> String {
    keys::tenant_scope(tenant_id)
}

/// `(id, rest)` of a `tenant:<id>:<rest>` key, or None.
#[pyfunction]
fn split_tenant_scope(key: &str) -> Option<(&str, &str)> {
    keys::split_tenant_scope(key)
}

/// `{tenant:<id>}`, the hash tag of every key of one tenant.
#[pyfunction]
fn tenant_hash_tag(tenant_id: &str) -> String {
    keys::tenant_hash_tag(tenant_id)
}

/// True when `key` carries a tenant hash tag (`...:{tenant:<id>}...`).
#[pyfunction]
fn has_tenant_hash_tag(key: &str) -> bool {
    keys::has_tenant_hash_tag(key)
}

/// A custom domain as stored and compared: trimmed, lowercased, no final dot.
#[pyfunction]
fn normalize_domain(domain: &str) -> String {
    host::normalize_custom_domain(domain)
}

/// Django's `request.META` key of an HTTP header name (`X-Tenant-ID` →
/// `HTTP_X_TENANT_ID`); a name already in META form is kept. `ValueError`
/// for a name that is not a header name.
#[pyfunction]
fn header_meta_key(name: &str) -> PyResult<String> {
    config::header_meta_key(name)
        .map_err(|message| PyValueError::new_err(format!("header name {message}")))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(tenant_scope, m)?)?;
    m.add_function(wrap_pyfunction!(split_tenant_scope, m)?)?;
    m.add_function(wrap_pyfunction!(tenant_hash_tag, m)?)?;
    m.add_function(wrap_pyfunction!(has_tenant_hash_tag, m)?)?;
    m.add_function(wrap_pyfunction!(normalize_domain, m)?)?;
    m.add_function(wrap_pyfunction!(header_meta_key, m)?)?;
    m.add("TENANT_SCOPE", keys::TENANT_SCOPE)?;
    m.add(
        "PLAN_KEYS",
        (ratelimit::PLAN_RATE_LIMITS_KEY, ratelimit::PLAN_QUOTAS_KEY),
    )?;
    Ok(())
}
