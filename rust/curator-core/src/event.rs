//! The scheduler's vocabulary: events in (what happened in the cluster), commands out (what to do).

use crate::spec::{ActorId, BatchId, TaskId, TaskMeta};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The user's stage code raised: not retried.
    User,
    /// The actor, worker process or node died: retried on another actor up to the retry cap.
    Infra,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The driver's clock (seconds, monotonic). Sent at least once per driver round.
    Tick { now: f64 },
    /// The actor finished its constructor (`setup` included) and can take calls.
    ActorReady { actor: ActorId },
    /// The actor is gone. `User` when its `setup` raised (fatal for the run), `Infra` when it died;
    /// every batch in flight on it is retried.
    ActorFailed {
        actor: ActorId,
        kind: FailureKind,
        message: String,
    },
    /// One batch finished; `outputs` in the order the stage returned them (may be empty: filtered).
    /// `attempt` is the one its `Submit` carried: a result of an attempt that was given up (its actor
    /// died or its call timed out, and the batch went out again) is ignored and counted as stale.
    BatchDone {
        batch: BatchId,
        attempt: u32,
        outputs: Vec<TaskMeta>,
        busy_secs: f64,
    },
    BatchFailed {
        batch: BatchId,
        attempt: u32,
        kind: FailureKind,
        message: String,
    },
    /// The node (index into the scheduler's nodes) left the cluster: no actor is placed there again.
    /// Its actors are reported one by one (`ActorFailed`), as their calls fail.
    NodeLost { node: usize },
}

/// One `process_batch` call's worth of tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub id: BatchId,
    pub stage: usize,
    pub tasks: Vec<TaskId>,
    /// 0 for the first try, +1 for each retry.
    pub attempt: u32,
}

/// A batch whose tasks ended in the failure report.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub stage: usize,
    pub batch: BatchId,
    pub tasks: Vec<TaskId>,
    /// The initial inputs those tasks descend from (sorted): what a retry of just the failed work redoes
    /// when the tasks' own ids name no source.
    pub roots: Vec<TaskId>,
    pub kind: FailureKind,
    pub message: String,
    /// How many times the batch was tried.
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Start an actor for `stage` on `node` (index into the scheduler's nodes).
    CreateActor {
        actor: ActorId,
        stage: usize,
        node: usize,
    },
    /// One remote call to `actor` carrying one or more batches (each gets its own `process_batch`).
    Submit { actor: ActorId, batches: Vec<Batch> },
    /// Tear the actor down (teardown, then kill): its stage is done, or its resources go elsewhere.
    KillActor { actor: ActorId },
    /// Final outputs of the pipeline, in completion order.
    Emit { tasks: Vec<TaskId> },
    /// Payloads of these tasks are no longer needed (their batch finished or failed for good).
    Drop { tasks: Vec<TaskId> },
    /// A batch failed for good and the run goes on (`ignore_failures`).
    RecordFailure(Failure),
    /// Every input is accounted for; all actors have been told to stop.
    Finish,
    /// The run cannot go on (a user error without `ignore_failures`, retries exhausted, a failed setup).
    Abort {
        reason: String,
        failure: Option<Failure>,
    },
}
