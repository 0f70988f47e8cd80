//! The Ray Data executor's block codec, native half: the count balance of a run.
//!
//! Tasks travel as rows of Arrow blocks (`nemo_curator.backends.experimental.ray_data.codec`
//! writes and reads the payload columns with pyarrow's IPC, which already is one copy in and zero
//! out). What Rust adds is the ledger: per stage, how many batches ran and how many tasks went in,
//! came out or failed.
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
//! Encoding: `b"CLG2"`, the stage count (u32 LE), then per stage the [`COUNTERS`] u64 LE counters
//! in the order of `StageCounts::counters`, the busy nanoseconds, the first start and last end in
//! microseconds since the epoch (u64 LE each, 0: none), the number of worker ids (u32 LE) and the
//! ids (u64 LE, ascending).

use std::collections::BTreeSet;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use pyo3_arrow::PyTable;

use arrow_array::cast::AsArray;
use arrow_array::Array;
use arrow_schema::DataType;

use crate::errors::value_error;

const MAGIC: &[u8; 4] = b"CLG2";
/// Summed counters per stage.
const COUNTERS: usize = 11;
const HEADER: usize = MAGIC.len() + 4;
/// Fixed bytes per stage: the counters, busy nanoseconds, first start, last end, worker count.
const STAGE_FIXED: usize = (COUNTERS + 3) * 8 + 4;

/// What one stage did, summed over the batches counted so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct StageCounts {
    /// `process_batch` calls, successful or not.
    pub batches: u64,
    /// Tasks handed to the stage (those of failed batches included).
    pub tasks_in: u64,
    /// Tasks the stage returned.
    pub tasks_out: u64,
    /// Tasks of failed batches (skipped under `ignore_failures`).
    pub failed_tasks: u64,
    /// Failed batches: one failure record each.
    pub failed_batches: u64,
    /// Tasks of successful batches that returned no task at all.
    pub filtered_tasks: u64,
    /// Worker calls (Ray Data `map_batches` calls) in which the stage ran at least one batch.
    pub calls: u64,
    /// Items (`Task.num_items`) and payload bytes of the tasks in and out.
    pub items_in: u64,
    pub items_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Nanoseconds inside `process_batch`.
    pub busy_ns: u64,
    /// Microseconds since the epoch of the first batch start and the last batch end.
    pub first_start_us: Option<u64>,
    pub last_end_us: Option<u64>,
    /// Ids of the worker processes that ran batches of the stage.
    pub workers: BTreeSet<u64>,
}

impl StageCounts {
    fn counters(&self) -> [u64; COUNTERS] {
        [
            self.batches,
            self.tasks_in,
            self.tasks_out,
            self.failed_tasks,
            self.failed_batches,
            self.filtered_tasks,
            self.calls,
            self.items_in,
            self.items_out,
            self.bytes_in,
            self.bytes_out,
        ]
    }

    fn counters_mut(&mut self) -> [&mut u64; COUNTERS] {
        [
            &mut self.batches,
            &mut self.tasks_in,
            &mut self.tasks_out,
            &mut self.failed_tasks,
            &mut self.failed_batches,
            &mut self.filtered_tasks,
            &mut self.calls,
            &mut self.items_in,
            &mut self.items_out,
            &mut self.bytes_in,
            &mut self.bytes_out,
        ]
    }

