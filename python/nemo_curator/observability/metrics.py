"""Typed run metrics: what every executor hands the `RunMonitor`.

`StageCounts` is the Python face of the core's one counts struct (`curator_core::StageCounts`): the actor
pool's scheduler and the Ray Data executor's ledger both report these fields, under the keys
`nemo_curator._core.STAGE_COUNT_FIELDS`. `StageMetrics` adds what a stage holds right now (queues, work in
flight, actors); an executor that cannot see a gauge leaves it None (Ray Data sees neither its queues nor
its actors' states), and every consumer treats None as "not known", never as 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol

__all__ = [
    "MetricsSource",
    "RunMetrics",
    "SchedulerMetrics",
    "StageCounts",
    "StageMetrics",
    "as_metrics_source",
]


@dataclass(frozen=True)
class StageCounts:
    """What one stage did so far (monotonic). Times in seconds on the run's clock, sizes in bytes."""

    #: Tasks that reached the stage, their bytes and items.
    tasks_in: int = 0
    bytes_in: int = 0
    items_in: int = 0
    #: Inputs of batches that succeeded.
    tasks_done: int = 0
    #: Outputs, their bytes and items.
    tasks_out: int = 0
    bytes_out: int = 0
    items_out: int = 0
    #: Inputs of batches that failed for good.
    tasks_failed: int = 0
    #: Inputs of batches that succeeded with no output.
    tasks_filtered: int = 0
    batches_done: int = 0
    batches_failed: int = 0
    #: Batches run again after an infrastructure failure.
    retries: int = 0
    #: Remote calls that ran batches of the stage.
    calls: int = 0
    actors_created: int = 0
    actors_died: int = 0
    #: Seconds inside `process_batch`, summed.
    busy_s: float = 0.0
    #: First batch start and last batch end (None: none yet).
    first_start: float | None = None
    last_end: float | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> StageCounts:
        """The counts among `values` (a scheduler stage dict, a ledger stage dict); other keys are ignored."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})

    @property
    def batches(self) -> int:
        return self.batches_done + self.batches_failed

    @property
    def pending(self) -> int:
        """Tasks that reached the stage and are not done or failed yet (waiting or running)."""
        return max(0, self.tasks_in - self.tasks_done - self.tasks_failed)

    @property
    def wall_s(self) -> float:
        """From the first batch start to the last batch end (0 before both are known)."""
        if self.first_start is None or self.last_end is None:
            return 0.0
        return max(0.0, self.last_end - self.first_start)


@dataclass(frozen=True)
class StageMetrics:
    """One stage: its counts and what it holds now. None: the executor cannot know it."""

    name: str
    counts: StageCounts = StageCounts()
    #: Tasks waiting in the stage's input queue (retried batches included), and their bytes.
    queued_tasks: int | None = None
    queued_bytes: int | None = None
    in_flight_batches: int | None = None
    in_flight_tasks: int | None = None
    actors_pending: int | None = None
    #: Ready actors (busy + idle).
    actors_ready: int | None = None
    actors_busy: int | None = None
    actors_idle: int | None = None
    #: Calls in flight over the stage's actors.
    slots_in_use: int | None = None
    #: Pool size aimed for.
    pool_target: int | None = None
    #: Current mean batch time.
    mean_batch_s: float | None = None
    #: Largest outputs-per-input ratio seen in a finished batch.
    output_ratio: float | None = None
    #: Held back because the next stage's queue is full.
    backpressured: bool | None = None
    #: No more work can come to this stage.
    finished: bool = False
    #: The first task of the stage's longest-running call and its age (set by the monitor when known).
    oldest_task: str | None = None
    oldest_s: float | None = None

    @classmethod
    def from_scheduler(cls, values: Mapping[str, Any]) -> StageMetrics:
        """From one stage dict of `nemo_curator._core.Scheduler.metrics()`."""
        gauges = {
            f.name: values[f.name]
            for f in fields(cls)
            if f.name not in ("name", "counts") and f.name in values
        }
        return cls(name=str(values["name"]), counts=StageCounts.from_mapping(values), **gauges)

    def with_oldest(self, task_id: str, seconds: float) -> StageMetrics:
        return replace(self, oldest_task=task_id, oldest_s=seconds)


@dataclass(frozen=True)
class RunMetrics:
    """A snapshot of the whole run. None: the executor cannot know it."""

    stages: tuple[StageMetrics, ...]
    #: The run's clock at the snapshot (seconds).
    now: float | None = None
    tasks_initial: int | None = None
    tasks_emitted: int | None = None
    tasks_failed: int | None = None
    tasks_queued: int | None = None
    tasks_in_flight: int | None = None
    actors_live: int | None = None
    calls_in_flight: int | None = None
    free_cpus: float | None = None
    free_gpus: float | None = None
    finished: bool = False
    aborted: bool = False

    @classmethod
    def from_scheduler(cls, values: Mapping[str, Any]) -> RunMetrics:
        """From `nemo_curator._core.Scheduler.metrics()`."""
        run = {f.name: values[f.name] for f in fields(cls) if f.name != "stages" and f.name in values}
        return cls(stages=tuple(StageMetrics.from_scheduler(s) for s in values["stages"]), **run)


class MetricsSource(Protocol):
    """What the monitor samples: typed metrics and the count balance (`_core.Scheduler.balance()`'s keys)."""

    def metrics(self) -> RunMetrics: ...

    def balance(self) -> dict[str, Any]: ...


class SchedulerMetrics:
    """`nemo_curator._core.Scheduler` as a `MetricsSource`."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def metrics(self) -> RunMetrics:
        return RunMetrics.from_scheduler(self.scheduler.metrics())

    def balance(self) -> dict[str, Any]:
        return dict(self.scheduler.balance())


def as_metrics_source(source: Any) -> MetricsSource:
    """`source` itself when its `metrics()` is typed; a `_core.Scheduler` wrapped in `SchedulerMetrics`."""
    from nemo_curator import _core

    if isinstance(source, _core.Scheduler):
        return SchedulerMetrics(source)
    return source
