//! `TenantInfo` and the conversion of Python values into tenant ids.

use pyo3::exceptions::PyTypeError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::types::{PyBool, PyDict, PyInt, PyString, PyTuple};
use pyo3::PyTraverseError;

use super::errors;
use crate::tenant_id::TenantId;

/// Who a request belongs to. Equal to another `TenantInfo` with the same id
/// and to the id itself as a `str`; hashes like the id.
#[pyclass(module = "tenantry", name = "TenantInfo", subclass)]
pub struct TenantInfo {
    id: Py<PyString>,
    /// `None` means "same as the id".
    name: Option<Py<PyAny>>,
    /// Created on first access, so resolving a tenant allocates no dicts.
    settings: Option<Py<PyDict>>,
    /// `settings` is the registry's cached dict: copy it before handing it
    /// out, so one request's edits never reach the next request.
    settings_shared: bool,
    metadata: Option<Py<PyDict>>,
    raw: Option<Py<PyAny>>,
    /// The suspension's reason (a str) when the registry says the tenant is
    /// suspended (docs/operations.md#suspending-a-tenant), else None.
    suspended: Option<Py<PyAny>>,
    /// The database alias holding this tenant's rows
    /// (`TENANT_DATABASE_FIELD`, docs/postgresql.md#a-database-per-tenant);
    /// None means the default database.
    database: Option<Py<PyString>>,
}

/// `value` as a database alias: None or an empty str is None (the default
/// database); any other non-str is a `TypeError` naming what was given.
fn database_alias(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Py<PyString>>> {
    let Some(value) = value else { return Ok(None) };
    if value.is_none() {
        return Ok(None);
    }
    let Ok(s) = value.cast::<PyString>() else {
        return Err(PyTypeError::new_err(format!(
            "TenantInfo database must be a database alias (a str) or None, not {}",
            type_name(value)
        )));
    };
    if s.to_cow()?.is_empty() {
        return Ok(None);
    }
    Ok(Some(s.clone().unbind()))
}

impl TenantInfo {
    /// Whether the registry says this tenant is suspended (or held for a
    /// move): admission will refuse it, so nothing is counted for it.
    pub(crate) fn is_suspended(&self) -> bool {
        self.suspended.is_some()
    }

    /// A tenant with only an id (what the built-in resolvers produce).
    pub fn from_id(py: Python<'_>, id: &TenantId) -> Self {
        TenantInfo {
            id: PyString::new(py, id.as_str()).unbind(),
            name: None,
            settings: None,
            settings_shared: false,
            metadata: None,
            raw: None,
            suspended: None,
            database: None,
        }
    }

    /// A tenant for an id already validated (see [`valid_id`]).
    pub fn from_valid(py: Python<'_>, id: ValidId<'_>) -> Self {
        let id = match id {
            ValidId::Py(s) => s.unbind(),
            ValidId::Rust(id) => PyString::new(py, id.as_str()).unbind(),
        };
        TenantInfo {
            id,
            name: None,
            settings: None,
            settings_shared: false,
            metadata: None,
            raw: None,
            suspended: None,
            database: None,
        }
    }

    /// A registry-backed tenant: `name` and `raw` as given (None = unset);
    /// `settings` is the registry's shared dict, copied on first access.
    pub fn with_details(
        id: Bound<'_, PyString>,
        name: Bound<'_, PyAny>,
        settings: Option<Bound<'_, PyDict>>,
        raw: Bound<'_, PyAny>,
        suspended: Option<Bound<'_, PyAny>>,
        database: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        Ok(TenantInfo {
            id: id.unbind(),
            name: if name.is_none() || !name.is_truthy()? {
                None
            } else {
                Some(name.unbind())
            },
            settings_shared: settings.is_some(),
            settings: settings.map(Bound::unbind),
            metadata: None,
            raw: (!raw.is_none()).then(|| raw.unbind()),
            suspended: suspended.filter(|s| !s.is_none()).map(Bound::unbind),
            database: database_alias(database.as_ref())?,
        })
    }

    pub fn id_py<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        self.id.bind(py).clone()
    }

    pub fn id_string(&self, py: Python<'_>) -> String {
        self.id.bind(py).to_string_lossy().into_owned()
    }

    /// `settings[name]` without copying the registry's shared dict: the
    /// same object until the registry reloads the tenant (rate-limit plans
    /// are cached by its identity).
    pub fn setting<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        match &self.settings {
            None => Ok(None),
            Some(d) => d.bind(py).get_item(name),
        }
    }
}

