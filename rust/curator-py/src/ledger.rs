//! The Ray Data executor's count ledger: per stage, how many batches ran and how many tasks went in,
//! came out or failed (the core's `StageCounts`), and which worker processes ran them. Tasks travel
//! as rows of Arrow blocks (`codec.rs`); the ledger rides on one row per worker call.
//!
//! Workers count what each `process_batch` call did and the counts travel with the data (one
//! encoded ledger on one row of each output block), so a block that Ray recomputes after a worker
//! died is counted once: only the attempt whose output survives is ever seen. The driver merges the
//! ledgers of the final blocks and checks that every task is accounted for: each stage's input is
//! the previous stage's output, what a stage received either ran or failed, and the last stage's
//! output is what the driver received.
//!
//! Besides the counts, each stage's entry holds what the run report needs: items and bytes in and
//! out, seconds inside `process_batch`, the clock of its first batch start and last batch end (the
//! earliest and the latest win when ledgers merge) and the ids of the worker processes that ran it
//! (a set: merging is a union).
//!
//! The counts are `curator_core::StageCounts`, the struct behind the scheduler's metrics too (one
//! definition, one set of Python keys: [`counts_into`]); the ledger adds the set of worker ids.
//!
//! Encoding: `b"CLG3"`, the stage count (u32 LE), then per stage the
//! [`STAGE_COUNTERS`] u64 LE counters in the order of `StageCounts::counters`, the first start and
//! last end in microseconds since the epoch (u64 LE each, 0: none), the number of worker ids (u32
//! LE) and the ids (u64 LE, ascending).

use std::collections::BTreeSet;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};
use pyo3_arrow::PyTable;

use arrow_array::cast::AsArray;
use arrow_array::Array;
use arrow_schema::DataType;

use curator_core::{StageCounts, STAGE_COUNTERS};

use crate::errors::value_error;

const MAGIC: &[u8; 4] = b"CLG3";
const HEADER: usize = MAGIC.len() + 4;
/// Fixed bytes per stage: the counters, first start, last end, worker count.
const STAGE_FIXED: usize = (STAGE_COUNTERS + 2) * 8 + 4;

/// The Python keys of [`StageCounts`], in the order [`counts_into`] sets them
/// (`nemo_curator._core.STAGE_COUNT_FIELDS`).
pub(crate) const COUNT_FIELDS: [&str; STAGE_COUNTERS + 2] = [
    "tasks_in",
    "bytes_in",
    "items_in",
    "tasks_done",
    "tasks_out",
    "bytes_out",
    "items_out",
    "tasks_failed",
    "tasks_filtered",
    "batches_done",
    "batches_failed",
    "retries",
    "calls",
    "actors_created",
    "actors_died",
    "busy_s",
    "first_start",
    "last_end",
];

/// Sets the [`COUNT_FIELDS`] of `counts` in `d`: the one way counts reach Python, for the
/// scheduler's metrics and the ledger alike. `clock` turns the microsecond clocks into seconds on
/// the caller's clock.
pub(crate) fn counts_into(
    d: &Bound<'_, PyDict>,
    counts: &StageCounts,
    clock: impl Fn(u64) -> f64,
) -> PyResult<()> {
    let values = counts.counters();
    // The counters but the last (busy nanoseconds) are plain counts.
    for (key, value) in COUNT_FIELDS.iter().zip(&values[..STAGE_COUNTERS - 1]) {
        d.set_item(*key, *value)?;
    }
    d.set_item(COUNT_FIELDS[STAGE_COUNTERS - 1], counts.busy_secs())?;
    d.set_item(
        COUNT_FIELDS[STAGE_COUNTERS],
        counts.first_start_us.map(&clock),
    )?;
    d.set_item(
        COUNT_FIELDS[STAGE_COUNTERS + 1],
        counts.last_end_us.map(&clock),
    )?;
    Ok(())
}

/// One stage's entry: its counts and the ids of the worker processes that ran it (a set: merging
/// is a union).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LedgerStage {
    pub counts: StageCounts,
    pub workers: BTreeSet<u64>,
}

