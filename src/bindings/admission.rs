//! What the Python admission layer (`tenantry.access`) asks the core: is
//! this id a tenant the registry knows, which tenant does a host name serve,
//! and may a custom-domain row claim a host. The decisions themselves (who
//! may bind which tenant) are made in one Python function; these answer the
//! questions only the compiled config can.

use pyo3::prelude::*;
use pyo3::types::PyString;

use super::config::current;
use super::resolvers::{host_rules, Builtin};
use super::tenant_info::{id_from_py, TenantInfo, ValidId};
use crate::host::validated_domain;
use crate::resolve::{custom_domain_conflict as core_conflict, subdomain_tenant};

/// The tenant `value` names as the registry knows it (with its name,
/// settings and row), or `None` when a registry is configured and does not
/// know it. Without a registry every valid id is a tenant; a `TenantInfo`
/// is then returned as given. An invalid id raises `InvalidTenantId`.
#[pyfunction]
pub fn lookup_tenant<'py>(
    py: Python<'py>,
    value: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let id = id_from_py(value)?;
    let c = current(py)?;
    match &c.registry {
        Some(registry) => registry.admit(py, PyString::new(py, id.as_str())),
        None if value.is_instance_of::<TenantInfo>() => Ok(Some(value.clone())),
        None => Ok(Some(
            Bound::new(py, TenantInfo::from_valid(py, ValidId::Rust(id)))?.into_any(),
        )),
    }
}

/// For a WebSocket `Origin`: `None` when `host` (`name[:port]`) is not one
/// of `ALLOWED_HOSTS`; else its domain and the tenant id the configured
/// host-reading resolvers (subdomain, custom domain; in chain order) give it.
#[pyfunction]
pub fn host_tenant(py: Python<'_>, host: &str) -> PyResult<Option<(String, Option<String>)>> {
    let (hosts, _) = host_rules(py)?;
    let Ok(domain) = validated_domain(host, &hosts.rules) else {
        return Ok(None);
    };
    let domain = domain.into_owned();
    let c = current(py)?;
    let mut leaves = Vec::new();
    c.resolver.host_builtins(&mut leaves);
    for leaf in leaves {
        let id = match leaf {
            Builtin::Subdomain => {
                subdomain_tenant(&domain, &c.settings.subdomain).map(|t| t.as_str().to_owned())
            }
            Builtin::Domain => match &c.domains {
                Some(domains) => domains.tenant_of(py, &domain)?.map(|v| match v {
                    ValidId::Py(s) => s.to_string_lossy().into_owned(),
                    ValidId::Rust(t) => t.as_str().to_owned(),
                }),
                None => None,
            },
            _ => None,
        };
        if id.is_some() {
            return Ok(Some((domain, id)));
        }
    }
    Ok(Some((domain, None)))
}

/// Why a custom-domain row may not map `domain` to `tenant_id` under the
/// current `TENANT_MAIN_DOMAIN`, or `None` when it may.
#[pyfunction]
pub fn custom_domain_conflict(
    py: Python<'_>,
    domain: &str,
    tenant_id: &str,
) -> PyResult<Option<String>> {
    let c = current(py)?;
    let domain = crate::host::normalize_custom_domain(domain);
    Ok(core_conflict(&domain, tenant_id, &c.settings.subdomain).map(|e| e.to_string()))
}
