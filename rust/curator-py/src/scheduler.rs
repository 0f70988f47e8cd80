//! Python face of `curator_core::Scheduler`.
//!
//! Events cross in batches (one call per driver round, not one per task) and commands come back as
//! plain tuples tagged by a string, so the only per-task Python objects are the task-id ints.

use curator_core::{
    Balance, Command, CoreError, Event, Failure, FailureKind, NodeSpec, PoolSize, Resources,
    RunMetrics, Scheduler, SchedulerConfig, StageMetrics, StageSpec, TaskMeta,
};
use std::ops::Range;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::errors::{value_error, PyCoreError};
use crate::ledger::counts_into;

/// Above this many items an event batch is applied with the GIL released.
const DETACH_ABOVE: usize = 4096;

fn non_negative(owner: &str, what: &str, value: i64) -> PyResult<u64> {
    u64::try_from(value).map_err(|_| {
        PyCoreError(CoreError::Config(format!(
            "{owner}: {what} must be >= 0, got {value}"
        )))
        .into()
    })
}

fn to_usize(owner: &str, what: &str, value: i64) -> PyResult<usize> {
    Ok(non_negative(owner, what, value)? as usize)
}

/// One pipeline stage as the scheduler sees it.
#[pyclass(module = "nemo_curator._core", name = "StageSpec", frozen, get_all)]
#[derive(Clone)]
pub struct PyStageSpec {
    name: String,
    batch_size: usize,
    cpus: f64,
    gpus: f64,
    pool_size: Option<usize>,
    max_pool_size: Option<usize>,
    slots_per_actor: usize,
    max_batches_per_call: usize,
    max_retries: u32,
    queue_max_tasks: usize,
    queue_max_bytes: u64,
    max_user_retries: u32,
    ignore_failures: Option<bool>,
    max_actor_age_s: Option<f64>,
    actor_restart_interval_s: f64,
    replace_actor_on_failure: bool,
    max_batches_per_actor: Option<u64>,
    min_pool_size: usize,
    initial_pool_size: Option<usize>,
}

#[pymethods]
impl PyStageSpec {
    #[new]
    #[pyo3(signature = (
        name, *, batch_size = 1, cpus = 1.0, gpus = 0.0, pool_size = None, max_pool_size = None,
        slots_per_actor = 2, max_batches_per_call = 64, max_retries = 3, queue_max_tasks = 10_000,
        queue_max_bytes = 1_073_741_824, max_user_retries = 0, ignore_failures = None,
        max_actor_age_s = None, actor_restart_interval_s = 60.0, replace_actor_on_failure = false,
        max_batches_per_actor = None, min_pool_size = 0, initial_pool_size = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: String,
        batch_size: i64,
        cpus: f64,
        gpus: f64,
        pool_size: Option<i64>,
        max_pool_size: Option<i64>,
        slots_per_actor: i64,
        max_batches_per_call: i64,
        max_retries: i64,
        queue_max_tasks: i64,
        queue_max_bytes: i64,
        max_user_retries: i64,
        ignore_failures: Option<bool>,
        max_actor_age_s: Option<f64>,
        actor_restart_interval_s: f64,
        replace_actor_on_failure: bool,
        max_batches_per_actor: Option<i64>,
        min_pool_size: i64,
        initial_pool_size: Option<i64>,
    ) -> PyResult<Self> {
        let owner = format!("stage '{name}'");
        let retries = non_negative(&owner, "max_retries", max_retries)?;
        let user_retries = non_negative(&owner, "max_user_retries", max_user_retries)?;
        Ok(Self {
            batch_size: to_usize(&owner, "batch_size", batch_size)?,
            cpus,
            gpus,
            pool_size: pool_size
                .map(|n| to_usize(&owner, "pool_size", n))
                .transpose()?,
            max_pool_size: max_pool_size
                .map(|n| to_usize(&owner, "max_pool_size", n))
                .transpose()?,
            slots_per_actor: to_usize(&owner, "slots_per_actor", slots_per_actor)?,
            max_batches_per_call: to_usize(&owner, "max_batches_per_call", max_batches_per_call)?,
            max_retries: u32::try_from(retries).unwrap_or(u32::MAX),
            queue_max_tasks: to_usize(&owner, "queue_max_tasks", queue_max_tasks)?,
            queue_max_bytes: non_negative(&owner, "queue_max_bytes", queue_max_bytes)?,
            max_user_retries: u32::try_from(user_retries).unwrap_or(u32::MAX),
            ignore_failures,
            max_actor_age_s,
            actor_restart_interval_s,
            replace_actor_on_failure,
            max_batches_per_actor: max_batches_per_actor
                .map(|n| non_negative(&owner, "max_batches_per_actor", n))
                .transpose()?,
            min_pool_size: to_usize(&owner, "min_pool_size", min_pool_size)?,
            initial_pool_size: initial_pool_size
                .map(|n| to_usize(&owner, "initial_pool_size", n))
                .transpose()?,
            name,
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "StageSpec({:?}, batch_size={}, cpus={}, gpus={}, pool_size={:?}, max_pool_size={:?})",
            self.name, self.batch_size, self.cpus, self.gpus, self.pool_size, self.max_pool_size
        )
    }
}

