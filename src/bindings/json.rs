//! [`crate::json`]'s decoder building Python objects: what the Redis
//! presence backend reads back is decoded once, in Rust, straight into the
//! dicts, lists, strs, ints and floats the caller gets (as `json.loads`
//! would make them).

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyList, PyString};

use crate::json::{self, DecodeError, Sink};

/// Object keys seen by one sink: metas repeat the same few keys (`name`,
/// `color`, …) in every record, so each is made once and shares its
/// cached hash (as `json.loads` memoises its keys).
const KEY_MEMO: usize = 32;

/// Makes Python objects; one per decoding of a batch of metas.
pub(super) struct PySink<'py> {
    py: Python<'py>,
    keys: Vec<(Box<str>, Bound<'py, PyString>)>,
    /// Dicts and lists made so far.
    containers: usize,
}

impl<'py> PySink<'py> {
    pub(super) fn new(py: Python<'py>) -> Self {
        PySink {
            py,
            keys: Vec::new(),
            containers: 0,
        }
    }

    /// One JSON value as a Python object; a malformed one is a `ValueError`
    /// naming what and where.
    pub(super) fn decode(&mut self, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        json::decode(data, self).map_err(|e| match e {
            DecodeError::Sink(e) => e,
            syntax => pyo3::exceptions::PyValueError::new_err(syntax.to_string()),
        })
    }

    /// Like [`PySink::decode`], and whether the value is flat: no dict or
    /// list inside it (a copy of a flat dict shares nothing mutable).
    pub(super) fn decode_flat(&mut self, data: &[u8]) -> PyResult<(Bound<'py, PyAny>, bool)> {
        let before = self.containers;
        let value = self.decode(data)?;
        Ok((value, self.containers - before <= 1))
    }

    fn key(&mut self, key: &str) -> Bound<'py, PyString> {
        if let Some((_, k)) = self.keys.iter().find(|(text, _)| &**text == key) {
            return k.clone();
        }
        let k = PyString::new(self.py, key);
        if self.keys.len() < KEY_MEMO {
            self.keys.push((key.into(), k.clone()));
        }
        k
    }
}

impl<'py> Sink for PySink<'py> {
    type Value = Bound<'py, PyAny>;
    type Object = Bound<'py, PyDict>;
    type Array = Bound<'py, PyList>;
    type Error = PyErr;

    fn null(&mut self) -> PyResult<Self::Value> {
        Ok(self.py.None().into_bound(self.py))
    }

    fn boolean(&mut self, value: bool) -> PyResult<Self::Value> {
        Ok(pyo3::types::PyBool::new(self.py, value)
            .to_owned()
            .into_any())
    }

    fn int(&mut self, value: i64) -> PyResult<Self::Value> {
        Ok(value.into_pyobject(self.py)?.into_any())
    }

    fn big_int(&mut self, digits: &str) -> PyResult<Self::Value> {
        self.py.get_type::<pyo3::types::PyInt>().call1((digits,))
    }

    fn float(&mut self, value: f64) -> PyResult<Self::Value> {
        Ok(PyFloat::new(self.py, value).into_any())
    }

    fn string(&mut self, value: &str) -> PyResult<Self::Value> {
        Ok(PyString::new(self.py, value).into_any())
    }

    fn object(&mut self) -> PyResult<Self::Object> {
        self.containers += 1;
        Ok(PyDict::new(self.py))
    }

    fn insert(&mut self, object: &mut Self::Object, key: &str, value: Self::Value) -> PyResult<()> {
        let key = self.key(key);
        object.set_item(key, value)
    }

    fn end_object(&mut self, object: Self::Object) -> PyResult<Self::Value> {
        Ok(object.into_any())
    }

    fn array(&mut self) -> PyResult<Self::Array> {
        self.containers += 1;
        Ok(PyList::empty(self.py))
    }

    fn push(&mut self, array: &mut Self::Array, value: Self::Value) -> PyResult<()> {
        array.append(value)
    }

    fn end_array(&mut self, array: Self::Array) -> PyResult<Self::Value> {
        Ok(array.into_any())
    }
}
