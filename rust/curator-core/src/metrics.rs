//! Metrics: what each stage did and holds, for progress bars, status tables and the final summary.

use crate::placement::UNITS;
use crate::scheduler::{ActorState, Scheduler};

/// What one stage did, summed (monotonic): the one set of counts behind the scheduler's metrics
/// and the Ray Data executor's per-block ledger (`curator-py`'s `ledger.rs`, which encodes, decodes
/// and merges it).
///
/// Clocks are integer microseconds and busy time integer nanoseconds, so that merging counts in any
/// order gives the same totals (float sums would not) and an encoded copy decodes to an equal
/// value. Whose clock: the scheduler's (seconds since the run started) for its metrics, the epoch
/// for the ledger, whose counts come from many processes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageCounts {
    /// Tasks that reached the stage (counted once, retries not again), their bytes and items.
    pub tasks_in: u64,
    pub bytes_in: u64,
    pub items_in: u64,
    /// Inputs consumed by batches that succeeded.
    pub tasks_done: u64,
    /// Outputs produced, their bytes and items.
    pub tasks_out: u64,
    pub bytes_out: u64,
    pub items_out: u64,
    /// Inputs of batches that failed for good.
    pub tasks_failed: u64,
    /// Inputs of batches that succeeded with no output at all.
    pub tasks_filtered: u64,
    pub batches_done: u64,
    pub batches_failed: u64,
    /// Batches run again after an infrastructure failure.
    pub retries: u64,
    /// Remote calls that ran batches of the stage.
    pub calls: u64,
    pub actors_created: u64,
    pub actors_died: u64,
    /// Nanoseconds inside `process_batch`, summed over batches.
    pub busy_ns: u64,
    /// Microseconds of the first batch start and of the last batch end (the earliest and the
    /// latest win when counts merge).
    pub first_start_us: Option<u64>,
    pub last_end_us: Option<u64>,
}

/// Number of summed `u64` counters of [`StageCounts`] (everything but the two clocks).
pub const STAGE_COUNTERS: usize = 16;

/// Whole units of `per_second` in `seconds` (negative, NaN: 0; too large: `u64::MAX`).
fn units(seconds: f64, per_second: f64) -> u64 {
    if seconds.is_nan() || seconds <= 0.0 {
        0
    } else {
        // `as` saturates at u64::MAX.
        (seconds * per_second).round() as u64
    }
}

fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl StageCounts {
    /// The summed counters in a fixed order (the order of the ledger's encoding).
    pub fn counters(&self) -> [u64; STAGE_COUNTERS] {
        [
            self.tasks_in,
            self.bytes_in,
            self.items_in,
            self.tasks_done,
            self.tasks_out,
            self.bytes_out,
            self.items_out,
            self.tasks_failed,
            self.tasks_filtered,
            self.batches_done,
            self.batches_failed,
            self.retries,
            self.calls,
            self.actors_created,
            self.actors_died,
            self.busy_ns,
        ]
    }

    pub fn counters_mut(&mut self) -> [&mut u64; STAGE_COUNTERS] {
        [
            &mut self.tasks_in,
            &mut self.bytes_in,
            &mut self.items_in,
            &mut self.tasks_done,
            &mut self.tasks_out,
            &mut self.bytes_out,
            &mut self.items_out,
            &mut self.tasks_failed,
            &mut self.tasks_filtered,
            &mut self.batches_done,
            &mut self.batches_failed,
            &mut self.retries,
            &mut self.calls,
            &mut self.actors_created,
            &mut self.actors_died,
            &mut self.busy_ns,
        ]
    }

    /// Adds `other`: counters sum (saturating), the earliest start and the latest end win.
    pub fn merge(&mut self, other: &StageCounts) {
        for (mine, theirs) in self.counters_mut().into_iter().zip(other.counters()) {
            *mine = mine.saturating_add(theirs);
        }
        self.first_start_us = earliest(self.first_start_us, other.first_start_us);
        self.last_end_us = self.last_end_us.max(other.last_end_us);
    }

    /// Batches that ran, successfully or not.
    pub fn batches(&self) -> u64 {
        self.batches_done.saturating_add(self.batches_failed)
    }

    pub fn busy_secs(&self) -> f64 {
        self.busy_ns as f64 / 1e9
    }

    /// Adds seconds spent in `process_batch` (ignored unless finite and >= 0).
    pub fn add_busy_secs(&mut self, seconds: f64) {
        if seconds.is_finite() && seconds >= 0.0 {
            self.busy_ns = self.busy_ns.saturating_add(units(seconds, 1e9));
        }
    }

    /// A batch started at `now` (seconds): keeps the earliest.
    pub fn started_at(&mut self, now: f64) {
        self.first_start_us = earliest(self.first_start_us, Some(units(now, 1e6)));
    }

    /// A batch ended at `now` (seconds): keeps the latest.
    pub fn ended_at(&mut self, now: f64) {
        self.last_end_us = self.last_end_us.max(Some(units(now, 1e6)));
    }

    pub fn first_start(&self) -> Option<f64> {
        self.first_start_us.map(|t| t as f64 / 1e6)
    }

    pub fn last_end(&self) -> Option<f64> {
        self.last_end_us.map(|t| t as f64 / 1e6)
    }
}

