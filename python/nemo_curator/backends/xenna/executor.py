"""`XennaExecutor`: Curator's default executor, as a mode of this package's actor-pool engine.

It takes Curator v1.1.0's `XennaExecutor` config keys and per-stage `xenna_stage_spec()` keys and runs the
pipeline on the same streaming actor pools and Rust scheduler as `RayActorPoolExecutor` (no cosmos-xenna):

- `execution_mode="streaming"`: every stage's pool alive at once, tasks stream between them;
  `"batch"`: each stage runs to completion before the next one starts (its outputs wait in the object store).
- `cpu_allocation_percentage` caps each node's CPUs, rounded up to whole CPUs (Xenna rounds down, so on a
  2-CPU node it leaves one CPU and a multi-stage streaming pipeline cannot start).
- `ignore_head_node=True` keeps stage work off the head node (Xenna raises).
- Unknown config keys, unknown `xenna_stage_spec()` keys and bad values are errors naming the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from nemo_curator.backends import checkpoint
from nemo_curator.backends.base import BaseExecutor
from nemo_curator.backends.config import ExecutorConfig, check_known_keys
from nemo_curator.backends.config import is_int as _is_int
from nemo_curator.backends.config import is_number as _is_number
from nemo_curator.backends.experimental.ray_actor_pool.config import ActorPoolConfig, StageOptions
from nemo_curator.backends.experimental.ray_actor_pool.executor import ActorPoolRun

if TYPE_CHECKING:
    from nemo_curator.backends.failures import FailureRecord
    from nemo_curator.observability import RunReport
    from nemo_curator.stages.base import ProcessingStage
    from nemo_curator.tasks import Task

EXECUTION_MODES = ("streaming", "batch")


@dataclass(frozen=True)
class XennaConfig(ExecutorConfig):
    """The Xenna keys of `XennaExecutor`'s config (Curator v1.1.0's keys and defaults)."""

    _owner = "XennaExecutor"

    logging_interval: float = 60
    ignore_failures: bool = False
    execution_mode: str = "streaming"
    cpu_allocation_percentage: float = 0.95
    autoscale_interval_s: float = 180
    max_workers_per_stage: int | None = None

    def _check(self) -> None:
        if self.execution_mode not in EXECUTION_MODES:
            raise self._bad("execution_mode", f"one of {list(EXECUTION_MODES)}")
        self._require_bool("ignore_failures")
        self._require_number("cpu_allocation_percentage", low=0.0, open_low=True)
        if self.cpu_allocation_percentage > 1:
            raise self._bad("cpu_allocation_percentage", "a number > 0 and <= 1")
        self._require_number("autoscale_interval_s", "logging_interval", low=0.0, open_low=True)
        self._require_int("max_workers_per_stage", low=1, optional=True)


#: Curator v1.1.0's keys and defaults.
XENNA_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(XennaConfig)}
# Engine keys that a Xenna key already sets.
_SET_BY_XENNA_KEYS = {"status_interval_s", "progress_interval_s"}

#: The `xenna_stage_spec()` keys this executor understands.
STAGE_SPEC_KEYS = (
    "num_workers",
    "num_workers_per_node",
    "num_setup_attempts_python",
    "num_run_attempts_python",
    "ignore_failures",
    "reset_workers_on_failure",
    "slots_per_actor",
    "worker_max_lifetime_m",
    "worker_restart_interval_m",
    "max_setup_failure_percentage",
)


class XennaExecutor(BaseExecutor):
    """Curator's default executor (`Pipeline.run()` with no executor), on streaming actor pools.

    Config keys (Curator v1.1.0): `execution_mode` ("streaming" | "batch"), `logging_interval` (seconds
    between status tables), `ignore_failures`, `cpu_allocation_percentage` (share of each node's CPUs,
    rounded up to whole CPUs), `autoscale_interval_s` (least seconds between two moves of an actor from one
    stage's pool to another's; pools still grow at once into free resources), `max_workers_per_stage` (cap
    on automatic pools). Every `RayActorPoolExecutor` key is accepted too (except `status_interval_s` and
    `progress_interval_s`, which `logging_interval` sets).

    Per stage, `stage.xenna_stage_spec()` may set `num_workers`, `num_workers_per_node`,
    `num_setup_attempts_python`, `num_run_attempts_python`, `ignore_failures`, `reset_workers_on_failure`,
    `slots_per_actor`, `worker_max_lifetime_m`, `worker_restart_interval_m`, `max_setup_failure_percentage`.

    After `execute()`, `failures` lists the batches skipped under `ignore_failures` (`FailureRecord`s) and
    `last_run` holds the run report.
    """

    def __init__(self, config: dict[str, Any] | None = None, ignore_head_node: bool = False) -> None:
        super().__init__(config, ignore_head_node)
        engine_keys = set(ActorPoolConfig.keys()) - _SET_BY_XENNA_KEYS
        check_known_keys("XennaExecutor", self.config, set(XENNA_DEFAULTS) | engine_keys)
        # An explicit None means the default, as for every other executor here.
        given = {k: v for k, v in self.config.items() if v is not None}
        xenna = XennaConfig.from_dict({k: v for k, v in given.items() if k in XENNA_DEFAULTS})
        self.execution_mode: str = xenna.execution_mode
        self.cpu_allocation_percentage: float = float(xenna.cpu_allocation_percentage)
        self.autoscale_interval_s: float = float(xenna.autoscale_interval_s)
        self.max_workers_per_stage: int | None = xenna.max_workers_per_stage
        logging_interval = float(xenna.logging_interval)
        engine = {k: v for k, v in given.items() if k in engine_keys}
        engine.setdefault("ignore_failures", xenna.ignore_failures)
        engine["status_interval_s"] = logging_interval
        engine["progress_interval_s"] = min(logging_interval, 10.0)
        self.settings = ActorPoolConfig.from_dict(engine)
        self.failures: list[FailureRecord] = []
        #: Report of the last `execute()`: per-stage metrics, failures, count balance, timeline.
        self.last_run: RunReport | None = None

    @checkpoint.resumable
    def execute(
        self,
        stages: list[ProcessingStage[Any, Any]],
        initial_tasks: list[Task[Any]] | None = None,
    ) -> list[Task[Any]]:
        """Run `stages` over `initial_tasks` (default: one empty task); returns the final tasks.
        `checkpoint_path` / `retry_failed`: see `checkpoint.resumable`."""
        for stage in stages:
            # Before Ray starts: a bad spec is the user's mistake, whatever the cluster.
            stage_options(stage, 1, self.max_workers_per_stage)
        run = ActorPoolRun(
            "XennaExecutor",
            self.settings,
            self.ignore_head_node,
            stage_options=lambda st, n_nodes: [
                stage_options(s, n_nodes, self.max_workers_per_stage) for s in st
            ],
            stage_by_stage=self.execution_mode == "batch",
            cpu_fraction=self.cpu_allocation_percentage,
            growth_interval_s=self.autoscale_interval_s,
        )
        return run.execute_for(self, stages, initial_tasks)


def stage_options(
    stage: ProcessingStage[Any, Any], n_nodes: int, max_workers: int | None = None
) -> StageOptions:
    """The engine settings one stage's `xenna_stage_spec()` asks for; errors name the stage and key."""
    spec = stage.xenna_stage_spec() or {}
    if not isinstance(spec, dict):
        raise TypeError(
            f"Stage '{stage.name}': xenna_stage_spec() must return a dict, got {type(spec).__name__}"
        )
    unknown = sorted(set(spec) - set(STAGE_SPEC_KEYS))
    if unknown:
        raise ValueError(
            f"Stage '{stage.name}': unknown xenna_stage_spec() key(s) {unknown}; valid keys are {list(STAGE_SPEC_KEYS)}"
        )
    # A missing key or None: the pipeline's value.
    get = {k: v for k, v in spec.items() if v is not None}.get

    def bad(key: str, want: str) -> ValueError:
        return ValueError(
            f"Stage '{stage.name}': xenna_stage_spec() '{key}' must be {want}, got {spec[key]!r}"
        )

    def int_at_least(key: str, low: int, default: int) -> int:
        value = get(key, default)
        if not _is_int(value) or value < low:
            raise bad(key, f"an int >= {low}")
        return int(value)

    def number_at_least(key: str, low: float, default: float, *, open_low: bool = False) -> float:
        value = get(key, default)
        if not _is_number(value) or not math.isfinite(value) or value < low or (open_low and value == low):
            raise bad(key, f"a number {'>' if open_low else '>='} {low}")
        return float(value)

    def flag(key: str) -> bool | None:
        value = get(key)
        if value is not None and not isinstance(value, bool):
            raise bad(key, "a bool")
        return value

    pool_size: int | None = None
    if get("num_workers") is not None and get("num_workers_per_node") is not None:
        raise ValueError(
            f"Stage '{stage.name}': xenna_stage_spec() sets both 'num_workers' and 'num_workers_per_node'; "
            "set one of them"
        )
    if get("num_workers") is not None:
        pool_size = int_at_least("num_workers", 1, 1)
    elif get("num_workers_per_node") is not None:
        per_node = number_at_least("num_workers_per_node", 0.0, 1.0, open_low=True)
        pool_size = max(1, math.ceil(per_node * n_nodes))
    if get("max_setup_failure_percentage") is not None:
        pct = number_at_least("max_setup_failure_percentage", 0.0, 0.0)
        if pct > 100:
            raise bad("max_setup_failure_percentage", "a number from 0 to 100")
    lifetime_m = number_at_least("worker_max_lifetime_m", 0.0, 0.0)
    return StageOptions(
        pool_size=pool_size,
        max_pool_size=max_workers,
        slots_per_actor=int_at_least("slots_per_actor", 1, 1) if get("slots_per_actor") is not None else None,
        ignore_failures=flag("ignore_failures"),
        max_user_retries=int_at_least("num_run_attempts_python", 1, 1) - 1
        if get("num_run_attempts_python") is not None
        else None,
        setup_attempts=int_at_least("num_setup_attempts_python", 1, 1),
        max_actor_age_s=lifetime_m * 60.0 if lifetime_m > 0 else None,
        actor_restart_interval_s=number_at_least("worker_restart_interval_m", 0.0, 1.0) * 60.0,
        replace_actor_on_failure=bool(flag("reset_workers_on_failure")),
    )