    fn add(&mut self, other: &StageCounts) {
        for (mine, theirs) in self.counters_mut().into_iter().zip(other.counters()) {
            *mine = mine.saturating_add(theirs);
        }
        self.busy_ns = self.busy_ns.saturating_add(other.busy_ns);
        self.first_start_us = earliest(self.first_start_us, other.first_start_us);
        self.last_end_us = self.last_end_us.max(other.last_end_us);
        self.workers.extend(other.workers.iter().copied());
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        for value in self.counters() {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(&self.busy_ns.to_le_bytes());
        out.extend_from_slice(&self.first_start_us.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&self.last_end_us.unwrap_or(0).to_le_bytes());
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
        let mut s = StageCounts::default();
        for (i, slot) in s.counters_mut().into_iter().enumerate() {
            *slot = u64_at(i);
        }
        s.busy_ns = u64_at(COUNTERS);
        s.first_start_us = Some(u64_at(COUNTERS + 1)).filter(|&t| t > 0);
        s.last_end_us = Some(u64_at(COUNTERS + 2)).filter(|&t| t > 0);
        let at = (COUNTERS + 3) * 8;
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

fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Per-stage counts of one run (or of the part of it seen so far).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    stages: Vec<StageCounts>,
}

impl Counts {
    pub fn new(num_stages: usize) -> Self {
        Self {
            stages: vec![StageCounts::default(); num_stages],
        }
    }

    fn stage_mut(&mut self, stage: usize) -> Result<&mut StageCounts, String> {
        let n = self.stages.len();
        self.stages
            .get_mut(stage)
            .ok_or_else(|| format!("stage index {stage} out of range for a ledger of {n} stages"))
    }

    pub fn add(&mut self, stage: usize, counts: &StageCounts) -> Result<(), String> {
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
            let (stage, used) = StageCounts::decode_from(rest)?;
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
        for (i, s) in self.stages.iter().enumerate() {
            if s.tasks_in != expected_in {
                problems.push(format!(
                    "{} received {} tasks but {} were {expected_in}",
                    name(i),
                    s.tasks_in,
                    what_in
                ));
            }
            if s.failed_tasks > s.tasks_in || s.failed_batches > s.batches {
                problems.push(format!(
                    "{} failed on {} tasks in {} batches but ran {} tasks in {} batches",
                    name(i),
                    s.failed_tasks,
                    s.failed_batches,
                    s.tasks_in,
                    s.batches
                ));
            }
            if s.filtered_tasks > s.tasks_in.saturating_sub(s.failed_tasks) {
                problems.push(format!(
                    "{} filtered {} tasks but ran {} tasks of which {} failed",
                    name(i),
                    s.filtered_tasks,
                    s.tasks_in,
                    s.failed_tasks
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
        let failed: u64 = self.stages.iter().map(|s| s.failed_batches).sum();
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

/// Seconds (finite, >= 0) in units of `1 / per_second`.
fn seconds_to(name: &str, seconds: f64, per_second: f64) -> PyResult<u64> {
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(value_error(format!(
            "{name} must be a finite number >= 0, got {seconds}"
        )));
    }
    Ok((seconds * per_second).round() as u64)
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
        let counts = StageCounts {
            batches: non_negative("batches", batches)?,
            tasks_in: non_negative("tasks_in", tasks_in)?,
            tasks_out: non_negative("tasks_out", tasks_out)?,
            failed_tasks: non_negative("failed_tasks", failed_tasks)?,
            failed_batches: non_negative("failed_batches", failed_batches)?,
            filtered_tasks: non_negative("filtered_tasks", filtered_tasks)?,
            calls: non_negative("calls", calls)?,
            items_in: non_negative("items_in", items_in)?,
            items_out: non_negative("items_out", items_out)?,
            bytes_in: non_negative("bytes_in", bytes_in)?,
            bytes_out: non_negative("bytes_out", bytes_out)?,
            busy_ns: seconds_to("busy_s", busy_s, 1e9)?,
            first_start_us: start.map(|t| seconds_to("start", t, 1e6)).transpose()?,
            last_end_us: end.map(|t| seconds_to("end", t, 1e6)).transpose()?,
            workers: worker.into_iter().collect(),
        };
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

    /// Counts of every stage, as dicts: `batches`, `tasks_in`, `tasks_out`, `failed_tasks`,
    /// `failed_batches`, `filtered_tasks`, `calls`, `items_in`, `items_out`, `bytes_in`,
    /// `bytes_out`, `busy_s`, `first_start` / `last_end` (epoch seconds or None) and `workers` (how
    /// many distinct worker processes ran the stage).
    fn stages<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let dicts = self
            .counts
            .stages
            .iter()
            .map(|s| {
                let d = PyDict::new(py);
                d.set_item("batches", s.batches)?;
                d.set_item("tasks_in", s.tasks_in)?;
                d.set_item("tasks_out", s.tasks_out)?;
                d.set_item("failed_tasks", s.failed_tasks)?;
                d.set_item("failed_batches", s.failed_batches)?;
                d.set_item("filtered_tasks", s.filtered_tasks)?;
                d.set_item("calls", s.calls)?;
                d.set_item("items_in", s.items_in)?;
                d.set_item("items_out", s.items_out)?;
                d.set_item("bytes_in", s.bytes_in)?;
                d.set_item("bytes_out", s.bytes_out)?;
                d.set_item("busy_s", s.busy_ns as f64 / 1e9)?;
                d.set_item("first_start", s.first_start_us.map(|t| t as f64 / 1e6))?;
                d.set_item("last_end", s.last_end_us.map(|t| t as f64 / 1e6))?;
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
                format!(
                    "({} batches, {} in, {} out, {} failed)",
                    s.batches, s.tasks_in, s.tasks_out, s.failed_tasks
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(batches: u64, tasks_in: u64, tasks_out: u64, failed: u64, fb: u64) -> StageCounts {
        StageCounts {
            batches,
            tasks_in,
            tasks_out,
            failed_tasks: failed,
            failed_batches: fb,
            ..Default::default()
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
        let timed = |start: u64, end: u64, busy: u64, worker: u64| StageCounts {
            batches: 1,
            tasks_in: 2,
            tasks_out: 2,
            items_in: 20,
            items_out: 10,
            bytes_in: 300,
            bytes_out: 100,
            filtered_tasks: 1,
            calls: 1,
            busy_ns: busy,
            first_start_us: Some(start),
            last_end_us: Some(end),
            workers: BTreeSet::from([worker]),
            ..Default::default()
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
        let s = &a.stages[0];
        assert_eq!((s.first_start_us, s.last_end_us), (Some(40), Some(90)));
        assert_eq!((s.busy_ns, s.calls, s.filtered_tasks), (12, 3, 3));
        assert_eq!(
            (s.items_in, s.items_out, s.bytes_in, s.bytes_out),
            (60, 30, 900, 300)
        );
        assert_eq!(s.workers, BTreeSet::from([7, 9]));
        assert_eq!(a.stages[1].workers, BTreeSet::from([3]));
        // A stage that never ran keeps no clock.
        let empty = Counts::new(1);
        assert_eq!(
            Counts::decode(&empty.encode()).unwrap().stages[0].first_start_us,
            None
        );
    }

    #[test]
    fn filtering_more_than_ran_is_an_imbalance() {
        let mut c = Counts::new(1);
        c.add(
            0,
            &StageCounts {
                filtered_tasks: 3,
                ..counts(2, 3, 0, 1, 1)
            },
        )
        .unwrap();
        let problems = c.imbalances(&[], 3, 0, 1);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("filtered 3 tasks"), "{problems:?}");
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