impl PyStageSpec {
    fn to_core(&self) -> StageSpec {
        StageSpec {
            name: self.name.clone(),
            batch_size: self.batch_size,
            resources: Resources {
                cpus: self.cpus,
                gpus: self.gpus,
            },
            // An explicit pool size wins over a maximum.
            pool: match self.pool_size {
                Some(n) => PoolSize::Fixed(n),
                None => PoolSize::Auto {
                    max: self.max_pool_size,
                },
            },
            slots_per_actor: self.slots_per_actor,
            max_batches_per_call: self.max_batches_per_call,
            max_retries: self.max_retries,
            queue_max_tasks: self.queue_max_tasks,
            queue_max_bytes: self.queue_max_bytes,
            max_user_retries: self.max_user_retries,
            ignore_failures: self.ignore_failures,
            max_actor_age_secs: self.max_actor_age_s,
            actor_restart_interval_secs: self.actor_restart_interval_s,
            replace_actor_on_failure: self.replace_actor_on_failure,
            max_batches_per_actor: self.max_batches_per_actor,
            min_pool_size: self.min_pool_size,
            initial_pool_size: self.initial_pool_size,
        }
    }
}

/// Capacity of one node the run may use.
#[pyclass(module = "nemo_curator._core", name = "NodeSpec", frozen, get_all)]
#[derive(Clone)]
pub struct PyNodeSpec {
    id: String,
    cpus: f64,
    gpus: f64,
}

#[pymethods]
impl PyNodeSpec {
    #[new]
    #[pyo3(signature = (id, cpus, gpus = 0.0))]
    fn new(id: String, cpus: f64, gpus: f64) -> Self {
        Self { id, cpus, gpus }
    }

    fn __repr__(&self) -> String {
        format!(
            "NodeSpec({:?}, cpus={}, gpus={})",
            self.id, self.cpus, self.gpus
        )
    }
}

/// The streaming scheduler: feed it events, execute the commands `poll` returns.
#[pyclass(module = "nemo_curator._core", name = "Scheduler")]
pub struct PyScheduler {
    inner: Scheduler,
}

fn kind(user_error: bool) -> FailureKind {
    if user_error {
        FailureKind::User
    } else {
        FailureKind::Infra
    }
}

fn failure_dict<'py>(py: Python<'py>, s: &Scheduler, f: &Failure) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "stage"), f.stage)?;
    d.set_item(intern!(py, "stage_name"), &s.stage_spec(f.stage).name)?;
    d.set_item(intern!(py, "batch"), f.batch)?;
    d.set_item(intern!(py, "tasks"), PyList::new(py, &f.tasks)?)?;
    d.set_item(intern!(py, "roots"), PyList::new(py, &f.roots)?)?;
    let kind = match f.kind {
        FailureKind::User => intern!(py, "user"),
        FailureKind::Infra => intern!(py, "infra"),
    };
    d.set_item(intern!(py, "kind"), kind)?;
    d.set_item(intern!(py, "message"), &f.message)?;
    d.set_item(intern!(py, "attempts"), f.attempts)?;
    Ok(d)
}

fn command_tuple<'py>(py: Python<'py>, s: &Scheduler, c: Command) -> PyResult<Bound<'py, PyTuple>> {
    match c {
        Command::CreateActor { actor, stage, node } => {
            (intern!(py, "create"), actor, stage, node).into_pyobject(py)
        }
        Command::Submit { actor, batches } => {
            let items = batches
                .iter()
                .map(|b| (b.id, PyList::new(py, &b.tasks)?, b.attempt).into_pyobject(py))
                .collect::<PyResult<Vec<_>>>()?;
            (intern!(py, "submit"), actor, PyList::new(py, items)?).into_pyobject(py)
        }
        Command::KillActor { actor } => (intern!(py, "kill"), actor).into_pyobject(py),
        Command::Emit { tasks } => {
            (intern!(py, "emit"), PyList::new(py, &tasks)?).into_pyobject(py)
        }
        Command::Drop { tasks } => {
            (intern!(py, "drop"), PyList::new(py, &tasks)?).into_pyobject(py)
        }
        Command::RecordFailure(f) => {
            (intern!(py, "failure"), failure_dict(py, s, &f)?).into_pyobject(py)
        }
        Command::Finish => (intern!(py, "finish"),).into_pyobject(py),
        Command::Abort { reason, failure } => {
            let failure = failure.map(|f| failure_dict(py, s, &f)).transpose()?;
            (intern!(py, "abort"), reason, failure).into_pyobject(py)
        }
    }
}

