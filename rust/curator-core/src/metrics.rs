//! Metrics: what each stage did and holds, for progress bars, status tables and the final summary.

use crate::placement::UNITS;
use crate::scheduler::{ActorState, Scheduler};

/// Running counts of one stage (monotonic).
#[derive(Debug, Clone, Default)]
pub(crate) struct StageCounters {
    pub tasks_in: u64,
    pub bytes_in: u64,
    pub items_in: u64,
    pub tasks_done: u64,
    pub tasks_out: u64,
    pub bytes_out: u64,
    pub items_out: u64,
    pub tasks_failed: u64,
    pub batches_done: u64,
    pub batches_failed: u64,
    pub retries: u64,
    pub calls: u64,
    pub busy_secs: f64,
    pub actors_created: u64,
    pub actors_died: u64,
    pub first_start: Option<f64>,
    pub last_end: Option<f64>,
}

/// One stage's state and totals.
#[derive(Debug, Clone, PartialEq)]
pub struct StageMetrics {
    pub name: String,
    /// Tasks waiting in the input queue (retried batches included), and their bytes.
    pub queued_tasks: u64,
    pub queued_bytes: u64,
    pub in_flight_batches: u64,
    pub in_flight_tasks: u64,
    /// Tasks that entered the input queue (counted once, retries not again).
    pub tasks_in: u64,
    pub bytes_in: u64,
    pub items_in: u64,
    /// Inputs consumed by batches that succeeded.
    pub tasks_done: u64,
    /// Outputs produced.
    pub tasks_out: u64,
    pub bytes_out: u64,
    pub items_out: u64,
    /// Inputs of batches that failed for good.
    pub tasks_failed: u64,
    pub batches_done: u64,
    pub batches_failed: u64,
    /// Batches sent back to the queue after an infrastructure failure.
    pub retries: u64,
    /// Remote calls submitted.
    pub calls: u64,
    /// Sum of the `busy_secs` reported by finished batches.
    pub busy_secs: f64,
    /// Current mean batch time (EWMA), once measured.
    pub mean_batch_secs: Option<f64>,
    pub actors_pending: u64,
    /// Ready actors (`busy + idle`).
    pub actors_ready: u64,
    pub actors_busy: u64,
    pub actors_idle: u64,
    pub actors_created: u64,
    pub actors_died: u64,
    /// Calls in flight over all actors.
    pub slots_in_use: u64,
    /// Pool size aimed for (`None`: as many as fit).
    pub pool_target: Option<usize>,
    /// Clock of the first submit and of the last batch end (seconds).
    pub first_start: Option<f64>,
    pub last_end: Option<f64>,
    /// Largest outputs-per-input ratio seen in a finished batch (the backpressure estimate).
    pub output_ratio: Option<f64>,
    /// Held back because the next stage's queue is full.
    pub backpressured: bool,
    /// No more work can come to this stage; its actors are gone.
    pub finished: bool,
}

/// A snapshot of the whole run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunMetrics {
    pub stages: Vec<StageMetrics>,
    /// The driver's clock at the last tick (seconds).
    pub now: f64,
    pub tasks_initial: u64,
    pub tasks_emitted: u64,
    pub tasks_failed: u64,
    pub tasks_queued: u64,
    pub tasks_in_flight: u64,
    pub actors_live: u64,
    pub calls_in_flight: u64,
    /// Unreserved capacity over all nodes.
    pub free_cpus: f64,
    pub free_gpus: f64,
    pub finished: bool,
    pub aborted: bool,
}