/// Turns a Python value into a validated tenant id: `str` as is, `int` (not
/// `bool`) as its decimal string, a `TenantInfo` as its id. Anything else, or
/// an invalid string, is `InvalidTenantId`.
pub fn id_from_py(value: &Bound<'_, PyAny>) -> PyResult<TenantId> {
    match id_candidate(value)? {
        Candidate::Valid(id) => Ok(id),
        Candidate::Invalid(text, err) => Err(errors::invalid_tenant_id(&text, &err)),
        Candidate::WrongType => Err(errors::invalid_tenant_type(type_name(value))),
    }
}

/// A validated id: the caller's own Python str when it was one (no copy), or
/// one made in Rust (host labels, path segments, ints).
pub enum ValidId<'py> {
    Py(Bound<'py, PyString>),
    Rust(TenantId),
}

/// `value` as an id when it is a valid one: a `str`, or (with `allow_int`)
/// an `int` that is not a `bool`. Anything else is `None`, never an error:
/// resolvers read client-influenced values.
pub fn valid_id<'py>(value: &Bound<'py, PyAny>, allow_int: bool) -> PyResult<Option<ValidId<'py>>> {
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(crate::tenant_id::is_valid(&s.to_string_lossy()).then(|| ValidId::Py(s.clone())));
    }
    if allow_int && value.is_instance_of::<PyInt>() && !value.is_instance_of::<PyBool>() {
        let text = value.str()?.to_string_lossy().into_owned();
        return Ok(TenantId::parse(&text).ok().map(ValidId::Rust));
    }
    Ok(None)
}

pub enum Candidate {
    Valid(TenantId),
    Invalid(String, crate::tenant_id::InvalidTenantId),
    WrongType,
}

/// Classifies a value without raising for bad input, for the resolvers, which
/// treat a bad value as "no tenant".
pub fn id_candidate(value: &Bound<'_, PyAny>) -> PyResult<Candidate> {
    if let Ok(s) = value.cast::<PyString>() {
        // Lossy: a lone surrogate becomes U+FFFD, which no id may contain.
        let text = s.to_string_lossy();
        return Ok(match TenantId::parse(&text) {
            Ok(id) => Candidate::Valid(id),
            Err(e) => Candidate::Invalid(text.into_owned(), e),
        });
    }
    if value.is_instance_of::<PyInt>() && !value.is_instance_of::<PyBool>() {
        // An int of any size is its decimal text; the length rule refuses absurd ones.
        let text = value.str()?.to_string_lossy().into_owned();
        return Ok(match TenantId::parse(&text) {
            Ok(id) => Candidate::Valid(id),
            Err(e) => Candidate::Invalid(text, e),
        });
    }
    if let Ok(info) = value.cast::<TenantInfo>() {
        let py = value.py();
        let text = info.borrow().id_string(py);
        return Ok(match TenantId::parse(&text) {
            Ok(id) => Candidate::Valid(id),
            Err(e) => Candidate::Invalid(text, e),
        });
    }
    Ok(Candidate::WrongType)
}

pub fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .and_then(|n| n.extract::<String>())
        .unwrap_or_else(|_| "object".to_owned())
}