fn stage_dict<'py>(py: Python<'py>, m: &StageMetrics) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &m.name)?;
    // The counts as the ledger has them too; the scheduler's clock is already in seconds.
    counts_into(&d, &m.counts, |t| t as f64 / 1e6)?;
    let gauges = [
        ("queued_tasks", m.queued_tasks),
        ("queued_bytes", m.queued_bytes),
        ("in_flight_batches", m.in_flight_batches),
        ("in_flight_tasks", m.in_flight_tasks),
        ("actors_pending", m.actors_pending),
        ("actors_ready", m.actors_ready),
        ("actors_busy", m.actors_busy),
        ("actors_idle", m.actors_idle),
        ("slots_in_use", m.slots_in_use),
    ];
    for (key, value) in gauges {
        d.set_item(key, value)?;
    }
    d.set_item("mean_batch_s", m.mean_batch_secs)?;
    d.set_item("pool_target", m.pool_target)?;
    d.set_item("output_ratio", m.output_ratio)?;
    d.set_item("backpressured", m.backpressured)?;
    d.set_item("finished", m.finished)?;
    Ok(d)
}

fn metrics_dict<'py>(py: Python<'py>, m: &RunMetrics) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let stages = m
        .stages
        .iter()
        .map(|s| stage_dict(py, s))
        .collect::<PyResult<Vec<_>>>()?;
    d.set_item("stages", PyList::new(py, stages)?)?;
    d.set_item("now", m.now)?;
    let counts = [
        ("tasks_initial", m.tasks_initial),
        ("tasks_emitted", m.tasks_emitted),
        ("tasks_failed", m.tasks_failed),
        ("tasks_queued", m.tasks_queued),
        ("tasks_in_flight", m.tasks_in_flight),
        ("actors_live", m.actors_live),
        ("calls_in_flight", m.calls_in_flight),
    ];
    for (key, value) in counts {
        d.set_item(key, value)?;
    }
    d.set_item("free_cpus", m.free_cpus)?;
    d.set_item("free_gpus", m.free_gpus)?;
    d.set_item("finished", m.finished)?;
    d.set_item("aborted", m.aborted)?;
    Ok(d)
}

fn balance_dict<'py>(py: Python<'py>, b: &Balance) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let counts = [
        ("initial", b.initial),
        ("produced", b.produced),
        ("emitted", b.emitted),
        ("consumed", b.consumed),
        ("filtered", b.filtered),
        ("failed", b.failed),
        ("queued", b.queued),
        ("in_flight", b.in_flight),
    ];
    for (key, value) in counts {
        d.set_item(key, value)?;
    }
    d.set_item("balanced", b.balanced())?;
    d.set_item("complete", b.complete())?;
    Ok(d)
}

fn same_len(what: &str, expected: usize, got: usize) -> PyResult<()> {
    if expected == got {
        Ok(())
    } else {
        Err(value_error(format!(
            "{what}: expected {expected} values, got {got}"
        )))
    }
}

impl PyScheduler {
    /// Apply finished batches (parallel lists; `attempts` None: each batch's current attempt);
    /// per batch its outputs' id range, or None when the report was ignored.
    #[allow(clippy::too_many_arguments)]
    fn apply_results(
        &mut self,
        py: Python<'_>,
        batch_ids: &[u64],
        attempts: Option<Vec<u32>>,
        n_outputs: &[usize],
        out_bytes: &[u64],
        out_items: &[u64],
        busy_s: &[f64],
    ) -> PyResult<Vec<Option<Range<u64>>>> {
        let n = batch_ids.len();
        if let Some(a) = &attempts {
            same_len("attempts", n, a.len())?;
        }
        same_len("n_outputs", n, n_outputs.len())?;
        same_len("out_bytes", n, out_bytes.len())?;
        same_len("out_items", n, out_items.len())?;
        same_len("busy_s", n, busy_s.len())?;
        let inner = &mut self.inner;
        let mut apply = || -> Result<Vec<Option<Range<u64>>>, CoreError> {
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let total = TaskMeta {
                    bytes: out_bytes[i],
                    items: out_items[i],
                };
                let (b, k, busy) = (batch_ids[i], n_outputs[i], busy_s[i]);
                out.push(match &attempts {
                    Some(a) => inner.batch_result(b, a[i], k, total, busy)?,
                    None => {
                        let ids = inner.batch_done_totals(b, k, total, busy)?;
                        (!ids.is_empty() || k == 0).then_some(ids)
                    }
                });
            }
            Ok(out)
        };
        let ranges = if n > DETACH_ABOVE / 64 {
            py.detach(apply)
        } else {
            apply()
        };
        Ok(ranges.map_err(PyCoreError)?)
    }
}

