//! Batching: per-stage FIFO input queues, when a batch may be partial, how many batches one remote
//! call carries, and dispatching calls to actors' free slots.
//!
//! Rules:
//! - A stage's queue is FIFO; batches that failed on infrastructure come back at its front, as the
//!   same batch (same id and tasks, `attempt + 1`), and go before any new batch.
//! - A batch holds at most `batch_size` tasks, and exactly `batch_size` unless the stage's upstream has
//!   drained for good (input closed and every earlier stage finished), `batch_timeout_secs` passed
//!   since its oldest queued task arrived, or its own queue is at its bound while holding fewer than
//!   `batch_size` tasks (so a bound smaller than `batch_size` cannot stall the pipeline).
//! - A call carries `k` batches: 1 until the stage has a measured mean batch time (EWMA of
//!   `busy_secs`), then `ceil(20 × call_overhead / mean)` clamped to `1..=max_batches_per_call`, and
//!   never more than `ceil(available batches / free slots)`, so every ready actor's slots get work.
//!   Once the stage's upstream has drained, the cap is `ceil(available / all slots of ready actors)`:
//!   the last calls are split evenly, so the run does not end on one actor working through a packed
//!   call while the others sit idle.
//! - Calls go to ready actors' free slots, least-loaded first (all actors get a first call before any
//!   gets a second), stage by stage from the last one (draining beats filling).
//! - A batch that was in flight on an actor that died is retried alone: in a call of its own, to an
//!   actor with nothing else in flight, which takes no other call until it is done. So a batch that
//!   kills its actor uses up only its own retries, not those of the batches that ran beside it. While
//!   such a retry waits for an actor to drain, its stage takes no new call.

use std::collections::VecDeque;

use crate::event::{Batch, Command};
use crate::lineage::Tag;
use crate::scheduler::{ActorState, BatchRec, BatchState, Scheduler};
use crate::spec::{ActorId, BatchId, TaskId};

/// Calls should carry this many times the cost of one call in work.
const TARGET_CALL_MULTIPLE: f64 = 20.0;
/// Weight of the newest sample in the mean batch time.
const EWMA_ALPHA: f64 = 0.2;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Waiting {
    pub task: TaskId,
    /// Its roots (see `lineage.rs`).
    pub tag: Tag,
    pub bytes: u64,
    /// When it arrived (driver clock, seconds).
    pub since: f64,
}

#[derive(Debug, Default)]
pub(crate) struct StageQueue {
    fresh: VecDeque<Waiting>,
    fresh_bytes: u64,
    retry: VecDeque<BatchId>,
    retry_tasks: u64,
    retry_bytes: u64,
}

impl StageQueue {
    #[inline]
    pub fn push(&mut self, task: TaskId, tag: Tag, bytes: u64, since: f64) {
        self.fresh.push_back(Waiting {
            task,
            tag,
            bytes,
            since,
        });
        self.fresh_bytes += bytes;
    }

    pub fn push_retry_front(&mut self, batch: BatchId, tasks: u64, bytes: u64) {
        self.retry.push_front(batch);
        self.retry_tasks += tasks;
        self.retry_bytes += bytes;
    }

    /// Tasks waiting, retries included.
    pub fn tasks(&self) -> u64 {
        self.fresh.len() as u64 + self.retry_tasks
    }

    pub fn bytes(&self) -> u64 {
        self.fresh_bytes + self.retry_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.fresh.is_empty() && self.retry.is_empty()
    }

    pub fn oldest_since(&self) -> Option<f64> {
        self.fresh.front().map(|w| w.since)
    }

    /// Set every arrival time to `now` (when the driver's clock starts after inputs were added).
    pub fn restamp(&mut self, now: f64) {
        for w in &mut self.fresh {
            w.since = now;
        }
    }

    /// Batches that could be dispatched now.
    pub fn available_batches(&self, batch_size: usize, partial_ok: bool) -> usize {
        let n = self.fresh.len();
        let fresh = if partial_ok {
            n.div_ceil(batch_size)
        } else {
            n / batch_size
        };
        self.retry.len() + fresh
    }

