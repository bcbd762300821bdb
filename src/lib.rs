//! tenantry's core: tenant ids, the key formatter, Django-compatible host
//! validation, config parsing, the resolution rules, presence and
//! tenant-scoped state (in memory and in Redis, single server or cluster) and
//! the shared Redis connection layer, with no Python types.
//! The `bindings` module (feature `python`) is the only place that maps these
//! to Python objects and exceptions.

pub mod config;
pub mod flags;
pub mod host;
pub mod json;
pub mod keys;
pub mod presence;
pub mod ratelimit;
pub mod redis_raw;
pub mod redis_store;
pub mod redis_url;
pub mod resolve;
pub mod resp;
pub mod state;
pub mod sweep;
pub mod tenant_id;
pub mod ttl_cache;
pub mod usage;

#[cfg(feature = "python")]
mod bindings;
