//! Usage counters for Python (`tenantry.usage`): recorded by the rate
//! limiter's checks (HTTP requests, live events, refusals) and by
//! `usage_record`, kept where `STATE_BACKEND` keeps state (the process, or
//! Redis at `STATE_REDIS_URL`), batched so a request costs at most one round
//! trip (a tenant's batch is flushed once a second).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList};

use super::errors::store_error;
use super::tenant_backend::{self, EngineSlot, RedisEngine};
use super::tenant_info::id_from_py;
use crate::keys::KeyPrefix;
use crate::presence::memory::Meter;
use crate::redis_store::RedisStore;
use crate::tenant_id::TenantId;
use crate::usage::{Batch, Figures, MemoryUsage, Metric, Recorded, RedisUsage, Usage, DAY, HOUR};

static MEMORY: LazyLock<MemoryUsage> = LazyLock::new(MemoryUsage::default);
static BATCH: LazyLock<Batch> = LazyLock::new(Batch::default);
static ENGINE: LazyLock<EngineSlot<Engine>> = LazyLock::new(EngineSlot::new);

/// Seconds a tenant's deltas wait in the process before one flush.
const FLUSH_EVERY: u64 = 1;

/// Counts the request and event paths hold (`tenantry.usage.count`): a
/// `collections.deque` of `(tenant, metric name)` that Python appends to
/// without calling into the extension, whose code is cold between requests.
/// Every read and clear below hands it over first, so no path sees the
/// figures without it.
static HELD: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

impl RedisEngine for RedisUsage {
    fn store(&self) -> &RedisStore {
        RedisUsage::store(self)
    }

    fn prefix(&self) -> &KeyPrefix {
        RedisUsage::prefix(self)
    }
}

type Engine = tenant_backend::Engine<(), RedisUsage>;

/// The generation of the figures this process recorded in its memory
/// store: changed whenever one of them may be gone or counted elsewhere (a
/// clear, a purge, a new usage store, a figure counted as `-other`). The
/// memory presence store meters a room's peak once per hour and generation
/// unless it rises ([`PeakMeter`]), so this is what keeps that exact.
static GENERATION: AtomicU64 = AtomicU64::new(0);

fn figures_changed() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

fn engine(py: Python<'_>) -> PyResult<Arc<Engine>> {
    ENGINE.get(py, |compiled| {
        figures_changed();
        let s = &compiled.settings;
        Engine::from_settings(
            &s.state,
            s.redis_options,
            &compiled.counts_prefix,
            || (),
            RedisUsage::new,
        )
    })
}

fn now_secs() -> u64 {
    crate::ratelimit::now_micros() / 1_000_000
}

fn warn(py: Python<'_>, message: String) -> PyResult<()> {
    py.import("logging")?
        .call_method1("getLogger", ("tenantry.usage",))?
        .call_method1("warning", (message,))?;
    Ok(())
}

/// Records one figure. Never fails for an unreachable Redis (usage is not
/// worth refusing a request over), and never drops what a tenant is billed
/// on to make room: a batch that cannot reach Redis is put back (logged),
/// and when the process holds as many batches as it may, the oldest is
/// flushed first; if that fails too, this figure is counted as the `-other`
/// owner (logged). The memory store does the same with its own bound.
pub fn record(py: Python<'_>, tenant: &TenantId, metric: Metric, value: u64) -> PyResult<()> {
    record_in(py, &*engine(py)?, now_secs(), tenant, metric, value)
}

/// The usage store and the time of one presence track's `peak_presences`
/// figure, fetched before the track so the memory presence store can tell,
/// under its lock, whether the figure is due ([`PeakMeter::period`]).
pub struct PeakMeter {
    engine: Arc<Engine>,
    now: u64,
}

impl PeakMeter {
    /// With `now` in epoch seconds (the track's own clock reading).
    pub fn new(py: Python<'_>, now: u64) -> PyResult<Self> {
        Ok(PeakMeter {
            engine: engine(py)?,
            now,
        })
    }

