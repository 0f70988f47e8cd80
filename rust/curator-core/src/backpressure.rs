//! Backpressure: bounded input queues, so that no stage floods the next one.
//!
//! Stage by stage (`SchedulerConfig::stage_by_stage`) there is none: a stage's outputs wait in the
//! next queue until the stage is done.
//!
//! Each stage's input queue is bounded by `queue_max_tasks` and `queue_max_bytes` (the last stage
//! feeds the final output, which is unbounded). Stage `s` submits a call only while
//!
//! ```text
//! queued(s+1) + projected(s) < bound(s+1)        (for tasks, and likewise for bytes)
//! ```
//!
//! where `projected(s)` estimates the outputs still to come from `s`'s calls in flight: in-flight
//! input tasks × the largest outputs-per-input ratio of any finished batch of `s` (1 before the first
//! one finishes; for bytes: in-flight input tasks × the largest output bytes per input task, or the
//! in-flight input bytes before the first one finishes).
//!
//! Guarantees (checked by the property tests):
//! 1. When `s` submits a call, `queued(s+1)` is below both bounds.
//! 2. While no batch of `s` has a larger outputs-per-input ratio than the estimate (e.g. a constant
//!    fan-out `f <= 1`, or any constant fan-out once one batch has finished), the next queue plus the
//!    outputs still to come from `s`'s in-flight batches stays at or below
//!    `queue_max_tasks - 1 + outputs of one call` (`max_batches_per_call × batch_size × f`): the queue
//!    overshoots its bound by at most one call's outputs.
//!
//! With nothing in flight the projection is 0, so a stage is never blocked by its own estimate: it is
//! blocked only by a queue that is really at its bound, which the next stage drains (a queue at its
//! bound lets partial batches go, see `batching.rs`).

use crate::scheduler::Scheduler;

/// What a stage's batches yield per input task, as measured (the largest ratio seen).
#[derive(Debug, Default)]
pub(crate) struct OutputEstimate {
    tasks_per_input: Option<f64>,
    bytes_per_input: Option<f64>,
}

impl OutputEstimate {
    pub fn observe(&mut self, n_in: u64, n_out: u64, out_bytes: u64) {
        if n_in == 0 {
            return;
        }
        let tasks = n_out as f64 / n_in as f64;
        let bytes = out_bytes as f64 / n_in as f64;
        self.tasks_per_input = Some(self.tasks_per_input.map_or(tasks, |r| r.max(tasks)));
        self.bytes_per_input = Some(self.bytes_per_input.map_or(bytes, |r| r.max(bytes)));
    }

    /// Expected (tasks, bytes) still to come from calls holding these inputs.
    pub fn projected(&self, in_flight_tasks: u64, in_flight_bytes: u64) -> (f64, f64) {
        let n = in_flight_tasks as f64;
        let tasks = n * self.tasks_per_input.unwrap_or(1.0);
        let bytes = self
            .bytes_per_input
            .map_or(in_flight_bytes as f64, |r| n * r);
        (tasks, bytes)
    }

    pub fn tasks_per_input(&self) -> Option<f64> {
        self.tasks_per_input
    }
}

impl Scheduler {
    /// Is there room downstream of stage `s` for one more call's outputs?
    pub(crate) fn downstream_admits(&self, s: usize) -> bool {
        let Some(next) = self.stages.get(s + 1) else {
            return true; // the final output is unbounded
        };
        if self.config.stage_by_stage {
            return true; // the next stage starts only once this one is done: nothing drains it
        }
        let st = &self.stages[s];
        let (tasks, bytes) = st
            .estimate
            .projected(st.in_flight_tasks, st.in_flight_bytes);
        next.queue.tasks() as f64 + tasks < next.spec.queue_max_tasks as f64
            && next.queue.bytes() as f64 + bytes < next.spec.queue_max_bytes as f64
    }

    /// Stage `s` is held back by the next stage's full queue.
    pub(crate) fn backpressured(&self, s: usize) -> bool {
        !self.downstream_admits(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_assumes_one_to_one_until_measured() {
        let e = OutputEstimate::default();
        assert_eq!(e.projected(10, 500), (10.0, 500.0));
        assert_eq!(e.tasks_per_input(), None);
    }

    #[test]
    fn projection_uses_the_largest_ratio_seen() {
        let mut e = OutputEstimate::default();
        e.observe(4, 2, 40); // 0.5 per input, 10 bytes per input
        assert_eq!(e.projected(10, 0), (5.0, 100.0));
        e.observe(2, 6, 20); // 3 per input, 10 bytes per input
        e.observe(4, 0, 0); // a filtering batch does not lower the estimate
        assert_eq!(e.projected(10, 0), (30.0, 100.0));
        e.observe(0, 5, 5); // no inputs: ignored
        assert_eq!(e.tasks_per_input(), Some(3.0));
    }
}
