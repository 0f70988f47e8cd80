//! The scheduler: one state machine that turns events into commands.
//!
//! The rules live in files named after them and extend [`Scheduler`] there: `batching.rs` (queues,
//! batch forming, call packing, dispatch), `backpressure.rs` (bounded queues), `placement.rs` (pool
//! sizing, node packing, rebalancing), `lineage.rs` (ancestry and the balance), `metrics.rs`. This file
//! holds the state, validation, the event handlers, failures and termination.
//!
//! Memory is bounded by the work queued and in flight: a batch's record (and its call's) goes when it
//! ends, and lineage keeps only live tasks' roots and a count per open source task (`lineage.rs`).
//! Reports about a batch that has ended are stale (see `handle`).
//!
//! Decisions are made lazily: events only update state and mark the scheduler dirty, and `poll` runs
//! one scheduling pass (retire finished stages, fill free capacity, dispatch downstream first, then
//! rebalance when due). A `poll` with nothing changed costs almost nothing.
//!
//! Failures:
//! - `BatchFailed { Infra }`, and every batch in flight on an actor reported by `ActorFailed { Infra }`:
//!   the same batch goes back to the front of its stage's queue with `attempt + 1`; a batch that was
//!   on a dead actor is retried alone (see `batching.rs`). A batch that fails on infrastructure after
//!   `max_retries` counted retries fails for good. An actor that dies with several batches in
//!   flight counts against none of them (blame isolation): each is retried alone first, so only the
//!   batch that kills its actor again is blamed, also with `max_retries = 0`.
//! - `BatchFailed { User }`: the batch goes back to the front of its queue while it has failed in
//!   user code at most the stage's `max_user_retries` times (these retries do not count against
//!   `max_retries`), then fails for good. With `replace_actor_on_failure` its actor is retired.
//! - Retired actors (too old: `max_actor_age_secs`, at most one per `actor_restart_interval_secs`
//!   per stage; or replaced after a failure) take no new call and are killed once their calls are
//!   done; the pool fill starts their replacements.
//! - A batch failed for good: with `ignore_failures` (the stage's own, else the run's),
//!   `RecordFailure` and `Drop` of its inputs, and the run goes on; else `Abort` carrying the `Failure`.
//! - A dead actor is replaced at once while its stage has work to come; after more than
//!   `3 + 2 × max(pool target, largest pool so far)` deaths in one stage the run aborts.
//! - `ActorFailed { User }` (its setup raised): a fresh actor takes its place, up to `max_retries`
//!   such failures per stage; one more aborts the run, naming the stage.
//! - `Abort` and `Finish` come last, after a `KillActor` for every live actor; nothing follows them.
//!   `Finish` comes exactly when the input is closed and every task is accounted for (`balance()`).

use std::mem;
use std::ops::Range;