    /// The tag of a task waiting here (fresh ones only: a retried batch holds its own).
    pub fn tag_of(&self, task: TaskId) -> Option<Tag> {
        // From the back: the newest tasks (e.g. outputs just queued) are asked for most.
        self.fresh
            .iter()
            .rev()
            .find(|w| w.task == task)
            .map(|w| w.tag)
    }

    pub fn shrink_to_fit(&mut self) {
        self.fresh.shrink_to_fit();
        self.retry.shrink_to_fit();
    }

    pub fn heap_bytes(&self) -> usize {
        self.fresh.capacity() * std::mem::size_of::<Waiting>() + self.retry.capacity() * 8
    }
}

/// Measured cost of one batch, from which the call size follows.
#[derive(Debug, Default)]
pub(crate) struct Packing {
    mean_batch_secs: Option<f64>,
}

impl Packing {
    pub fn observe(&mut self, busy_secs: f64) {
        if !busy_secs.is_finite() || busy_secs < 0.0 {
            return;
        }
        self.mean_batch_secs = Some(match self.mean_batch_secs {
            None => busy_secs,
            Some(m) => m + EWMA_ALPHA * (busy_secs - m),
        });
    }

    pub fn mean_batch_secs(&self) -> Option<f64> {
        self.mean_batch_secs
    }

    /// How many batches the next call carries (see the module docs).
    pub fn batches_per_call(
        &self,
        call_overhead_secs: f64,
        max_per_call: usize,
        available: usize,
        spread_over: usize,
    ) -> usize {
        let want = match self.mean_batch_secs {
            None => 1,
            Some(m) if m <= 0.0 => max_per_call,
            Some(m) => {
                let k = (TARGET_CALL_MULTIPLE * call_overhead_secs / m).ceil();
                if k >= max_per_call as f64 {
                    max_per_call
                } else {
                    (k as usize).max(1)
                }
            }
        };
        want.min(available.div_ceil(spread_over.max(1))).max(1)
    }
}

impl Scheduler {
    /// May stage `s` dispatch a batch smaller than its `batch_size` now?
    pub(crate) fn partial_allowed(&self, s: usize) -> bool {
        let upstream_drained = self.upstream_drained(s);
        let st = &self.stages[s];
        let timed_out = match (self.config.batch_timeout_secs, st.queue.oldest_since()) {
            (Some(timeout), Some(since)) => self.now - since >= timeout,
            _ => false,
        };
        // A full queue that cannot make a full batch (its bound is below `batch_size`) would wait
        // forever; one that can sends full batches only.
        let at_bound = (st.queue.tasks() >= st.spec.queue_max_tasks as u64
            || st.queue.bytes() >= st.spec.queue_max_bytes)
            && st.queue.tasks() < st.spec.batch_size as u64;
        upstream_drained || timed_out || at_bound
    }

    /// No more input will reach stage `s`: the run's input is closed and every earlier stage finished.
    fn upstream_drained(&self, s: usize) -> bool {
        if s == 0 {
            self.input_closed
        } else {
            self.stages[s - 1].finished
        }
    }

    /// Batches stage `s` could dispatch now, and whether partial batches are allowed.
    pub(crate) fn available_batches(&self, s: usize) -> (usize, bool) {
        let partial = self.partial_allowed(s);
        let st = &self.stages[s];
        (
            st.queue.available_batches(st.spec.batch_size, partial),
            partial,
        )
    }

    /// Stage `s` has batches to run and downstream room for their outputs.
    pub(crate) fn has_dispatchable_work(&self, s: usize) -> bool {
        !self.stages[s].finished
            && self.active(s)
            && self.available_batches(s).0 > 0
            && self.downstream_admits(s)
    }

    /// May stage `s` run now? Always, except stage by stage, where it waits for the stage before.
    pub(crate) fn active(&self, s: usize) -> bool {
        !self.config.stage_by_stage || s == 0 || self.stages[s - 1].finished
    }