fn dict_or_none(
    py: Python<'_>,
    value: Option<&Bound<'_, PyAny>>,
    what: &str,
) -> PyResult<Option<Py<PyDict>>> {
    let Some(value) = value else { return Ok(None) };
    if value.is_none() {
        return Ok(None);
    }
    // `settings or {}`: an empty mapping becomes a fresh dict of our own.
    if !value.is_truthy()? {
        return Ok(None);
    }
    if let Ok(d) = value.cast::<PyDict>() {
        return Ok(Some(d.clone().unbind()));
    }
    let converted = py.get_type::<PyDict>().call1((value,)).map_err(|_| {
        PyTypeError::new_err(format!(
            "TenantInfo {what} must be a dict, not {}",
            type_name(value)
        ))
    })?;
    Ok(Some(converted.cast_into::<PyDict>()?.unbind()))
}

#[pymethods]
impl TenantInfo {
    #[new]
    #[pyo3(signature = (tenant_id, name=None, settings=None, metadata=None, raw=None, database=None))]
    fn new(
        py: Python<'_>,
        tenant_id: &Bound<'_, PyAny>,
        name: Option<&Bound<'_, PyAny>>,
        settings: Option<&Bound<'_, PyAny>>,
        metadata: Option<&Bound<'_, PyAny>>,
        raw: Option<&Bound<'_, PyAny>>,
        database: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let id = id_from_py(tenant_id)?;
        let name = match name {
            Some(n) if n.is_truthy()? => Some(n.clone().unbind()),
            _ => None,
        };
        Ok(TenantInfo {
            id: PyString::new(py, id.as_str()).unbind(),
            name,
            settings: dict_or_none(py, settings, "settings")?,
            settings_shared: false,
            metadata: dict_or_none(py, metadata, "metadata")?,
            raw: raw.filter(|r| !r.is_none()).map(|r| r.clone().unbind()),
            suspended: None,
            database: database_alias(database)?,
        })
    }

    /// The database alias holding this tenant's rows, or None for the
    /// default database (docs/postgresql.md#a-database-per-tenant).
    #[getter]
    fn database(&self, py: Python<'_>) -> Py<PyAny> {
        match &self.database {
            Some(d) => d.clone_ref(py).into_any(),
            None => py.None(),
        }
    }

    /// The suspension's reason (a str, possibly empty) when the registry
    /// says this tenant is suspended, else None. Admission refuses a
    /// suspended tenant (503 on pages, an error frame on live views).
    #[getter]
    fn suspended(&self, py: Python<'_>) -> Py<PyAny> {
        match &self.suspended {
            Some(s) => s.clone_ref(py),
            None => py.None(),
        }
    }

    /// The tenant's feature flags: `tenant.flags.NAME` is its
    /// `settings["flags"]["NAME"]`, else `TENANT_FLAGS["NAME"]`, else False.
    #[getter]
    fn flags(&self, py: Python<'_>) -> PyResult<super::flags::TenantFlags> {
        super::flags::TenantFlags::of(
            py,
            self.id.clone_ref(py),
            self.setting(py, crate::flags::PLAN_FLAGS_KEY)?,
        )
    }

    #[getter]
    fn id(&self, py: Python<'_>) -> Py<PyString> {
        self.id.clone_ref(py)
    }

    #[getter]
    fn get_name(&self, py: Python<'_>) -> Py<PyAny> {
        match &self.name {
            Some(n) => n.clone_ref(py),
            None => self.id.clone_ref(py).into_any(),
        }
    }

    #[setter]
    fn set_name(&mut self, value: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        self.name = match value {
            Some(v) if v.is_truthy()? => Some(v.clone().unbind()),
            _ => None,
        };
        Ok(())
    }

    #[getter]
    fn get_settings(&mut self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        if self.settings_shared {
            if let Some(shared) = &self.settings {
                self.settings = Some(shared.bind(py).copy()?.unbind());
            }
            self.settings_shared = false;
        }
        Ok(self
            .settings
            .get_or_insert_with(|| PyDict::new(py).unbind())
            .clone_ref(py))
    }

    #[setter]
    fn set_settings(&mut self, py: Python<'_>, value: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        self.settings = dict_or_none(py, value, "settings")?;
        self.settings_shared = false;
        Ok(())
    }

    #[getter]
    fn get_metadata(&mut self, py: Python<'_>) -> Py<PyDict> {
        self.metadata
            .get_or_insert_with(|| PyDict::new(py).unbind())
            .clone_ref(py)
    }

