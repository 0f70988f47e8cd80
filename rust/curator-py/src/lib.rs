//! `nemo_curator._core`: the native half of nemo-curator-rs.
//!
//! Each concept lives in its own module and registers its Python classes here:
//! - `scheduler`: the streaming scheduler (wraps `curator_core::Scheduler`),
//! - `arrow`: every Arrow <-> Python conversion (PyCapsule interface, zero-copy),
//! - `codec`: the Ray Data executor's task codec (tasks <-> one Arrow block, one row per task),
//! - `ledger`: the per-block count ledger of the Ray Data executor,
//! - `planning`: the Ray Data executor's plan (segments, pools, blocks),
//! - `watch`: the Ray Data executor's run bookkeeping (worker calls, stalls, claims),
//! - `errors`: the one mapping from core errors to Python exceptions.

use pyo3::prelude::*;

mod arrow;
mod codec;
mod errors;
mod ledger;
mod planning;
mod scheduler;
mod watch;

/// True when this extension was compiled with optimisations.
const RELEASE_BUILD: bool = !cfg!(debug_assertions);

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("RELEASE_BUILD", RELEASE_BUILD)?;
    errors::register(m)?;
    scheduler::register(m)?;
    codec::register(m)?;
    ledger::register(m)?;
    planning::register(m)?;
    watch::register(m)?;
    Ok(())
}