use crate::backpressure::OutputEstimate;
use crate::batching::{Packing, StageQueue};
use crate::errors::{CoreError, CoreResult};
use crate::event::{Command, Event, Failure, FailureKind};
use crate::lineage::{Balance, IdMap, Lineage, LiveRecords, Tag};
use crate::metrics::StageCounts;
use crate::placement::{Cluster, Grant, Need};
use crate::spec::{
    ActorId, BatchId, NodeSpec, PoolSize, SchedulerConfig, StageSpec, TaskId, TaskMeta,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ActorState {
    /// Created; waiting for `ActorReady`.
    Pending,
    Ready,
    /// Killed by the scheduler or reported dead: holds no resources, takes no calls.
    Gone,
}

#[derive(Debug)]
pub(crate) struct ActorRec {
    pub stage: usize,
    pub grant: Grant,
    pub state: ActorState,
    /// Remote calls in flight (at most the stage's `slots_per_actor`).
    pub calls: usize,
    /// Batches in flight on this actor (to retry them if it dies).
    pub in_flight: Vec<BatchId>,
    /// Clock when it last became idle (ready with no call in flight).
    pub idle_since: f64,
    /// Runs a call that must be alone on it (a batch retried after an actor death): takes no other.
    pub isolated: bool,
    /// Clock when it became ready.
    pub ready_at: f64,
    /// Takes no new call; killed (and replaced by the pool fill) once its calls are done.
    pub retiring: bool,
    /// Batches handed to it so far (for `max_batches_per_actor`).
    pub batches_given: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchState {
    /// Back in its stage's queue after an infrastructure failure.
    Waiting,
    InFlight,
}

/// A batch that has not ended (queued for a retry or in flight); forgotten once it succeeds or
/// fails for good.
#[derive(Debug)]
pub(crate) struct BatchRec {
    /// Its input tasks, in order, and their tags (see `lineage.rs`).
    pub inputs: Vec<TaskId>,
    pub tags: Vec<Tag>,
    pub stage: usize,
    pub attempt: u32,
    pub state: BatchState,
    pub actor: ActorId,
    /// Key in `Scheduler::calls` of the call carrying this batch.
    pub call: u64,
    /// Sum of the input tasks' bytes.
    pub bytes: u64,
    /// Was in flight on an actor that died: its retry runs alone, so that a batch that kills its
    /// actor cannot take the batches beside it down again.
    pub isolate: bool,
    /// Attempts that failed in user code.
    pub user_failures: u32,
    /// Attempts lost with an actor that had other batches in flight: not counted against the
    /// batch, which runs alone next (so the batch that killed the actor is the one blamed).
    pub blameless: u32,
}

#[derive(Debug)]
pub(crate) struct StageState {
    pub spec: StageSpec,
    pub need: Need,
    /// Pool size to aim for; `None`: as many as fit.
    pub target: Option<usize>,
    pub queue: StageQueue,
    pub packing: Packing,
    pub estimate: OutputEstimate,
    /// Live actors (pending or ready).
    pub actors: Vec<ActorId>,
    /// Live actors per node.
    pub per_node: Vec<u32>,
    /// No input can ever arrive again and nothing is queued or in flight.
    pub finished: bool,
    pub deaths: u32,
    /// Actors whose setup raised.
    pub setup_failures: u32,
    /// Clock of the last age-based actor replacement.
    pub last_restart: f64,
    pub peak_actors: usize,
    pub in_flight_batches: u64,
    pub in_flight_tasks: u64,
    pub in_flight_bytes: u64,
    pub counters: StageCounts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Running,
    Finished,
    Aborted,
}

/// The sans-IO streaming scheduler: events in (`handle`, `add_tasks`, `close_input`), commands out
/// (`poll`). Each rule is documented in the module named after it (batching, backpressure, placement,
/// lineage).
#[derive(Debug)]
pub struct Scheduler {
    pub(crate) stages: Vec<StageState>,
    pub(crate) nodes: Vec<NodeSpec>,
    pub(crate) config: SchedulerConfig,
    pub(crate) cluster: Cluster,
    pub(crate) actors: Vec<ActorRec>,
    /// Batches that have not ended; ids below `next_batch` without a record have ended.
    pub(crate) batches: IdMap<BatchRec>,
    pub(crate) next_batch: BatchId,
    /// Batches of each call still running; the call's slot frees (and its entry goes) at 0.
    pub(crate) calls: IdMap<u32>,
    pub(crate) next_call: u64,
    pub(crate) lineage: Lineage,
    /// Counts of the balance; `queued` and `in_flight` are filled in when asked.
    pub(crate) ledger: Balance,
    pub(crate) now: f64,
    pub(crate) clock_started: bool,
    pub(crate) input_closed: bool,
    pub(crate) outcome: Outcome,
    /// Commands in decision order; emits and drops are gathered apart and appended by `poll`.
    pub(crate) out: Vec<Command>,
    pub(crate) emits: Vec<TaskId>,
    /// Outputs of the last stage not yet handed out, by runs of ids sharing a tag: they end (for
    /// their roots) when `poll` hands them out.
    pub(crate) emit_tags: Vec<(Range<TaskId>, Tag)>,
    /// Roots completed, handed out by `take_completed_roots` once `poll` has handed out the
    /// commands that ended their last descendants.
    pub(crate) completed_roots: Vec<TaskId>,
    pub(crate) drops: Vec<TaskId>,
    /// `Finish` or `Abort`, handed out once, after everything else.
    pub(crate) terminal: Option<Command>,
    pub(crate) dirty: bool,
    pub(crate) capacity_freed: bool,
    pub(crate) rebalance_due: bool,
    pub(crate) last_rebalance: f64,
    /// Clock of the last rebalancing move that grew a stage which had actors.
    pub(crate) last_growth: f64,
    /// Actors draining before they are killed (see `retire`).
    pub(crate) retiring: Vec<ActorId>,
    pub(crate) warnings: Vec<String>,
    /// Reports of attempts that were given up, or duplicates: ignored.
    pub(crate) stale_results: u64,
}

fn config_error(msg: String) -> CoreError {
    CoreError::Config(msg)
}

pub(crate) fn check_resource(what: &str, owner: &str, value: f64) -> CoreResult<()> {
    if !value.is_finite() || value < 0.0 {
        return Err(config_error(format!(
            "{owner}: {what} must be a finite number >= 0, got {value}"
        )));
    }
    Ok(())
}

fn validate_stage(spec: &StageSpec) -> CoreResult<()> {
    let owner = format!("stage '{}'", spec.name);
    let positive = [
        ("batch_size", spec.batch_size),
        ("slots_per_actor", spec.slots_per_actor),
        ("max_batches_per_call", spec.max_batches_per_call),
        ("queue_max_tasks", spec.queue_max_tasks),
    ];
    for (what, value) in positive {
        if value == 0 {
            return Err(config_error(format!("{owner}: {what} must be >= 1")));
        }
    }
    if spec.queue_max_bytes == 0 {
        return Err(config_error(format!(
            "{owner}: queue_max_bytes must be >= 1"
        )));
    }
    if let Some(age) = spec.max_actor_age_secs {
        if !age.is_finite() || age <= 0.0 {
            return Err(config_error(format!(
                "{owner}: max_actor_age_secs must be a finite number > 0, got {age}"
            )));
        }
    }
    check_resource(
        "actor_restart_interval_secs",
        &owner,
        spec.actor_restart_interval_secs,
    )?;
    check_resource("cpus", &owner, spec.resources.cpus)?;
    check_resource("gpus", &owner, spec.resources.gpus)?;
    if spec.resources.gpus > 1.0 && spec.resources.gpus.fract() != 0.0 {
        return Err(config_error(format!(
            "{owner}: gpus above 1 must be a whole number, got {}",
            spec.resources.gpus
        )));
    }
    if spec.max_batches_per_actor == Some(0) {
        return Err(config_error(format!(
            "{owner}: max_batches_per_actor must be >= 1"
        )));
    }
    match spec.pool {
        PoolSize::Fixed(0) => Err(config_error(format!("{owner}: pool size must be >= 1"))),
        PoolSize::Auto { max: Some(0) } => {
            Err(config_error(format!("{owner}: max pool size must be >= 1")))
        }
        PoolSize::Auto { max } => {
            let min = spec.min_pool_size;
            if let Some(hi) = max.filter(|&hi| min > hi) {
                return Err(config_error(format!(
                    "{owner}: min pool size ({min}) is larger than the max pool size ({hi})"
                )));
            }
            match spec.initial_pool_size {
                Some(0) => Err(config_error(format!(
                    "{owner}: initial pool size must be >= 1"
                ))),
                Some(n) if n < min || max.is_some_and(|hi| n > hi) => Err(config_error(format!(
                    "{owner}: initial pool size ({n}) must lie between the min pool size ({min}) \
                         and the max pool size ({})",
                    max.map_or("unbounded".to_string(), |hi| hi.to_string())
                ))),
                _ => Ok(()),
            }
        }
        PoolSize::Fixed(_) => Ok(()),
    }
}

fn validate_config(config: &SchedulerConfig) -> CoreResult<()> {
    let non_negative = [
        ("call_overhead_secs", Some(config.call_overhead_secs)),
        (
            "rebalance_interval_secs",
            Some(config.rebalance_interval_secs),
        ),
        ("actor_start_secs", Some(config.actor_start_secs)),
        ("growth_interval_secs", Some(config.growth_interval_secs)),
        ("batch_timeout_secs", config.batch_timeout_secs),
    ];
    for (what, value) in non_negative {
        if let Some(v) = value {
            if !v.is_finite() || v < 0.0 {
                return Err(config_error(format!(
                    "scheduler: {what} must be a finite number >= 0, got {v}"
                )));
            }
        }
    }
    Ok(())
}

impl Scheduler {
    /// Validate the pipeline against the cluster and plan the initial pools (handed out by the first
    /// `poll` as `CreateActor`s).
    ///
    /// Errors: `Config` for an invalid spec (naming the stage), `Infeasible` when there are no nodes or
    /// a stage's actor fits on no node.
    pub fn new(
        stages: Vec<StageSpec>,
        nodes: Vec<NodeSpec>,
        config: SchedulerConfig,
    ) -> CoreResult<Self> {
        if stages.is_empty() {
            return Err(config_error("a pipeline needs at least one stage".into()));
        }
        for spec in &stages {
            validate_stage(spec)?;
        }
        validate_config(&config)?;
        for node in &nodes {
            let owner = format!("node '{}'", node.id);
            check_resource("cpus", &owner, node.cpus)?;
            check_resource("gpus", &owner, node.gpus)?;
        }
        let cluster = Cluster::new(&nodes);
        for spec in &stages {
            cluster.check_feasible(spec)?;
        }
        let n_nodes = nodes.len();
        let stages = stages
            .into_iter()
            .map(|spec| StageState {
                need: Need::of(&spec.resources),
                target: crate::placement::pool_target(&spec, n_nodes),
                spec,
                queue: StageQueue::default(),
                packing: Packing::default(),
                estimate: OutputEstimate::default(),
                actors: Vec::new(),
                per_node: vec![0; n_nodes],
                finished: false,
                deaths: 0,
                setup_failures: 0,
                last_restart: f64::NEG_INFINITY,
                peak_actors: 0,
                in_flight_batches: 0,
                in_flight_tasks: 0,
                in_flight_bytes: 0,
                counters: StageCounts::default(),
            })
            .collect();
        let mut scheduler = Self {
            stages,
            nodes,
            config,
            cluster,
            actors: Vec::new(),
            batches: IdMap::default(),
            next_batch: 0,
            calls: IdMap::default(),
            next_call: 0,
            lineage: Lineage::default(),
            ledger: Balance::default(),
            now: 0.0,
            clock_started: false,
            input_closed: false,
            outcome: Outcome::Running,
            out: Vec::new(),
            emits: Vec::new(),
            emit_tags: Vec::new(),
            completed_roots: Vec::new(),
            drops: Vec::new(),
            terminal: None,
            dirty: true,
            capacity_freed: false,
            rebalance_due: false,
            last_rebalance: f64::NEG_INFINITY,
            last_growth: f64::NEG_INFINITY,
            retiring: Vec::new(),
            warnings: Vec::new(),
            stale_results: 0,
        };
        scheduler.initial_placement();
        Ok(scheduler)
    }

    // ----- inputs -------------------------------------------------------------------------------

    /// Add inputs of the first stage; returns their ids (dense, in order). Protocol error after
    /// `close_input`.
    pub fn add_tasks(&mut self, metas: &[TaskMeta]) -> CoreResult<Vec<TaskId>> {
        Ok(self.add_tasks_range(metas)?.collect())
    }

    /// `add_tasks`, returning the id range instead of a vector.
    pub fn add_tasks_range(&mut self, metas: &[TaskMeta]) -> CoreResult<Range<TaskId>> {
        if self.input_closed {
            return Err(CoreError::Protocol("add_tasks after close_input".into()));
        }
        let ids = self.lineage.new_roots(metas.len());
        let now = self.now;
        let stage = &mut self.stages[0];
        for (id, meta) in ids.clone().zip(metas) {
            stage.queue.push(id, id, meta.bytes, now);
            stage.counters.tasks_in += 1;
            stage.counters.bytes_in += meta.bytes;
            stage.counters.items_in += meta.items;
        }
        self.ledger.initial += metas.len() as u64;
        self.dirty = true;
        Ok(ids)
    }

    /// No more inputs will come: partial batches may go, and the run can finish.
    pub fn close_input(&mut self) {
        if !self.input_closed {
            self.input_closed = true;
            self.dirty = true;
        }
    }

    // ----- events -------------------------------------------------------------------------------

    /// Apply one event. Protocol error for an unknown batch or actor, an attempt that was never
    /// submitted, or an actor reported ready twice; the state is unchanged then. A report of an
    /// attempt that is no longer the batch's current one (given up after a timeout or an actor loss,
    /// or already reported) is ignored and counted (`stale_results`). After `Finish`/`Abort`, events
    /// about known batches and actors are accepted and ignored.
    pub fn handle(&mut self, event: Event) -> CoreResult<()> {
        match event {
            Event::Tick { now } => {
                self.tick(now);
                Ok(())
            }
            Event::ActorReady { actor } => self.actor_ready(actor),
            Event::ActorFailed {
                actor,
                kind,
                message,
            } => self.actor_failed(actor, kind, &message),
            Event::BatchDone {
                batch,
                attempt,
                outputs,
                busy_secs,
            } => self
                .complete(
                    batch,
                    Some(attempt),
                    outputs.len(),
                    |i| outputs[i],
                    busy_secs,
                )
                .map(|_| ()),
            Event::BatchFailed {
                batch,
                attempt,
                kind,
                message,
            } => self.batch_failed(batch, Some(attempt), kind, &message),
            Event::NodeLost { node } => self.node_lost(node),
        }
    }

    /// `handle(NodeLost)`: the node's capacity is gone for the rest of the run; pools refill elsewhere.
    fn node_lost(&mut self, node: usize) -> CoreResult<()> {
        if node >= self.nodes.len() {
            return Err(CoreError::Protocol(format!(
                "node {node} is not one of the run's {} nodes",
                self.nodes.len()
            )));
        }
        if self.cluster.lose(node) {
            self.dirty = true;
        }
        Ok(())
    }

    /// `handle(BatchDone)` for the batch's current attempt, returning the ids given to the outputs
    /// (dense, in output order; none when the report was ignored): the driver stores each output
    /// payload under its id.
    pub fn batch_done(
        &mut self,
        batch: BatchId,
        outputs: &[TaskMeta],
        busy_secs: f64,
    ) -> CoreResult<Vec<TaskId>> {
        Ok(self
            .complete(batch, None, outputs.len(), |i| outputs[i], busy_secs)?
            .map_or_else(Vec::new, |ids| ids.collect()))
    }

    /// `batch_done_totals` for one attempt of a batch: `None` when the report was ignored (a stale
    /// attempt, a duplicate, or the run has ended), else the outputs' id range.
    pub fn batch_result(
        &mut self,
        batch: BatchId,
        attempt: u32,
        n_outputs: usize,
        total: TaskMeta,
        busy_secs: f64,
    ) -> CoreResult<Option<Range<TaskId>>> {
        self.complete_totals(batch, Some(attempt), n_outputs, total, busy_secs)
    }

    /// `handle(BatchFailed)` for one attempt (`None`: the current one).
    pub fn batch_failed_attempt(
        &mut self,
        batch: BatchId,
        attempt: Option<u32>,
        kind: FailureKind,
        message: &str,
    ) -> CoreResult<()> {
        self.batch_failed(batch, attempt, kind, message)
    }

    /// Reports ignored because their attempt was no longer the batch's current one.
    pub fn stale_results(&self) -> u64 {
        self.stale_results
    }

    /// `batch_done` for a driver that knows only the totals of a batch's outputs: `total.bytes` and
    /// `total.items` are spread evenly over the `n_outputs` outputs. Returns the outputs' id range
    /// (empty when the report was ignored: see `handle`).
    pub fn batch_done_totals(
        &mut self,
        batch: BatchId,
        n_outputs: usize,
        total: TaskMeta,
        busy_secs: f64,
    ) -> CoreResult<Range<TaskId>> {
        Ok(self
            .complete_totals(batch, None, n_outputs, total, busy_secs)?
            .unwrap_or(0..0))
    }

    fn complete_totals(
        &mut self,
        batch: BatchId,
        attempt: Option<u32>,
        n_outputs: usize,
        total: TaskMeta,
        busy_secs: f64,
    ) -> CoreResult<Option<Range<TaskId>>> {
        let n = n_outputs.max(1) as u64;
        let share = |sum: u64, i: usize| sum / n + u64::from((i as u64) < sum % n);
        self.complete(
            batch,
            attempt,
            n_outputs,
            |i| TaskMeta {
                bytes: share(total.bytes, i),
                items: share(total.items, i),
            },
            busy_secs,
        )
    }

    pub(crate) fn tick(&mut self, now: f64) {
        if !now.is_finite() {
            return;
        }
        if !self.clock_started {
            // Inputs added before the first tick start waiting now, not at time 0.
            self.clock_started = true;
            for stage in &mut self.stages {
                stage.queue.restamp(now);
            }
        }
        if now > self.now {
            self.now = now;
        }
        if self.outcome != Outcome::Running {
            return;
        }
        if self.now - self.last_rebalance >= self.config.rebalance_interval_secs {
            self.rebalance_due = true;
            self.dirty = true;
        }
        self.retire_old_actors();
        if self.config.batch_timeout_secs.is_some()
            && self.stages.iter().any(|s| !s.queue.is_empty())
        {
            self.dirty = true;
        }
    }

    fn actor(&self, actor: ActorId) -> CoreResult<&ActorRec> {
        self.actors
            .get(actor as usize)
            .ok_or_else(|| CoreError::Protocol(format!("unknown actor {actor}")))
    }

    pub(crate) fn batch_mut(&mut self, batch: BatchId) -> &mut BatchRec {
        self.batches.get_mut(&batch).expect("a live batch")
    }

    /// A batch that has not ended. Protocol error for an id never handed out, or one that ended.
    fn batch(&self, batch: BatchId) -> CoreResult<&BatchRec> {
        self.batches.get(&batch).ok_or_else(|| {
            CoreError::Protocol(if batch < self.next_batch {
                format!("batch {batch} has ended: duplicate or late report")
            } else {
                format!("unknown batch {batch}")
            })
        })
    }

    fn actor_ready(&mut self, actor: ActorId) -> CoreResult<()> {
        match self.actor(actor)?.state {
            ActorState::Gone => Ok(()),
            ActorState::Ready => Err(CoreError::Protocol(format!(
                "actor {actor} reported ready twice"
            ))),
            ActorState::Pending => {
                let a = &mut self.actors[actor as usize];
                a.state = ActorState::Ready;
                a.idle_since = self.now;
                a.ready_at = self.now;
                self.dirty = true;
                Ok(())
            }
        }
    }

    /// Take a batch out of flight (it must be in flight), freeing its share of its call's slot.
    fn land(&mut self, batch: BatchId) -> CoreResult<()> {
        let rec = self.batch(batch)?;
        if rec.state != BatchState::InFlight {
            return Err(CoreError::Protocol(format!(
                "batch {batch} is not in flight (state {:?}): duplicate or late report",
                rec.state
            )));
        }
        let (actor, call, stage, bytes) = (rec.actor, rec.call, rec.stage, rec.bytes);
        let n = rec.inputs.len() as u64;
        let a = &mut self.actors[actor as usize];
        if let Some(pos) = a.in_flight.iter().position(|&b| b == batch) {
            a.in_flight.swap_remove(pos);
        }
        let left = self.calls.get_mut(&call).expect("a call in flight");
        *left -= 1;
        if *left == 0 {
            self.calls.remove(&call);
            a.calls -= 1;
            if a.calls == 0 {
                a.idle_since = self.now;
                a.isolated = false;
            }
        }
        let st = &mut self.stages[stage];
        st.in_flight_batches -= 1;
        st.in_flight_tasks -= n;
        st.in_flight_bytes -= bytes;
        self.ledger.in_flight -= n;
        Ok(())
    }

    /// Should a report about `attempt` of `batch` (`None`: its current attempt) be applied? Errors
    /// for a batch or attempt never submitted; false (nothing changes) after the end of the run and
    /// for a stale or duplicate report, which is counted.
    fn admit_report(&mut self, batch: BatchId, attempt: Option<u32>) -> CoreResult<bool> {
        if batch >= self.next_batch {
            return Err(CoreError::Protocol(format!("unknown batch {batch}")));
        }
        if self.outcome != Outcome::Running {
            return Ok(false);
        }
        let Some(rec) = self.batches.get(&batch) else {
            // It ended (succeeded or failed for good) and was forgotten: a late or repeated report.
            self.stale_results += 1;
            return Ok(false);
        };
        let attempt = attempt.unwrap_or(rec.attempt);
        if attempt > rec.attempt {
            return Err(CoreError::Protocol(format!(
                "batch {batch}: attempt {attempt} was never submitted (latest {})",
                rec.attempt
            )));
        }
        match rec.state {
            _ if attempt < rec.attempt => {}
            BatchState::InFlight => return Ok(true),
            BatchState::Waiting => {
                return Err(CoreError::Protocol(format!(
                    "batch {batch} is not in flight (attempt {attempt} waits to be submitted)"
                )))
            }
        }
        self.stale_results += 1;
        Ok(false)
    }

    /// A batch succeeded with `n_out` outputs described by `meta`: allocate their ids, queue them for
    /// the next stage (or emit them), drop the inputs. `None` when the report was ignored.
    fn complete(
        &mut self,
        batch: BatchId,
        attempt: Option<u32>,
        n_out: usize,
        meta: impl Fn(usize) -> TaskMeta,
        busy_secs: f64,
    ) -> CoreResult<Option<Range<TaskId>>> {
        if !self.admit_report(batch, attempt)? {
            return Ok(None);
        }
        self.land(batch)?;
        // The batch has ended: its record goes; its inputs end and its outputs inherit their roots.
        let rec = self
            .batches
            .remove(&batch)
            .expect("a batch in flight has a record");
        let s = rec.stage;
        let n_in = rec.inputs.len() as u64;
        self.drops.extend_from_slice(&rec.inputs);
        let (ids, tag) = self.lineage.batch_outputs(&rec.tags, n_out);
        let now = self.now;
        let last = s + 1 == self.stages.len();
        let (mut out_bytes, mut out_items) = (0u64, 0u64);
        if last {
            for i in 0..n_out {
                let m = meta(i);
                out_bytes += m.bytes;
                out_items += m.items;
            }
            self.emits.extend(ids.clone());
            if n_out > 0 {
                self.emit_tags.push((ids.clone(), tag));
            }
            self.ledger.emitted += n_out as u64;
        } else {
            let next = &mut self.stages[s + 1];
            for (i, id) in ids.clone().enumerate() {
                let m = meta(i);
                out_bytes += m.bytes;
                out_items += m.items;
                next.queue.push(id, tag, m.bytes, now);
            }
            next.counters.tasks_in += n_out as u64;
            next.counters.bytes_in += out_bytes;
            next.counters.items_in += out_items;
        }
        let st = &mut self.stages[s];
        let c = &mut st.counters;
        c.tasks_done += n_in;
        c.tasks_out += n_out as u64;
        c.bytes_out += out_bytes;
        c.items_out += out_items;
        c.batches_done += 1;
        if n_out == 0 {
            c.tasks_filtered += n_in;
        }
        c.add_busy_secs(busy_secs);
        c.ended_at(now);
        st.packing.observe(busy_secs);
        st.estimate.observe(n_in, n_out as u64, out_bytes);
        self.ledger.consumed += n_in;
        self.ledger.produced += n_out as u64;
        if n_out == 0 {
            self.ledger.filtered += n_in;
        }
        self.dirty = true;
        Ok(Some(ids))
    }

    fn batch_failed(
        &mut self,
        batch: BatchId,
        attempt: Option<u32>,
        kind: FailureKind,
        message: &str,
    ) -> CoreResult<()> {
        if !self.admit_report(batch, attempt)? {
            return Ok(());
        }
        self.land(batch)?;
        match kind {
            FailureKind::Infra => self.retry_or_fail(batch, message),
            FailureKind::User => self.user_failed(batch, message),
        }
        self.dirty = true;
        Ok(())
    }

    /// Put an infrastructure-failed batch back at the front of its queue, or fail it after
    /// `max_retries` retries.
    fn retry_or_fail(&mut self, batch: BatchId, message: &str) {
        let rec = &self.batches[&batch];
        let st = &self.stages[rec.stage];
        if rec.attempt - rec.user_failures - rec.blameless >= st.spec.max_retries {
            self.fail_for_good(batch, FailureKind::Infra, message);
            return;
        }
        self.requeue_front(batch);
    }

    /// A batch whose stage code raised: retried up to the stage's `max_user_retries`, then failed
    /// for good. With `replace_actor_on_failure` the actor it ran on is replaced.
    fn user_failed(&mut self, batch: BatchId, message: &str) {
        let rec = &self.batches[&batch];
        let spec = &self.stages[rec.stage].spec;
        let (actor, retry) = (rec.actor, rec.user_failures < spec.max_user_retries);
        if spec.replace_actor_on_failure {
            self.retire(actor);
        }
        if retry {
            self.batch_mut(batch).user_failures += 1;
            self.requeue_front(batch);
        } else {
            self.fail_for_good(batch, FailureKind::User, message);
        }
    }

    fn requeue_front(&mut self, batch: BatchId) {
        let rec = self.batches.get_mut(&batch).expect("a live batch");
        let n = rec.inputs.len() as u64;
        rec.attempt += 1;
        rec.state = BatchState::Waiting;
        let st = &mut self.stages[rec.stage];
        st.queue.push_retry_front(batch, n, rec.bytes);
        st.counters.retries += 1;
    }

    fn fail_for_good(&mut self, batch: BatchId, kind: FailureKind, message: &str) {
        // The batch has ended: its record goes, and its inputs end (for their roots).
        let rec = self.batches.remove(&batch).expect("a live batch");
        let mut roots: Vec<TaskId> = rec
            .tags
            .iter()
            .flat_map(|&tag| self.lineage.roots_of(tag))
            .collect();
        roots.sort_unstable();
        roots.dedup();
        for &tag in &rec.tags {
            self.lineage.end(tag);
        }
        let n = rec.inputs.len() as u64;
        let failure = Failure {
            stage: rec.stage,
            batch,
            tasks: rec.inputs,
            roots,
            kind,
            message: message.to_string(),
            attempts: rec.attempt + 1,
        };
        let st = &mut self.stages[rec.stage];
        st.counters.tasks_failed += n;
        st.counters.batches_failed += 1;
        self.ledger.failed += n;
        if st
            .spec
            .ignore_failures
            .unwrap_or(self.config.ignore_failures)
        {
            self.drops.extend_from_slice(&failure.tasks);
            self.out.push(Command::RecordFailure(failure));
        } else {
            let what = match kind {
                FailureKind::User => "raised".to_string(),
                FailureKind::Infra => format!("failed {} times", failure.attempts),
            };
            let reason = format!(
                "stage '{}' {what} on batch {batch} ({n} tasks, first {}): {message}",
                st.spec.name, failure.tasks[0]
            );
            self.abort(reason, Some(failure));
        }
    }

    fn actor_failed(&mut self, actor: ActorId, kind: FailureKind, message: &str) -> CoreResult<()> {
        let rec = self.actor(actor)?;
        if rec.state == ActorState::Gone || self.outcome != Outcome::Running {
            return Ok(());
        }
        let s = rec.stage;
        let mut lost = mem::take(&mut self.actors[actor as usize].in_flight);
        self.release(actor, false);
        self.dirty = true;
        let name = self.stages[s].spec.name.clone();
        lost.sort_unstable_by(|a, b| b.cmp(a));
        if kind == FailureKind::User {
            // Batches sent to a worker that then could not load the stage (a Ray-task slot loads it
            // with its first call) are none of their fault: back to the front, uncounted.
            for batch in lost {
                self.land(batch)?;
                self.batch_mut(batch).blameless += 1;
                self.requeue_front(batch);
            }
            // A setup that raised may have met a passing condition (a busy service, a slow
            // download): a fresh actor tries again, `max_retries` times per stage in all.
            let st = &mut self.stages[s];
            st.setup_failures += 1;
            if st.setup_failures > st.spec.max_retries {
                let n = st.setup_failures;
                self.abort(
                    format!("stage '{name}': actor {actor} failed in setup ({n} actors in all): {message}"),
                    None,
                );
            } else if !st.finished {
                if let Some(grant) = self.find_place(s) {
                    self.create_actor(s, grant);
                }
            }
            return Ok(());
        }
        // Its calls are gone; their batches go back to the front, oldest first. When it held more
        // than one, which of them killed it is unknown: each runs again alone before any counts.
        let shared = lost.len() > 1;
        for batch in lost {
            self.land(batch)?;
            if shared {
                self.batch_mut(batch).blameless += 1;
                self.requeue_front(batch);
            } else {
                self.retry_or_fail(batch, message);
            }
            if self.outcome != Outcome::Running {
                return Ok(());
            }
            // Still live: it waits for a retry (one failed for good has no record any more).
            if let Some(rec) = self.batches.get_mut(&batch) {
                rec.isolate = rec.state == BatchState::Waiting;
            }
        }
        let st = &mut self.stages[s];
        st.deaths += 1;
        st.counters.actors_died += 1;
        let cap = 3 + 2 * st.peak_actors.max(st.target.unwrap_or(1)) as u32;
        let (deaths, finished) = (st.deaths, st.finished);
        if deaths > cap {
            self.abort(
                format!(
                    "stage '{name}': {deaths} actors died (limit {cap}); last error: {message}"
                ),
                None,
            );
            return Ok(());
        }
        if !finished {
            if let Some(grant) = self.find_place(s) {
                self.create_actor(s, grant);
            }
        }
        Ok(())
    }

    // ----- actors -------------------------------------------------------------------------------

    pub(crate) fn create_actor(&mut self, stage: usize, grant: Grant) -> ActorId {
        let id = self.actors.len() as ActorId;
        let node = grant.node;
        self.actors.push(ActorRec {
            stage,
            grant,
            state: ActorState::Pending,
            calls: 0,
            in_flight: Vec::new(),
            idle_since: self.now,
            isolated: false,
            ready_at: f64::INFINITY,
            retiring: false,
            batches_given: 0,
        });
        let st = &mut self.stages[stage];
        st.actors.push(id);
        st.per_node[node] += 1;
        st.peak_actors = st.peak_actors.max(st.actors.len());
        st.counters.actors_created += 1;
        self.out.push(Command::CreateActor {
            actor: id,
            stage,
            node,
        });
        id
    }

    /// Take an actor out of its pool and give its resources back; `kill` also tells the driver.
    pub(crate) fn release(&mut self, actor: ActorId, kill: bool) {
        let rec = &mut self.actors[actor as usize];
        debug_assert_ne!(rec.state, ActorState::Gone);
        rec.state = ActorState::Gone;
        self.cluster.release(&rec.grant);
        let st = &mut self.stages[rec.stage];
        if let Some(pos) = st.actors.iter().position(|&a| a == actor) {
            st.actors.remove(pos);
        }
        st.per_node[rec.grant.node] -= 1;
        self.capacity_freed = true;
        if kill {
            self.out.push(Command::KillActor { actor });
        }
    }

    /// Stop giving `actor` calls; it is killed once its calls are done, and the pool fill starts
    /// its replacement.
    pub(crate) fn retire(&mut self, actor: ActorId) {
        let a = &mut self.actors[actor as usize];
        if a.state == ActorState::Gone || a.retiring {
            return;
        }
        a.retiring = true;
        self.retiring.push(actor);
        self.dirty = true;
    }

    /// Kill retiring actors whose calls are done.
    fn release_retired(&mut self) {
        let mut i = 0;
        while i < self.retiring.len() {
            let a = self.retiring[i];
            let rec = &self.actors[a as usize];
            if rec.state == ActorState::Gone {
                self.retiring.swap_remove(i);
            } else if rec.calls == 0 {
                self.retiring.swap_remove(i);
                self.release(a, true);
            } else {
                i += 1;
            }
        }
    }

    /// Per stage with a maximum actor age, at most once per its restart interval: retire the
    /// oldest ready actor past that age.
    fn retire_old_actors(&mut self) {
        for s in 0..self.stages.len() {
            let st = &self.stages[s];
            let Some(max_age) = st.spec.max_actor_age_secs else {
                continue;
            };
            if self.now - st.last_restart < st.spec.actor_restart_interval_secs {
                continue;
            }
            let oldest = st
                .actors
                .iter()
                .copied()
                .filter(|&a| {
                    let r = &self.actors[a as usize];
                    r.state == ActorState::Ready && !r.retiring && self.now - r.ready_at >= max_age
                })
                .min_by(|&a, &b| {
                    let (x, y) = (&self.actors[a as usize], &self.actors[b as usize]);
                    x.ready_at.total_cmp(&y.ready_at).then(a.cmp(&b))
                });
            if let Some(a) = oldest {
                self.stages[s].last_restart = self.now;
                self.retire(a);
            }
        }
    }

    // ----- termination ------------------------------------------------------------------------

    pub(crate) fn kill_all(&mut self) {
        for s in 0..self.stages.len() {
            while let Some(&a) = self.stages[s].actors.first() {
                self.release(a, true);
            }
        }
    }

    /// Stop the run: kill every live actor once, then hand out `Abort`. No call is submitted after.
    pub(crate) fn abort(&mut self, reason: String, failure: Option<Failure>) {
        if self.outcome != Outcome::Running {
            return;
        }
        self.outcome = Outcome::Aborted;
        self.kill_all();
        self.terminal = Some(Command::Abort { reason, failure });
    }

    /// Mark stages that can never get work again and kill their actors; finish when all are.
    fn retire_finished_stages(&mut self) {
        let mut upstream_done = self.input_closed;
        for s in 0..self.stages.len() {
            let st = &self.stages[s];
            if !st.finished && upstream_done && st.queue.is_empty() && st.in_flight_batches == 0 {
                self.stages[s].finished = true;
                while let Some(&a) = self.stages[s].actors.first() {
                    self.release(a, true);
                }
            }
            upstream_done = self.stages[s].finished;
        }
        if upstream_done {
            self.outcome = Outcome::Finished;
            self.kill_all();
            self.terminal = Some(Command::Finish);
            // Nothing is left to track: give the records' memory back.
            self.batches.shrink_to_fit();
            self.calls.shrink_to_fit();
            self.lineage.shrink_to_fit();
            for st in &mut self.stages {
                st.queue.shrink_to_fit();
            }
        }
    }

    fn schedule(&mut self) {
        if self.outcome != Outcome::Running {
            return;
        }
        self.retire_finished_stages();
        if self.outcome != Outcome::Running {
            return;
        }
        self.release_retired();
        // Capacity freed, or demand grew (a measured batch time, a longer queue): place what fits.
        self.capacity_freed = false;
        self.fill();
        for s in (0..self.stages.len()).rev() {
            self.dispatch(s);
        }
        if self.rebalance_due {
            self.rebalance_due = false;
            self.rebalance();
            // A kill during rebalancing freed capacity that the new actor took: nothing to fill.
            self.capacity_freed = false;
        }
    }

    /// Every decision since the last poll, in order: actor creations and kills, submits and failure
    /// records as decided, then one `Emit` and one `Drop` gathering all of them, then `Finish` or
    /// `Abort` (once). Cheap when nothing changed.
    pub fn poll(&mut self) -> Vec<Command> {
        if self.dirty {
            self.dirty = false;
            self.schedule();
        }
        let mut commands = mem::take(&mut self.out);
        if !self.emits.is_empty() {
            commands.push(Command::Emit {
                tasks: mem::take(&mut self.emits),
            });
            // Handed out: these outputs have ended, for their roots too.
            for (ids, tag) in mem::take(&mut self.emit_tags) {
                for _ in ids {
                    self.lineage.end(tag);
                }
            }
        }
        self.completed_roots.extend(self.lineage.take_completed());
        if !self.drops.is_empty() {
            commands.push(Command::Drop {
                tasks: mem::take(&mut self.drops),
            });
        }
        if let Some(terminal) = self.terminal.take() {
            commands.push(terminal);
        }
        commands
    }

    // ----- queries ------------------------------------------------------------------------------

    /// True once `Finish` or `Abort` has been decided.
    pub fn is_finished(&self) -> bool {
        self.outcome != Outcome::Running
    }

    /// True once the run was aborted.
    pub fn is_aborted(&self) -> bool {
        self.outcome == Outcome::Aborted
    }

    pub fn input_closed(&self) -> bool {
        self.input_closed
    }

    /// The driver's clock as last told by `Tick` (seconds).
    pub fn now(&self) -> f64 {
        self.now
    }

    pub fn num_stages(&self) -> usize {
        self.stages.len()
    }

    pub fn stage_spec(&self, stage: usize) -> &StageSpec {
        &self.stages[stage].spec
    }

    pub fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    /// Where every task is; `balanced()` must always hold, `complete()` at `Finish`.
    pub fn balance(&self) -> Balance {
        let mut b = self.ledger;
        b.queued = self.stages.iter().map(|s| s.queue.tasks()).sum();
        b.in_flight = self.stages.iter().map(|s| s.in_flight_tasks).sum();
        b
    }

    /// The initial inputs `task` descends from (sorted; empty for an unknown id).
    ///
    /// Known while the task lives: queued, in a batch not yet ended, or an output of the last stage
    /// until the `poll` that hands it out; empty after (the core forgets what has ended) and for an
    /// unknown id. A diagnostic: it searches the live records.
    pub fn roots(&self, task: TaskId) -> Vec<TaskId> {
        self.tag_of(task)
            .map_or_else(Vec::new, |tag| self.lineage.roots_of(tag))
    }

    fn tag_of(&self, task: TaskId) -> Option<Tag> {
        if !self.lineage.issued(task) {
            return None;
        }
        if let Some((_, tag)) = self.emit_tags.iter().find(|(ids, _)| ids.contains(&task)) {
            return Some(*tag);
        }
        if let Some(tag) = self.stages.iter().find_map(|s| s.queue.tag_of(task)) {
            return Some(tag);
        }
        self.batches.values().find_map(|b| {
            let i = b.inputs.iter().position(|&t| t == task)?;
            Some(b.tags[i])
        })
    }

    /// Source tasks whose every descendant has ended (emitted, filtered or failed) since the last
    /// call, in completion order; each is reported once, after the `poll` that handed out the
    /// commands ending its last descendants. What a checkpoint records to resume a run.
    pub fn take_completed_roots(&mut self) -> Vec<TaskId> {
        mem::take(&mut self.completed_roots)
    }

    /// Source tasks completed so far (handed out by `take_completed_roots` or not).
    pub fn roots_completed(&self) -> u64 {
        self.lineage.completed_total()
    }

    /// The input tasks of a batch that has not ended (empty otherwise).
    pub fn batch_inputs(&self, batch: BatchId) -> &[TaskId] {
        self.batches.get(&batch).map_or(&[], |b| &b.inputs)
    }

    /// How many records the core holds: all bounded by the work queued and in flight, and all 0
    /// after a run that finished.
    pub fn live_records(&self) -> LiveRecords {
        LiveRecords {
            batches: self.batches.len(),
            calls: self.calls.len(),
            open_roots: self.lineage.open_roots(),
            groups: self.lineage.live_groups(),
        }
    }

    /// Warnings for the driver to log (e.g. a fixed pool capped to what fits); each returned once.
    pub fn take_warnings(&mut self) -> Vec<String> {
        mem::take(&mut self.warnings)
    }

    /// Heap bytes held by the scheduler's per-task and per-batch records (approximate).
    pub fn heap_bytes(&self) -> usize {
        let queues: usize = self.stages.iter().map(|s| s.queue.heap_bytes()).sum();
        let inputs: usize = self
            .batches
            .values()
            .map(|b| (b.inputs.capacity() + b.tags.capacity()) * 8)
            .sum();
        self.lineage.heap_bytes()
            + self.batches.capacity() * (mem::size_of::<BatchRec>() + 9)
            + inputs
            + self.calls.capacity() * 13
            + self.emit_tags.capacity() * mem::size_of::<(Range<TaskId>, Tag)>()
            + queues
    }
}
