//! How a djust-facing router (presence, saved view state) finds the tenant of
//! a call: from the `tenant:<id>:` prefix `TenantMixin` puts on djust's key,
//! and/or the tenant bound in the current context. Both present: they must
//! agree (`TenantMismatchError`). A key without the prefix is either the
//! bound tenant's (presence; no tenant bound: `TenantNotSetError`) or, for
//! saved view state, the shared space of views that are not tenant views
//! (djust never hands a tenant view's key over without its prefix), which
//! no tenant's id can name ([`TenantId::shared`]).

use std::sync::Arc;

use parking_lot::RwLock;
use pyo3::intern;
use pyo3::prelude::*;

use super::config::{self as bconfig, Compiled};
use super::errors;
use super::tenant_info::id_from_py;
use crate::tenant_id::{preview, TenantId};

const KEY_PREFIX: &str = "tenant:";

/// `tenant:<id>:<rest>` → `(id, rest)`; anything else is an unprefixed key.
pub fn split_tenant_prefix(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix(KEY_PREFIX)?.split_once(':')
}

/// The bound tenant's id, if any. Accepts tenantry's `TenantInfo`, any
/// object with an `id` (djust's own `TenantInfo`), or a plain id.
pub fn bound_tenant(py: Python<'_>, current_tenant: &Py<PyAny>) -> PyResult<Option<TenantId>> {
    let bound = current_tenant.bind(py).call_method0(intern!(py, "get"))?;
    if bound.is_none() {
        return Ok(None);
    }
    if let Ok(id) = id_from_py(&bound) {
        return Ok(Some(id));
    }
    let id = bound.getattr(intern!(py, "id"))?;
    Ok(Some(id_from_py(&id)?))
}

/// What a router routes, for its error messages.
pub struct Routed {
    /// "presence key", "saved view key"
    pub what: &'static str,
    /// "presence", "saved view state"
    pub data: &'static str,
    /// How to scope the key: the `TenantMixin` hook that adds the prefix.
    pub hook: &'static str,
    /// Unprefixed keys go to the shared space, whatever tenant is bound.
    pub unprefixed_shared: bool,
}

/// `(tenant, rest of the key)` for a djust key.
pub fn route<'k>(
    py: Python<'_>,
    current_tenant: &Py<PyAny>,
    key: &'k str,
    routed: &Routed,
) -> PyResult<(TenantId, &'k str)> {
    let prefixed = split_tenant_prefix(key);
    if prefixed.is_none() && routed.unprefixed_shared {
        return Ok((TenantId::shared(), key));
    }
    let bound = bound_tenant(py, current_tenant)?;
    match prefixed {
        Some((id, rest)) => {
            let tenant = TenantId::parse(id).map_err(|e| errors::invalid_tenant_id(id, &e))?;
            if let Some(bound) = bound {
                if bound != tenant {
                    return Err(errors::TenantMismatchError::new_err(format!(
                        "{} {} belongs to tenant {:?} but tenant {:?} is bound; \
                         refusing to touch another tenant's {}",
                        routed.what,
                        preview(key),
                        tenant.as_str(),
                        bound.as_str(),
                        routed.data
                    )));
                }
            }
            Ok((tenant, rest))
        }
        None => match bound {
            Some(tenant) => Ok((tenant, key)),
            None => Err(errors::TenantNotSetError::new_err(format!(
                "{} {} has no 'tenant:<id>:' prefix and no tenant is bound: \
                 use TenantMixin on the view ({}) or bind one with \
                 tenantry.tenant_context(...)",
                routed.what,
                preview(key),
                routed.hook
            ))),
        },
    }
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
