"""A small library of deterministic, picklable example stages and tasks.

They live in the package (not in a test folder) because Ray workers import stages by module name. Each stage
is a dataclass whose fields are its parameters, so ``FanOutStage(n=3)`` or ``SleepStage(seconds=0.01)``.
Task ids are derived from the parent's id, so results can be compared across executors regardless of order.
"""

from __future__ import annotations

import copy
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from nemo_curator.backends.base import NodeInfo, WorkerMetadata
from nemo_curator.stages.base import CompositeStage, ProcessingStage
from nemo_curator.tasks import DocumentBatch, Task, _EmptyTask

# ------------------------------------------------------------------------------------------------------------
# Tasks


@dataclass(repr=False)
class IntTask(Task[int]):
    """A task carrying one integer: one item."""

    data: int = 0

    @property
    def num_items(self) -> int:
        return 1

    def validate(self) -> bool:
        return isinstance(self.data, int)


def make_int_tasks(n: int, start: int = 0, dataset_name: str = "ints") -> list[IntTask]:
    """``IntTask``s ``int_<i>`` carrying ``start + i`` for ``i`` in ``range(n)``."""
    return [IntTask(task_id=f"int_{i}", dataset_name=dataset_name, data=start + i) for i in range(n)]


def make_document_batches(
    num_batches: int, rows_per_batch: int, dataset_name: str = "docs"
) -> list[DocumentBatch]:
    """``DocumentBatch``es ``doc_<b>`` with columns ``id`` (global row number) and ``text`` (``"w" * (id % 7 + 1)``)."""
    batches = []
    for batch_index in range(num_batches):
        ids = list(range(batch_index * rows_per_batch, (batch_index + 1) * rows_per_batch))
        table = pa.table({"id": ids, "text": ["w" * (row_id % 7 + 1) for row_id in ids]})
        batches.append(DocumentBatch(task_id=f"doc_{batch_index}", dataset_name=dataset_name, data=table))
    return batches


def derive_task(task: Task, task_id: str, data: Any = None) -> Task:
    """A new task of the same type with ``task_id``, ``data`` (default: the parent's), a copy of the parent's
    metadata and perf history, and a fresh ``_uuid``."""
    child = copy.copy(task)
    child.task_id = task_id
    if data is not None:
        child.data = data
    child._metadata = dict(task._metadata)
    child._stage_perf = list(task._stage_perf)
    child._uuid = str(uuid.uuid4())
    return child


# ------------------------------------------------------------------------------------------------------------
# Sources


@dataclass
class IntSourceStage(ProcessingStage[_EmptyTask, IntTask]):
    """From one (empty) task, emit ``n`` ``IntTask``s ``int_<i>`` carrying ``start + i``."""

    n: int = 10
    start: int = 0
    name: str = "int_source"

    def process(self, task: _EmptyTask) -> list[IntTask]:
        return make_int_tasks(self.n, self.start)

    def ray_stage_spec(self) -> dict[str, Any]:
        return {"is_fanout_stage": True}


@dataclass
class DocumentSourceStage(ProcessingStage[_EmptyTask, DocumentBatch]):
    """From one (empty) task, emit ``make_document_batches(num_batches, rows_per_batch)``."""

    num_batches: int = 4
    rows_per_batch: int = 8
    name: str = "document_source"

    def process(self, task: _EmptyTask) -> list[DocumentBatch]:
        return make_document_batches(self.num_batches, self.rows_per_batch)

    def ray_stage_spec(self) -> dict[str, Any]:
        return {"is_fanout_stage": True}


# ------------------------------------------------------------------------------------------------------------
# Generic stages (any task type)


@dataclass
class PassthroughStage(ProcessingStage[Task, Task]):
    """Return each input task unchanged."""

    name: str = "passthrough"

    def process(self, task: Task) -> Task:
        return task


@dataclass
class FanOutStage(ProcessingStage[Task, Task]):
    """Emit ``n`` children ``<parent id>_<i>`` of each input (``n=0`` filters everything with ``[]``)."""

    n: int = 2
    name: str = "fan_out"

    def process(self, task: Task) -> list[Task]:
        return [derive_task(task, f"{task.task_id}_{i}") for i in range(self.n)]

    def ray_stage_spec(self) -> dict[str, Any]:
        return {"is_fanout_stage": True}


@dataclass
class SleepStage(ProcessingStage[Task, Task]):
    """Sleep ``seconds`` per task, then pass it through."""

    seconds: float = 0.01
    name: str = "sleep"

    def process(self, task: Task) -> Task:
        time.sleep(self.seconds)
        return task


