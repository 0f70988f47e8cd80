//! Where every task came from, and the ledger that proves none was lost.
//!
//! Each task is produced either by the driver (an initial input) or by exactly one batch, and each
//! batch consumes its input tasks exactly once: a task's roots are found by walking producer batches
//! back to the initial inputs, visiting each batch once (siblings of one batch share its ancestry). Memory stays compact with dense vectors
//! indexed by id: 8 bytes per task (its producer) and 8 bytes per batch input, plus one offset per batch.

use std::collections::HashSet;
use std::ops::Range;

use crate::spec::{BatchId, TaskId};

/// Producer of the initial inputs (they come from the driver, not from a batch).
pub(crate) const DRIVER: BatchId = BatchId::MAX;

#[derive(Debug)]
pub(crate) struct Lineage {
    /// The batch that produced each task, indexed by task id; `DRIVER` for initial inputs.
    producer: Vec<BatchId>,
    /// Input tasks of every batch, concatenated in batch-id order.
    inputs: Vec<TaskId>,
    /// Batch `b`'s inputs are `inputs[starts[b]..starts[b + 1]]`.
    starts: Vec<usize>,
}

impl Default for Lineage {
    fn default() -> Self {
        Self {
            producer: Vec::new(),
            inputs: Vec::new(),
            starts: vec![0],
        }
    }
}

impl Lineage {
    /// Allocate `n` dense task ids produced by `producer` (`DRIVER` for initial inputs).
    pub fn new_tasks(&mut self, n: usize, producer: BatchId) -> Range<TaskId> {
        let first = self.producer.len();
        self.producer.resize(first + n, producer);
        first as TaskId..(first + n) as TaskId
    }

    /// Append one input to the batch being formed; `seal_batch` closes it.
    #[inline]
    pub fn push_input(&mut self, task: TaskId) {
        self.inputs.push(task);
    }

    /// Close the batch formed by the `push_input` calls since the last seal and return its id.
    pub fn seal_batch(&mut self) -> BatchId {
        self.starts.push(self.inputs.len());
        (self.starts.len() - 2) as BatchId
    }

    pub fn inputs(&self, batch: BatchId) -> &[TaskId] {
        let b = batch as usize;
        &self.inputs[self.starts[b]..self.starts[b + 1]]
    }

    pub fn num_tasks(&self) -> u64 {
        self.producer.len() as u64
    }

    pub fn num_batches(&self) -> u64 {
        (self.starts.len() - 1) as u64
    }

    /// The initial inputs `task` descends from, sorted; empty for an unknown id.
    pub fn roots(&self, task: TaskId) -> Vec<TaskId> {
        if task >= self.num_tasks() {
            return Vec::new();
        }
        let mut roots = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = vec![task];
        while let Some(t) = stack.pop() {
            match self.producer[t as usize] {
                DRIVER => roots.push(t),
                batch => {
                    if seen.insert(batch) {
                        stack.extend_from_slice(self.inputs(batch));
                    }
                }
            }
        }
        roots.sort_unstable();
        roots
    }

    /// Bytes held, for the memory budget (1M tasks must stay far below 2 GiB).
    pub fn heap_bytes(&self) -> usize {
        (self.producer.capacity() + self.inputs.capacity() + self.starts.capacity()) * 8
    }
}

/// Where every task of the run is, in counts. Every task is created either by the driver (`initial`)
/// or as an output of a batch (`produced`); each then ends as exactly one of: emitted (an output of
/// the last stage), consumed (input of a batch that succeeded), failed (input of a batch that failed
/// for good), or is still queued or in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balance {
    /// Tasks added by the driver.
    pub initial: u64,
    /// Outputs of all batches of all stages (the last stage's included).
    pub produced: u64,
    /// Outputs of the last stage, handed to the driver.
    pub emitted: u64,
    /// Inputs of batches that succeeded.
    pub consumed: u64,
    /// Inputs of batches that succeeded with no output at all (a subset of `consumed`).
    pub filtered: u64,
    /// Inputs of batches that failed for good.
    pub failed: u64,
    /// Waiting in a stage's input queue (retries included).
    pub queued: u64,
    /// In a submitted batch that has not finished.
    pub in_flight: u64,
}

impl Balance {
    /// Every task created is in exactly one place.
    pub fn balanced(&self) -> bool {
        self.initial + self.produced
            == self.emitted + self.consumed + self.failed + self.queued + self.in_flight
    }

    /// Balanced and nothing left to do: every task ended as output, consumed or failed.
    pub fn complete(&self) -> bool {
        self.balanced() && self.queued == 0 && self.in_flight == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_follow_batches_back_to_the_inputs() {
        let mut l = Lineage::default();
        let inputs = l.new_tasks(3, DRIVER); // 0, 1, 2
        l.push_input(0);
        l.push_input(1);
        let b0 = l.seal_batch();
        let mid = l.new_tasks(2, b0); // 3, 4 from {0, 1}
        l.push_input(2);
        let b1 = l.seal_batch();
        let lone = l.new_tasks(1, b1); // 5 from {2}
        l.push_input(4);
        l.push_input(5);
        let b2 = l.seal_batch();
        let out = l.new_tasks(1, b2); // 6 from {4, 5}
        l.push_input(3);
        l.push_input(6);
        let b3 = l.seal_batch();
        let last = l.new_tasks(1, b3); // 7 from {3, 6}: 3 and 4 are siblings from b0
        assert_eq!(l.roots(last.start), vec![0, 1, 2], "each root once");
        assert_eq!(inputs, 0..3);
        assert_eq!((mid, lone.clone(), out.clone()), (3..5, 5..6, 6..7));
        assert_eq!(l.roots(6), vec![0, 1, 2]);
        assert_eq!(l.roots(3), vec![0, 1]);
        assert_eq!(l.roots(5), vec![2]);
        assert_eq!(l.roots(1), vec![1]);
        assert!(l.roots(99).is_empty());
        assert_eq!(l.inputs(b2), &[4, 5]);
        assert_eq!(l.num_batches(), 4);
    }

    #[test]
    fn balance_counts_every_place_once() {
        let mut b = Balance {
            initial: 10,
            produced: 6,
            emitted: 4,
            consumed: 8,
            failed: 2,
            ..Default::default()
        };
        assert!(!b.balanced());
        b.queued = 1;
        b.in_flight = 1;
        assert!(b.balanced());
        assert!(!b.complete());
        b.in_flight = 0;
        b.queued = 0;
        b.consumed = 10;
        assert!(b.complete());
    }
}
