//! What the driver tells the scheduler before a run: the stages, the nodes it may use, the settings.

pub type TaskId = u64;
pub type BatchId = u64;
pub type ActorId = u64;

/// Resources one actor of a stage holds for its whole life.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resources {
    pub cpus: f64,
    pub gpus: f64,
}

/// How many actors a stage's pool should have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolSize {
    /// Exactly this many (from `stage.num_workers()` or the executor's `pool_size`), capped by what fits.
    Fixed(usize),
    /// Fit to the free resources, shared with the other stages, at most `max` when given.
    Auto { max: Option<usize> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct StageSpec {
    pub name: String,
    /// At most this many tasks per `process_batch` call (>= 1).
    pub batch_size: usize,
    pub resources: Resources,
    pub pool: PoolSize,
    /// Remote calls in flight per actor (>= 1), so the next call's arguments move while one runs.
    pub slots_per_actor: usize,
    /// Upper bound on batches packed into one remote call (>= 1; 1 disables packing).
    pub max_batches_per_call: usize,
    /// Infrastructure-failure retries per batch before it counts as failed.
    pub max_retries: u32,
    /// Bounds of this stage's input queue; upstream is not fed while either is reached.
    pub queue_max_tasks: usize,
    pub queue_max_bytes: u64,
    /// Retries of a batch whose stage code raised, before it fails for good (0: none).
    pub max_user_retries: u32,
    /// This stage's `ignore_failures`, overriding the run's.
    pub ignore_failures: Option<bool>,
    /// Ready actors older than this (seconds) are drained and replaced (None: they live on).
    pub max_actor_age_secs: Option<f64>,
    /// At most one age-based replacement per this many seconds in this stage's pool.
    pub actor_restart_interval_secs: f64,
    /// An actor on which a batch failed in user code (and the run goes on) is drained and replaced.
    pub replace_actor_on_failure: bool,
    /// An actor that has been given this many batches takes no more: it is drained and replaced
    /// (`max_calls_per_worker`: a leaky stage gets a fresh process). None: no limit.
    pub max_batches_per_actor: Option<u64>,
    /// An `Auto` pool never shrinks below this many actors (rebalancing leaves them) and starts
    /// with at least this many (`min_workers`; 0: no floor).
    pub min_pool_size: usize,
    /// An `Auto` pool's size at start, when it fits (`initial_workers`; it may shrink to
    /// `min_pool_size` later). None: the usual start (see `placement.rs`).
    pub initial_pool_size: Option<usize>,
}

impl StageSpec {
    /// A stage with the Python API's defaults: batches of 1 task, 1 CPU, an automatic pool, 2 slots per
    /// actor, up to 64 batches per call, 3 retries (none for user errors), an input queue of 10,000
    /// tasks or 1 GiB, actors that live as long as the stage.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            batch_size: 1,
            resources: Resources {
                cpus: 1.0,
                gpus: 0.0,
            },
            pool: PoolSize::Auto { max: None },
            slots_per_actor: 2,
            max_batches_per_call: 64,
            max_retries: 3,
            queue_max_tasks: 10_000,
            queue_max_bytes: 1 << 30,
            max_user_retries: 0,
            ignore_failures: None,
            max_actor_age_secs: None,
            actor_restart_interval_secs: 60.0,
            replace_actor_on_failure: false,
            max_batches_per_actor: None,
            min_pool_size: 0,
            initial_pool_size: None,
        }
    }
}

/// Capacity of one node that this run may use (already minus reserved resources; the head node is
/// simply left out by the driver when `ignore_head_node`).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    pub id: String,
    pub cpus: f64,
    pub gpus: f64,
}

impl NodeSpec {
    pub fn new(id: impl Into<String>, cpus: f64, gpus: f64) -> Self {
        Self {
            id: id.into(),
            cpus,
            gpus,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// User errors are recorded as failures and the run continues, instead of aborting it.
    pub ignore_failures: bool,
    /// A partial batch is dispatched after waiting this long for more input (None: only once every
    /// upstream stage has drained).
    pub batch_timeout_secs: Option<f64>,
    /// Measured cost of one remote call; packing aims for calls that carry many times this in work.
    pub call_overhead_secs: f64,
    /// Minimum seconds between two pool rebalancing moves (kill an idle actor to start a starved one).
    pub rebalance_interval_secs: f64,
    /// What starting one actor costs; an `Auto` CPU pool grows by one actor per this much work
    /// waiting for it. 0: every pool starts at its whole target.
    pub actor_start_secs: f64,
    /// Each stage starts only once the stage before it has finished (its outputs wait in its
    /// queue): no streaming between stages, and no queue bound holds a stage back.
    pub stage_by_stage: bool,
    /// Least seconds between two rebalancing moves that grow a stage which already has actors
    /// (moves that give a stage its first actor only wait for `rebalance_interval_secs`).
    pub growth_interval_secs: f64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            ignore_failures: false,
            batch_timeout_secs: None,
            call_overhead_secs: 0.0005,
            rebalance_interval_secs: 0.5,
            actor_start_secs: 1.0,
            stage_by_stage: false,
            growth_interval_secs: 0.0,
        }
    }
}

/// Size and item count of one task, as measured by whoever produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskMeta {
    pub bytes: u64,
    pub items: u64,
}
