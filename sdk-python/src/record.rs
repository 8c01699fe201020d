//! `weir.Record`: one consumed record, built from the Rust SDK's `ConsumerRecord` (one copy
//! of key, value and header values into Python `bytes`).

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

/// One consumed record.
#[pyclass(module = "weir._weir", frozen, get_all)]
pub(crate) struct Record {
    topic: String,
    partition: u32,
    offset: u64,
    /// Unix ms.
    timestamp: i64,
    key: Option<Py<PyBytes>>,
    value: Py<PyBytes>,
    headers: Py<PyDict>,
}

impl Record {
    /// The Python object of a consumed record (untracked by the cycle collector:
    /// [`crate::untracked`]).
    pub(crate) fn py(py: Python<'_>, r: weir::ConsumerRecord) -> PyResult<Py<Self>> {
        let headers = PyDict::new(py);
        for h in &r.headers {
            headers.set_item(&h.key, PyBytes::new(py, &h.value))?;
        }
        let record = Self {
            topic: r.topic.to_string(),
            partition: r.partition,
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.map(|k| PyBytes::new(py, &k).unbind()),
            value: PyBytes::new(py, &r.value).unbind(),
            headers: headers.unbind(),
        };
        crate::untracked(py, record)
    }
}

#[pymethods]
impl Record {
    fn __repr__(&self, py: Python<'_>) -> String {
        let key = self
            .key
            .as_ref()
            .map_or("None".to_string(), |k| k.bind(py).to_string());
        format!(
            "Record(topic={:?}, partition={}, offset={}, timestamp={}, key={key}, value={})",
            self.topic,
            self.partition,
            self.offset,
            self.timestamp,
            self.value.bind(py),
        )
    }
}