    /// Give free slots of stage `s`'s ready actors calls, while batches and downstream room last.
    pub(crate) fn dispatch(&mut self, s: usize) {
        let st = &self.stages[s];
        if st.finished || st.actors.is_empty() || !self.active(s) {
            return;
        }
        // Packed calls stop at an isolated retry; send it alone, then go on packing.
        while self.dispatch_isolated(s) && self.dispatch_packed(s) {}
    }

    fn isolated_front(&self, s: usize) -> bool {
        let front = self.stages[s].queue.retry.front();
        front.is_some_and(|b| self.batches[b].isolate)
    }

    /// Send retries that must run alone, each in its own call to an actor with nothing in flight.
    /// Returns false while one waits for such an actor: the stage then takes no new call, so that
    /// its actors drain.
    fn dispatch_isolated(&mut self, s: usize) -> bool {
        while self.isolated_front(s) {
            if !self.downstream_admits(s) {
                return false;
            }
            let idle = self.stages[s].actors.iter().copied().find(|&a| {
                let rec = &self.actors[a as usize];
                rec.state == ActorState::Ready && rec.calls == 0 && !rec.retiring
            });
            let Some(actor) = idle else {
                return false;
            };
            self.actors[actor as usize].isolated = true;
            self.submit_call(s, actor, 1, false, true);
        }
        true
    }

    /// Packed calls to free slots, level by level so that every actor gets its first call before
    /// any gets its second. Returns true when it stopped at a retry that must run alone.
    fn dispatch_packed(&mut self, s: usize) -> bool {
        let st = &self.stages[s];
        let slots = st.spec.slots_per_actor;
        let (mut free, mut ready) = (0usize, 0usize);
        for a in st.actors.iter().map(|&a| &self.actors[a as usize]) {
            if a.state == ActorState::Ready && !a.isolated && !a.retiring {
                free += slots.saturating_sub(a.calls);
                ready += 1;
            }
        }
        if free == 0 {
            return false;
        }
        let (avail, partial) = self.available_batches(s);
        if avail == 0 {
            return false;
        }
        let spread_over = if self.upstream_drained(s) {
            ready * slots
        } else {
            free
        };
        let k = st.packing.batches_per_call(
            self.config.call_overhead_secs,
            st.spec.max_batches_per_call,
            avail,
            spread_over,
        );
        for level in 0..slots {
            let mut i = 0;
            while i < self.stages[s].actors.len() {
                let actor = self.stages[s].actors[i];
                i += 1;
                let rec = &self.actors[actor as usize];
                if rec.state != ActorState::Ready
                    || rec.isolated
                    || rec.retiring
                    || rec.calls != level
                {
                    continue;
                }
                if !self.downstream_admits(s) {
                    return false;
                }
                // An actor near its batch budget gets only what it has left.
                let k = match self.stages[s].spec.max_batches_per_actor {
                    Some(most) => k.min(most.saturating_sub(rec.batches_given).max(1) as usize),
                    None => k,
                };
                if !self.submit_call(s, actor, k, partial, false) {
                    return self.isolated_front(s);
                }
            }
        }
        false
    }

    /// Form up to `k` batches of stage `s` (retries first) and send them to `actor` in one call.
    /// Returns false when the queue had nothing to form.
    fn submit_call(
        &mut self,
        s: usize,
        actor: ActorId,
        k: usize,
        partial: bool,
        alone: bool,
    ) -> bool {
        let call = self.next_call;
        let now = self.now;
        let mut batches = Vec::with_capacity(k);
        for _ in 0..k {
            let Some(id) = self.next_batch(s, partial, alone) else {
                break;
            };
            let rec = self
                .batches
                .get_mut(&id)
                .expect("a queued batch has a record");
            rec.state = BatchState::InFlight;
            rec.actor = actor;
            rec.call = call;
            rec.isolate = false;
            let n = rec.inputs.len() as u64;
            batches.push(Batch {
                id,
                stage: s,
                tasks: rec.inputs.clone(),
                attempt: rec.attempt,
            });
            let st = &mut self.stages[s];
            st.in_flight_batches += 1;
            st.in_flight_tasks += n;
            st.in_flight_bytes += rec.bytes;
            self.ledger.in_flight += n;
            self.actors[actor as usize].in_flight.push(id);
        }
        if batches.is_empty() {
            return false;
        }
        self.calls.insert(call, batches.len() as u32);
        self.next_call += 1;
        let rec = &mut self.actors[actor as usize];
        rec.calls += 1;
        rec.batches_given += batches.len() as u64;
        // Its budget is spent: no new call; killed once its calls are done, and replaced.
        if self.stages[s]
            .spec
            .max_batches_per_actor
            .is_some_and(|most| rec.batches_given >= most)
        {
            self.retire(actor);
        }
        let c = &mut self.stages[s].counters;
        c.calls += 1;
        c.started_at(now);
        self.out.push(Command::Submit { actor, batches });
        true
    }

