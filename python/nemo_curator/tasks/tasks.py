"""The base ``Task`` type: the unit of data that flows between stages."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from nemo_curator.utils.performance_utils import StagePerfStats

T = TypeVar("T")


@dataclass
class Task(ABC, Generic[T]):
    """A unit of work: a payload (``data``) plus its processing history.

    ``task_id`` is chosen by the stage that creates the task; executors never change it.
    """

    task_id: str
    dataset_name: str
    data: T
    _stage_perf: list[StagePerfStats] = field(default_factory=list)
    _metadata: dict[str, Any] = field(default_factory=dict)
    _uuid: str = field(init=False, default_factory=lambda: str(uuid.uuid4()))

    def __post_init__(self) -> None:
        self.validate()

    @property
    @abstractmethod
    def num_items(self) -> int:
        """Number of items (rows, files, ...) in this task."""

    def add_stage_perf(self, perf_stats: StagePerfStats) -> None:
        self._stage_perf.append(perf_stats)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task_id={self.task_id}, dataset_name={self.dataset_name})"

    @abstractmethod
    def validate(self) -> bool:
        """Whether the payload is usable; may log why not."""


@dataclass(repr=False)
class _EmptyTask(Task[None]):
    """A task without data: the input of source stages.

    Curator v1.1.0 exposes ``EmptyTask`` as a module-level instance while later Curator makes it a class
    constructed with ``EmptyTask()``. Instances are callable so that both spellings work: calling one returns a
    fresh, independent empty task, which executors use so a shared instance never accumulates history.
    """

    @property
    def num_items(self) -> int:
        return 0

    def validate(self) -> bool:
        return True

    def __call__(self) -> _EmptyTask:
        return _EmptyTask(task_id="empty", dataset_name="empty", data=None)


EmptyTask = _EmptyTask(task_id="empty", dataset_name="empty", data=None)