impl Scheduler {
    pub fn metrics(&self) -> RunMetrics {
        let stages: Vec<StageMetrics> = self
            .stages
            .iter()
            .enumerate()
            .map(|(s, st)| {
                let c = &st.counters;
                let (mut pending, mut busy, mut idle, mut slots) = (0, 0, 0, 0);
                for &a in &st.actors {
                    let rec = &self.actors[a as usize];
                    match rec.state {
                        ActorState::Pending => pending += 1,
                        ActorState::Ready if rec.calls > 0 => busy += 1,
                        ActorState::Ready => idle += 1,
                        ActorState::Gone => {}
                    }
                    slots += rec.calls as u64;
                }
                StageMetrics {
                    name: st.spec.name.clone(),
                    queued_tasks: st.queue.tasks(),
                    queued_bytes: st.queue.bytes(),
                    in_flight_batches: st.in_flight_batches,
                    in_flight_tasks: st.in_flight_tasks,
                    tasks_in: c.tasks_in,
                    bytes_in: c.bytes_in,
                    items_in: c.items_in,
                    tasks_done: c.tasks_done,
                    tasks_out: c.tasks_out,
                    bytes_out: c.bytes_out,
                    items_out: c.items_out,
                    tasks_failed: c.tasks_failed,
                    batches_done: c.batches_done,
                    batches_failed: c.batches_failed,
                    retries: c.retries,
                    calls: c.calls,
                    busy_secs: c.busy_secs,
                    mean_batch_secs: st.packing.mean_batch_secs(),
                    actors_pending: pending,
                    actors_ready: busy + idle,
                    actors_busy: busy,
                    actors_idle: idle,
                    actors_created: c.actors_created,
                    actors_died: c.actors_died,
                    slots_in_use: slots,
                    pool_target: st.target,
                    first_start: c.first_start,
                    last_end: c.last_end,
                    output_ratio: st.estimate.tasks_per_input(),
                    backpressured: self.backpressured(s),
                    finished: st.finished,
                }
            })
            .collect();
        let balance = self.balance();
        let (mut free_cpus, mut free_gpus) = (0, 0);
        for node in 0..self.nodes.len() {
            let (c, g) = self.cluster.free(node);
            free_cpus += c;
            free_gpus += g;
        }
        RunMetrics {
            now: self.now,
            tasks_initial: balance.initial,
            tasks_emitted: balance.emitted,
            tasks_failed: balance.failed,
            tasks_queued: balance.queued,
            tasks_in_flight: balance.in_flight,
            actors_live: stages
                .iter()
                .map(|s| s.actors_pending + s.actors_ready)
                .sum(),
            calls_in_flight: stages.iter().map(|s| s.slots_in_use).sum(),
            free_cpus: free_cpus as f64 / UNITS as f64,
            free_gpus: free_gpus as f64 / UNITS as f64,
            finished: self.is_finished(),
            aborted: self.is_aborted(),
            stages,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Command, Event, NodeSpec, Scheduler, SchedulerConfig, StageSpec, TaskMeta};

    #[test]
    fn actors_slots_and_counts_are_reported() {
        let spec = StageSpec {
            batch_size: 2,
            ..StageSpec::new("a")
        };
        let mut s = Scheduler::new(
            vec![spec],
            vec![NodeSpec::new("n", 3.0, 0.0)],
            // Whole pools at once, so the counts below do not depend on demand.
            SchedulerConfig {
                actor_start_secs: 0.0,
                ..SchedulerConfig::default()
            },
        )
        .unwrap();
        s.poll();
        s.handle(Event::ActorReady { actor: 0 }).unwrap();
        s.handle(Event::ActorReady { actor: 1 }).unwrap();
        s.add_tasks(
            &[TaskMeta {
                bytes: 10,
                items: 2,
            }; 5],
        )
        .unwrap();
        s.handle(Event::Tick { now: 3.0 }).unwrap();
        let submitted = s
            .poll()
            .iter()
            .filter(|c| matches!(c, Command::Submit { .. }))
            .count();
        assert_eq!(submitted, 2);
        let m = s.metrics();
        let a = &m.stages[0];
        assert_eq!(
            (
                a.actors_pending,
                a.actors_ready,
                a.actors_busy,
                a.actors_idle
            ),
            (1, 2, 2, 0)
        );
        assert_eq!(
            (a.slots_in_use, a.in_flight_batches, a.in_flight_tasks),
            (2, 2, 4)
        );
        assert_eq!(
            (a.queued_tasks, a.queued_bytes, a.tasks_in, a.items_in),
            (1, 10, 5, 10)
        );
        assert_eq!(
            (a.first_start, a.last_end, a.mean_batch_secs),
            (Some(3.0), None, None)
        );
        assert_eq!(
            (
                m.tasks_initial,
                m.tasks_queued,
                m.tasks_in_flight,
                m.actors_live
            ),
            (5, 1, 4, 3)
        );
        assert_eq!((m.free_cpus, m.free_gpus), (0.0, 0.0));
        s.batch_done(0, &[TaskMeta { bytes: 7, items: 1 }], 0.25)
            .unwrap();
        let a = s.metrics().stages[0].clone();
        assert_eq!(
            (a.tasks_done, a.tasks_out, a.bytes_out, a.batches_done),
            (2, 1, 7, 1)
        );
        assert_eq!(
            (a.busy_secs, a.mean_batch_secs, a.last_end, a.output_ratio),
            (0.25, Some(0.25), Some(3.0), Some(0.5))
        );
        assert_eq!((a.actors_busy, a.actors_idle, a.slots_in_use), (1, 1, 1));
    }
}
