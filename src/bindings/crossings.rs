//! Counts of the times the request path's Rust code goes back into Python
//! (docs/performance-design.md#crossings-per-request): an attribute read through
//! Python's object protocol, a call of a Python callable, an import.
//! Reads of dicts the Rust side already holds (`META`'s items,
//! `LazySettings.__dict__`'s) run no Python code and are not counted.
//!
//! Off unless a test turns it on (`_core._count_crossings(True)`): then
//! each site adds one to its kind's counter. Off, a site costs one relaxed
//! atomic load, a predicted branch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pyo3::prelude::*;
use pyo3::types::PyDict;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Where Rust went back into Python.
#[derive(Clone, Copy)]
pub enum Callback {
    /// `django.conf.settings`, read to see whether a test replaced it.
    SettingsObject,
    /// A setting not yet in `LazySettings.__dict__` (Python's `__getattr__`).
    SettingsMiss,
    /// The config compiled through `tenantry.conf` (cold start, or the
    /// settings changed).
    ConfigLoad,
    /// An attribute of the request (`META`, `path_info`, `session`, `user`,
    /// `resolver_match`) or of what hangs off it.
    Request,
    /// `request.get_host()` (no usable `Host` header).
    GetHost,
    /// The bound tenant's `ContextVar`.
    ContextVar,
    /// A user callable (custom resolver, validator, loader) or a tenant's
    /// plan settings.
    UserCode,
}

const KINDS: [(&str, Callback); 7] = [
    ("settings_object", Callback::SettingsObject),
    ("settings_miss", Callback::SettingsMiss),
    ("config_load", Callback::ConfigLoad),
    ("request", Callback::Request),
    ("get_host", Callback::GetHost),
    ("context_var", Callback::ContextVar),
    ("user_code", Callback::UserCode),
];

static COUNTS: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];

/// One callback of `kind` (counted only while counting is on).
#[inline]
pub fn note(kind: Callback) {
    if ENABLED.load(Ordering::Relaxed) {
        COUNTS[kind as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// `_count_crossings(on)`: starts (or stops) counting and returns the
/// counts since the last call, `{kind: n}`, then zeroes them. For tests.
#[pyfunction]
#[pyo3(name = "_count_crossings")]
pub fn count_crossings(py: Python<'_>, on: bool) -> PyResult<Bound<'_, PyDict>> {
    ENABLED.store(on, Ordering::Relaxed);
    let counts = PyDict::new(py);
    for (name, kind) in KINDS {
        counts.set_item(name, COUNTS[kind as usize].swap(0, Ordering::Relaxed))?;
    }
    Ok(counts)
}
