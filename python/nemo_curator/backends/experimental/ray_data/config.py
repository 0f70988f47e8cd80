"""The Ray Data executor's configuration, validated once at construction into a typed object."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nemo_curator.backends.config import ExecutorConfig, parse_runtime_env

# The name the executor imports it by.
_parse_runtime_env = parse_runtime_env

__all__ = ["RayDataConfig", "_parse_runtime_env"]

# DataContext attributes the executor sets itself: a `data_context` entry may not override them.
_MANAGED_CONTEXT_KEYS = frozenset({"raise_original_map_exception", "max_errored_blocks"})


@dataclass(frozen=True)
class RayDataConfig(ExecutorConfig):
    """Settings of `RayDataExecutor` (the keys of its `config` dict). Sizes are in bytes."""

    #: Skip a failing batch (its tasks are logged and listed in `executor.failures`) and go on,
    #: instead of failing the run.
    ignore_failures: bool = False
    #: Retries of a Ray task, or restarts of an actor, whose worker process died (a crash, not an
    #: exception: those fail the batch at once). When they run out the run fails, also under
    #: `ignore_failures` (Ray Data does not say which tasks the lost block held).
    max_retries: int = 3
    #: Actors per actor stage (fixed); `stage.num_workers()` overrides it per stage. None: from one
    #: actor up to as many as the free resources hold.
    pool_size: int | None = None
    #: CPUs / GPUs of the cluster left unused by this run.
    reserved_cpus: float = 0.0
    reserved_gpus: float = 0.0
    #: Ray runtime environment of the stage workers (and of a Ray instance the executor starts).
    runtime_env: dict[str, Any] = field(default_factory=dict)
    #: Most tasks in one block of the initial tasks (fewer when needed to give every CPU work).
    max_tasks_per_block: int = 1024
    #: Size of the initial blocks: each is one Ray task of the first stages, so larger blocks mean
    #: fewer tasks, but more memory per worker and inputs held longer (a block's input tasks leave
    #: the object store when its call ends).
    target_block_bytes: int = 16 * 1024 * 1024
    #: Size of the blocks the stages emit: a call hands its outputs to Ray Data in chunks of half
    #: this, which it stores as blocks of about this size, so a worker holds about one at a time.
    output_block_bytes: int = 8 * 1024 * 1024
    #: Tasks per block after a fan-out stage (`is_fanout_stage`) whose next stage has batch size 1,
    #: so that the next stage spreads them over its workers. None: when the run has fewer than 4
    #: initial tasks per CPU, blocks of growing size (one child per block for the first few, then up
    #: to `max_tasks_per_block` or `target_block_bytes`); with more, each call's outputs stay its own
    #: blocks.
    fanout_tasks_per_block: int | None = None
    #: Full batches everywhere: every stage with `batch_size` B > 1 starts its own segment and reads
    #: blocks of exactly B tasks from a global repartition. Otherwise consecutive task stages share
    #: one Ray Data call (no pass over the data in between); batches are still at most B and one
    #: call each, but a stage after one that filtered or fanned out tasks in the same call may get
    #: one short batch per call.
    exact_batches: bool = False
    #: Run every stage in an actor pool (default: only stages that override `setup`, use both GPUs
    #: and CPUs, or say `is_actor_stage`).
    force_actors: bool = False
    #: Return the tasks in input order (Ray Data's `preserve_order`), at some cost in throughput.
    preserve_order: bool = False
    #: Per-stage progress while the run goes on (redrawn bars on a terminal, one log line per
    #: `progress_interval_s` otherwise, from the counts that come back with the result blocks) and
    #: the run summary in the log at the end. Off: no progress output at all.
    show_progress: bool = True
    #: Seconds between progress log lines (non-terminal mode).
    progress_interval_s: float = 10.0
    #: Ray Data's own per-operator progress bars as well (only with `show_progress`).
    ray_data_progress_bars: bool = False
    #: Seconds a run may make no progress while the cluster has no room for any stage still
    #: waiting (other work holds the resources) before it fails with an error naming those stages;
    #: a warning is logged after a quarter of this (at most a minute).
    stall_timeout_s: float = 600.0
    #: A `process_batch` call running longer than this ends its worker process (a hung call cannot be
    #: stopped otherwise); Ray re-runs the block and the batch is tried again up to `max_retries` times,
    #: then failed naming the stage and tasks (a failure record under `ignore_failures`). A number for
    #: every stage, or a dict of stage name -> seconds with an optional "default" entry. None: no limit.
    call_timeout_s: float | dict[str, float] | None = None
    #: Seconds between status tables in the log (per stage: counts and the oldest running task). None:
    #: none.
    status_interval_s: float | None = None
    #: Other `ray.data.DataContext` attributes to set for the run's datasets, e.g.
    #: `{"target_min_block_size": 1 << 20}`; unknown names are errors.
    data_context: dict[str, Any] = field(default_factory=dict)

    _owner = "RayDataExecutor"

    def _check(self) -> None:
        self._require_bool(
            "ignore_failures",
            "exact_batches",
            "force_actors",
            "preserve_order",
            "show_progress",
            "ray_data_progress_bars",
        )
        self._require_int("pool_size", "fanout_tasks_per_block", low=1, optional=True)
        self._require_int("max_retries", low=0)
        self._require_int("max_tasks_per_block", "target_block_bytes", "output_block_bytes", low=1)
        self._require_number("reserved_cpus", "reserved_gpus", low=0.0)
        self._require_number("progress_interval_s", "stall_timeout_s", low=0.0, open_low=True)
        self._require_number("status_interval_s", low=0.0, open_low=True, optional=True)
        self._require_per_stage_number("call_timeout_s")
        self._require_dict("runtime_env")
        self._require_dict("data_context", "a dict of ray.data.DataContext attributes")
        self._check_data_context()

    def _check_data_context(self) -> None:
        if not self.data_context:
            return
        from ray.data import DataContext

        current = DataContext.get_current()
        for key in self.data_context:
            if not isinstance(key, str) or key.startswith("_") or not hasattr(current, key):
                raise ValueError(
                    f"RayDataExecutor config 'data_context' has unknown DataContext attribute {key!r}"
                )
            if key in _MANAGED_CONTEXT_KEYS:
                raise ValueError(
                    f"RayDataExecutor config 'data_context' may not set {key!r}: the executor manages it "
                    "(failures are handled by 'ignore_failures')"
                )
