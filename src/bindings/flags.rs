//! `tenant.flags`: a tenant's feature flags, decided by
//! [`crate::flags::FlagDefaults::decide`] (the one rule).

use pyo3::exceptions::{PyAttributeError, PyKeyError, PyTypeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString};
use pyo3::PyTraverseError;
use std::sync::Arc;

use super::config;
use super::tenant_info::type_name;

/// One tenant's flags: `flags.NAME` and `flags["NAME"]` are True or False.
#[pyclass(module = "tenantry", name = "TenantFlags", frozen)]
pub struct TenantFlags {
    tenant_id: Py<PyString>,
    /// The tenant's `settings["flags"]` (None: it names no flag).
    own: Option<Py<PyAny>>,
    compiled: Arc<config::Compiled>,
}

impl TenantFlags {
    pub fn of(
        py: Python<'_>,
        tenant_id: Py<PyString>,
        own: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let own = own.filter(|o| !o.is_none());
        if let Some(value) = &own {
            if !value.is_instance_of::<PyDict>() {
                return Err(PyTypeError::new_err(format!(
                    "tenant {}: settings[\"{}\"] must be a dict of flag names to True or \
                     False, got {}",
                    tenant_id.bind(py).repr()?.to_cow()?,
                    crate::flags::PLAN_FLAGS_KEY,
                    type_name(value)
                )));
            }
        }
        Ok(TenantFlags {
            tenant_id,
            own: own.map(Bound::unbind),
            compiled: config::current(py)?,
        })
    }

    fn decide(&self, py: Python<'_>, name: &str) -> PyResult<bool> {
        let own = match &self.own {
            None => None,
            Some(own) => match own.bind(py).cast::<PyDict>()?.get_item(name)? {
                None => None,
                Some(value) => Some(value.cast::<PyBool>().map(|b| b.is_true()).map_err(|_| {
                    PyTypeError::new_err(format!(
                        "tenant {}: settings[\"{}\"][{:?}] must be True or False, got {}",
                        self.tenant_id.bind(py).to_string_lossy(),
                        crate::flags::PLAN_FLAGS_KEY,
                        name,
                        type_name(&value)
                    ))
                })?),
            },
        };
        Ok(self.compiled.settings.tenant_flags.decide(own, name))
    }
}

#[pymethods]
impl TenantFlags {
    fn __getattr__(&self, py: Python<'_>, name: &str) -> PyResult<bool> {
        if name.starts_with('_') {
            // Python's own protocols (copy, pickle, templates' __html__).
            return Err(PyAttributeError::new_err(name.to_owned()));
        }
        self.decide(py, name)
    }

    fn __getitem__(&self, py: Python<'_>, name: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(name) = name.cast::<PyString>() else {
            return Err(PyKeyError::new_err(name.clone().unbind()));
        };
        self.decide(py, &name.to_string_lossy())
    }

    /// Every flag named by `TENANT_FLAGS` or the tenant, with its value.
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for (name, _) in self.compiled.settings.tenant_flags.iter() {
            out.set_item(name, self.decide(py, name)?)?;
        }
        if let Some(own) = &self.own {
            for key in own.bind(py).cast::<PyDict>()?.keys() {
                if let Ok(name) = key.cast::<PyString>() {
                    let name = name.to_string_lossy();
                    out.set_item(&*name, self.decide(py, &name)?)?;
                }
            }
        }
        Ok(out)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "TenantFlags({}, {})",
            self.tenant_id.bind(py).repr()?.to_cow()?,
            self.as_dict(py)?.repr()?.to_cow()?
        ))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.own)?;
        Ok(())
    }
}

/// Raises `ValueError` (saying why) when `name` cannot be a flag's name.
#[pyfunction]
pub fn check_flag_name(name: &Bound<'_, PyAny>) -> PyResult<()> {
    let Ok(text) = name.cast::<PyString>() else {
        return Err(PyTypeError::new_err(format!(
            "a flag name must be a str, got {}",
            type_name(name)
        )));
    };
    let text = text.to_string_lossy();
    crate::flags::check_name(&text).map_err(|why| {
        PyValueError::new_err(format!("{}: {why}", crate::tenant_id::preview(&text)))
    })
}