@dataclass
class CpuBurnStage(ProcessingStage[Task, Task]):
    """Spend CPU on ``iterations`` steps of integer arithmetic per task; record the checksum in metadata."""

    iterations: int = 10_000
    name: str = "cpu_burn"

    def process(self, task: Task) -> Task:
        acc = 0
        for i in range(self.iterations):
            acc = (acc * 31 + i) % 1_000_003
        task._metadata[f"{self.name}_checksum"] = acc
        return task


class InjectedFailure(RuntimeError):
    """The error ``RaiseOnTaskStage`` raises."""


@dataclass
class RaiseOnTaskStage(ProcessingStage[Task, Task]):
    """Raise ``InjectedFailure`` on the task whose id is ``task_id``; pass every other task through."""

    task_id: str = "int_0"
    name: str = "raise_on_task"

    def process(self, task: Task) -> Task:
        if task.task_id == self.task_id:
            msg = f"injected failure on task {task.task_id}"
            raise InjectedFailure(msg)
        return task


@dataclass
class ReturnsNonTaskStage(ProcessingStage[Task, Any]):
    """Return ``value`` (not a task) for every input: executors must reject it with a TypeError."""

    value: Any = "not a task"
    name: str = "returns_non_task"

    def process(self, task: Task) -> Any:
        return self.value


@dataclass
class BatchRecorderStage(ProcessingStage[Task, Task]):
    """A batch-processing passthrough recording its batch: ``_metadata["<name>_batch_len"] = len(batch)``
    and ``_metadata["<name>_batch_ids"] = [ids in the batch]``. Also logs custom metrics
    ``batch_tasks`` and ``batch_items`` for the call."""

    name: str = "batch_recorder"
    batch_size: int | None = 1

    def process(self, task: Task) -> Task:
        return self.process_batch([task])[0]

    def process_batch(self, tasks: list[Task]) -> list[Task]:
        ids = [task.task_id for task in tasks]
        for task in tasks:
            task._metadata[f"{self.name}_batch_len"] = len(tasks)
            task._metadata[f"{self.name}_batch_ids"] = ids
        self._log_metrics({"batch_tasks": len(tasks), "batch_items": sum(task.num_items for task in tasks)})
        return list(tasks)


@dataclass
class StageWithSetup(ProcessingStage[Task, Task]):
    """A passthrough that counts its lifecycle calls with marker files in ``marker_dir``.

    Each ``setup_on_node``/``setup``/``teardown`` call creates ``<kind>-<pid>-<unique>`` (``count_markers``
    counts them). ``process`` raises if ``setup`` did not run in this worker, and marks tasks with
    ``_metadata["<name>_worker"]`` (the worker id given to ``setup``).
    """

    marker_dir: str = ""
    name: str = "stage_with_setup"
    _worker_id: str | None = field(default=None, init=False, repr=False)

    def _mark(self, kind: str, detail: str = "") -> None:
        directory = Path(self.marker_dir)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{kind}-{os.getpid()}-{uuid.uuid4().hex}").write_text(detail)

    def setup_on_node(
        self, node_info: NodeInfo | None = None, worker_metadata: WorkerMetadata | None = None
    ) -> None:
        self._mark("setup_on_node", node_info.node_id if node_info else "")

    def setup(self, worker_metadata: WorkerMetadata | None = None) -> None:
        self._worker_id = worker_metadata.worker_id if worker_metadata else ""
        self._mark("setup", self._worker_id)

    def teardown(self) -> None:
        self._mark("teardown")

    def process(self, task: Task) -> Task:
        if self._worker_id is None:
            msg = f"{self.name}: process() called before setup()"
            raise RuntimeError(msg)
        task._metadata[f"{self.name}_worker"] = self._worker_id
        return task


def count_markers(marker_dir: str | os.PathLike[str], kind: str) -> int:
    """How many ``kind`` lifecycle calls ``StageWithSetup`` recorded in ``marker_dir``."""
    directory = Path(marker_dir)
    if not directory.exists():
        return 0
    return sum(1 for path in directory.iterdir() if path.name.startswith(f"{kind}-"))


def read_markers(marker_dir: str | os.PathLike[str], kind: str) -> list[str]:
    """The details (node id for ``setup_on_node``, worker id for ``setup``) of the recorded ``kind`` calls."""
    directory = Path(marker_dir)
    if not directory.exists():
        return []
    return sorted(path.read_text() for path in directory.iterdir() if path.name.startswith(f"{kind}-"))


