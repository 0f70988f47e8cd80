"""The actor-pool executor's configuration, validated once at construction into a typed object."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nemo_curator.backends.config import ExecutorConfig, parse_runtime_env

# The name the executors import it by.
_parse_runtime_env = parse_runtime_env


@dataclass(frozen=True)
class ActorPoolConfig(ExecutorConfig):
    """Settings of `RayActorPoolExecutor` (the keys of its `config` dict).

    Sizes are in bytes, times in seconds.
    """

    #: Actors per stage (a fixed size); `stage.num_workers()` overrides it per stage. None: fit to the
    #: cluster's free resources, shared between stages, growing with the work (see `actor_start_s`).
    pool_size: int | None = None
    #: Rough cost of starting one actor. An automatic CPU pool starts with one actor and grows by one
    #: per this many seconds of measured work waiting for the stage, so tiny tasks do not pay for actors
    #: they cannot use while heavy stages get the whole cluster. 0: every pool starts at its full size
    #: (also what happens when every stage runs as Ray tasks: their slots cost nothing to start).
    actor_start_s: float = 1.0
    #: Run stages that override none of `setup`, `setup_on_node`, `teardown` (and ask for no GPU, and
    #: whose `ray_stage_spec` does not say `is_actor_stage`) as Ray tasks on Ray's pooled worker
    #: processes instead of in actors of their own: same slots, batches and retries, no actor start-up.
    stateless_as_tasks: bool = True
    #: Run each chain of consecutive stages that run as Ray tasks, with the same resources and settings,
    #: batch size 1 after the first, and no fan-out before the last, in one call per batch of its first
    #: stage: the tasks pass from stage to stage inside the worker, not through the driver and the object
    #: store. Every stage keeps its own metrics, failures (naming it) and retries (a retried batch of a
    #: later stage runs from its own input). Stages with a `call_timeout_s` are not fused.
    fuse_stateless_stages: bool = True
    #: Record failing batches in `executor.failures` (and the run report) and go on, instead of failing.
    ignore_failures: bool = False
    #: CPUs / GPUs of the cluster left unused by this run.
    reserved_cpus: float = 0.0
    reserved_gpus: float = 0.0
    #: Ray runtime environment for the stage actors (and for a Ray instance the executor starts).
    runtime_env: dict[str, Any] = field(default_factory=dict)
    #: Retries of a batch whose actor, worker process or node died (also: setups that raised, per stage).
    max_retries: int = 3
    #: Retries of a batch whose stage code raised (user errors are not retried by default).
    max_user_retries: int = 0
    #: Remote calls in flight per actor, so the next call's inputs move while one runs.
    slots_per_actor: int = 2
    #: Most batches packed into one remote call when batches are tiny (each keeps its own process_batch).
    max_batches_per_call: int = 64
    #: Bounds of each stage's input queue (backpressure: upstream waits while a bound is reached).
    queue_max_tasks: int = 10_000
    queue_max_bytes: int = 1 << 30
    #: What one remote call costs the driver, Ray and the worker together: with Ray 2.60 a worker sits
    #: 5-10 ms between two calls when every core is busy. Calls carry batches worth ~20x this, so short
    #: batches share one call (the last calls of a stage are split evenly over its slots).
    call_overhead_s: float = 0.01
    #: Outputs up to this size travel with the call's metadata; larger ones stay in the object store.
    inline_bytes: int = 64 * 1024
    #: Dispatch a partial batch after waiting this long for more input (None: when upstream drained).
    batch_timeout_s: float | None = None
    #: A remote call running longer than this is cancelled (its worker is killed) and its batches are
    #: retried like those of a dead worker, then failed naming the stage and tasks. A number for every
    #: stage, or a dict of stage name -> seconds with an optional "default" entry. None: no limit.
    call_timeout_s: float | dict[str, float] | None = None
    #: How long the driver blocks in `ray.wait` per round at most.
    poll_interval_s: float = 0.05
    #: Show a per-stage progress display (a terminal redraws; logs get one line per interval).
    show_progress: bool = True
    #: Seconds between progress refreshes / status lines.
    progress_interval_s: float = 10.0
    #: Seconds between periodic status tables in the log (None: only on state changes).
    status_interval_s: float | None = None

    _owner = "RayActorPoolExecutor"

    def _check(self) -> None:
        self._require_int("pool_size", low=1, optional=True)
        self._require_bool("ignore_failures", "show_progress", "stateless_as_tasks", "fuse_stateless_stages")
        self._require_number("reserved_cpus", "reserved_gpus", low=0.0)
        self._require_dict("runtime_env")
        self._require_int("max_retries", "max_user_retries", low=0)
        self._require_int(
            "slots_per_actor", "max_batches_per_call", "queue_max_tasks", "queue_max_bytes", low=1
        )
        self._require_int("inline_bytes", low=0)
        self._require_per_stage_number("call_timeout_s")
        self._require_number("batch_timeout_s", "status_interval_s", low=0.0, open_low=True, optional=True)
        self._require_number("poll_interval_s", "progress_interval_s", low=0.0, open_low=True)
        self._require_number("actor_start_s", "call_overhead_s", low=0.0)


@dataclass(frozen=True)
class StageOptions:
    """Per-stage settings that override the executor's for one stage (from `xenna_stage_spec()` keys).

    None means "the executor's setting". Times are in seconds.
    """

    #: Exact pool size (wins over `stage.num_workers()` and `pool_size`).
    pool_size: int | None = None
    #: Cap on an automatic pool.
    max_pool_size: int | None = None
    slots_per_actor: int | None = None
    ignore_failures: bool | None = None
    #: Retries of a batch whose stage code raised (None: the executor's `max_user_retries`).
    max_user_retries: int | None = None
    #: Attempts of the stage's `setup()` inside one actor before the actor counts as failed.
    setup_attempts: int = 1
    #: Actors older than this are drained and replaced (None: they live as long as the stage).
    max_actor_age_s: float | None = None
    #: At most one age-based replacement per this many seconds in one pool.
    actor_restart_interval_s: float = 60.0
    #: An actor whose batch failed (with failures ignored) is drained and replaced.
    replace_actor_on_failure: bool = False