/// One stage's state and totals.
#[derive(Debug, Clone, PartialEq)]
pub struct StageMetrics {
    pub name: String,
    /// What the stage did so far (also reachable as fields of `StageMetrics`, through `Deref`).
    pub counts: StageCounts,
    /// Tasks waiting in the input queue (retried batches included), and their bytes.
    pub queued_tasks: u64,
    pub queued_bytes: u64,
    pub in_flight_batches: u64,
    pub in_flight_tasks: u64,
    /// Current mean batch time (EWMA), once measured.
    pub mean_batch_secs: Option<f64>,
    pub actors_pending: u64,
    /// Ready actors (`busy + idle`).
    pub actors_ready: u64,
    pub actors_busy: u64,
    pub actors_idle: u64,
    /// Calls in flight over all actors.
    pub slots_in_use: u64,
    /// Pool size aimed for (`None`: as many as fit).
    pub pool_target: Option<usize>,
    /// Largest outputs-per-input ratio seen in a finished batch (the backpressure estimate).
    pub output_ratio: Option<f64>,
    /// Held back because the next stage's queue is full.
    pub backpressured: bool,
    /// No more work can come to this stage; its actors are gone.
    pub finished: bool,
}

impl std::ops::Deref for StageMetrics {
    type Target = StageCounts;

    fn deref(&self) -> &StageCounts {
        &self.counts
    }
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
                    counts: st.counters.clone(),
                    queued_tasks: st.queue.tasks(),
                    queued_bytes: st.queue.bytes(),
                    in_flight_batches: st.in_flight_batches,
                    in_flight_tasks: st.in_flight_tasks,
                    mean_batch_secs: st.packing.mean_batch_secs(),
                    actors_pending: pending,
                    actors_ready: busy + idle,
                    actors_busy: busy,
                    actors_idle: idle,
                    slots_in_use: slots,
                    pool_target: st.target,
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
            (a.first_start(), a.last_end(), a.mean_batch_secs),
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
            (
                a.busy_secs(),
                a.mean_batch_secs,
                a.last_end(),
                a.output_ratio
            ),
            (0.25, Some(0.25), Some(3.0), Some(0.5))
        );
        assert_eq!((a.actors_busy, a.actors_idle, a.slots_in_use), (1, 1, 1));
    }

    #[test]
    fn counts_merge_in_any_order_to_the_same_totals() {
        use crate::StageCounts;
        let part = |tasks: u64, busy: f64, start: f64, end: f64| {
            let mut c = StageCounts {
                tasks_in: tasks,
                tasks_done: tasks,
                batches_done: 1,
                ..StageCounts::default()
            };
            c.add_busy_secs(busy);
            c.started_at(start);
            c.ended_at(end);
            c
        };
        let parts = [
            part(1, 0.1, 5.0, 6.0),
            part(2, 0.2, 4.0, 9.5),
            part(3, 0.3, 7.0, 7.5),
        ];
        let mut forward = StageCounts::default();
        parts.iter().for_each(|p| forward.merge(p));
        let mut backward = StageCounts::default();
        parts.iter().rev().for_each(|p| backward.merge(p));
        assert_eq!(forward, backward);
        assert_eq!((forward.tasks_in, forward.batches()), (6, 3));
        assert_eq!(forward.busy_ns, 600_000_000);
        assert_eq!(
            (forward.first_start(), forward.last_end()),
            (Some(4.0), Some(9.5))
        );
        // Bad or negative durations add nothing; a negative clock counts as 0.
        forward.add_busy_secs(f64::NAN);
        forward.add_busy_secs(-1.0);
        assert_eq!(forward.busy_ns, 600_000_000);
        let mut fresh = StageCounts::default();
        fresh.started_at(-3.0);
        assert_eq!(fresh.first_start_us, Some(0));
    }
}
