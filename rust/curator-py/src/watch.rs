//! Python face of `curator_core::watch`: the Ray Data executor's run bookkeeping.
//!
//! `RunBook` is what the job's `InputStore` actor holds: per run, the refs of the initial task lists
//! and a `CallBook`. `StallClock`, `starved` and `Claims` are the driver's.

use std::collections::HashMap;

use curator_core::{CallBook, Claims as CoreClaims, NodeRoom, Stall, StallClock as CoreClock};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::errors::PyCoreError;

/// A run's bookkeeping and the refs of its initial task lists (None once released).
type Run = (CallBook, Vec<Option<Py<PyAny>>>);

/// Per run of a Ray job: its initial task lists (object refs) and what its workers report.
#[pyclass(module = "nemo_curator._core")]
#[derive(Default)]
pub struct RunBook {
    runs: HashMap<String, Run>,
}

impl RunBook {
    fn run(&mut self, run_id: &str) -> &mut Run {
        self.runs.entry(run_id.to_string()).or_default()
    }
}

#[pymethods]
impl RunBook {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Holds the run's initial task lists (`refs`).
    fn put(&mut self, run_id: &str, refs: Vec<Py<PyAny>>) {
        let book = CallBook::new(refs.len());
        self.runs.insert(
            run_id.to_string(),
            (book, refs.into_iter().map(Some).collect()),
        );
    }

    /// The ref of list `index`; `ConfigError` when it was released already.
    fn take(&mut self, py: Python<'_>, run_id: &str, index: usize) -> PyResult<Py<PyAny>> {
        let (book, refs) = self.run(run_id);
        book.take(index).map_err(PyCoreError)?;
        Ok(refs[index]
            .as_ref()
            .map(|r| r.clone_ref(py))
            .unwrap_or_else(|| py.None()))
    }

    /// Lets the lists go (their refs are dropped).
    fn release(&mut self, run_id: &str, indices: Vec<usize>) {
        if let Some((book, refs)) = self.runs.get_mut(run_id) {
            for i in book.release(&indices) {
                refs[i] = None;
            }
        }
    }

    fn drop_run(&mut self, run_id: &str) {
        self.runs.remove(run_id);
    }

    /// Lists still held, per run.
    fn held(&self) -> HashMap<String, usize> {
        self.runs
            .iter()
            .map(|(k, (b, _))| (k.clone(), b.held()))
            .collect()
    }

    #[pyo3(signature = (run_id, stage, worker, task_id, started, now))]
    fn report(
        &mut self,
        run_id: &str,
        stage: usize,
        worker: &str,
        task_id: Option<&str>,
        started: f64,
        now: f64,
    ) {
        self.run(run_id)
            .0
            .report(stage, worker, task_id, started, now);
    }

    /// Per stage: (first task of its oldest running batch, its start) among reports fresher than `fresh`.
    fn oldest(&mut self, run_id: &str, now: f64, fresh: f64) -> HashMap<usize, (String, f64)> {
        self.run(run_id).0.oldest(now, fresh).into_iter().collect()
    }

    fn timed_out(
        &mut self,
        run_id: &str,
        stage: usize,
        task_ids: Vec<String>,
        limit: f64,
        call: &str,
    ) {
        self.run(run_id).0.timed_out(stage, task_ids, limit, call);
    }

    /// An attempt of `call` begins: (earlier attempts whose worker died, the run's timed-out batches
    /// as {(stage, task ids): (times, limit)}).
    fn begin<'py>(
        &mut self,
        py: Python<'py>,
        run_id: &str,
        call: &str,
    ) -> PyResult<(u32, Bound<'py, PyDict>)> {
        let book = &mut self.run(run_id).0;
        let died = book.begin(call);
        let out = PyDict::new(py);
        for ((stage, ids), value) in book.all_timeouts() {
            out.set_item((*stage, PyTuple::new(py, ids)?), *value)?;
        }
        Ok((died, out))
    }
}

/// `curator_core::StallClock`: whether a run still makes progress.
#[pyclass(module = "nemo_curator._core")]
pub struct StallClock(CoreClock);

#[pymethods]
impl StallClock {
    #[new]
    fn new(timeout: f64, now: f64) -> Self {
        Self(CoreClock::new(timeout, now))
    }

    fn progress(&mut self, state: Vec<u64>, now: f64) {
        self.0.progress(state, now);
    }

    /// "wait", "warn" or "fail" after a poll without output (`state`: the operators' fingerprint).
    fn quiet(&mut self, state: Vec<u64>, now: f64) -> &'static str {
        match self.0.quiet(state, now) {
            Stall::Wait => "wait",
            Stall::Warn => "warn",
            Stall::Fail => "fail",
        }
    }

    fn busy(&mut self, now: f64) {
        self.0.busy(now);
    }

    fn idle(&self, now: f64) -> f64 {
        self.0.idle(now)
    }
}

/// True when none of the `waiting` (cpus, gpus) requests fits any node's `free` (cpus, gpus).
#[pyfunction]
fn starved(waiting: Vec<(f64, f64)>, free: Vec<(f64, f64)>) -> bool {
    curator_core::starved(&waiting, &free)
}

/// `curator_core::Claims`: what the runs of this process reserved per node.
#[pyclass(module = "nemo_curator._core")]
#[derive(Default)]
pub struct Claims(CoreClaims);

#[pymethods]
impl Claims {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Run `token` reserves {node id: (cpus, gpus)}.
    fn add(&mut self, token: &str, per_node: &Bound<'_, PyDict>) -> PyResult<()> {
        self.0.add(token, per_node.extract()?);
        Ok(())
    }

    fn remove(&mut self, token: &str) {
        self.0.remove(token);
    }

    fn __bool__(&self) -> bool {
        !self.0.is_empty()
    }

    /// Free (cpus, gpus) of each (id, cpus, gpus, total cpus, total gpus) less the claims.
    fn free(&self, nodes: Vec<NodeRoom>) -> Vec<(f64, f64)> {
        self.0.free(&nodes)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RunBook>()?;
    m.add_class::<StallClock>()?;
    m.add_class::<Claims>()?;
    m.add_function(wrap_pyfunction!(starved, m)?)?;
    Ok(())
}