    /// The next batch of stage `s`: a retried one, else a new one from the queue's front. A retry
    /// that must run alone is only taken for a call of its own (`alone`).
    fn next_batch(&mut self, s: usize, partial: bool, alone: bool) -> Option<BatchId> {
        if self.isolated_front(s) != alone {
            return None;
        }
        let st = &mut self.stages[s];
        if let Some(id) = st.queue.retry.pop_front() {
            let rec = &self.batches[&id];
            st.queue.retry_tasks -= rec.inputs.len() as u64;
            st.queue.retry_bytes -= rec.bytes;
            return Some(id);
        }
        let q = &mut st.queue;
        let size = st.spec.batch_size;
        let n = q.fresh.len().min(size);
        if n == 0 || (n < size && !partial) {
            return None;
        }
        let (mut bytes, mut inputs, mut tags) = (0, Vec::with_capacity(n), Vec::with_capacity(n));
        for w in q.fresh.drain(..n) {
            inputs.push(w.task);
            tags.push(w.tag);
            bytes += w.bytes;
        }
        q.fresh_bytes -= bytes;
        let id = self.next_batch;
        self.next_batch += 1;
        self.batches.insert(
            id,
            BatchRec {
                inputs,
                tags,
                stage: s,
                attempt: 0,
                state: BatchState::Waiting,
                actor: 0,
                call: 0,
                bytes,
                isolate: false,
                user_failures: 0,
                blameless: 0,
            },
        );
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_counts_fresh_and_retried_tasks() {
        let mut q = StageQueue::default();
        for t in 0..5 {
            q.push(t, t, 10, 1.0);
        }
        q.push_retry_front(7, 3, 30);
        assert_eq!((q.tasks(), q.bytes()), (8, 80));
        assert_eq!(q.available_batches(2, false), 1 + 2);
        assert_eq!(q.available_batches(2, true), 1 + 3);
        assert_eq!(q.oldest_since(), Some(1.0));
        q.restamp(5.0);
        assert_eq!(q.oldest_since(), Some(5.0));
    }

    #[test]
    fn one_batch_per_call_until_measured_then_sized_by_overhead() {
        let mut p = Packing::default();
        assert_eq!(p.batches_per_call(0.001, 64, 1000, 1), 1);
        p.observe(0.001); // target 20 ms of work: 20 batches of 1 ms
        assert_eq!(p.batches_per_call(0.001, 64, 1000, 1), 20);
        assert_eq!(
            p.batches_per_call(0.001, 8, 1000, 1),
            8,
            "capped by max_batches_per_call"
        );
        assert_eq!(
            p.batches_per_call(0.001, 64, 30, 4),
            8,
            "fair spread: ceil(30 / 4)"
        );
        assert_eq!(p.batches_per_call(0.001, 64, 3, 8), 1);
        p.observe(1.0); // EWMA moves toward slow batches: one per call
        assert_eq!(p.batches_per_call(0.001, 64, 1000, 1), 1);
        let mut free = Packing::default();
        free.observe(0.0);
        assert_eq!(free.batches_per_call(0.001, 64, 1000, 2), 64);
        assert!(free.mean_batch_secs().is_some());
    }

    #[test]
    fn bad_samples_are_ignored() {
        let mut p = Packing::default();
        p.observe(f64::NAN);
        p.observe(-1.0);
        assert_eq!(p.mean_batch_secs(), None);
    }
}