impl LedgerStage {
    fn add(&mut self, other: &LedgerStage) {
        self.counts.merge(&other.counts);
        self.workers.extend(other.workers.iter().copied());
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        for value in self.counts.counters() {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(&self.counts.first_start_us.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&self.counts.last_end_us.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&(self.workers.len() as u32).to_le_bytes());
        for id in &self.workers {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }

    /// One stage's entry from the front of `data`; returns it and the bytes it took.
    fn decode_from(data: &[u8]) -> Result<(Self, usize), String> {
        let fixed = STAGE_FIXED;
        if data.len() < fixed {
            return Err(format!(
                "encoded ledger ends inside a stage entry ({} of {fixed} bytes)",
                data.len()
            ));
        }
        let u64_at =
            |i: usize| u64::from_le_bytes(data[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let mut s = LedgerStage::default();
        for (i, slot) in s.counts.counters_mut().into_iter().enumerate() {
            *slot = u64_at(i);
        }
        s.counts.first_start_us = Some(u64_at(STAGE_COUNTERS)).filter(|&t| t > 0);
        s.counts.last_end_us = Some(u64_at(STAGE_COUNTERS + 1)).filter(|&t| t > 0);
        let at = (STAGE_COUNTERS + 2) * 8;
        let n = u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize;
        let len = fixed + n * 8;
        if data.len() < len {
            return Err(format!(
                "encoded ledger ends inside the worker ids of a stage ({} of {len} bytes)",
                data.len()
            ));
        }
        s.workers = data[fixed..len]
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        Ok((s, len))
    }
}

/// Per-stage counts of one run (or of the part of it seen so far).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    stages: Vec<LedgerStage>,
}

impl Counts {
    pub fn new(num_stages: usize) -> Self {
        Self {
            stages: vec![LedgerStage::default(); num_stages],
        }
    }

    fn stage_mut(&mut self, stage: usize) -> Result<&mut LedgerStage, String> {
        let n = self.stages.len();
        self.stages
            .get_mut(stage)
            .ok_or_else(|| format!("stage index {stage} out of range for a ledger of {n} stages"))
    }

    pub fn add(&mut self, stage: usize, counts: &LedgerStage) -> Result<(), String> {
        self.stage_mut(stage)?.add(counts);
        Ok(())
    }

    pub fn merge(&mut self, other: &Counts) -> Result<(), String> {
        if other.stages.len() != self.stages.len() {
            return Err(format!(
                "cannot merge a ledger of {} stages into one of {}",
                other.stages.len(),
                self.stages.len()
            ));
        }
        for (mine, theirs) in self.stages.iter_mut().zip(&other.stages) {
            mine.add(theirs);
        }
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.stages.len() * STAGE_FIXED);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.stages.len() as u32).to_le_bytes());
        for stage in &self.stages {
            stage.encode_into(&mut out);
        }
        out
    }

    pub fn decode(data: &[u8]) -> Result<Self, String> {
        if data.len() < HEADER || &data[..MAGIC.len()] != MAGIC {
            return Err("not an encoded ledger (bad header)".to_string());
        }
        let n = u32::from_le_bytes(data[MAGIC.len()..HEADER].try_into().expect("4 bytes")) as usize;
        let mut rest = &data[HEADER..];
        let mut stages = Vec::with_capacity(n.min(rest.len() / STAGE_FIXED + 1));
        for _ in 0..n {
            let (stage, used) = LedgerStage::decode_from(rest)?;
            stages.push(stage);
            rest = &rest[used..];
        }
        if !rest.is_empty() {
            return Err(format!(
                "encoded ledger of {n} stages has {} bytes too many",
                rest.len()
            ));
        }
        Ok(Self { stages })
    }

    /// Merges an encoded ledger into this one.
    pub fn merge_encoded(&mut self, data: &[u8]) -> Result<(), String> {
        let other = Self::decode(data)?;
        self.merge(&other)
    }