    /// The period a figure recorded now counts in, when this process's
    /// memory store keeps the figures; `None` with Redis (figures there are
    /// shared and can change outside this process: always recorded).
    pub fn period(&self) -> Option<Meter> {
        match &*self.engine {
            tenant_backend::Engine::Memory(()) => Some(Meter {
                hour: self.now / HOUR,
                generation: GENERATION.load(Ordering::Acquire),
            }),
            tenant_backend::Engine::Redis(_) => None,
        }
    }

    /// Records `tenant`'s peak of `value` present users.
    pub fn record(&self, py: Python<'_>, tenant: &TenantId, value: u64) -> PyResult<()> {
        let recorded = record_in(
            py,
            &self.engine,
            self.now,
            tenant,
            Metric::PeakPresences,
            value,
        );
        if recorded.is_err() {
            figures_changed();
        }
        recorded
    }
}

fn record_in(
    py: Python<'_>,
    engine: &Engine,
    now: u64,
    tenant: &TenantId,
    metric: Metric,
    value: u64,
) -> PyResult<()> {
    match engine {
        tenant_backend::Engine::Memory(()) => {
            let mut f = Figures::default();
            f[metric as usize] = value;
            let owner = MEMORY.add(tenant, now / HOUR, &f);
            if owner != *tenant {
                figures_changed();
                warn_other(
                    py,
                    tenant,
                    "the memory usage store holds as many tenants as it may",
                )?;
            }
        }
        tenant_backend::Engine::Redis(r) => {
            let mut owner = tenant.clone();
            // A full batch flushes its oldest, then records; after two
            // tries (others took the room), the figure goes to `-other`,
            // which always has room.
            for attempt in 0..3 {
                if attempt == 2 {
                    owner = TenantId::other();
                }
                match BATCH.record(&owner, metric, value, now, FLUSH_EVERY) {
                    Recorded::Kept => return Ok(()),
                    Recorded::Due(hour, figures) => {
                        if let Err(e) = py.detach(|| r.add(&owner, hour, &figures)) {
                            BATCH.put_back(owner.clone(), hour, &figures, now);
                            warn(
                                py,
                                format!(
                                    "usage of tenant {:?} kept in the process, not sent: {e}",
                                    owner.as_str()
                                ),
                            )?;
                        }
                        return Ok(());
                    }
                    Recorded::Full(oldest, hour, figures) => {
                        if let Err(e) = py.detach(|| r.add(&oldest, hour, &figures)) {
                            BATCH.put_back(oldest, hour, &figures, now);
                            warn_other(py, &owner, &format!("usage cannot be sent: {e}"))?;
                            owner = TenantId::other();
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// When usage was last counted as `-other` with a warning (epoch seconds).
static WARNED_OTHER: AtomicU64 = AtomicU64::new(0);
/// Seconds between two such warnings: a flood of new tenants makes one
/// line a minute, not one per request.
const WARN_OTHER_EVERY: u64 = 60;

fn warn_other(py: Python<'_>, tenant: &TenantId, why: &str) -> PyResult<()> {
    let now = now_secs();
    let last = WARNED_OTHER.load(Ordering::Relaxed);
    if now < last + WARN_OTHER_EVERY
        || WARNED_OTHER
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return Ok(());
    }
    warn(
        py,
        format!(
            "usage of tenant {:?} counted as {:?} ({why}); no tenant's figures were \
             dropped (logged at most once a minute)",
            tenant.as_str(),
            TenantId::other().as_str()
        ),
    )
}

/// Sends every pending batch (of one tenant, or all) now.
fn flush_pending(py: Python<'_>, engine: &Engine, tenant: Option<&TenantId>) -> PyResult<()> {
    let pending = BATCH.take(tenant);
    if let tenant_backend::Engine::Redis(r) = engine {
        for (t, hour, figures) in pending {
            py.detach(|| r.add(&t, hour, &figures))
                .map_err(store_error)?;
        }
    }
    Ok(())
}

/// The deque of held counts (made on first use).
#[pyfunction]
pub fn usage_held(py: Python<'_>) -> PyResult<Py<PyAny>> {
    HELD.get_or_try_init(py, || {
        Ok::<_, PyErr>(
            py.import("collections")?
                .getattr("deque")?
                .call0()?
                .unbind(),
        )
    })
    .map(|d| d.clone_ref(py))
}

/// Records the held counts, summed per tenant and metric. A held tenant
/// without a valid id (djust's own `TenantInfo` bound by djust.tenants code)
/// is logged and dropped: this runs inside whichever request hands over.
#[pyfunction]
pub fn usage_hand_over(py: Python<'_>) -> PyResult<()> {
    let Some(held) = HELD.get(py) else {
        return Ok(());
    };
    let held = held.bind(py);
    let mut sums: HashMap<(TenantId, Metric), u64> = HashMap::new();
    loop {
        // popleft until empty, not a swap: appends made meanwhile are kept.
        let item = match held.call_method0(pyo3::intern!(py, "popleft")) {
            Ok(item) => item,
            Err(e) if e.is_instance_of::<PyIndexError>(py) => break,
            Err(e) => return Err(e),
        };
        let (tenant, name): (Bound<'_, PyAny>, String) = item.extract()?;
        let m = metric(&name)?;
        let id = match tenant_backend::tenant_id_of(&tenant) {
            Ok(id) => id,
            Err(e) => {
                warn(
                    py,
                    format!("usage {name} of an invalid tenant dropped: {e}"),
                )?;
                continue;
            }
        };
        *sums.entry((id, m)).or_insert(0) += 1;
    }
    for ((id, m), n) in sums {
        record(py, &id, m, n)?;
    }
    Ok(())
}

fn metric(name: &str) -> PyResult<Metric> {
    Metric::from_name(name).ok_or_else(|| {
        let known: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        PyValueError::new_err(format!(
            "unknown usage metric {name:?} (known: {})",
            known.join(", ")
        ))
    })
}

/// Adds `value` to a count (or raises a peak) of `tenant_id`.
#[pyfunction]
#[pyo3(signature = (tenant_id, name, value=1))]
pub fn usage_record(
    py: Python<'_>,
    tenant_id: &Bound<'_, PyAny>,
    name: &str,
    value: u64,
) -> PyResult<()> {
    let tenant = id_from_py(tenant_id)?;
    tenant_backend::refuse_naming_another(py, &tenant, "usage.record")?;
    record(py, &tenant, metric(name)?, value)
}

/// A tenant id, or `"-other"` (the figures no tenant's slot could take).
fn owner_from_py(tenant_id: &Bound<'_, PyAny>) -> PyResult<TenantId> {
    if tenant_id
        .extract::<&str>()
        .is_ok_and(|s| s == crate::tenant_id::OTHER)
    {
        return Ok(TenantId::other());
    }
    id_from_py(tenant_id)
}

fn figures_dict<'py>(py: Python<'py>, f: &Figures) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for m in Metric::ALL {
        d.set_item(m.name(), f[m as usize])?;
    }
    Ok(d)
}

/// `{"hours": [(epoch seconds, {metric: n})], "days": [...], "total":
/// {metric: n}}` of `tenant_id` from `since` (epoch seconds; default: the
/// last 24 hours).
#[pyfunction]
#[pyo3(signature = (tenant_id, since=None))]
pub fn usage_get<'py>(
    py: Python<'py>,
    tenant_id: &Bound<'py, PyAny>,
    since: Option<f64>,
) -> PyResult<Bound<'py, PyDict>> {
    let tenant = owner_from_py(tenant_id)?;
    tenant_backend::refuse_naming_another(py, &tenant, "usage.get_usage")?;
    let now_hour = now_secs() / HOUR;
    let since_hour = match since {
        Some(s) if s.is_finite() && s >= 0.0 => (s as u64) / HOUR,
        Some(s) => {
            return Err(PyValueError::new_err(format!(
                "since must be a time, got {s}"
            )))
        }
        None => now_hour.saturating_sub(23),
    };
    usage_hand_over(py)?;
    let engine = engine(py)?;
    flush_pending(py, &engine, Some(&tenant))?;
    let usage: Usage = match &*engine {
        tenant_backend::Engine::Memory(()) => MEMORY.get(&tenant).since(since_hour),
        tenant_backend::Engine::Redis(r) => py
            .detach(|| r.get(&tenant, since_hour, now_hour))
            .map_err(store_error)?,
    };
    let out = PyDict::new(py);
    let rows = |buckets: &std::collections::BTreeMap<u64, Figures>,
                unit: u64|
     -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for (k, f) in buckets {
            list.append((k * unit, figures_dict(py, f)?))?;
        }
        Ok(list)
    };
    out.set_item("tenant", tenant.as_str())?;
    out.set_item("hours", rows(&usage.hours, HOUR)?)?;
    out.set_item("days", rows(&usage.days, DAY)?)?;
    out.set_item("total", figures_dict(py, &usage.total())?)?;
    Ok(out)
}

/// Tenants with recorded usage (memory: this process; Redis: a scan).
#[pyfunction]
pub fn usage_tenants(py: Python<'_>) -> PyResult<Vec<String>> {
    usage_hand_over(py)?;
    let engine = engine(py)?;
    flush_pending(py, &engine, None)?;
    let ids = match &*engine {
        tenant_backend::Engine::Memory(()) => MEMORY.tenants(),
        tenant_backend::Engine::Redis(r) => py.detach(|| r.tenants()).map_err(store_error)?,
    };
    Ok(ids.into_iter().map(|t| t.as_str().to_owned()).collect())
}

/// Sends every pending batch now (at shutdown, or before reading).
#[pyfunction]
pub fn usage_flush(py: Python<'_>) -> PyResult<()> {
    usage_hand_over(py)?;
    let engine = engine(py)?;
    flush_pending(py, &engine, None)
}

/// Forgets every figure of `tenant_id` (a deleted tenant: one created later
/// under the same id must not see them): its pending batches, and its
/// figures in memory or in Redis. Returns how many hours/days it had (memory:
/// 1 when it had any; Redis: the hashes deleted).
#[pyfunction]
pub fn usage_clear_tenant(py: Python<'_>, tenant_id: &Bound<'_, PyAny>) -> PyResult<u64> {
    let tenant = owner_from_py(tenant_id)?;
    tenant_backend::refuse_naming_another(py, &tenant, "usage.clear_tenant")?;
    usage_hand_over(py)?;
    drop(BATCH.take(Some(&tenant)));
    let engine = engine(py)?;
    match &*engine {
        tenant_backend::Engine::Memory(()) => {
            figures_changed();
            Ok(u64::from(MEMORY.clear_tenant(&tenant)))
        }
        tenant_backend::Engine::Redis(r) => {
            let now_hour = now_secs() / HOUR;
            py.detach(|| r.delete_tenant(&tenant, now_hour))
                .map_err(store_error)
        }
    }
}

/// The figures of `tenant` held by this process: the held counts are handed
/// over first; then its figures in the memory store are counted (1 when it
/// has any), or forgotten with its pending Redis batches
/// (`tenantry.lifecycle`; Redis keys are removed by their scan).
pub(super) fn purge_memory(py: Python<'_>, tenant: &TenantId, dry_run: bool) -> PyResult<usize> {
    usage_hand_over(py)?;
    if dry_run {
        return Ok(usize::from(MEMORY.has_tenant(tenant)));
    }
    drop(BATCH.take(Some(tenant)));
    figures_changed();
    Ok(usize::from(MEMORY.clear_tenant(tenant)))
}

/// Forgets the memory store's usage, every pending batch and the held counts.
#[pyfunction]
pub fn usage_clear(py: Python<'_>) -> PyResult<()> {
    if let Some(held) = HELD.get(py) {
        held.bind(py).call_method0(pyo3::intern!(py, "clear"))?;
    }
    figures_changed();
    MEMORY.clear();
    drop(BATCH.take(None));
    Ok(())
}
