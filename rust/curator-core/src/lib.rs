//! curator-core: the sans-IO streaming scheduler of nemo-curator-rs.
//!
//! No Ray, no Python, no threads: the driver feeds [`Event`]s into a [`Scheduler`] and executes the
//! [`Command`]s it returns. That keeps every rule (batch sizes, slots, backpressure, retries, pool
//! placement, termination) testable in plain Rust with mock workers.

mod backpressure;
mod batching;
pub mod errors;
pub mod event;
mod lineage;
mod metrics;
mod placement;
pub mod planning;
mod scheduler;
pub mod spec;
pub mod watch;

pub use errors::{CoreError, CoreResult};
pub use event::{Batch, Command, Event, Failure, FailureKind};
pub use lineage::{Balance, LiveRecords};
pub use metrics::{RunMetrics, StageCounts, StageMetrics, STAGE_COUNTERS};
pub use planning::{
    plan_ray_data, Pack, PlanNode, PlanSettings, PlanStage, PoolPlan, RayDataPlan, SegmentPlan,
};
pub use scheduler::Scheduler;
pub use spec::{
    ActorId, BatchId, NodeSpec, PoolSize, Resources, SchedulerConfig, StageSpec, TaskId, TaskMeta,
};
pub use watch::{starved, CallBook, Claims, NodeRoom, Stall, StallClock};