    /// Every way in which the counts do not balance (empty when they do), in stage order.
    pub fn imbalances(
        &self,
        stage_names: &[String],
        initial_tasks: u64,
        final_tasks: u64,
        failure_records: u64,
    ) -> Vec<String> {
        let name = |i: usize| {
            stage_names
                .get(i)
                .map_or_else(|| format!("stage {i}"), |s| format!("stage '{s}'"))
        };
        let mut problems = Vec::new();
        let mut expected_in = initial_tasks;
        let mut what_in = "the initial tasks".to_string();
        for (i, stage) in self.stages.iter().enumerate() {
            let s = &stage.counts;
            if s.tasks_in != expected_in {
                problems.push(format!(
                    "{} received {} tasks but {} were {expected_in}",
                    name(i),
                    s.tasks_in,
                    what_in
                ));
            }
            if s.tasks_failed > s.tasks_in {
                problems.push(format!(
                    "{} failed on {} tasks in {} batches but ran {} tasks in {} batches",
                    name(i),
                    s.tasks_failed,
                    s.batches_failed,
                    s.tasks_in,
                    s.batches()
                ));
            }
            if s.tasks_filtered > s.tasks_in.saturating_sub(s.tasks_failed) {
                problems.push(format!(
                    "{} filtered {} tasks but ran {} tasks of which {} failed",
                    name(i),
                    s.tasks_filtered,
                    s.tasks_in,
                    s.tasks_failed
                ));
            }
            expected_in = s.tasks_out;
            what_in = format!("the outputs of {}", name(i));
        }
        if !self.stages.is_empty() && final_tasks != expected_in {
            problems.push(format!(
                "the driver received {final_tasks} final tasks but {what_in} were {expected_in}"
            ));
        }
        let failed: u64 = self.stages.iter().map(|s| s.counts.batches_failed).sum();
        if failed != failure_records {
            problems.push(format!(
                "{failed} batches failed but the failure report lists {failure_records}"
            ));
        }
        problems
    }
}

/// Per-stage task counts of a run (`nemo_curator._core.Ledger`).
#[pyclass(module = "nemo_curator._core", name = "Ledger")]
pub struct PyLedger {
    counts: Counts,
}

fn non_negative(name: &str, value: i64) -> PyResult<u64> {
    u64::try_from(value).map_err(|_| value_error(format!("{name} must be >= 0, got {value}")))
}

/// Seconds must be finite and >= 0.
fn check_seconds(name: &str, seconds: f64) -> PyResult<()> {
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(value_error(format!(
            "{name} must be a finite number >= 0, got {seconds}"
        )));
    }
    Ok(())
}

#[pymethods]
impl PyLedger {
    #[new]
    fn new(num_stages: usize) -> Self {
        Self {
            counts: Counts::new(num_stages),
        }
    }

