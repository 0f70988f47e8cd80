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
//! Encoding: `b"CLG1"`, the stage count (u32 LE), then per stage five u64 LE counters in the order
//! of [`StageCounts`].

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use pyo3_arrow::PyTable;

use arrow_array::cast::AsArray;
use arrow_array::Array;
use arrow_schema::DataType;

use crate::errors::value_error;

const MAGIC: &[u8; 4] = b"CLG1";
const FIELDS: usize = 5;
const HEADER: usize = MAGIC.len() + 4;

/// What one stage did, summed over the batches counted so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
}

impl StageCounts {
    fn to_array(self) -> [u64; FIELDS] {
        [
            self.batches,
            self.tasks_in,
            self.tasks_out,
            self.failed_tasks,
            self.failed_batches,
        ]
    }

    fn from_array(a: [u64; FIELDS]) -> Self {
        Self {
            batches: a[0],
            tasks_in: a[1],
            tasks_out: a[2],
            failed_tasks: a[3],
            failed_batches: a[4],
        }
    }

    fn add(&mut self, other: &StageCounts) {
        let sum = self
            .to_array()
            .iter()
            .zip(other.to_array())
            .map(|(a, b)| a.saturating_add(b))
            .collect::<Vec<_>>();
        *self = Self::from_array(sum.try_into().expect("FIELDS counters"));
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
        let mut out = Vec::with_capacity(HEADER + self.stages.len() * FIELDS * 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.stages.len() as u32).to_le_bytes());
        for stage in &self.stages {
            for value in stage.to_array() {
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
        out
    }

    pub fn decode(data: &[u8]) -> Result<Self, String> {
        if data.len() < HEADER || &data[..MAGIC.len()] != MAGIC {
            return Err("not an encoded ledger (bad header)".to_string());
        }
        let n = u32::from_le_bytes(data[MAGIC.len()..HEADER].try_into().expect("4 bytes")) as usize;
        let body = &data[HEADER..];
        if body.len() != n * FIELDS * 8 {
            return Err(format!(
                "encoded ledger of {n} stages has {} body bytes, expected {}",
                body.len(),
                n * FIELDS * 8
            ));
        }
        let stages = body
            .chunks_exact(FIELDS * 8)
            .map(|chunk| {
                let mut a = [0u64; FIELDS];
                for (slot, bytes) in a.iter_mut().zip(chunk.chunks_exact(8)) {
                    *slot = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
                }
                StageCounts::from_array(a)
            })
            .collect();
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

#[pymethods]
impl PyLedger {
    #[new]
    fn new(num_stages: usize) -> Self {
        Self {
            counts: Counts::new(num_stages),
        }
    }

    /// Counts one or more `process_batch` calls of `stage`.
    #[pyo3(signature = (stage, tasks_in, tasks_out, failed_tasks=0, batches=1, failed_batches=0))]
    fn record(
        &mut self,
        stage: usize,
        tasks_in: i64,
        tasks_out: i64,
        failed_tasks: i64,
        batches: i64,
        failed_batches: i64,
    ) -> PyResult<()> {
        let counts = StageCounts {
            batches: non_negative("batches", batches)?,
            tasks_in: non_negative("tasks_in", tasks_in)?,
            tasks_out: non_negative("tasks_out", tasks_out)?,
            failed_tasks: non_negative("failed_tasks", failed_tasks)?,
            failed_batches: non_negative("failed_batches", failed_batches)?,
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

    /// Counts of every stage, as dicts (`batches`, `tasks_in`, `tasks_out`, `failed_tasks`,
    /// `failed_batches`).
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
        }
    }

    #[test]
    fn encode_decode_roundtrip() {
        let mut c = Counts::new(3);
        c.add(0, &counts(1, 10, 30, 0, 0)).unwrap();
        c.add(2, &counts(4, 7, 7, 2, 1)).unwrap();
        let bytes = c.encode();
        assert_eq!(bytes.len(), HEADER + 3 * FIELDS * 8);
        assert_eq!(Counts::decode(&bytes).unwrap(), c);
        assert!(Counts::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(Counts::decode(b"nope").is_err());
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
