//! What the Ray Data executor's driver and workers keep track of while a run goes on: the calls its
//! workers run ([`CallBook`]), whether the run still makes progress ([`StallClock`]), and what the
//! runs of one process reserve on each node ([`Claims`]). Pure bookkeeping: the Python side feeds it
//! what it sees (clocks in seconds) and acts on the answers.

use std::collections::{BTreeMap, HashMap};

use crate::errors::{CoreError, CoreResult};

/// Per run: the initial task lists still held, the worker calls that run long, the batches that
/// outlived their call timeout, and the attempts of each call (a Ray task id: the same for every
/// attempt Ray makes of it).
#[derive(Debug, Default, Clone)]
pub struct CallBook {
    held: Vec<bool>,
    /// (stage, worker) -> (first task id of the batch, its start, when the report was last repeated).
    running: HashMap<(usize, String), (String, f64, f64)>,
    /// (stage, task ids of the batch) -> (times it timed out, the limit).
    timed_out: BTreeMap<(usize, Vec<String>), (u32, f64)>,
    /// call -> (attempts begun, attempts that ended in a timeout).
    attempts: HashMap<String, (u32, u32)>,
}

impl CallBook {
    /// A run whose `lists` initial task lists are all held.
    pub fn new(lists: usize) -> Self {
        Self {
            held: vec![true; lists],
            ..Self::default()
        }
    }

    /// Checks that list `index` is still held (a retried call may ask after it was released).
    pub fn take(&self, index: usize) -> CoreResult<()> {
        match self.held.get(index) {
            Some(true) => Ok(()),
            _ => Err(CoreError::Config(format!(
                "initial task list {index} was already processed and released (a call was retried \
                 after it had handed over all its outputs)"
            ))),
        }
    }

    /// Lets the given lists go; returns those that were still held.
    pub fn release(&mut self, indices: &[usize]) -> Vec<usize> {
        let mut out = Vec::new();
        for &i in indices {
            if let Some(h) = self.held.get_mut(i) {
                if std::mem::replace(h, false) {
                    out.push(i);
                }
            }
        }
        out
    }

    pub fn held(&self) -> usize {
        self.held.iter().filter(|&&h| h).count()
    }

    /// `worker` runs a batch of `stage` whose first task is `task_id` since `started` (None: it ended).
    pub fn report(
        &mut self,
        stage: usize,
        worker: &str,
        task_id: Option<&str>,
        started: f64,
        now: f64,
    ) {
        let key = (stage, worker.to_string());
        match task_id {
            Some(t) => {
                self.running.insert(key, (t.to_string(), started, now));
            }
            None => {
                self.running.remove(&key);
            }
        }
    }

    /// Per stage: the first task of its oldest running batch and when that started, among reports
    /// repeated within `fresh` seconds (a worker that died stops repeating its report).
    pub fn oldest(&self, now: f64, fresh: f64) -> BTreeMap<usize, (String, f64)> {
        let mut out: BTreeMap<usize, (String, f64)> = BTreeMap::new();
        for ((stage, _), (task, started, seen)) in &self.running {
            if now - seen > fresh {
                continue;
            }
            match out.get(stage) {
                Some((t, s)) if (*s, t) <= (*started, task) => {}
                _ => {
                    out.insert(*stage, (task.clone(), *started));
                }
            }
        }
        out
    }

    /// The batch `task_ids` of `stage` outlived `limit` seconds in attempt `call` (whose worker ends).
    pub fn timed_out(&mut self, stage: usize, task_ids: Vec<String>, limit: f64, call: &str) {
        let entry = self
            .timed_out
            .entry((stage, task_ids))
            .or_insert((0, limit));
        *entry = (entry.0 + 1, limit);
        self.attempts.entry(call.to_string()).or_default().1 += 1;
    }

    /// Times the batch timed out and the limit, if it did.
    pub fn timeouts(&self, stage: usize, task_ids: &[String]) -> Option<(u32, f64)> {
        self.timed_out.get(&(stage, task_ids.to_vec())).copied()
    }

    pub fn all_timeouts(&self) -> &BTreeMap<(usize, Vec<String>), (u32, f64)> {
        &self.timed_out
    }

