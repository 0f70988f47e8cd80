"""Per-stage worker controls (Curator v1.3): `stage.runtime_env` and the `ray_stage_spec()` keys
`max_calls_per_worker`, `min_workers` / `max_workers` / `initial_workers`, `ray_remote_args` and
`ray_num_cpus` (Ray Data only, as in Curator: the CPUs its `map_batches` reserves instead of `resources.cpus`).

Each Ray executor reads them once, before any Ray work, into a `StageControls`; bad values are errors
naming the stage and the key.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nemo_curator.backends.config import parse_runtime_env

if TYPE_CHECKING:
    from nemo_curator.stages.base import ProcessingStage

__all__ = [
    "ACTOR_POOL_MANAGED_ARGS",
    "RAY_DATA_MANAGED_ARGS",
    "StageControls",
    "merge_runtime_env",
    "stage_controls",
]

# Worker options the executors set themselves; a stage asks for resources through `resources`, and
# for its environment through `runtime_env`.
_COMMON_MANAGED = frozenset({"num_cpus", "num_gpus", "resources", "max_restarts", "runtime_env"})
#: On the actor pool the core places each actor on a node and retries calls itself.
ACTOR_POOL_MANAGED_ARGS = _COMMON_MANAGED | {
    "scheduling_strategy",
    "max_task_retries",
    "max_retries",
    "max_calls",
    "num_returns",
    "placement_group",
    "placement_group_bundle_index",
    "placement_group_capture_child_tasks",
    "lifetime",
    "name",
    "namespace",
    "get_if_exists",
}
#: `map_batches` arguments the Ray Data executor derives from the stage and the plan; its workers
#: keep per-call accounting that assumes one call at a time (`max_concurrency`).
RAY_DATA_MANAGED_ARGS = _COMMON_MANAGED | {
    "max_concurrency",
    "compute",
    "concurrency",
    "max_calls",
    "max_task_retries",
    "max_retries",
    "fn",
    "fn_args",
    "fn_kwargs",
    "fn_constructor_args",
    "fn_constructor_kwargs",
    "batch_size",
    "batch_format",
    "zero_copy_batch",
}


@dataclass(frozen=True)
class StageControls:
    """One stage's worker controls, validated. Worker counts of 0 mean "not set", as in Curator."""

    #: The stage's own `runtime_env` (None: it has none).
    runtime_env: dict[str, Any] | None = None
    #: A worker is replaced after this many calls (None: never).
    max_calls_per_worker: int | None = None
    min_workers: int | None = None
    max_workers: int | None = None
    initial_workers: int | None = None
    #: Extra Ray options for the stage's workers (managed keys already rejected).
    ray_remote_args: dict[str, Any] = field(default_factory=dict)
    #: Ray Data: the CPUs each of the stage's workers reserves, instead of `resources.cpus` (None: not set).
    ray_num_cpus: float | None = None

    @property
    def own_workers(self) -> bool:
        """The stage's workers need options of their own (they cannot be shared with other stages)."""
        return bool(self.runtime_env or self.ray_remote_args or self.max_calls_per_worker)

    @property
    def sizing(self) -> dict[str, int]:
        """The worker-count keys that are set."""
        named = {
            "min_workers": self.min_workers,
            "max_workers": self.max_workers,
            "initial_workers": self.initial_workers,
        }
        return {k: v for k, v in named.items() if v}

    def worker_env(self, executor_env: Mapping[str, Any] | None) -> dict[str, Any]:
        """The runtime_env of this stage's workers: the executor's with the stage's merged over it."""
        return parse_runtime_env(merge_runtime_env(executor_env, self.runtime_env))


def merge_runtime_env(base: Mapping[str, Any] | None, stage: Mapping[str, Any] | None) -> dict[str, Any]:
    """`stage` over `base`: `env_vars` merged key by key, any other key (`pip`, `conda`, ...) replaced."""
    merged = copy.deepcopy(dict(base or {}))
    for key, value in (stage or {}).items():
        if key == "env_vars":
            merged["env_vars"] = {**(merged.get("env_vars") or {}), **copy.deepcopy(value)}
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _error(stage: ProcessingStage[Any, Any], key: str, what: str) -> ValueError:
    return ValueError(f"Stage '{stage.name}': {key} {what}")


def _count(stage: ProcessingStage[Any, Any], key: str, value: Any, low: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise _error(stage, f"ray_stage_spec '{key}'", f"must be a whole number >= {low}, got {value!r}")
    return int(value) or None


def _cpus(stage: ProcessingStage[Any, Any], value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) > 0:
        # 0 would let Ray run any number of workers on a node at once; a small fraction bounds them.
        raise _error(stage, "ray_stage_spec 'ray_num_cpus'", f"must be a number > 0, got {value!r}")
    return float(value)


def stage_controls(
    stage: ProcessingStage[Any, Any], *, executor: str, managed: Collection[str]
) -> StageControls:
    """Read and check `stage`'s controls for `executor`, whose own worker options are `managed`."""
    spec = stage.ray_stage_spec() or {}
    env = getattr(stage, "runtime_env", None)
    if env is not None:
        if not isinstance(env, Mapping):
            raise _error(stage, "runtime_env", f"must be a dict (Ray's runtime_env format), got {env!r}")
        env_vars = env.get("env_vars")
        if env_vars is not None and not (
            isinstance(env_vars, Mapping) and all(isinstance(v, str) for v in env_vars.values())
        ):
            raise _error(stage, "runtime_env 'env_vars'", f"must be a dict of strings, got {env_vars!r}")
    args = spec.get("ray_remote_args")
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise _error(stage, "ray_stage_spec 'ray_remote_args'", f"must be a dict, got {args!r}")
    clash = sorted(set(args) & set(managed))
    if clash:
        raise _error(
            stage,
            "ray_stage_spec 'ray_remote_args'",
            f"must not set {clash}: {executor} manages them (ask for resources through the stage's "
            "`resources`, for an environment through its `runtime_env`)",
        )
    controls = StageControls(
        runtime_env=copy.deepcopy(dict(env)) if env else None,
        max_calls_per_worker=_count(stage, "max_calls_per_worker", spec.get("max_calls_per_worker"), 1),
        min_workers=_count(stage, "min_workers", spec.get("min_workers"), 0),
        max_workers=_count(stage, "max_workers", spec.get("max_workers"), 0),
        initial_workers=_count(stage, "initial_workers", spec.get("initial_workers"), 0),
        ray_remote_args=copy.deepcopy(dict(args)),
        ray_num_cpus=_cpus(stage, spec.get("ray_num_cpus")),
    )
    low, high, start = controls.min_workers, controls.max_workers, controls.initial_workers
    if low and high and low > high:
        raise _error(stage, "ray_stage_spec 'min_workers'", f"({low}) is larger than max_workers ({high})")
    if start and ((low and start < low) or (high and start > high)):
        raise _error(
            stage,
            "ray_stage_spec 'initial_workers'",
            f"({start}) must lie between min_workers ({low or 1}) and max_workers ({high or 'unbounded'})",
        )
    return controls