    #[setter]
    fn set_metadata(&mut self, py: Python<'_>, value: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        self.metadata = dict_or_none(py, value, "metadata")?;
        Ok(())
    }

    /// The model instance or object the tenant came from, else None.
    #[getter]
    fn raw(&self, py: Python<'_>) -> Py<PyAny> {
        match &self.raw {
            Some(r) => r.clone_ref(py),
            None => py.None(),
        }
    }

    #[pyo3(signature = (key, default=None))]
    fn get_setting(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let default = default.unwrap_or_else(|| py.None());
        match &self.settings {
            Some(d) => Ok(d.bind(py).get_item(key)?.map_or(default, Bound::unbind)),
            None => Ok(default),
        }
    }

    fn __str__(&self, py: Python<'_>) -> Py<PyString> {
        self.id.clone_ref(py)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let py = slf.py();
        let this = slf.borrow();
        let cls = slf.get_type().qualname()?;
        let name = this.get_name(py);
        Ok(format!(
            "{}(id={}, name={})",
            cls.to_cow()?,
            this.id.bind(py).repr()?.to_cow()?,
            name.bind(py).repr()?.to_cow()?
        ))
    }

    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        self.id.bind(py).hash()
    }

    fn __bool__(&self) -> bool {
        true
    }

    fn __richcmp__(
        &self,
        py: Python<'_>,
        other: &Bound<'_, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let other_id = if let Ok(info) = other.cast::<TenantInfo>() {
            Some(info.borrow().id.clone_ref(py))
        } else if let Ok(s) = other.cast::<PyString>() {
            Some(s.clone().unbind())
        } else {
            None
        };
        let Some(other_id) = other_id else {
            return Ok(py.NotImplemented());
        };
        let equal = self.id.bind(py).as_any().eq(other_id.bind(py))?;
        let result = match op {
            CompareOp::Eq => equal,
            CompareOp::Ne => !equal,
            _ => return Ok(py.NotImplemented()),
        };
        Ok(PyBool::new(py, result).to_owned().into_any().unbind())
    }

    /// Pickle, copy and deepcopy rebuild through the constructor.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let this = slf.borrow();
        let args = PyTuple::new(
            py,
            [
                this.id.clone_ref(py).into_any(),
                this.name
                    .as_ref()
                    .map_or_else(|| py.None(), |n| n.clone_ref(py)),
                this.settings
                    .as_ref()
                    .map_or_else(|| py.None(), |d| d.clone_ref(py).into_any()),
                this.metadata
                    .as_ref()
                    .map_or_else(|| py.None(), |d| d.clone_ref(py).into_any()),
                this.raw
                    .as_ref()
                    .map_or_else(|| py.None(), |r| r.clone_ref(py)),
                this.database
                    .as_ref()
                    .map_or_else(|| py.None(), |d| d.clone_ref(py).into_any()),
            ],
        )?;
        PyTuple::new(py, [slf.get_type().into_any(), args.into_any()])
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.name)?;
        visit.call(&self.settings)?;
        visit.call(&self.metadata)?;
        visit.call(&self.raw)?;
        visit.call(&self.suspended)?;
        visit.call(&self.database)?;
        Ok(())
    }

    fn __clear__(&mut self) {
        self.name = None;
        self.settings = None;
        self.metadata = None;
        self.raw = None;
        self.suspended = None;
        self.database = None;
    }
}

/// Validates a tenant id the way every API entry point does; returns the id.
#[pyfunction]
pub fn validate_tenant_id(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Py<PyString>> {
    let id = id_from_py(value)?;
    Ok(PyString::new(py, id.as_str()).unbind())
}

/// True when `value` (str, int or TenantInfo) would be accepted as a tenant id.
#[pyfunction]
pub fn is_valid_tenant_id(value: &Bound<'_, PyAny>) -> PyResult<bool> {
    Ok(matches!(id_candidate(value)?, Candidate::Valid(_)))
}
