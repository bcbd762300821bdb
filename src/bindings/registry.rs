//! The tenant registry: only ids with a row (or a validator's yes) are
//! tenants, and custom domains map to tenants. Lookups go through Python
//! loaders (`tenantry.registry`, the ORM) and are cached here, found and not
//! found alike, with a TTL and a bounded size ([`crate::ttl_cache`]). A
//! loaded result is cached only if no invalidation (a save or delete of a
//! row) happened while it loaded: the cache's generation check.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use super::tenant_info::{valid_id, TenantInfo, ValidId};
use crate::config::RegistrySettings;
use crate::ttl_cache::TtlCache;

fn ttl(settings: &RegistrySettings) -> Duration {
    Duration::try_from_secs_f64(settings.cache_ttl).unwrap_or(Duration::ZERO)
}

/// Tenant rows by id: `(name, settings, raw)` tuples, and ids with no row.
pub struct Registry {
    loader: Py<PyAny>,
    found: Mutex<TtlCache<Py<PyTuple>>>,
    missing: Mutex<TtlCache<()>>,
}

impl Registry {
    pub fn new(loader: Py<PyAny>, settings: &RegistrySettings) -> Self {
        Registry {
            loader,
            found: Mutex::new(TtlCache::new(settings.cache_size, ttl(settings))),
            missing: Mutex::new(TtlCache::new(settings.cache_size, ttl(settings))),
        }
    }

    /// The row's details for `id`, from the cache or the loader.
    fn details<'py>(&self, py: Python<'py>, id: &str) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let now = Instant::now();
        let found_since = {
            let mut found = self.found.lock();
            if let Some(hit) = found.get(id, now) {
                return Ok(Some(hit.bind(py).clone()));
            }
            found.generation()
        };
        let missing_since = {
            let mut missing = self.missing.lock();
            if missing.get(id, now).is_some() {
                return Ok(None);
            }
            missing.generation()
        };
        // No lock held while the loader runs: it queries the database. A
        // save or delete meanwhile invalidates, and the result is not kept.
        super::crossings::note(super::crossings::Callback::UserCode);
        let loaded = self.loader.bind(py).call1((id,))?;
        let now = Instant::now();
        if loaded.is_none() {
            self.missing
                .lock()
                .insert_loaded(missing_since, id, (), now);
            return Ok(None);
        }
        let details = loaded.cast_into::<PyTuple>()?;
        self.found
            .lock()
            .insert_loaded(found_since, id, details.clone().unbind(), now);
        Ok(Some(details))
    }

    /// The tenant `id` with its row's name, settings and raw object, or
    /// `None` when the registry does not know it.
    pub fn admit<'py>(
        &self,
        py: Python<'py>,
        id: Bound<'py, PyString>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(details) = self.details(py, &id.to_string_lossy())? else {
            return Ok(None);
        };
        // (name, settings, raw) or (name, settings, raw, suspended[,
        // database]): the loaders of tenantry.registry give the suspension's
        // reason or None, and the tenant's database alias or None.
        let name = details.get_item(0)?;
        let settings = details.get_item(1)?;
        let raw = details.get_item(2)?;
        let suspended = if details.len() > 3 {
            Some(details.get_item(3)?)
        } else {
            None
        };
        let database = if details.len() > 4 {
            Some(details.get_item(4)?)
        } else {
            None
        };
        // The cached dict is shared; TenantInfo copies it when first read.
        let settings = settings.cast_into::<PyDict>().ok();
        let admitted = TenantInfo::with_details(id, name, settings, raw, suspended, database)?;
        Ok(Some(Bound::new(py, admitted)?.into_any()))
    }

    pub fn invalidate(&self, id: Option<&str>) {
        match id {
            Some(id) => {
                self.found.lock().remove(id);
                self.missing.lock().remove(id);
            }
            None => {
                self.found.lock().clear();
                self.missing.lock().clear();
            }
        }
    }

    pub fn cached(&self) -> (usize, usize) {
        (self.found.lock().len(), self.missing.lock().len())
    }
}

/// Custom domains (`shop.acme-corp.com`) → tenant ids.
pub struct DomainMap {
    loader: Py<PyAny>,
    cache: Mutex<TtlCache<Option<Py<PyString>>>>,
}

impl DomainMap {
    pub fn new(loader: Py<PyAny>, settings: &RegistrySettings) -> Self {
        DomainMap {
            loader,
            cache: Mutex::new(TtlCache::new(settings.cache_size, ttl(settings))),
        }
    }

    /// The tenant id mapped to `domain` (lowercased, no port), if any.
    pub fn tenant_of<'py>(&self, py: Python<'py>, domain: &str) -> PyResult<Option<ValidId<'py>>> {
        let now = Instant::now();
        let since = {
            let mut cache = self.cache.lock();
            if let Some(hit) = cache.get(domain, now) {
                return Ok(hit.as_ref().map(|s| ValidId::Py(s.bind(py).clone())));
            }
            cache.generation()
        };
        // As for tenants: a change while loading keeps the result out.
        super::crossings::note(super::crossings::Callback::UserCode);
        let loaded = self.loader.bind(py).call1((domain,))?;
        let id = if loaded.is_none() {
            None
        } else {
            valid_id(&loaded, true)?
        };
        let stored = match &id {
            Some(ValidId::Py(s)) => Some(s.clone().unbind()),
            Some(ValidId::Rust(t)) => Some(PyString::new(py, t.as_str()).unbind()),
            None => None,
        };
        self.cache
            .lock()
            .insert_loaded(since, domain, stored, Instant::now());
        Ok(id)
    }

    pub fn invalidate(&self) {
        self.cache.lock().clear();
    }
}