    /// An attempt of `call` begins: how many earlier attempts ended without a timeout (their worker
    /// died, or Ray re-ran the call to rebuild a lost output).
    pub fn begin(&mut self, call: &str) -> u32 {
        let (begun, timed) = self.attempts.entry(call.to_string()).or_default();
        *begun += 1;
        (*begun - 1).saturating_sub(*timed)
    }
}

/// Whether a run still makes progress. The driver shows it a fingerprint of what Ray Data's operators
/// did so far at every quiet poll; when it has not changed for `warn_after` seconds the driver is asked
/// to check whether the waiting stages are starved (no room for a worker): [`Stall::Warn`] the first
/// time, [`Stall::Fail`] once `timeout` seconds have passed. A run that is busy, not starved, starts
/// counting again ([`StallClock::busy`]).
#[derive(Debug, Clone)]
pub struct StallClock {
    warn_after: f64,
    timeout: f64,
    last: Option<Vec<u64>>,
    since: f64,
    warned: bool,
}

/// What the driver should do after a quiet poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// Nothing: progress, or not long enough without.
    Wait,
    /// Check for starvation; warn when starved.
    Warn,
    /// Check for starvation; fail the run when starved.
    Fail,
}

impl StallClock {
    /// Warns after a quarter of `timeout` (at most a minute) without progress, fails after `timeout`.
    pub fn new(timeout: f64, now: f64) -> Self {
        Self {
            warn_after: (timeout / 4.0).min(60.0),
            timeout,
            last: None,
            since: now,
            warned: false,
        }
    }

    /// Something came out: progress.
    pub fn progress(&mut self, state: Vec<u64>, now: f64) {
        self.last = Some(state);
        self.since = now;
        self.warned = false;
    }

    /// A poll without output; `state` is the operators' fingerprint.
    pub fn quiet(&mut self, state: Vec<u64>, now: f64) -> Stall {
        if self.last.as_ref() != Some(&state) {
            self.progress(state, now);
            return Stall::Wait;
        }
        let idle = now - self.since;
        if idle >= self.timeout {
            Stall::Fail
        } else if idle >= self.warn_after && !self.warned {
            self.warned = true;
            Stall::Warn
        } else {
            Stall::Wait
        }
    }

    /// The waiting stages have room: not a stall, count again from `now`.
    pub fn busy(&mut self, now: f64) {
        self.since = now;
        self.warned = false;
    }

    /// Seconds since the last progress.
    pub fn idle(&self, now: f64) -> f64 {
        now - self.since
    }
}

/// Whether none of the `waiting` requests (cpus, gpus per worker) fits on any node's free (cpus, gpus).
pub fn starved(waiting: &[(f64, f64)], free: &[(f64, f64)]) -> bool {
    const EPS: f64 = 1e-9;
    !waiting
        .iter()
        .any(|&(c, g)| free.iter().any(|&(fc, fg)| fc >= c - EPS && fg >= g - EPS))
}

/// What each run of one process reserved per node (cpus, gpus): a run planned while another one is
/// starting sees those reservations as taken (Ray's view of free resources lags).
#[derive(Debug, Default, Clone)]
pub struct Claims {
    runs: BTreeMap<String, HashMap<String, (f64, f64)>>,
}

/// A node as the planner sees it: id, free cpus, free gpus, total cpus, total gpus.
pub type NodeRoom = (String, f64, f64, f64, f64);

impl Claims {
    pub fn add(&mut self, token: &str, per_node: HashMap<String, (f64, f64)>) {
        self.runs.insert(token.to_string(), per_node);
    }