# ------------------------------------------------------------------------------------------------------------
# IntTask stages


@dataclass
class AddConstantStage(ProcessingStage[IntTask, IntTask]):
    """``data += value`` into a new task ``<parent id>`` (same id, new object)."""

    value: int = 1
    name: str = "add_constant"

    def process(self, task: IntTask) -> IntTask:
        return derive_task(task, task.task_id, data=task.data + self.value)  # type: ignore[return-value]


@dataclass
class FilterEvenStage(ProcessingStage[IntTask, IntTask]):
    """Drop tasks with even ``data``, returning ``None`` (or ``[]`` when ``use_empty_list``)."""

    use_empty_list: bool = False
    name: str = "filter_even"

    def process(self, task: IntTask) -> IntTask | list[IntTask] | None:
        if task.data % 2 == 0:
            return [] if self.use_empty_list else None
        return task


@dataclass
class AddThenFilterStage(CompositeStage[IntTask, IntTask]):
    """A composite: ``AddConstantStage(value)`` then ``FilterEvenStage()``."""

    value: int = 1
    name: str = "add_then_filter"

    def __post_init__(self) -> None:
        super().__init__()

    def decompose(self) -> list[ProcessingStage]:
        return [AddConstantStage(value=self.value), FilterEvenStage()]


# ------------------------------------------------------------------------------------------------------------
# DocumentBatch stages


@dataclass
class AddLengthStage(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Add column ``output_column`` = length of ``column`` (as a new batch ``<parent id>_<name>``)."""

    column: str = "text"
    output_column: str = "length"
    name: str = "add_length"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], [self.column]

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], [self.output_column]

    def process(self, task: DocumentBatch) -> DocumentBatch:
        table = task.to_pyarrow()
        lengths = pa.array([len(text) for text in table.column(self.column).to_pylist()], type=pa.int64())
        return derive_task(  # type: ignore[return-value]
            task, f"{task.task_id}_{self.name}", data=table.append_column(self.output_column, lengths)
        )


class CallCounter:
    """A Ray actor class counting calls per key (create it named; stages find it by name)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def increment(self, key: str) -> None:
        self._counts[key] = self._counts.get(key, 0) + 1

    def counts(self) -> dict[str, int]:
        return dict(self._counts)


@dataclass
class CountedAddLengthStage(AddLengthStage):
    """`AddLengthStage` that counts its `process` calls in the named `CallCounter` actor `counter` (key
    `<name>_<output_column>`) and logs the custom metrics `counter_actor_increment_s` and `compute_len_s`."""

    counter: str = "stage_call_counter"
    namespace: str = "stage_call_counter"

    def process(self, task: DocumentBatch) -> DocumentBatch:
        import ray

        start = time.perf_counter()
        actor = ray.get_actor(self.counter, namespace=self.namespace)
        ray.get(actor.increment.remote(f"{self.name}_{self.output_column}"))
        counted = time.perf_counter()
        out = super().process(task)
        self._log_metrics(
            {"counter_actor_increment_s": counted - start, "compute_len_s": time.perf_counter() - counted}
        )
        return out


@dataclass
class SplitIntoRowsStage(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Split each batch into one-row batches ``<parent id>_row_<i>``."""

    name: str = "split_into_rows"

    def process(self, task: DocumentBatch) -> list[DocumentBatch]:
        table = task.to_pyarrow()
        return [
            derive_task(task, f"{task.task_id}_row_{i}", data=table.slice(i, 1))  # type: ignore[misc]
            for i in range(table.num_rows)
        ]

    def ray_stage_spec(self) -> dict[str, Any]:
        return {"is_fanout_stage": True}


__all__ = [
    "AddConstantStage",
    "AddLengthStage",
    "AddThenFilterStage",
    "BatchRecorderStage",
    "CallCounter",
    "CountedAddLengthStage",
    "CpuBurnStage",
    "DocumentSourceStage",
    "FanOutStage",
    "FilterEvenStage",
    "InjectedFailure",
    "IntSourceStage",
    "IntTask",
    "PassthroughStage",
    "RaiseOnTaskStage",
    "ReturnsNonTaskStage",
    "SleepStage",
    "SplitIntoRowsStage",
    "StageWithSetup",
    "count_markers",
    "derive_task",
    "make_document_batches",
    "make_int_tasks",
    "read_markers",
]
