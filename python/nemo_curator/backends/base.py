"""Executor interfaces and the checks every executor shares.

``BaseStageAdapter.process_batch`` is the one place where a stage's outputs are checked and perf stats are
attached; ``validate_stages``, ``prepare_initial_tasks``, ``resolve_batch_size`` and ``validate_stage_outputs``
give every executor the same errors for the same mistakes.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import GeneratorType
from typing import TYPE_CHECKING, Any

import numpy as np
from loguru import logger

from nemo_curator.backends.checkpoint import assign_task_ids
from nemo_curator.backends.failures import FailureRecord, StageFailedError
from nemo_curator.tasks import EmptyTask, Task
from nemo_curator.utils.performance_utils import StageTimer

if TYPE_CHECKING:
    from nemo_curator.stages.base import ProcessingStage

__all__ = [
    "BaseExecutor",
    "BaseStageAdapter",
    "FailureRecord",
    "NodeInfo",
    "StageFailedError",
    "WorkerMetadata",
    "prepare_initial_tasks",
    "resolve_batch_size",
    "validate_stage_outputs",
    "validate_stages",
]

IGNORE_HEAD_NODE_ENV_VAR = "CURATOR_IGNORE_RAY_HEAD_NODE"
_TRUTHY = ("1", "true", "yes")


@dataclass
class NodeInfo:
    """The node a setup or worker runs on."""

    node_id: str = ""


@dataclass
class WorkerMetadata:
    """The worker a stage instance runs in; ``allocation`` is backend-specific (None on Ray)."""

    worker_id: str = ""
    allocation: Any = None


class BaseExecutor(ABC):
    """Runs a list of (decomposed) stages over a list of tasks."""

    def __init__(self, config: dict[str, Any] | None = None, ignore_head_node: bool = False) -> None:
        self.config = config or {}
        env_value = os.environ.get(IGNORE_HEAD_NODE_ENV_VAR, "")
        self.ignore_head_node = True if env_value.strip().lower() in _TRUTHY else ignore_head_node

    @abstractmethod
    def execute(
        self,
        stages: list[ProcessingStage],
        initial_tasks: list[Task] | None = None,
        checkpoint_path: str | None = None,
        retry_failed: bool = False,
    ) -> list[Task]:
        """Run ``stages`` in order over ``initial_tasks`` (default: one empty task); return the final tasks.

        With ``checkpoint_path``, completed sources are recorded there and skipped by a rerun (see
        ``nemo_curator.backends.checkpoint``); ``retry_failed`` also redoes the sources of failed tasks.
        """


class BaseStageAdapter:
    """Wraps a stage for an executor worker: lifecycle forwarding, output checks and perf stats."""

    def __init__(self, stage: ProcessingStage) -> None:
        self.stage = stage

    def process_batch(self, tasks: list[Task]) -> list[Task]:
        """Run the stage on one batch; return its outputs as a flat list of tasks, ``None``s dropped.

        Every output gets the same new ``StagePerfStats`` entry for this call.
        """
        timer: StageTimer | None = getattr(self, "_timer", None)
        if timer is None:
            timer = StageTimer(self.stage)
            self._timer = timer
        input_size = sum(task.num_items for task in tasks)
        timer.reinit(input_size)
        with timer.time_process(input_size):
            results = self.stage.process_batch(tasks)
        _, stats = timer.log_stats()
        custom_metrics = self.stage._consume_custom_metrics()
        if custom_metrics:
            stats.custom_metrics.update(custom_metrics)
        outputs = validate_stage_outputs(self.stage.name, results)
        assign_task_ids(tasks, outputs)  # checkpointed runs only
        for task in outputs:
            task.add_stage_perf(stats)
        return outputs

    def setup_on_node(
        self, node_info: NodeInfo | None = None, worker_metadata: WorkerMetadata | None = None
    ) -> None:
        self.stage.setup_on_node(node_info, worker_metadata)

    def setup(self, worker_metadata: WorkerMetadata | None = None) -> None:
        self.stage.setup(worker_metadata)

    def teardown(self) -> None:
        self.stage.teardown()


# ------------------------------------------------------------------------------------------------------------
# Checks shared by every executor.


def _flatten(stage_name: str, value: Any) -> Iterator[Task]:
    if value is None:
        return
    if isinstance(value, Task):
        yield value
        return
    # Ray Data hands batches over as numpy object arrays, so a stage may hand one back.
    if isinstance(value, list | tuple | GeneratorType) or (
        isinstance(value, np.ndarray) and value.dtype == object
    ):
        for item in value:
            yield from _flatten(stage_name, item)
        return
    msg = (
        f"Stage '{stage_name}' returned an object of type {type(value).__name__}; "
        "a stage must return Task objects (a Task, a list of Tasks, or None to drop its input)"
    )
    raise TypeError(msg)


def validate_stage_outputs(stage_name: str, outputs: Any) -> list[Task]:
    """The outputs of one ``process_batch`` call as a flat ``list[Task]``.

    Nested lists/tuples are flattened and ``None`` entries dropped (filtered tasks). Anything that is not a
    ``Task`` raises ``TypeError`` naming the stage and the offending type.
    """
    return list(_flatten(stage_name, outputs))


def _valid_ray_stage_spec_keys() -> set[str]:
    # Imported here: the keys live with the Ray utilities, which import Ray.
    from nemo_curator.backends.experimental.utils import RayStageSpecKeys

    return {key.value for key in RayStageSpecKeys}


def validate_stages(stages: Sequence[ProcessingStage]) -> None:
    """Raise a clear error, before any work, for a stage list no executor can run.

    - ``TypeError``: an element is not a ``ProcessingStage``, or is a ``CompositeStage`` that was not
      decomposed (``Pipeline.build()`` decomposes them).
    - ``ValueError``: ``batch_size`` is not ``None`` or an int >= 1; ``ray_stage_spec()`` has an unknown key.
    """
    from nemo_curator.stages.base import CompositeStage, ProcessingStage

    if not isinstance(stages, Sequence) or isinstance(stages, str):
        msg = f"stages must be a list of ProcessingStage, got {type(stages).__name__}"
        raise TypeError(msg)
    valid_keys: set[str] | None = None
    for index, stage in enumerate(stages):
        if not isinstance(stage, ProcessingStage):
            msg = f"Stage {index} is not a ProcessingStage: got {type(stage).__name__} ({stage!r})"
            raise TypeError(msg)
        if isinstance(stage, CompositeStage):
            msg = (
                f"Stage {index} ('{stage.name}') is a CompositeStage; decompose it first "
                "(Pipeline.build() does this) or run it through a Pipeline"
            )
            raise TypeError(msg)
        resolve_batch_size(stage, warn=False)
        _check_resources_and_workers(stage)
        spec = stage.ray_stage_spec()
        if spec:
            if valid_keys is None:
                valid_keys = _valid_ray_stage_spec_keys()
            for key in spec:
                if key not in valid_keys:
                    msg = (
                        f"Invalid key {key} in ray_stage_spec for stage {stage} ('{stage.name}'); "
                        f"valid keys: {sorted(valid_keys)}"
                    )
                    raise ValueError(msg)


# More workers than any cluster runs: a number this large is a mistake, not a plan.
_MAX_WORKERS = 1_000_000


def _check_resources_and_workers(stage: ProcessingStage) -> None:
    """``ValueError`` naming the stage for resources that are not finite numbers >= 0, or a
    ``num_workers()`` that is not None or an int in [0, 1e6]."""
    res = stage.resources
    for key in ("cpus", "gpus"):
        value = getattr(res, key, 0.0)
        ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value < 0:
            msg = (
                f"Stage '{stage.name}' has invalid resources.{key}={value!r}: it must be a finite number >= 0"
            )
            raise ValueError(msg)
    n = stage.num_workers()
    if n is None:
        return
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 0 <= n <= _MAX_WORKERS:
        msg = (
            f"Stage '{stage.name}' has invalid num_workers() {n!r}: it must be None or an int "
            f"from 0 to {_MAX_WORKERS}"
        )
        raise ValueError(msg)


def resolve_batch_size(stage: ProcessingStage, *, warn: bool = True) -> int:
    """The number of tasks per ``process_batch`` call: ``stage.batch_size``, or 1 when it is ``None``.

    Raises ``ValueError`` naming the stage when ``batch_size`` is not ``None`` or an int >= 1.
    """
    batch_size = stage.batch_size
    if batch_size is None:
        if warn:
            logger.warning(f"batch size not set for stage {stage}. Setting it to 1.")
        return 1
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        msg = f"Stage '{stage.name}' has invalid batch_size {batch_size!r}: it must be None or an int >= 1"
        raise ValueError(msg)
    return int(batch_size)


def prepare_initial_tasks(initial_tasks: Iterable[Task] | None) -> list[Task]:
    """The executor input: ``initial_tasks`` as a list, or one fresh empty task when it is ``None``/empty.

    Raises ``TypeError`` if an element is not a ``Task``.
    """
    tasks = list(initial_tasks) if initial_tasks is not None else []
    if not tasks:
        return [EmptyTask()]
    for index, task in enumerate(tasks):
        if not isinstance(task, Task):
            msg = f"initial_tasks[{index}] is not a Task: got {type(task).__name__}"
            raise TypeError(msg)
    return tasks