    pub fn remove(&mut self, token: &str) {
        self.runs.remove(token);
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Each node's free (cpus, gpus) with the other runs' claims taken off its totals (what Ray's
    /// view already shows as taken is not counted twice: the smaller of the two wins).
    pub fn free(&self, nodes: &[NodeRoom]) -> Vec<(f64, f64)> {
        nodes
            .iter()
            .map(|(id, cpus, gpus, total_c, total_g)| {
                let (hc, hg) = self
                    .runs
                    .values()
                    .filter_map(|c| c.get(id))
                    .fold((0.0, 0.0), |(a, b), (c, g)| (a + c, b + g));
                (
                    (cpus.min(total_c - hc)).max(0.0),
                    (gpus.min(total_g - hg)).max(0.0),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn lists_are_lent_until_released_once() {
        let mut b = CallBook::new(3);
        assert!(b.take(1).is_ok());
        assert_eq!(b.release(&[1, 1, 7]), vec![1]);
        assert_eq!(b.held(), 2);
        let err = b.take(1).unwrap_err().to_string();
        assert!(
            err.contains("initial task list 1 was already processed and released"),
            "{err}"
        );
        assert!(b.take(3).is_err());
    }

    #[test]
    fn oldest_running_batch_per_stage_among_fresh_reports() {
        let mut b = CallBook::new(0);
        b.report(0, "w1", Some("t5"), 10.0, 11.0);
        b.report(0, "w2", Some("t1"), 5.0, 11.0);
        b.report(1, "w3", Some("t9"), 1.0, 2.0); // not repeated since: its worker died
        b.report(1, "w4", Some("t7"), 8.0, 11.0);
        let oldest = b.oldest(12.0, 5.0);
        assert_eq!(oldest.get(&0), Some(&("t1".to_string(), 5.0)));
        assert_eq!(oldest.get(&1), Some(&("t7".to_string(), 8.0)));
        b.report(0, "w2", None, 0.0, 12.0);
        assert_eq!(b.oldest(12.0, 5.0).get(&0), Some(&("t5".to_string(), 10.0)));
    }

    #[test]
    fn timeouts_count_per_batch_and_are_not_worker_deaths() {
        let mut b = CallBook::new(0);
        assert_eq!(b.begin("c1"), 0);
        b.timed_out(0, ids(&["t2"]), 3.0, "c1");
        assert_eq!(b.begin("c1"), 0); // the first attempt timed out: not a death
        assert_eq!(b.timeouts(0, &ids(&["t2"])), Some((1, 3.0)));
        assert_eq!(b.begin("c1"), 1); // the second attempt's worker died
        b.timed_out(0, ids(&["t2"]), 3.0, "c1");
        assert_eq!(b.timeouts(0, &ids(&["t2"])), Some((2, 3.0)));
        assert_eq!(b.timeouts(1, &ids(&["t2"])), None);
        assert_eq!(b.begin("c2"), 0);
    }

    #[test]
    fn stall_clock_warns_once_then_fails() {
        let mut c = StallClock::new(40.0, 0.0);
        assert_eq!(c.quiet(vec![1], 1.0), Stall::Wait); // first fingerprint: progress
        assert_eq!(c.quiet(vec![1], 5.0), Stall::Wait);
        assert_eq!(c.quiet(vec![1], 11.5), Stall::Warn);
        assert_eq!(c.quiet(vec![1], 20.0), Stall::Wait);
        assert_eq!(c.quiet(vec![1], 41.5), Stall::Fail);
        c.busy(42.0);
        assert_eq!(c.quiet(vec![1], 43.0), Stall::Wait);
        assert_eq!(c.quiet(vec![2], 60.0), Stall::Wait); // changed: progress
        assert_eq!(c.idle(61.0), 1.0);
    }

    #[test]
    fn starved_means_no_waiting_request_fits_any_node() {
        assert!(starved(&[(2.0, 0.0)], &[(1.0, 0.0), (1.5, 1.0)]));
        assert!(!starved(&[(2.0, 0.0), (1.0, 0.0)], &[(1.0, 0.0)]));
        assert!(!starved(&[], &[]) || starved(&[], &[]));
        assert!(starved(&[(0.0, 1.0)], &[(8.0, 0.0)]));
    }

    #[test]
    fn claims_of_other_runs_come_off_the_totals() {
        let mut c = Claims::default();
        let nodes = vec![
            ("a".to_string(), 4.0, 0.0, 4.0, 0.0),
            ("b".to_string(), 1.0, 1.0, 2.0, 1.0),
        ];
        c.add("r1", HashMap::from([("a".to_string(), (3.0, 0.0))]));
        assert_eq!(c.free(&nodes), vec![(1.0, 0.0), (1.0, 1.0)]);
        c.add(
            "r2",
            HashMap::from([("a".to_string(), (3.0, 0.0)), ("b".to_string(), (0.5, 1.0))]),
        );
        assert_eq!(c.free(&nodes), vec![(0.0, 0.0), (1.0, 0.0)]);
        c.remove("r1");
        c.remove("r2");
        assert!(c.is_empty());
        assert_eq!(c.free(&nodes), vec![(4.0, 0.0), (1.0, 1.0)]);
    }
}
