//! The one place where Rust errors become Python exceptions.
//!
//! Hierarchy (all importable from `nemo_curator._core`):
//! `CuratorCoreError` (base, subclass of `RuntimeError`)
//!   ├─ `ConfigError`: invalid stage spec or scheduler config
//!   ├─ `InfeasibleError`: resources no node of the cluster can ever offer
//!   └─ `ProtocolError`: an event that does not match the scheduler's state (a driver bug)

use curator_core::CoreError;
use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

create_exception!(nemo_curator._core, CuratorCoreError, PyRuntimeError);
create_exception!(nemo_curator._core, ConfigError, CuratorCoreError);
create_exception!(nemo_curator._core, InfeasibleError, CuratorCoreError);
create_exception!(nemo_curator._core, ProtocolError, CuratorCoreError);

/// Wrapper so `?` turns a core error into the right Python exception.
pub struct PyCoreError(pub CoreError);

impl From<CoreError> for PyCoreError {
    fn from(e: CoreError) -> Self {
        Self(e)
    }
}

impl From<PyCoreError> for PyErr {
    fn from(e: PyCoreError) -> PyErr {
        let msg = e.0.to_string();
        match e.0 {
            CoreError::Config(_) => ConfigError::new_err(msg),
            CoreError::Infeasible { .. } => InfeasibleError::new_err(msg),
            CoreError::Protocol(_) => ProtocolError::new_err(msg),
        }
    }
}

/// Errors raised by the Arrow bridge that are not core errors are plain `ValueError`s.
pub fn value_error(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CuratorCoreError", py.get_type::<CuratorCoreError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("InfeasibleError", py.get_type::<InfeasibleError>())?;
    m.add("ProtocolError", py.get_type::<ProtocolError>())?;
    Ok(())
}