    /// Counts one or more `process_batch` calls of `stage`. The keyword-only arguments feed the
    /// run report: `busy_s` (seconds inside `process_batch`), `start` / `end` (epoch seconds of the
    /// first batch start and the last batch end) and `worker` (an id of the worker process).
    #[pyo3(signature = (
        stage, tasks_in, tasks_out, failed_tasks=0, batches=1, failed_batches=0, *,
        filtered_tasks=0, calls=0, items_in=0, items_out=0, bytes_in=0, bytes_out=0,
        busy_s=0.0, start=None, end=None, worker=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        stage: usize,
        tasks_in: i64,
        tasks_out: i64,
        failed_tasks: i64,
        batches: i64,
        failed_batches: i64,
        filtered_tasks: i64,
        calls: i64,
        items_in: i64,
        items_out: i64,
        bytes_in: i64,
        bytes_out: i64,
        busy_s: f64,
        start: Option<f64>,
        end: Option<f64>,
        worker: Option<u64>,
    ) -> PyResult<()> {
        let batches = non_negative("batches", batches)?;
        let failed_batches = non_negative("failed_batches", failed_batches)?;
        if failed_batches > batches {
            return Err(value_error(format!(
                "failed_batches ({failed_batches}) must be <= batches ({batches})"
            )));
        }
        let tasks_in = non_negative("tasks_in", tasks_in)?;
        let failed_tasks = non_negative("failed_tasks", failed_tasks)?;
        let mut entry = LedgerStage {
            counts: StageCounts {
                tasks_in,
                // More failed than ran is kept as said: `check` reports it.
                tasks_done: tasks_in.saturating_sub(failed_tasks),
                tasks_out: non_negative("tasks_out", tasks_out)?,
                tasks_failed: failed_tasks,
                tasks_filtered: non_negative("filtered_tasks", filtered_tasks)?,
                batches_done: batches - failed_batches,
                batches_failed: failed_batches,
                calls: non_negative("calls", calls)?,
                items_in: non_negative("items_in", items_in)?,
                items_out: non_negative("items_out", items_out)?,
                bytes_in: non_negative("bytes_in", bytes_in)?,
                bytes_out: non_negative("bytes_out", bytes_out)?,
                ..StageCounts::default()
            },
            workers: worker.into_iter().collect(),
        };
        check_seconds("busy_s", busy_s)?;
        entry.counts.add_busy_secs(busy_s);
        if let Some(t) = start {
            check_seconds("start", t)?;
            entry.counts.started_at(t);
        }
        if let Some(t) = end {
            check_seconds("end", t)?;
            entry.counts.ended_at(t);
        }
        let counts = entry;
        self.counts.add(stage, &counts).map_err(value_error)
    }

    /// Adds another ledger (a `Ledger` or its `to_bytes()` encoding) to this one.
    fn merge(&mut self, other: &Bound<'_, PyAny>) -> PyResult<()> {
        if let Ok(ledger) = other.cast::<PyLedger>() {
            let theirs = ledger.borrow().counts.clone();
            return self.counts.merge(&theirs).map_err(value_error);
        }
        let data: &[u8] = other.extract().map_err(|_| {
            value_error(format!(
                "Ledger.merge expects a Ledger or bytes, got {}",
                other
                    .get_type()
                    .name()
                    .map_or("?".into(), |n| n.to_string())
            ))
        })?;
        self.counts.merge_encoded(data).map_err(value_error)
    }

    /// Merges every non-null value of the binary column `column` of an Arrow table (read in
    /// place); returns how many ledgers were merged.
    fn merge_column(&mut self, table: &Bound<'_, PyAny>, column: &str) -> PyResult<usize> {
        let (batches, schema) = table.extract::<PyTable>()?.into_inner();
        let index = schema
            .index_of(column)
            .map_err(|_| value_error(format!("the table has no column '{column}'")))?;
        let mut merged = 0;
        for batch in &batches {
            let array = batch.column(index);
            let result = match array.data_type() {
                DataType::Binary => merge_values(&mut self.counts, array.as_binary::<i32>()),
                DataType::LargeBinary => merge_values(&mut self.counts, array.as_binary::<i64>()),
                other => Err(format!("column '{column}' has type {other}, not binary")),
            };
            merged += result.map_err(value_error)?;
        }
        Ok(merged)
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.counts.encode())
    }

    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        Ok(Self {
            counts: Counts::decode(data).map_err(value_error)?,
        })
    }

    #[getter]
    fn num_stages(&self) -> usize {
        self.counts.stages.len()
    }

    /// Counts of every stage, as dicts: the `STAGE_COUNT_FIELDS` (as the scheduler's metrics have
    /// them; `first_start` / `last_end` in epoch seconds or None), `workers` (how many distinct
    /// worker processes ran the stage) and, under their older names, `batches` (done + failed),
    /// `failed_tasks`, `failed_batches` and `filtered_tasks`.
    fn stages<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let dicts = self
            .counts
            .stages
            .iter()
            .map(|s| {
                let d = PyDict::new(py);
                counts_into(&d, &s.counts, |t| t as f64 / 1e6)?;
                let c = &s.counts;
                d.set_item("batches", c.batches())?;
                d.set_item("failed_tasks", c.tasks_failed)?;
                d.set_item("failed_batches", c.batches_failed)?;
                d.set_item("filtered_tasks", c.tasks_filtered)?;
                d.set_item("workers", s.workers.len())?;
                Ok(d)
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, dicts)
    }

    /// Why the counts do not balance (an empty list when they do): `initial_tasks` went into the
    /// first stage, the driver received `final_tasks`, and the failure report has
    /// `failure_records` entries.
    #[pyo3(signature = (initial_tasks, final_tasks, failure_records, stage_names=None))]
    fn check(
        &self,
        initial_tasks: i64,
        final_tasks: i64,
        failure_records: i64,
        stage_names: Option<Vec<String>>,
    ) -> PyResult<Vec<String>> {
        Ok(self.counts.imbalances(
            &stage_names.unwrap_or_default(),
            non_negative("initial_tasks", initial_tasks)?,
            non_negative("final_tasks", final_tasks)?,
            non_negative("failure_records", failure_records)?,
        ))
    }

    /// The run's metrics in the shape of `Scheduler.metrics()`, so both executors feed the run
    /// monitor alike: a stage's `tasks_in` is at least what reached it (the initial tasks, the
    /// previous stage's outputs), `actors_created` the distinct workers of an actor stage, clocks
    /// in seconds since `epoch0`; queues and work in flight are unknown (None) until `finished`.
    #[pyo3(signature = (stage_names, initial_tasks, final_tasks, finished, actor_stages, epoch0))]
    #[allow(clippy::too_many_arguments)]
    fn metrics<'py>(
        &self,
        py: Python<'py>,
        stage_names: Vec<String>,
        initial_tasks: u64,
        final_tasks: u64,
        finished: bool,
        actor_stages: Vec<bool>,
        epoch0: f64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let n = self.counts.stages.len();
        if stage_names.len() != n || actor_stages.len() != n {
            return Err(value_error(format!(
                "metrics: expected {n} stage names and actor flags, got {} and {}",
                stage_names.len(),
                actor_stages.len()
            )));
        }
        let empty = finished.then_some(0u64);
        let mut reached = initial_tasks;
        let mut failed = 0;
        let mut stages = Vec::with_capacity(n);
        for ((stage, name), actor) in self
            .counts
            .stages
            .iter()
            .zip(&stage_names)
            .zip(&actor_stages)
        {
            let mut counts = stage.counts.clone();
            counts.tasks_in = counts.tasks_in.max(reached);
            counts.actors_created = if *actor {
                stage.workers.len() as u64
            } else {
                0
            };
            let d = PyDict::new(py);
            d.set_item("name", name)?;
            counts_into(&d, &counts, |t| (t as f64 / 1e6 - epoch0).max(0.0))?;
            for key in [
                "queued_tasks",
                "queued_bytes",
                "in_flight_batches",
                "in_flight_tasks",
            ] {
                d.set_item(key, empty)?;
            }
            d.set_item("finished", finished)?;
            stages.push(d);
            reached = counts.tasks_out;
            failed += counts.tasks_failed;
        }
        let d = PyDict::new(py);
        d.set_item("stages", PyList::new(py, stages)?)?;
        d.set_item("tasks_initial", initial_tasks)?;
        d.set_item("tasks_emitted", final_tasks)?;
        d.set_item("tasks_failed", failed)?;
        d.set_item("finished", finished)?;
        Ok(d)
    }

    /// The count balance with the keys of `Scheduler.balance()`, plus `problems` (`check`'s list):
    /// balanced when there are none, complete when also `finished`.
    #[pyo3(signature = (initial_tasks, final_tasks, failure_records, finished, stage_names=None))]
    fn balance<'py>(
        &self,
        py: Python<'py>,
        initial_tasks: u64,
        final_tasks: u64,
        failure_records: u64,
        finished: bool,
        stage_names: Option<Vec<String>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let problems = self.counts.imbalances(
            &stage_names.unwrap_or_default(),
            initial_tasks,
            final_tasks,
            failure_records,
        );
        let sum = |f: fn(&StageCounts) -> u64| -> u64 {
            self.counts.stages.iter().map(|s| f(&s.counts)).sum()
        };
        let produced = sum(|c| c.tasks_out);
        let failed = sum(|c| c.tasks_failed);
        let consumed = sum(|c| c.tasks_in).saturating_sub(failed);
        let accounted = final_tasks + consumed + failed;
        let d = PyDict::new(py);
        d.set_item("initial", initial_tasks)?;
        d.set_item("produced", produced)?;
        d.set_item("emitted", final_tasks)?;
        d.set_item("consumed", consumed)?;
        d.set_item("filtered", sum(|c| c.tasks_filtered))?;
        d.set_item("failed", failed)?;
        d.set_item(
            "queued",
            (initial_tasks + produced).saturating_sub(accounted),
        )?;
        d.set_item("in_flight", 0)?;
        d.set_item("balanced", problems.is_empty())?;
        d.set_item("complete", problems.is_empty() && finished)?;
        d.set_item("problems", problems)?;
        Ok(d)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyLedger>()
            .is_ok_and(|o| o.borrow().counts == self.counts)
    }

    fn __repr__(&self) -> String {
        let stages = self
            .counts
            .stages
            .iter()
            .map(|s| {
                let c = &s.counts;
                format!(
                    "({} batches, {} in, {} out, {} failed)",
                    c.batches(),
                    c.tasks_in,
                    c.tasks_out,
                    c.tasks_failed
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        format!("Ledger([{stages}])")
    }
}

fn merge_values<O: arrow_array::OffsetSizeTrait>(
    counts: &mut Counts,
    array: &arrow_array::GenericBinaryArray<O>,
) -> Result<usize, String> {
    let mut merged = 0;
    for value in array.iter().flatten() {
        counts.merge_encoded(value)?;
        merged += 1;
    }
    Ok(merged)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLedger>()?;
    m.add("STAGE_COUNT_FIELDS", PyTuple::new(m.py(), COUNT_FIELDS)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(batches: u64, tasks_in: u64, tasks_out: u64, failed: u64, fb: u64) -> LedgerStage {
        LedgerStage {
            counts: StageCounts {
                batches_done: batches - fb,
                batches_failed: fb,
                tasks_in,
                tasks_done: tasks_in - failed,
                tasks_out,
                tasks_failed: failed,
                ..Default::default()
            },
            workers: BTreeSet::new(),
        }
    }

    #[test]
    fn encode_decode_roundtrip() {
        let mut c = Counts::new(3);
        c.add(0, &counts(1, 10, 30, 0, 0)).unwrap();
        c.add(2, &counts(4, 7, 7, 2, 1)).unwrap();
        let bytes = c.encode();
        assert_eq!(bytes.len(), HEADER + 3 * STAGE_FIXED);
        assert_eq!(Counts::decode(&bytes).unwrap(), c);
        assert!(Counts::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(Counts::decode(b"nope").is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Counts::decode(&longer).unwrap_err().contains("too many"));
    }

    #[test]
    fn report_fields_roundtrip_and_merge() {
        let timed = |start: u64, end: u64, busy: u64, worker: u64| LedgerStage {
            counts: StageCounts {
                batches_done: 1,
                tasks_in: 2,
                tasks_done: 2,
                tasks_out: 2,
                items_in: 20,
                items_out: 10,
                bytes_in: 300,
                bytes_out: 100,
                tasks_filtered: 1,
                calls: 1,
                retries: 1,
                actors_created: 2,
                actors_died: 1,
                busy_ns: busy,
                first_start_us: Some(start),
                last_end_us: Some(end),
                ..Default::default()
            },
            workers: BTreeSet::from([worker]),
        };
        let mut a = Counts::new(2);
        a.add(0, &timed(50, 70, 5, 7)).unwrap();
        a.add(0, &timed(40, 60, 6, 9)).unwrap();
        let mut b = Counts::new(2);
        b.add(0, &timed(45, 90, 1, 7)).unwrap();
        b.add(1, &timed(80, 85, 2, 3)).unwrap();
        let bytes = b.encode();
        assert_eq!(bytes.len(), HEADER + 2 * STAGE_FIXED + 2 * 8);
        assert_eq!(Counts::decode(&bytes).unwrap(), b);
        assert!(Counts::decode(&bytes[..bytes.len() - 4])
            .unwrap_err()
            .contains("worker ids"));
        a.merge_encoded(&bytes).unwrap();
        let s = &a.stages[0].counts;
        assert_eq!((s.first_start_us, s.last_end_us), (Some(40), Some(90)));
        assert_eq!((s.busy_ns, s.calls, s.tasks_filtered), (12, 3, 3));
        assert_eq!((s.retries, s.actors_created, s.actors_died), (3, 6, 3));
        assert_eq!(
            (s.items_in, s.items_out, s.bytes_in, s.bytes_out),
            (60, 30, 900, 300)
        );
        assert_eq!(a.stages[0].workers, BTreeSet::from([7, 9]));
        assert_eq!(a.stages[1].workers, BTreeSet::from([3]));
        // A stage that never ran keeps no clock.
        let empty = Counts::new(1);
        assert_eq!(
            Counts::decode(&empty.encode()).unwrap().stages[0]
                .counts
                .first_start_us,
            None
        );
    }

    #[test]
    fn filtering_more_than_ran_is_an_imbalance() {
        let mut c = Counts::new(1);
        let mut stage = counts(2, 3, 0, 1, 1);
        stage.counts.tasks_filtered = 3;
        c.add(0, &stage).unwrap();
        let problems = c.imbalances(&[], 3, 0, 1);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("filtered 3 tasks"), "{problems:?}");
    }

    #[test]
    fn failing_more_than_ran_is_an_imbalance() {
        let mut c = Counts::new(1);
        let mut stage = counts(1, 2, 0, 2, 1);
        stage.counts.tasks_failed = 3;
        c.add(0, &stage).unwrap();
        let problems = c.imbalances(&[], 2, 0, 1);
        assert!(
            problems.iter().any(|p| p.contains("failed on 3 tasks")),
            "{problems:?}"
        );
    }

    #[test]
    fn merge_sums_and_rejects_other_shapes() {
        let mut a = Counts::new(2);
        a.add(1, &counts(1, 2, 3, 0, 0)).unwrap();
        let mut b = Counts::new(2);
        b.add(1, &counts(2, 5, 1, 1, 1)).unwrap();
        a.merge_encoded(&b.encode()).unwrap();
        assert_eq!(a.stages[1], counts(3, 7, 4, 1, 1));
        assert!(a.merge(&Counts::new(3)).is_err());
        assert!(a.add(2, &counts(1, 1, 1, 0, 0)).is_err());
    }

    #[test]
    fn balanced_run_has_no_imbalance() {
        let mut c = Counts::new(2);
        c.add(0, &counts(10, 10, 30, 0, 0)).unwrap(); // fan-out
        c.add(1, &counts(30, 30, 20, 3, 3)).unwrap(); // 3 failed, 7 filtered
        assert!(c.imbalances(&[], 10, 20, 3).is_empty());
    }

    #[test]
    fn imbalances_name_the_stage() {
        let mut c = Counts::new(2);
        c.add(0, &counts(10, 10, 30, 0, 0)).unwrap();
        c.add(1, &counts(29, 29, 29, 0, 0)).unwrap(); // lost one task between stages
        let names = vec!["a".to_string(), "b".to_string()];
        let problems = c.imbalances(&names, 10, 28, 1);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].contains("stage 'b' received 29"),
            "{problems:?}"
        );
        assert!(
            problems[1].contains("received 28 final tasks"),
            "{problems:?}"
        );
        assert!(
            problems[2].contains("failure report lists 1"),
            "{problems:?}"
        );
    }
}
