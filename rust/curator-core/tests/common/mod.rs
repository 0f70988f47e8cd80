//! A deterministic mock cluster that drives a `Scheduler` with random events and checks every command
//! against its own independent model of the run.
//!
//! The model tracks each task (where it waits, which batch holds it, how it ended), each batch, each
//! actor (pending, ready, dead, killed, calls in flight), node capacity and the queues, and asserts the
//! scheduler's rules after every poll: FIFO batches of at most `batch_size` (partial only when allowed),
//! retries first with the same tasks, slots, call packing, backpressure, resources, exactly-once
//! kills/emits/drops, failure records, and that `Finish`/`Abort` come once, last, and only when due.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};

use curator_core::{
    ActorId, BatchId, Command, Event, Failure, FailureKind, NodeSpec, Scheduler, SchedulerConfig,
    StageSpec, TaskId, TaskMeta,
};

/// splitmix64: small, fast, reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

/// How many outputs a stage makes per input task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fanout {
    Const(u32),
    /// Uniform in `0..=max`.
    Upto(u32),
}

#[derive(Debug, Clone)]
pub struct SimParams {
    pub seed: u64,
    pub n_tasks: usize,
    /// Inputs are added in this many chunks over time.
    pub chunks: usize,
    pub fanouts: Vec<Fanout>,
    /// Per batch completion.
    pub p_infra_fail: f64,
    pub p_user_fail: f64,
    /// Per step, while deaths are left.
    pub p_death: f64,
    pub max_deaths: usize,
    /// Per actor start.
    pub p_setup_fail: f64,
    /// Check that queues overshoot by at most one call's outputs (constant fan-outs <= 1 only).
    pub strict_queue_bound: bool,
    /// Stop fanning out once this many tasks exist.
    pub task_cap: usize,
    pub max_steps: usize,
    /// Per step: a late report of an attempt that was given up (its actor died, it failed, or it was
    /// already reported) arrives, and must change nothing.
    pub p_stale: f64,
    /// Several events between two polls (in random order), also after the run ended.
    pub multi_event_rounds: bool,
}

