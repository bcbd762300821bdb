//! The only module that knows about Python: maps the core to classes,
//! functions and exceptions of `tenantry._core`.

mod admission;
mod config;
mod crossings;
mod errors;
mod flags;
mod json;
mod lifecycle;
mod presence;
mod ratelimit;
mod registry;
mod resolvers;
mod rules;
mod state;
mod tenant_backend;
mod tenant_info;
mod usage;

use pyo3::prelude::*;

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_class::<tenant_info::TenantInfo>()?;
    m.add_class::<flags::TenantFlags>()?;
    m.add_function(wrap_pyfunction!(flags::check_flag_name, m)?)?;
    m.add("PLAN_FLAGS_KEY", crate::flags::PLAN_FLAGS_KEY)?;
    m.add_function(wrap_pyfunction!(tenant_info::validate_tenant_id, m)?)?;
    m.add_function(wrap_pyfunction!(tenant_info::is_valid_tenant_id, m)?)?;

    m.add_class::<resolvers::TenantResolver>()?;
    m.add_class::<resolvers::SubdomainResolver>()?;
    m.add_class::<resolvers::PathResolver>()?;
    m.add_class::<resolvers::HeaderResolver>()?;
    m.add_class::<resolvers::SessionResolver>()?;
    m.add_class::<resolvers::CustomResolver>()?;
    m.add_class::<resolvers::DomainResolver>()?;
    m.add_class::<resolvers::ChainedResolver>()?;
    m.add_class::<resolvers::CallableResolver>()?;
    m.add_function(wrap_pyfunction!(resolvers::resolve_tenant, m)?)?;
    m.add_function(wrap_pyfunction!(resolvers::get_tenant_resolver, m)?)?;
    m.add_function(wrap_pyfunction!(resolvers::django_host, m)?)?;
    m.add_function(wrap_pyfunction!(resolvers::resolve_tenant_sourced, m)?)?;
    m.add_function(wrap_pyfunction!(admission::lookup_tenant, m)?)?;
    m.add_function(wrap_pyfunction!(admission::host_tenant, m)?)?;
    m.add_function(wrap_pyfunction!(admission::custom_domain_conflict, m)?)?;

    m.add_class::<presence::MemoryBackend>()?;
    m.add_class::<presence::RedisBackend>()?;
    m.add_class::<presence::Router>()?;
    m.add_class::<presence::SharedRoomSpace>()?;
    m.add("PRESENCE_DEFAULT_REF", crate::presence::DEFAULT_REF)?;
    m.add("PRESENCE_MAX_REF_LEN", crate::presence::MAX_REF_LEN)?;
    m.add(
        "PRESENCE_MAX_CONNECTIONS_PER_USER",
        crate::presence::MAX_CONNECTIONS_PER_USER,
    )?;

    m.add_class::<state::MemoryBackend>()?;
    m.add_class::<state::RedisBackend>()?;
    m.add_class::<state::Router>()?;

    m.add_class::<ratelimit::Decision>()?;
    m.add_class::<ratelimit::Limiter>()?;
    m.add_function(wrap_pyfunction!(usage::usage_record, m)?)?;
    m.add_function(wrap_pyfunction!(usage::usage_held, m)?)?;
    m.add_function(wrap_pyfunction!(usage::usage_hand_over, m)?)?;
    m.add_function(wrap_pyfunction!(usage::usage_get, m)?)?;
    m.add_function(wrap_pyfunction!(usage::usage_tenants, m)?)?;
    m.add_function(wrap_pyfunction!(usage::usage_flush, m)?)?;
    m.add_function(wrap_pyfunction!(usage::usage_clear, m)?)?;
    m.add_function(wrap_pyfunction!(usage::usage_clear_tenant, m)?)?;
    m.add_function(wrap_pyfunction!(tenant_backend::refuse_other_tenant, m)?)?;
    m.add_function(wrap_pyfunction!(config::apply_store_limits, m)?)?;
    m.add_function(wrap_pyfunction!(lifecycle::purge_tenant_memory, m)?)?;
    m.add_function(wrap_pyfunction!(lifecycle::purge_tenant_redis, m)?)?;

    m.add_class::<config::CurrentConfig>()?;
    m.add_function(wrap_pyfunction!(config::configure, m)?)?;
    m.add_function(wrap_pyfunction!(config::reset, m)?)?;
    m.add_function(wrap_pyfunction!(config::set_counts_namespace, m)?)?;
    m.add_function(wrap_pyfunction!(config::check_config, m)?)?;
    m.add_function(wrap_pyfunction!(config::current_config, m)?)?;
    m.add_function(wrap_pyfunction!(config::invalidate_tenant, m)?)?;
    m.add("CONFIG_KEYS", crate::config::KNOWN_KEYS.to_vec())?;
    m.add_function(wrap_pyfunction!(config::registry_fields, m)?)?;
    m.add_function(wrap_pyfunction!(config::tenant_keys, m)?)?;
    rules::register(m)?;
    m.add_function(wrap_pyfunction!(crossings::count_crossings, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The optional Cargo features built in (Cargo.toml; the demo's light
    // build has neither): tests/ops/test_demo_build.py checks the test build.
    m.add(
        "BUILD_FEATURES",
        crate::redis_url::Support::BUILT.features(),
    )?;
    Ok(())
}