#[pymethods]
impl PyScheduler {
    #[new]
    #[pyo3(signature = (
        stages, nodes, *, ignore_failures = false, batch_timeout_s = None, call_overhead_s = 0.0005,
        rebalance_interval_s = 0.5, actor_start_s = 1.0, stage_by_stage = false,
        growth_interval_s = 0.0,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        stages: Vec<Bound<'_, PyStageSpec>>,
        nodes: Vec<Bound<'_, PyNodeSpec>>,
        ignore_failures: bool,
        batch_timeout_s: Option<f64>,
        call_overhead_s: f64,
        rebalance_interval_s: f64,
        actor_start_s: f64,
        stage_by_stage: bool,
        growth_interval_s: f64,
    ) -> PyResult<Self> {
        let stages = stages.iter().map(|s| s.get().to_core()).collect();
        let nodes = nodes
            .iter()
            .map(|n| {
                let n = n.get();
                NodeSpec {
                    id: n.id.clone(),
                    cpus: n.cpus,
                    gpus: n.gpus,
                }
            })
            .collect();
        let config = SchedulerConfig {
            ignore_failures,
            batch_timeout_secs: batch_timeout_s,
            call_overhead_secs: call_overhead_s,
            rebalance_interval_secs: rebalance_interval_s,
            actor_start_secs: actor_start_s,
            stage_by_stage,
            growth_interval_secs: growth_interval_s,
        };
        let inner = Scheduler::new(stages, nodes, config).map_err(PyCoreError)?;
        Ok(Self { inner })
    }

    /// Add first-stage inputs; returns their task ids.
    #[pyo3(signature = (bytes, items = None))]
    fn add_tasks(
        &mut self,
        py: Python<'_>,
        bytes: Vec<u64>,
        items: Option<Vec<u64>>,
    ) -> PyResult<Vec<u64>> {
        if let Some(items) = &items {
            same_len("items", bytes.len(), items.len())?;
        }
        let metas: Vec<TaskMeta> = match items {
            Some(items) => bytes
                .iter()
                .zip(items)
                .map(|(&bytes, items)| TaskMeta { bytes, items })
                .collect(),
            None => bytes
                .iter()
                .map(|&bytes| TaskMeta { bytes, items: 0 })
                .collect(),
        };
        let inner = &mut self.inner;
        let ids = if metas.len() > DETACH_ABOVE {
            py.detach(|| inner.add_tasks_range(&metas))
        } else {
            inner.add_tasks_range(&metas)
        };
        Ok(ids.map_err(PyCoreError)?.collect())
    }

    fn close_input(&mut self) {
        self.inner.close_input();
    }

    fn tick(&mut self, now: f64) -> PyResult<()> {
        Ok(self
            .inner
            .handle(Event::Tick { now })
            .map_err(PyCoreError)?)
    }

    fn actors_ready(&mut self, actors: Vec<u64>) -> PyResult<()> {
        for actor in actors {
            self.inner
                .handle(Event::ActorReady { actor })
                .map_err(PyCoreError)?;
        }
        Ok(())
    }

    fn actor_failed(&mut self, actor: u64, user_error: bool, message: String) -> PyResult<()> {
        let event = Event::ActorFailed {
            actor,
            kind: kind(user_error),
            message,
        };
        Ok(self.inner.handle(event).map_err(PyCoreError)?)
    }

    /// The node (index into the run's nodes) left the cluster: no actor is placed there again.
    fn node_lost(&mut self, node: usize) -> PyResult<()> {
        Ok(self
            .inner
            .handle(Event::NodeLost { node })
            .map_err(PyCoreError)?)
    }

    #[pyo3(signature = (batch, user_error, message, attempt = None))]
    fn batch_failed(
        &mut self,
        batch: u64,
        user_error: bool,
        message: String,
        attempt: Option<u32>,
    ) -> PyResult<()> {
        Ok(self
            .inner
            .batch_failed_attempt(batch, attempt, kind(user_error), &message)
            .map_err(PyCoreError)?)
    }

    /// Report finished batches; returns the new output task ids, batch after batch (none for a
    /// report that was ignored).
    #[pyo3(signature = (batch_ids, n_outputs, out_bytes, out_items, busy_s, attempts = None))]
    #[allow(clippy::too_many_arguments)]
    fn batches_done(
        &mut self,
        py: Python<'_>,
        batch_ids: Vec<u64>,
        n_outputs: Vec<usize>,
        out_bytes: Vec<u64>,
        out_items: Vec<u64>,
        busy_s: Vec<f64>,
        attempts: Option<Vec<u32>>,
    ) -> PyResult<Vec<u64>> {
        let ranges = self.apply_results(
            py, &batch_ids, attempts, &n_outputs, &out_bytes, &out_items, &busy_s,
        )?;
        Ok(ranges.into_iter().flatten().flatten().collect())
    }

    /// Report finished batches with the attempt each result belongs to; returns per batch the id
    /// of its first output (its outputs have consecutive ids), or None when the result was ignored
    /// (a stale attempt, a duplicate, or the run has ended): such outputs get no id.
    #[allow(clippy::too_many_arguments)]
    fn batch_results(
        &mut self,
        py: Python<'_>,
        batch_ids: Vec<u64>,
        attempts: Vec<u32>,
        n_outputs: Vec<usize>,
        out_bytes: Vec<u64>,
        out_items: Vec<u64>,
        busy_s: Vec<f64>,
    ) -> PyResult<Vec<Option<u64>>> {
        let ranges = self.apply_results(
            py,
            &batch_ids,
            Some(attempts),
            &n_outputs,
            &out_bytes,
            &out_items,
            &busy_s,
        )?;
        Ok(ranges.into_iter().map(|r| r.map(|r| r.start)).collect())
    }

    /// Reports ignored because their attempt was no longer the batch's current one.
    #[getter]
    fn stale_results(&self) -> u64 {
        self.inner.stale_results()
    }

    /// All decisions since the last poll, as tagged tuples.
    fn poll<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let commands = self.inner.poll();
        let inner = &self.inner;
        let tuples = commands
            .into_iter()
            .map(|c| command_tuple(py, inner, c))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, tuples)
    }

    #[getter]
    fn finished(&self) -> bool {
        self.inner.is_finished()
    }

    #[getter]
    fn aborted(&self) -> bool {
        self.inner.is_aborted()
    }

    #[getter]
    fn input_closed(&self) -> bool {
        self.inner.input_closed()
    }

    #[getter]
    fn now(&self) -> f64 {
        self.inner.now()
    }

    #[getter]
    fn stage_names(&self) -> Vec<String> {
        (0..self.inner.num_stages())
            .map(|s| self.inner.stage_spec(s).name.clone())
            .collect()
    }

    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        metrics_dict(py, &self.inner.metrics())
    }

    fn balance<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        balance_dict(py, &self.inner.balance())
    }

    fn roots(&self, task_id: u64) -> Vec<u64> {
        self.inner.roots(task_id)
    }

    /// Source tasks whose every descendant has ended (emitted, filtered or failed) since the last
    /// call, in completion order; each is reported once, after the poll that handed out the commands
    /// that ended its last descendants.
    fn completed_roots(&mut self) -> Vec<u64> {
        self.inner.take_completed_roots()
    }

    /// Records the core holds: {"batches", "calls", "open_roots", "groups"}; all bounded by the work
    /// queued and in flight, and all 0 after a run that finished.
    fn live_records<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let r = self.inner.live_records();
        let d = PyDict::new(py);
        d.set_item("batches", r.batches)?;
        d.set_item("calls", r.calls)?;
        d.set_item("open_roots", r.open_roots)?;
        d.set_item("groups", r.groups)?;
        Ok(d)
    }

    fn take_warnings(&mut self) -> Vec<String> {
        self.inner.take_warnings()
    }

    fn heap_bytes(&self) -> usize {
        self.inner.heap_bytes()
    }

    fn __repr__(&self) -> String {
        let b = self.inner.balance();
        let names: Vec<String> = self
            .stage_names()
            .iter()
            .map(|n| format!("{n:?}"))
            .collect();
        let state = match (self.inner.is_finished(), self.inner.is_aborted()) {
            (_, true) => "aborted",
            (true, false) => "finished",
            _ => "running",
        };
        format!(
            "Scheduler(stages=[{}], emitted={}, queued={}, in_flight={}, {state})",
            names.join(", "),
            b.emitted,
            b.queued,
            b.in_flight
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyStageSpec>()?;
    m.add_class::<PyNodeSpec>()?;
    m.add_class::<PyScheduler>()?;
    Ok(())
}
