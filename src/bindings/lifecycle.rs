//! What deleting a tenant removes from the per-tenant stores
//! (`tenantry.lifecycle`): presence, saved state, rate-limit counts and usage,
//! in this process's memory and in every configured Redis.
//!
//! On Redis every key of a tenant starts with `<prefix>:{tenant:<id>}:`
//! (`crate::keys`): one `SCAN ... MATCH` of that pattern (every primary of a
//! cluster) finds them all, whatever kind wrote them, and `DEL` removes them
//! in batches (they share one hash slot, so one batch is one call).

use pyo3::prelude::*;

use super::config;
use super::errors::store_error;
use super::tenant_info::id_from_py;
use super::{presence, ratelimit, state, tenant_backend, usage};
use crate::config::{BackendKind, BackendSettings};
use crate::keys::tenant_key_pattern;
use crate::redis_store::RedisStore;

const THIS_PROCESS: &str = "memory, this process";

/// The stores a tenant's keys live in: `(what, backend settings)`.
fn kinds(settings: &crate::config::Settings) -> [(&'static str, &BackendSettings); 4] {
    [
        ("presence", &settings.presence),
        ("state", &settings.state),
        ("rate limits", &settings.rate_limits.backend),
        ("usage", &settings.state),
    ]
}

/// `[(store, where, count)]`: what `tenant_id` holds in this process's
/// memory stores (presence, state, rate limits, usage), removed (or only
/// counted with `dry_run`). A store is reported when configured, or when it
/// held something of the tenant.
#[pyfunction]
#[pyo3(signature = (tenant_id, dry_run=false))]
pub fn purge_tenant_memory(
    py: Python<'_>,
    tenant_id: &Bound<'_, PyAny>,
    dry_run: bool,
) -> PyResult<Vec<(String, String, u64)>> {
    let tenant = id_from_py(tenant_id)?;
    tenant_backend::refuse_naming_another(py, &tenant, "purge_tenant_memory")?;
    let compiled = config::current(py)?;
    let memory = [
        presence::purge_memory(&tenant, dry_run),
        state::purge_memory(&tenant, dry_run),
        ratelimit::purge_memory(&tenant, dry_run),
        usage::purge_memory(py, &tenant, dry_run)?,
    ];
    let mut out = Vec::new();
    for ((what, backend), count) in kinds(&compiled.settings).iter().zip(memory) {
        if backend.kind == BackendKind::Memory || count > 0 {
            out.push((what.to_string(), THIS_PROCESS.to_owned(), count as u64));
        }
    }
    Ok(out)
}

/// `[(store, where, count)]`: the keys of `tenant_id` on every Redis that
/// `PRESENCE_BACKEND`, `STATE_BACKEND` (state and usage) and
/// `RATE_LIMIT_BACKEND` name, one line per distinct URL, removed (or only
/// counted with `dry_run`). `BackendUnavailable` when one cannot be reached
/// (the URLs before it are done).
#[pyfunction]
#[pyo3(signature = (tenant_id, dry_run=false))]
pub fn purge_tenant_redis(
    py: Python<'_>,
    tenant_id: &Bound<'_, PyAny>,
    dry_run: bool,
) -> PyResult<Vec<(String, String, u64)>> {
    let tenant = id_from_py(tenant_id)?;
    tenant_backend::refuse_naming_another(py, &tenant, "purge_tenant_redis")?;
    let compiled = config::current(py)?;
    let settings = &compiled.settings;
    // One scan per distinct Redis URL, naming what is kept there.
    let mut urls: Vec<(&str, Vec<&str>)> = Vec::new();
    for (what, backend) in kinds(settings) {
        if backend.kind != BackendKind::Redis {
            continue;
        }
        match urls.iter_mut().find(|(url, _)| *url == backend.redis_url) {
            Some((_, whats)) => whats.push(what),
            None => urls.push((&backend.redis_url, vec![what])),
        }
    }
    // Counts and figures live under their own prefix while the test kit
    // gives each test a key space (`Compiled::counts_prefix`).
    let mut patterns = vec![tenant_key_pattern(&settings.key_prefix, &tenant)];
    if compiled.counts_prefix != settings.key_prefix {
        patterns.push(tenant_key_pattern(&compiled.counts_prefix, &tenant));
    }
    let mut out = Vec::new();
    for (url, whats) in urls {
        let store = RedisStore::shared(url, settings.redis_options).map_err(store_error)?;
        let count = py
            .detach(|| {
                let mut keys = Vec::new();
                for pattern in &patterns {
                    keys.extend(store.scan(pattern)?);
                }
                if dry_run {
                    Ok(keys.len() as u64)
                } else {
                    store.delete(&keys)
                }
            })
            .map_err(store_error)?;
        out.push((
            "redis keys".to_owned(),
            format!("{} ({})", store.url(), whats.join(", ")),
            count,
        ));
    }
    Ok(out)
}
