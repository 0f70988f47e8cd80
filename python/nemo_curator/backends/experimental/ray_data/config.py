"""The Ray Data executor's configuration, validated once at construction into a typed object."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from nemo_curator.backends.experimental.ray_actor_pool.config import _parse_runtime_env

__all__ = ["RayDataConfig", "_parse_runtime_env"]

# DataContext attributes the executor sets itself: a `data_context` entry may not override them.
_MANAGED_CONTEXT_KEYS = frozenset({"raise_original_map_exception", "max_errored_blocks"})


@dataclass(frozen=True)
class RayDataConfig:
    """Settings of `RayDataExecutor` (the keys of its `config` dict). Sizes are in bytes."""

    #: Skip a failing batch (its tasks are logged and listed in `executor.failures`) and go on,
    #: instead of failing the run.
    ignore_failures: bool = False
    #: Actors per actor stage (fixed); `stage.num_workers()` overrides it per stage. None: from one
    #: actor up to as many as the free resources hold.
    pool_size: int | None = None
    #: CPUs / GPUs of the cluster left unused by this run.
    reserved_cpus: float = 0.0
    reserved_gpus: float = 0.0
    #: Ray runtime environment of the stage workers (and of a Ray instance the executor starts).
    runtime_env: dict[str, Any] = field(default_factory=dict)
    #: Most tasks in one block of the initial tasks.
    max_tasks_per_block: int = 64
    #: Target size of a block: Ray Data cuts bigger outputs into several blocks.
    target_block_bytes: int = 128 * 1024 * 1024
    #: Tasks per block after a fan-out stage (`is_fanout_stage`), so that the next stage spreads them
    #: over its workers. None: the next stage's batch size.
    fanout_tasks_per_block: int | None = None
    #: Full batches everywhere: a stage with `batch_size` B gets blocks of exactly B tasks from a
    #: separate, global repartition. Otherwise the cut happens inside the previous stage's Ray tasks
    #: (fused, no extra pass): batches are still at most B and one call each, but a previous stage
    #: that filters or fans out leaves one short batch per task it ran.
    exact_batches: bool = False
    #: Run every stage in an actor pool (default: only stages that override `setup`, use both GPUs
    #: and CPUs, or say `is_actor_stage`).
    force_actors: bool = False
    #: Return the tasks in input order (Ray Data's `preserve_order`), at some cost in throughput.
    preserve_order: bool = False
    #: Ray Data's progress bars.
    show_progress: bool = False
    #: Other `ray.data.DataContext` attributes to set for the run's datasets, e.g.
    #: `{"target_min_block_size": 1 << 20}`; unknown names are errors.
    data_context: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, config: dict[str, Any] | None) -> RayDataConfig:
        """Validate a user config dict: unknown keys and wrong types are errors that name the key."""
        config = dict(config or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"Unknown RayDataExecutor config key(s) {unknown}; valid keys are {sorted(known)}")
        out = cls(**config)
        out._check()
        return out

    def _check(self) -> None:
        def bad(key: str, want: str) -> ValueError:
            return ValueError(f"RayDataExecutor config '{key}' must be {want}, got {getattr(self, key)!r}")

        for key in ("ignore_failures", "exact_batches", "force_actors", "preserve_order", "show_progress"):
            if not isinstance(getattr(self, key), bool):
                raise bad(key, "a bool")
        for key in ("pool_size", "fanout_tasks_per_block"):
            value = getattr(self, key)
            if value is not None and (not _is_int(value) or value < 1):
                raise bad(key, "a positive int or None")
        for key in ("max_tasks_per_block", "target_block_bytes"):
            if not _is_int(getattr(self, key)) or getattr(self, key) < 1:
                raise bad(key, "an int >= 1")
        for key in ("reserved_cpus", "reserved_gpus"):
            if not _is_number(getattr(self, key)) or getattr(self, key) < 0:
                raise bad(key, "a number >= 0")
        if not isinstance(self.runtime_env, dict):
            raise bad("runtime_env", "a dict")
        if not isinstance(self.data_context, dict):
            raise bad("data_context", "a dict of ray.data.DataContext attributes")
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


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