impl SimParams {
    pub fn simple(n_tasks: usize, n_stages: usize) -> Self {
        Self {
            seed: 7,
            n_tasks,
            chunks: 1,
            fanouts: vec![Fanout::Const(1); n_stages],
            p_infra_fail: 0.0,
            p_user_fail: 0.0,
            p_death: 0.0,
            max_deaths: 0,
            p_setup_fail: 0.0,
            strict_queue_bound: false,
            task_cap: 100_000,
            max_steps: 1_000_000,
            p_stale: 0.0,
            multi_event_rounds: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    Waiting,
    InFlight,
    Consumed,
    Failed,
    /// Output of the last stage, not yet emitted.
    Final,
    Emitted,
}

#[derive(Debug, Clone)]
struct SimTask {
    /// The stage that consumes it; `None` for outputs of the last stage.
    stage: Option<usize>,
    bytes: u64,
    producer: Option<BatchId>,
    arrived: f64,
    state: TaskState,
    dropped: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchState {
    InFlight {
        actor: ActorId,
        call: u64,
    },
    /// Failed on infrastructure; the scheduler must resubmit it with `attempt + 1` (or fail it).
    AwaitRetry,
    /// Failed for good; a `RecordFailure` (or `Abort`) must follow.
    AwaitFailure(FailureKind),
    Done,
    Failed,
}

#[derive(Debug, Clone)]
struct SimBatch {
    stage: usize,
    tasks: Vec<TaskId>,
    attempt: u32,
    /// Attempts that failed in user code.
    user_failures: u32,
    /// Attempts lost with an actor that held other batches too (not counted).
    blameless: u32,
    state: BatchState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ActorState {
    Pending,
    Ready,
    Dead,
    Killed,
}

#[derive(Debug, Clone)]
struct SimActor {
    stage: usize,
    node: usize,
    state: ActorState,
    calls: usize,
    /// Runs a retry that must be alone on it.
    isolated: bool,
    /// Batches handed to it so far.
    given: u64,
    /// Spent its `max_batches_per_actor` budget, or ran a batch that failed in user code with
    /// `replace_actor_on_failure`: takes no new call and is killed once its calls are done.
    retiring: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Finished,
    Aborted {
        reason: String,
        failure: Option<Failure>,
    },
}

/// Counts of what happened, so tests can check that a scenario really exercised a rule.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub submits: usize,
    pub batches: usize,
    pub packed_calls: usize,
    pub partial_batches: usize,
    pub retries: usize,
    pub records: usize,
    pub creates: usize,
    pub kills_before_end: usize,
    pub deaths: usize,
    pub steps: usize,
    /// Batches reported done or failed.
    pub finished_batches: usize,
    /// Late reports of attempts that were given up or already reported.
    pub stale_sent: usize,
    /// Events sent after the scheduler had ended the run.
    pub after_end_events: usize,
    pub max_queue_over_bound: i64,
}

/// What the scheduler must abort for.
#[derive(Debug, Clone, PartialEq)]
enum AbortCause {
    Batch(BatchId),
    Setup(usize),
    Deaths(usize),
}

struct Snapshot {
    partial_ok: Vec<bool>,
    measured: Vec<bool>,
}

pub struct Sim {
    pub sched: Scheduler,
    specs: Vec<StageSpec>,
    nodes: Vec<NodeSpec>,
    cfg: SchedulerConfig,
    p: SimParams,
    rng: Rng,
    now: f64,
    clock_started: bool,
    tasks: Vec<SimTask>,
    fresh: Vec<VecDeque<TaskId>>,
    retry: Vec<Vec<BatchId>>,
    waiting: Vec<u64>,
    waiting_bytes: Vec<u64>,
    in_flight_tasks: Vec<u64>,
    batches: HashMap<BatchId, SimBatch>,
    in_flight: Vec<BatchId>,
    actors: Vec<SimActor>,
    calls: HashMap<u64, usize>,
    next_call: u64,
    node_used: Vec<(f64, f64)>,
    added: usize,
    input_closed: bool,
    measured: Vec<bool>,
    /// Batches lost with a dead actor: their retry must run alone.
    lone: std::collections::HashSet<BatchId>,
    /// Per stage, the largest fair call size of the current dispatch pass.
    fair_bound: Vec<Option<usize>>,
    expected_aborts: Vec<AbortCause>,
    deaths: Vec<usize>,
    setup_failures: Vec<u32>,
    outcome: Option<Outcome>,
    /// (batch, attempt) pairs whose attempt ended: any later report of them is stale.
    ended_attempts: Vec<(BatchId, u32)>,
    /// The batch that took each task (retries keep it), and the outputs of each batch that succeeded.
    consumer: HashMap<TaskId, BatchId>,
    children: HashMap<BatchId, Vec<TaskId>>,
    /// Source tasks the scheduler reported completed.
    completed_roots: std::collections::HashSet<TaskId>,
    pub stats: Stats,
}

impl Sim {
    pub fn new(
        specs: Vec<StageSpec>,
        nodes: Vec<NodeSpec>,
        cfg: SchedulerConfig,
        p: SimParams,
    ) -> Self {
        let sched =
            Scheduler::new(specs.clone(), nodes.clone(), cfg.clone()).expect("valid pipeline");
        let n = specs.len();
        assert_eq!(p.fanouts.len(), n);
        // Which actor ages out when depends on the scheduler's restart clock, which the model does
        // not follow: its check of the fair spread would count that actor's idle slots.
        assert!(
            specs.iter().all(|s| s.max_actor_age_secs.is_none()),
            "the simulator does not model max_actor_age_secs"
        );
        Self {
            sched,
            rng: Rng::new(p.seed),
            now: 0.0,
            clock_started: false,
            tasks: Vec::new(),
            fresh: vec![VecDeque::new(); n],
            retry: vec![Vec::new(); n],
            waiting: vec![0; n],
            waiting_bytes: vec![0; n],
            in_flight_tasks: vec![0; n],
            batches: HashMap::new(),
            in_flight: Vec::new(),
            actors: Vec::new(),
            calls: HashMap::new(),
            next_call: 0,
            node_used: vec![(0.0, 0.0); nodes.len()],
            added: 0,
            input_closed: false,
            measured: vec![false; n],
            lone: Default::default(),
            fair_bound: vec![None; n],
            expected_aborts: Vec::new(),
            deaths: vec![0; n],
            setup_failures: vec![0; n],
            outcome: None,
            ended_attempts: Vec::new(),
            consumer: HashMap::new(),
            children: HashMap::new(),
            completed_roots: Default::default(),
            stats: Stats::default(),
            specs,
            nodes,
            cfg,
            p,
        }
    }

    fn n_stages(&self) -> usize {
        self.specs.len()
    }

    /// Run until `Finish` or `Abort`; panics on any broken rule or when the run stalls.
    pub fn run(mut self) -> (Outcome, Stats, Scheduler) {
        let started = std::time::Instant::now();
        let mut idle = 0usize;
        let mut last_progress = (0, 0);
        for step in 0..self.p.max_steps {
            self.stats.steps = step;
            let commands = self.sched.poll();
            self.apply(commands);
            if self.outcome.is_some() {
                break;
            }
            let events = if self.p.multi_event_rounds && self.rng.chance(0.3) {
                2 + self.rng.below(4)
            } else {
                1
            };
            for _ in 0..events {
                if self.sched.is_finished() {
                    // The run ended inside this round (an abort): the rest of the round's events
                    // still arrive, like a driver's results of calls that finished meanwhile.
                    self.noise_after_end();
                } else {
                    self.random_action();
                }
            }
            // Progress is work done or input taken; actors starting and time passing are not.
            let progress = (self.stats.finished_batches, self.added);
            if progress != last_progress {
                last_progress = progress;
                idle = 0;
            } else {
                idle += 1;
                assert!(
                    idle < 20_000,
                    "stalled: no progress for {idle} steps\nmetrics: {:#?}\nbalance: {:?}",
                    self.sched.metrics(),
                    self.sched.balance()
                );
            }
        }
        let outcome = self
            .outcome
            .clone()
            .unwrap_or_else(|| panic!("no Finish/Abort within {} steps", self.p.max_steps));
        self.after_end();
        if std::env::var_os("CURATOR_SIM_DEBUG").is_some() {
            eprintln!(
                "{:?} {:?} tasks={} {:?}",
                self.stats,
                matches!(outcome, Outcome::Finished),
                self.tasks.len(),
                started.elapsed()
            );
        }
        (outcome, self.stats, self.sched)
    }

    // ----- the cluster acts ----------------------------------------------------------------------

    fn tick(&mut self, dt: f64) {
        self.now += dt;
        if !self.clock_started {
            self.clock_started = true;
            for t in &mut self.tasks {
                t.arrived = self.now;
            }
        }
        self.sched.handle(Event::Tick { now: self.now }).unwrap();
    }

    /// One random thing happens. Returns whether it was more than time passing.
    fn random_action(&mut self) -> bool {
        if self.rng.chance(self.p.p_stale) && self.send_stale() {
            return false;
        }
        let r = self.rng.below(100);
        if r < 8 && !self.input_closed {
            self.add_inputs();
            return true;
        }
        if r < 20 {
            let dt = self.rng.unit() * 0.3;
            self.tick(dt);
            return false;
        }
        if r < 30 && self.ready_one() {
            return true;
        }
        if r < 32
            && self.stats.deaths < self.p.max_deaths
            && self.rng.chance(self.p.p_death * 50.0)
            && self.kill_one()
        {
            return true;
        }
        if !self.in_flight.is_empty() {
            let n = 1 + self.rng.below(4) as usize;
            for _ in 0..n {
                // Like a driver, stop reporting once the scheduler gave up.
                if self.in_flight.is_empty() || self.sched.is_finished() {
                    break;
                }
                self.finish_one();
            }
            return true;
        }
        if self.ready_one() {
            return true;
        }
        if !self.input_closed {
            self.add_inputs();
            return true;
        }
        let dt = 0.5 + self.rng.unit();
        self.tick(dt);
        false
    }

    fn add_inputs(&mut self) {
        let left = self.p.n_tasks - self.added;
        let chunks = self.p.chunks.max(1);
        let n = if left == 0 {
            0
        } else {
            left.div_ceil(chunks).min(left).max(1)
        };
        if n > 0 {
            let metas: Vec<TaskMeta> = (0..n)
                .map(|_| TaskMeta {
                    bytes: self.rng.below(1000),
                    items: self.rng.below(10),
                })
                .collect();
            let ids = self.sched.add_tasks(&metas).unwrap();
            assert_eq!(ids.len(), n);
            for (id, m) in ids.into_iter().zip(&metas) {
                self.new_task(id, Some(0), m.bytes, None);
            }
            self.added += n;
        }
        if self.added == self.p.n_tasks {
            self.sched.close_input();
            self.input_closed = true;
        }
    }

    fn new_task(
        &mut self,
        id: TaskId,
        stage: Option<usize>,
        bytes: u64,
        producer: Option<BatchId>,
    ) {
        assert_eq!(id as usize, self.tasks.len(), "task ids must be dense");
        let state = if stage.is_some() {
            TaskState::Waiting
        } else {
            TaskState::Final
        };
        self.tasks.push(SimTask {
            stage,
            bytes,
            producer,
            arrived: self.now,
            state,
            dropped: false,
        });
        if let Some(s) = stage {
            self.fresh[s].push_back(id);
            self.waiting[s] += 1;
            self.waiting_bytes[s] += bytes;
        }
    }

    fn ready_one(&mut self) -> bool {
        let pending: Vec<usize> = (0..self.actors.len())
            .filter(|&a| self.actors[a].state == ActorState::Pending)
            .collect();
        if pending.is_empty() {
            return false;
        }
        let a = pending[self.rng.below(pending.len() as u64) as usize];
        if self.rng.chance(self.p.p_setup_fail) {
            self.die(a, FailureKind::User);
        } else {
            self.actors[a].state = ActorState::Ready;
            self.sched
                .handle(Event::ActorReady {
                    actor: a as ActorId,
                })
                .unwrap();
        }
        true
    }

    fn kill_one(&mut self) -> bool {
        let live: Vec<usize> = (0..self.actors.len())
            .filter(|&a| {
                matches!(
                    self.actors[a].state,
                    ActorState::Pending | ActorState::Ready
                )
            })
            .collect();
        if live.is_empty() {
            return false;
        }
        let a = live[self.rng.below(live.len() as u64) as usize];
        self.die(a, FailureKind::Infra);
        true
    }

    /// The actor dies (infra) or its setup raises (user); its calls are lost.
    fn die(&mut self, a: usize, kind: FailureKind) {
        let actor = &mut self.actors[a];
        actor.state = ActorState::Dead;
        actor.calls = 0;
        let stage = actor.stage;
        let node = actor.node;
        self.free_node(node, stage);
        self.stats.deaths += 1;
        self.deaths[stage] += 1;
        let lost: Vec<BatchId> = self
            .in_flight
            .iter()
            .copied()
            .filter(|b| matches!(self.batches[b].state, BatchState::InFlight { actor, .. } if actor == a as ActorId))
            .collect();
        if kind == FailureKind::User {
            self.setup_failures[stage] += 1;
            if self.setup_failures[stage] > self.specs[stage].max_retries {
                self.expected_aborts.push(AbortCause::Setup(stage));
            }
        } else {
            self.expected_aborts.push(AbortCause::Deaths(stage));
        }
        // Several batches lost together, or lost to a worker that could not set up: none is blamed.
        let shared = lost.len() > 1;
        for b in lost {
            self.ended_attempts.push((b, self.batches[&b].attempt));
            self.leave_flight(b);
            if shared || kind == FailureKind::User {
                self.batches.get_mut(&b).unwrap().blameless += 1;
                self.await_retry(b);
            } else {
                self.infra_failed(b);
            }
            if self.batches[&b].state == BatchState::AwaitRetry {
                self.lone.insert(b);
            }
        }
        self.sched
            .handle(Event::ActorFailed {
                actor: a as ActorId,
                kind,
                message: "boom".into(),
            })
            .unwrap();
    }

    /// A late report of an attempt that already ended: ignored, counted, nothing else changes.
    fn send_stale(&mut self) -> bool {
        if self.ended_attempts.is_empty() {
            return false;
        }
        let i = self.rng.below(self.ended_attempts.len() as u64) as usize;
        let (b, attempt) = self.ended_attempts[i];
        let (before, stale) = (self.sched.balance(), self.sched.stale_results());
        let running = !self.sched.is_finished();
        self.report_ignored(b, attempt);
        assert_eq!(
            self.sched.balance(),
            before,
            "a stale report changed the balance"
        );
        assert_eq!(
            self.sched.stale_results(),
            stale + u64::from(running),
            "stale reports are counted while the run goes on"
        );
        self.stats.stale_sent += 1;
        true
    }

    /// Report `attempt` of `b` as done or failed (at random); the scheduler must ignore it.
    fn report_ignored(&mut self, b: BatchId, attempt: u32) {
        match self.rng.below(3) {
            0 => {
                let n = self.rng.below(4) as usize;
                let total = TaskMeta {
                    bytes: 10 * n as u64,
                    items: n as u64,
                };
                let r = self.sched.batch_result(b, attempt, n, total, 0.01);
                assert_eq!(r, Ok(None), "a stale result of batch {b} attempt {attempt}");
            }
            k => {
                let kind = if k == 1 {
                    FailureKind::Infra
                } else {
                    FailureKind::User
                };
                let event = Event::BatchFailed {
                    batch: b,
                    attempt,
                    kind,
                    message: "late".into(),
                };
                assert_eq!(self.sched.handle(event), Ok(()));
            }
        }
    }

    /// Events that arrive after the scheduler ended the run: reports of batches in flight, stale
    /// reports, actors dying or becoming ready, the clock. All accepted, none changes the outcome;
    /// a batch id never handed out is a protocol error.
    fn noise_after_end(&mut self) {
        assert!(self.sched.is_finished());
        let before = self.sched.balance();
        self.stats.after_end_events += 1;
        match self.rng.below(5) {
            0 if !self.in_flight.is_empty() => {
                let b = self.in_flight[self.rng.below(self.in_flight.len() as u64) as usize];
                let attempt = self.batches[&b].attempt;
                self.report_ignored(b, attempt);
            }
            1 => {
                self.send_stale();
            }
            2 if !self.actors.is_empty() => {
                let a = self.rng.below(self.actors.len() as u64);
                let event = if self.rng.chance(0.5) {
                    Event::ActorReady { actor: a }
                } else {
                    Event::ActorFailed {
                        actor: a,
                        kind: FailureKind::Infra,
                        message: "late".into(),
                    }
                };
                assert_eq!(self.sched.handle(event), Ok(()));
            }
            3 => {
                let unknown = 1 << 40;
                let r = self
                    .sched
                    .batch_result(unknown, 0, 1, TaskMeta::default(), 0.1);
                assert!(
                    matches!(r, Err(curator_core::CoreError::Protocol(_))),
                    "{r:?}"
                );
            }
            _ => {
                self.now += 0.1;
                self.sched.handle(Event::Tick { now: self.now }).unwrap();
            }
        }
        assert_eq!(
            self.sched.balance(),
            before,
            "an event after the end changed the balance"
        );
    }

    fn leave_flight(&mut self, b: BatchId) {
        let pos = self.in_flight.iter().position(|&x| x == b).unwrap();
        self.in_flight.swap_remove(pos);
        let batch = self.batches.get_mut(&b).unwrap();
        let n = batch.tasks.len() as u64;
        self.in_flight_tasks[batch.stage] -= n;
        if let BatchState::InFlight { actor, call } = batch.state {
            let left = self.calls.get_mut(&call).unwrap();
            *left -= 1;
            if *left == 0 {
                self.calls.remove(&call);
                let a = &mut self.actors[actor as usize];
                if a.state == ActorState::Ready {
                    a.calls -= 1;
                    if a.calls == 0 {
                        a.isolated = false;
                    }
                }
            }
        }
    }

    fn infra_failed(&mut self, b: BatchId) {
        let batch = self.batches.get_mut(&b).unwrap();
        let s = batch.stage;
        if batch.attempt - batch.user_failures - batch.blameless >= self.specs[s].max_retries {
            batch.state = BatchState::AwaitFailure(FailureKind::Infra);
            self.expected_aborts.push(AbortCause::Batch(b));
            return;
        }
        self.await_retry(b);
    }

    /// The scheduler must send this batch again (its tasks wait in the stage's retry queue).
    fn await_retry(&mut self, b: BatchId) {
        let batch = self.batches.get_mut(&b).unwrap();
        let s = batch.stage;
        batch.state = BatchState::AwaitRetry;
        for &t in &batch.tasks {
            self.tasks[t as usize].state = TaskState::Waiting;
            self.waiting[s] += 1;
            self.waiting_bytes[s] += self.tasks[t as usize].bytes;
        }
        self.retry[s].push(b);
    }

    fn fanout(&mut self, s: usize) -> u64 {
        let f = match self.p.fanouts[s] {
            Fanout::Const(f) => f as u64,
            Fanout::Upto(m) => self.rng.below(m as u64 + 1),
        };
        if self.tasks.len() > self.p.task_cap {
            f.min(1)
        } else {
            f
        }
    }

    fn finish_one(&mut self) {
        let i = self.rng.below(self.in_flight.len() as u64) as usize;
        let b = self.in_flight[i];
        self.leave_flight(b);
        self.stats.finished_batches += 1;
        let batch = self.batches[&b].clone();
        let s = batch.stage;
        // Whatever happens to this attempt, a second report of it is stale.
        self.ended_attempts.push((b, batch.attempt));
        if self.rng.chance(self.p.p_infra_fail) {
            self.infra_failed(b);
            self.sched
                .handle(Event::BatchFailed {
                    batch: b,
                    attempt: batch.attempt,
                    kind: FailureKind::Infra,
                    message: "lost".into(),
                })
                .unwrap();
            return;
        }
        if self.rng.chance(self.p.p_user_fail) {
            if let BatchState::InFlight { actor, .. } = batch.state {
                let a = &mut self.actors[actor as usize];
                a.retiring |=
                    self.specs[s].replace_actor_on_failure && a.state == ActorState::Ready;
            }
            let sim = self.batches.get_mut(&b).unwrap();
            if sim.user_failures < self.specs[s].max_user_retries {
                sim.user_failures += 1;
                self.await_retry(b);
            } else {
                sim.state = BatchState::AwaitFailure(FailureKind::User);
                self.expected_aborts.push(AbortCause::Batch(b));
            }
            self.sched
                .handle(Event::BatchFailed {
                    batch: b,
                    attempt: batch.attempt,
                    kind: FailureKind::User,
                    message: "ValueError: bad".into(),
                })
                .unwrap();
            return;
        }
        let n_out: u64 = (0..batch.tasks.len()).map(|_| self.fanout(s)).sum();
        let busy = 0.0001 + self.rng.unit() * 0.01;
        let ids: Vec<TaskId>;
        let bytes: Vec<u64>;
        if self.rng.chance(0.5) {
            let metas: Vec<TaskMeta> = (0..n_out)
                .map(|_| TaskMeta {
                    bytes: self.rng.below(2000),
                    items: 1,
                })
                .collect();
            bytes = metas.iter().map(|m| m.bytes).collect();
            ids = self.sched.batch_done(b, &metas, busy).unwrap();
        } else {
            let total = self.rng.below(5000);
            let n = n_out.max(1);
            bytes = (0..n_out)
                .map(|i| total / n + u64::from(i < total % n))
                .collect();
            ids = self
                .sched
                .batch_done_totals(
                    b,
                    n_out as usize,
                    TaskMeta {
                        bytes: total,
                        items: n_out,
                    },
                    busy,
                )
                .unwrap()
                .collect();
        }
        assert_eq!(ids.len() as u64, n_out);
        self.children.insert(b, ids.clone());
        for &t in &batch.tasks {
            self.tasks[t as usize].state = TaskState::Consumed;
        }
        self.batches.get_mut(&b).unwrap().state = BatchState::Done;
        self.measured[s] = true;
        let next = (s + 1 < self.n_stages()).then_some(s + 1);
        for (id, by) in ids.iter().copied().zip(bytes) {
            self.new_task(id, next, by, Some(b));
        }
        // The new outputs are live: the scheduler still knows where they come from.
        for &t in ids.iter().step_by(3) {
            assert_eq!(
                self.sched.roots(t),
                self.model_roots(t),
                "roots of task {t}"
            );
        }
    }

    fn free_node(&mut self, node: usize, stage: usize) {
        let r = self.specs[stage].resources;
        self.node_used[node].0 -= r.cpus;
        self.node_used[node].1 -= r.gpus;
    }

    // ----- the scheduler's commands ----------------------------------------------------------------

    fn upstream_drained(&self, s: usize) -> bool {
        self.input_closed && (0..s).all(|u| self.waiting[u] == 0 && self.in_flight_tasks[u] == 0)
    }

    fn snapshot(&self) -> Snapshot {
        let n = self.n_stages();
        let mut snap = Snapshot {
            partial_ok: vec![false; n],
            measured: self.measured.clone(),
        };
        for s in 0..n {
            let spec = &self.specs[s];
            let timed_out = match (self.cfg.batch_timeout_secs, self.fresh[s].front()) {
                (Some(t), Some(&front)) => self.now - self.tasks[front as usize].arrived >= t,
                _ => false,
            };
            snap.partial_ok[s] = self.upstream_drained(s)
                || timed_out
                || self.waiting[s] >= spec.queue_max_tasks as u64
                || self.waiting_bytes[s] >= spec.queue_max_bytes;
        }
        snap
    }

    fn apply(&mut self, commands: Vec<Command>) {
        if self.outcome.is_some() {
            assert!(
                commands.is_empty(),
                "commands after Finish/Abort: {commands:?}"
            );
            return;
        }
        let snap = self.snapshot();
        self.fair_bound.iter_mut().for_each(|b| *b = None);
        let mut killed_busy = false;
        let mut recorded = Vec::new();
        let n = commands.len();
        for (i, command) in commands.into_iter().enumerate() {
            assert!(
                self.outcome.is_none(),
                "a command after Finish/Abort in the same poll"
            );
            match command {
                Command::CreateActor { actor, stage, node } => self.on_create(actor, stage, node),
                Command::KillActor { actor } => killed_busy |= self.on_kill(actor),
                Command::Submit { actor, batches } => self.on_submit(actor, batches, &snap),
                Command::Emit { tasks } => {
                    assert!(!tasks.is_empty());
                    for t in tasks {
                        let task = &mut self.tasks[t as usize];
                        assert_eq!(
                            task.state,
                            TaskState::Final,
                            "emit of task {t} which is not a new final output"
                        );
                        task.state = TaskState::Emitted;
                    }
                }
                Command::Drop { tasks } => {
                    assert!(!tasks.is_empty());
                    for t in tasks {
                        let task = &mut self.tasks[t as usize];
                        assert!(
                            matches!(task.state, TaskState::Consumed | TaskState::Failed),
                            "drop of task {t} in state {:?}",
                            task.state
                        );
                        assert!(!task.dropped, "task {t} dropped twice");
                        task.dropped = true;
                    }
                }
                Command::RecordFailure(f) => {
                    assert!(
                        self.cfg.ignore_failures,
                        "RecordFailure without ignore_failures"
                    );
                    self.on_failure(&f);
                    recorded.push(f.batch);
                    self.stats.records += 1;
                }
                Command::Finish => {
                    assert_eq!(i + 1, n, "Finish must come last");
                    self.on_finish();
                }
                Command::Abort { reason, failure } => {
                    assert_eq!(i + 1, n, "Abort must come last");
                    self.on_abort(reason, failure);
                }
            }
        }
        assert!(
            !killed_busy || matches!(self.outcome, Some(Outcome::Aborted { .. })),
            "killed a busy actor"
        );
        self.check_completed_roots();
        if self.outcome.is_none() {
            // Every failure for good is reported in the poll after it happened.
            let waiting_failures: Vec<BatchId> = self
                .batches
                .iter()
                .filter(|(_, b)| matches!(b.state, BatchState::AwaitFailure(_)))
                .map(|(&id, _)| id)
                .collect();
            assert!(
                waiting_failures.is_empty(),
                "failures not reported: {waiting_failures:?} (recorded {recorded:?})"
            );
            let setup = self
                .expected_aborts
                .iter()
                .find(|c| matches!(c, AbortCause::Setup(_)));
            assert!(setup.is_none(), "no Abort after a failed setup: {setup:?}");
            let idle_retired = self
                .actors
                .iter()
                .position(|a| a.retiring && a.state == ActorState::Ready && a.calls == 0);
            assert!(
                idle_retired.is_none(),
                "retiring actor {idle_retired:?} has no call left but was not killed"
            );
            self.check_balance();
            if self.p.strict_queue_bound {
                self.check_queue_bound();
            }
        }
    }

    fn on_create(&mut self, actor: ActorId, stage: usize, node: usize) {
        assert_eq!(actor as usize, self.actors.len(), "actor ids are dense");
        assert!(stage < self.n_stages() && node < self.nodes.len());
        let r = self.specs[stage].resources;
        let used = &mut self.node_used[node];
        used.0 += r.cpus;
        used.1 += r.gpus;
        let cap = &self.nodes[node];
        assert!(
            used.0 <= cap.cpus + 1e-9 && used.1 <= cap.gpus + 1e-9,
            "node {node} over capacity: {used:?} of ({}, {})",
            cap.cpus,
            cap.gpus
        );
        self.actors.push(SimActor {
            stage,
            node,
            state: ActorState::Pending,
            calls: 0,
            isolated: false,
            given: 0,
            retiring: false,
        });
        self.stats.creates += 1;
    }

    /// Returns whether the actor still had calls in flight.
    fn on_kill(&mut self, actor: ActorId) -> bool {
        let a = &mut self.actors[actor as usize];
        assert!(
            matches!(a.state, ActorState::Pending | ActorState::Ready),
            "kill of actor {actor} in state {:?}",
            a.state
        );
        a.state = ActorState::Killed;
        let (stage, node, busy) = (a.stage, a.node, a.calls > 0);
        self.free_node(node, stage);
        self.stats.kills_before_end += 1;
        busy
    }

    fn on_submit(&mut self, actor: ActorId, batches: Vec<curator_core::Batch>, snap: &Snapshot) {
        let a = self.actors[actor as usize].clone();
        assert_eq!(
            a.state,
            ActorState::Ready,
            "submit to actor {actor} in state {:?}",
            a.state
        );
        let s = a.stage;
        let spec = self.specs[s].clone();
        assert!(
            a.calls < spec.slots_per_actor,
            "actor {actor} over its {} slots",
            spec.slots_per_actor
        );
        let k = batches.len();
        assert!(
            (1..=spec.max_batches_per_call).contains(&k),
            "call with {k} batches"
        );
        let given = a.given + k as u64;
        self.actors[actor as usize].given = given;
        if let Some(most) = spec.max_batches_per_actor {
            assert!(
                given <= most,
                "actor {actor} given {given} batches, over its max_batches_per_actor {most}"
            );
        }
        if !snap.measured[s] {
            assert_eq!(
                k, 1,
                "stage {s} packs {k} batches before any batch time was measured"
            );
        }
        assert!(
            !a.isolated,
            "actor {actor} runs a lone retry but got another call"
        );
        assert!(!a.retiring, "actor {actor} is retiring but got a call");
        if batches.iter().any(|b| self.lone.contains(&b.id)) {
            assert_eq!(k, 1, "a retry after an actor death must run alone");
            assert_eq!(
                a.calls, 0,
                "a lone retry must go to an actor with nothing in flight"
            );
            self.lone.remove(&batches[0].id);
            self.actors[actor as usize].isolated = true;
            self.fair_bound[s] = None;
        } else {
            // The scheduler sizes the calls of one dispatch pass from the state at its start, spread
            // over the free slots of the actors that may take a call: a retiring actor may not, so
            // its idle slots do not thin the calls.
            let bound = *self.fair_bound[s].get_or_insert_with(|| {
                let free: usize = self
                    .actors
                    .iter()
                    .filter(|a| {
                        a.stage == s && a.state == ActorState::Ready && !a.isolated && !a.retiring
                    })
                    .map(|a| spec.slots_per_actor - a.calls)
                    .sum();
                let avail = self.retry[s].len() + self.fresh[s].len().div_ceil(spec.batch_size);
                avail.div_ceil(free.max(1)).max(1)
            });
            assert!(
                k <= bound,
                "call of {k} batches exceeds the fair spread {bound}"
            );
        }
        if self.cfg.stage_by_stage {
            assert!(
                s == 0 || self.upstream_drained(s),
                "stage by stage: stage {s} got a call before the stages before it finished"
            );
        } else if let Some(next) = self.specs.get(s + 1) {
            assert!(
                self.waiting[s + 1] < next.queue_max_tasks as u64
                    && self.waiting_bytes[s + 1] < next.queue_max_bytes,
                "stage {s} submitted while stage {} is full ({} tasks, {} bytes)",
                s + 1,
                self.waiting[s + 1],
                self.waiting_bytes[s + 1]
            );
        }
        let call = self.next_call;
        self.next_call += 1;
        for batch in batches {
            assert_eq!(
                batch.stage, s,
                "batch of stage {} sent to an actor of stage {s}",
                batch.stage
            );
            let len = batch.tasks.len();
            assert!(
                len >= 1 && len <= spec.batch_size,
                "batch of {len} tasks (batch_size {})",
                spec.batch_size
            );
            if batch.attempt == 0 {
                assert!(
                    !self.batches.contains_key(&batch.id),
                    "batch id {} reused",
                    batch.id
                );
                assert!(
                    self.retry[s].is_empty(),
                    "stage {s} formed a new batch while retries wait"
                );
                if len < spec.batch_size {
                    assert!(
                        snap.partial_ok[s],
                        "partial batch of {len}/{} at stage {s}",
                        spec.batch_size
                    );
                    self.stats.partial_batches += 1;
                }
                for &t in &batch.tasks {
                    let front = self.fresh[s].pop_front();
                    assert_eq!(
                        front,
                        Some(t),
                        "stage {s} batch is not the queue's front (FIFO)"
                    );
                }
                for &t in &batch.tasks {
                    self.consumer.insert(t, batch.id);
                }
                let state = BatchState::InFlight { actor, call };
                self.batches.insert(
                    batch.id,
                    SimBatch {
                        stage: s,
                        tasks: batch.tasks.clone(),
                        attempt: 0,
                        user_failures: 0,
                        blameless: 0,
                        state,
                    },
                );
            } else {
                let known = self
                    .batches
                    .get_mut(&batch.id)
                    .expect("retry of an unknown batch");
                assert_eq!(
                    known.state,
                    BatchState::AwaitRetry,
                    "resubmit of batch {} not awaiting retry",
                    batch.id
                );
                assert_eq!(
                    known.tasks, batch.tasks,
                    "a retried batch must keep its tasks"
                );
                assert_eq!(batch.attempt, known.attempt + 1, "attempt must grow by one");
                assert!(
                    batch.attempt <= spec.max_retries + spec.max_user_retries + known.blameless,
                    "attempt {} over max_retries + max_user_retries + blameless retries",
                    batch.attempt
                );
                known.attempt = batch.attempt;
                let pos = self.retry[s].iter().position(|&b| b == batch.id).unwrap();
                self.retry[s].remove(pos);
                self.stats.retries += 1;
            }
            for &t in &batch.tasks {
                let task = &mut self.tasks[t as usize];
                assert_eq!(task.stage, Some(s));
                assert_eq!(task.state, TaskState::Waiting, "task {t} submitted twice");
                task.state = TaskState::InFlight;
                self.waiting[s] -= 1;
                self.waiting_bytes[s] -= task.bytes;
            }
            self.in_flight_tasks[s] += len as u64;
            self.batches.get_mut(&batch.id).unwrap().state = BatchState::InFlight { actor, call };
            self.in_flight.push(batch.id);
            self.stats.batches += 1;
        }
        self.calls.insert(call, k);
        let a = &mut self.actors[actor as usize];
        a.calls += 1;
        // Its budget is spent with this call (the bound above is checked before the call counts).
        a.retiring |= spec.max_batches_per_actor.is_some_and(|most| given >= most);
        self.stats.submits += 1;
        if k > 1 {
            self.stats.packed_calls += 1;
        }
    }

    fn on_failure(&mut self, f: &Failure) {
        let b = self
            .batches
            .get_mut(&f.batch)
            .expect("failure of an unknown batch");
        let BatchState::AwaitFailure(kind) = b.state else {
            panic!(
                "failure record for batch {} in state {:?}",
                f.batch, b.state
            );
        };
        assert_eq!(f.kind, kind);
        assert_eq!(f.tasks, b.tasks);
        assert_eq!(f.stage, b.stage);
        assert_eq!(f.attempts, b.attempt + 1);
        b.state = BatchState::Failed;
        for &t in &b.tasks {
            self.tasks[t as usize].state = TaskState::Failed;
        }
        self.expected_aborts
            .retain(|c| *c != AbortCause::Batch(f.batch));
    }

    fn check_balance(&self) {
        let b = self.sched.balance();
        assert!(b.balanced(), "unbalanced: {b:?}");
        assert_eq!(
            b.queued,
            self.waiting.iter().sum::<u64>(),
            "queued tasks differ: {b:?}"
        );
        assert_eq!(
            b.in_flight,
            self.in_flight_tasks.iter().sum::<u64>(),
            "in-flight tasks differ: {b:?}"
        );
        assert_eq!(b.initial, self.added as u64);
        assert_eq!(b.initial + b.produced, self.tasks.len() as u64);
    }

    /// With constant fan-out f <= 1: the next queue plus the outputs still to come from in-flight
    /// batches never exceed the bound - 1 + one call's outputs.
    fn check_queue_bound(&mut self) {
        for s in 0..self.n_stages() - 1 {
            let Fanout::Const(f) = self.p.fanouts[s] else {
                panic!("strict bound needs constant fan-outs")
            };
            let to_come = self.in_flight_tasks[s] * f as u64;
            let spec = &self.specs[s];
            let bound = self.specs[s + 1].queue_max_tasks as u64;
            let one_call = (spec.max_batches_per_call * spec.batch_size) as u64 * f as u64;
            let x = self.waiting[s + 1] + to_come;
            self.stats.max_queue_over_bound =
                self.stats.max_queue_over_bound.max(x as i64 - bound as i64);
            assert!(
                x < bound + one_call.max(1),
                "stage {} queue {} + {to_come} to come exceeds bound {bound} - 1 + one call ({one_call})",
                s + 1,
                self.waiting[s + 1]
            );
        }
    }

    fn on_finish(&mut self) {
        assert!(self.input_closed, "Finish before the input was closed");
        assert!(
            self.expected_aborts
                .iter()
                .all(|c| matches!(c, AbortCause::Deaths(_))),
            "Finish despite {:?}",
            self.expected_aborts
        );
        for (t, task) in self.tasks.iter().enumerate() {
            assert!(
                matches!(
                    task.state,
                    TaskState::Consumed | TaskState::Failed | TaskState::Emitted
                ),
                "Finish with task {t} in state {:?}",
                task.state
            );
            if task.state != TaskState::Emitted {
                assert!(task.dropped, "task {t} never dropped");
            }
        }
        assert!(self.in_flight.is_empty());
        let b = self.sched.balance();
        assert!(b.complete(), "Finish while not complete: {b:?}");
        self.assert_all_actors_gone();
        self.check_completed_roots();
        assert_eq!(
            self.completed_roots.len(),
            self.added,
            "every source task completed"
        );
        let live = self.sched.live_records();
        assert_eq!(live.total(), 0, "records left after the run: {live:?}");
        self.outcome = Some(Outcome::Finished);
    }

    fn on_abort(&mut self, reason: String, failure: Option<Failure>) {
        match &failure {
            Some(f) => {
                assert!(
                    !self.cfg.ignore_failures,
                    "abort for a failure despite ignore_failures: {reason}"
                );
                assert!(
                    self.expected_aborts.contains(&AbortCause::Batch(f.batch)),
                    "unexpected abort: {reason}"
                );
                self.on_failure(f);
            }
            None => {
                let name_of = |s: usize| format!("stage '{}'", self.specs[s].name);
                let ok = self.expected_aborts.iter().any(|c| match c {
                    AbortCause::Setup(s) => {
                        reason.contains("setup") && reason.contains(&name_of(*s))
                    }
                    AbortCause::Deaths(s) => {
                        reason.contains("died")
                            && reason.contains(&name_of(*s))
                            && self.deaths[*s] > 5
                    }
                    AbortCause::Batch(_) => false,
                });
                assert!(
                    ok,
                    "unexpected abort: {reason} (causes {:?})",
                    self.expected_aborts
                );
            }
        }
        assert!(self.sched.balance().balanced());
        self.assert_all_actors_gone();
        self.outcome = Some(Outcome::Aborted { reason, failure });
    }

    fn assert_all_actors_gone(&self) {
        for (a, actor) in self.actors.iter().enumerate() {
            assert!(
                matches!(actor.state, ActorState::Killed | ActorState::Dead),
                "actor {a} still {:?} at the end",
                actor.state
            );
        }
    }

    /// Every root the scheduler reports completed is a source task, reported once, and every task
    /// descending from it has ended (consumed by a batch that succeeded, emitted, or failed). Each
    /// source task is either still open or reported.
    fn check_completed_roots(&mut self) {
        for r in self.sched.take_completed_roots() {
            assert!(
                self.tasks[r as usize].producer.is_none(),
                "completed root {r} is not a source task"
            );
            assert!(self.completed_roots.insert(r), "root {r} completed twice");
            let mut stack = vec![r];
            let mut seen = std::collections::HashSet::new();
            while let Some(t) = stack.pop() {
                let state = self.tasks[t as usize].state;
                match state {
                    TaskState::Emitted | TaskState::Failed => {}
                    TaskState::Consumed => {
                        // Siblings share their consumer batch: visit its outputs once.
                        let b = self.consumer[&t];
                        if seen.insert(b) {
                            stack.extend(self.children.get(&b).into_iter().flatten());
                        }
                    }
                    _ => panic!("root {r} completed while its descendant {t} is {state:?}"),
                }
            }
        }
        assert_eq!(
            self.sched.live_records().open_roots + self.completed_roots.len(),
            self.added,
            "every source task is open or completed"
        );
    }

    /// The source tasks `t` descends from, by the model.
    fn model_roots(&self, t: TaskId) -> Vec<TaskId> {
        let mut roots = std::collections::BTreeSet::new();
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![t];
        while let Some(x) = stack.pop() {
            match self.tasks[x as usize].producer {
                None => {
                    roots.insert(x);
                }
                Some(b) => {
                    if seen.insert(b) {
                        stack.extend(&self.batches[&b].tasks);
                    }
                }
            }
        }
        roots.into_iter().collect()
    }

    /// Late reports after the end are accepted and change nothing.
    fn after_end(&mut self) {
        for b in self.in_flight.clone() {
            self.sched
                .handle(Event::BatchDone {
                    batch: b,
                    attempt: self.batches[&b].attempt,
                    outputs: vec![TaskMeta::default()],
                    busy_secs: 0.1,
                })
                .unwrap();
        }
        for _ in 0..8 {
            self.noise_after_end();
        }
        self.sched
            .handle(Event::Tick {
                now: self.now + 100.0,
            })
            .unwrap();
        assert!(self.sched.poll().is_empty(), "commands after the end");
        assert!(self.sched.is_finished());
    }
}
