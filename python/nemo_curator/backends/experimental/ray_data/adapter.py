"""What runs inside Ray Data's workers: a segment of stages over codec blocks.

Each `map_batches` call gets a block of tasks and runs a segment (one or more consecutive stages)
on it: each stage calls `process_batch` on consecutive slices of exactly `batch_size` of the tasks
it receives, and the last stage's outputs go back as one block. The block's ledger (what every
upstream call did) is merged with this call's counts and travels on; so do failure records.

Actor segments are a class Ray Data instantiates once per actor; task segments are a function whose
stage instances are kept per worker process, so `setup` runs once per process and each stage timer
measures idle time between calls (Curator builds a new adapter per task).

`setup_on_node` runs once per (stage, node) through a small registry actor: the first worker of a
stage on a node asks for it and every worker of that stage on that node waits for it before its
`setup`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import ray
from loguru import logger

from nemo_curator import _core
from nemo_curator.backends import checkpoint
from nemo_curator.backends.base import BaseStageAdapter, WorkerMetadata
from nemo_curator.backends.failures import FailureRecord, StageFailedError
from nemo_curator.backends.ray_utils import payload_nbytes, run_setup_on_node
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.tasks import Task


@dataclass(frozen=True)
class StagePlan:
    """Everything a worker needs to run one stage of one run (picklable, small)."""

    index: int
    num_stages: int
    name: str
    stage_ref: Any  # ObjectRef of the pickled stage: one copy in the object store per run
    batch_size: int
    ignore_failures: bool
    node_setups: Any  # handle of the run's `NodeSetups` actor; None: the stage has no setup_on_node


@dataclass(frozen=True)
class SegmentPlan:
    """Consecutive stages that one `map_batches` call runs one after the other, tasks in memory."""

    run_id: str
    index: int
    stages: tuple[StagePlan, ...]
    input_store: Any = None  # first segment: handle of the run's `InputStore` (initial task lists)
    chunk_bytes: int = 4 * 1024 * 1024  # outputs are encoded and handed over in chunks of this size
    #: A fan-out segment whose outputs are re-blocked into one row per block: its children go out
    #: packed (`Children`), `spread` groups of `batch` first (so few parents still give every worker
    #: a block), then groups twice as large up to `max_rows` (a multiple of `batch`) or `max_bytes`.
    pack: tuple[int, int, int, int] | None = None  # (spread, batch, max_rows, max_bytes)

    @property
    def label(self) -> str:
        return "+".join(s.name for s in self.stages)


@ray.remote(num_cpus=0)
class InputStore:
    """Holds the refs of each run's initial task lists and lets each go once the first segment read it.

    Ray Data keeps every input block of a dataset until the run ends (for lineage). The dataset's
    first blocks therefore only point at task lists stored apart, whose only holder is this actor:
    when the call that read list `k` has handed all its outputs to Ray Data, the list leaves the
    object store, and outputs take its place instead of adding to it. One actor serves every run
    of a Ray job (`input_store()`), so a run does not wait for an actor to start.
    """

    def __init__(self) -> None:
        self._runs: dict[str, list[Any]] = {}

    def put(self, run_id: str, refs: list[Any]) -> None:
        self._runs[run_id] = list(refs)

    def take(self, run_id: str, index: int) -> list[Any]:
        """`[ref]` of list `index` (in a list, so Ray hands over the ref, not the value)."""
        refs = self._runs.get(run_id, [])
        ref = refs[index] if 0 <= index < len(refs) else None
        if ref is None:
            raise RuntimeError(
                f"initial task list {index} was already processed and released (a call was retried "
                "after it had handed over all its outputs)"
            )
        return [ref]

    def release(self, run_id: str, indices: list[int]) -> None:
        refs = self._runs.get(run_id)
        for index in indices if refs is not None else ():
            refs[index] = None

    def drop(self, run_id: str) -> None:
        self._runs.pop(run_id, None)

    def held(self) -> dict[str, int]:
        """Lists not released yet, per run."""
        return {run: sum(r is not None for r in refs) for run, refs in self._runs.items()}


def input_store_name() -> str:
    return f"nemo_curator_input_store_{ray.get_runtime_context().get_job_id()}"


# The driver holds its job's `InputStore` handle for the life of the job: Ray ends a (non-detached)
# actor once no handle to it is left, and a run that looked it up by name just then would get an
# actor that is going away.
_INPUT_STORE: tuple[tuple[str, str], Any] | None = None


def input_store() -> Any:
    """The current Ray job's `InputStore` actor, started on first use."""
    global _INPUT_STORE
    ctx = ray.get_runtime_context()
    # The job id alone repeats across Ray sessions; the driver's node id does not.
    key = (ctx.get_job_id(), ctx.get_node_id())
    if _INPUT_STORE is None or _INPUT_STORE[0] != key:
        handle = InputStore.options(name=input_store_name(), get_if_exists=True).remote()  # type: ignore[attr-defined]
        _INPUT_STORE = (key, handle)
    return _INPUT_STORE[1]


@ray.remote(num_cpus=0)
class NodeSetups:
    """Runs `setup_on_node` once per (stage, node), when the first worker of the stage there asks."""

    def __init__(self, stage_refs: list[Any], names: list[str]) -> None:
        self._stage_refs = stage_refs
        self._names = names
        self._started: dict[tuple[int, str], Any] = {}

    async def ensure(self, index: int, node_id: str) -> None:
        key = (index, node_id)
        ref = self._started.get(key)
        if ref is None:
            ref = run_setup_on_node(self._stage_refs[index], self._names[index], node_id)
            self._started[key] = ref
        await ref

    def started(self) -> list[tuple[int, str]]:
        return sorted(self._started)


def _worker_number(worker_id: str) -> int | None:
    """A 64-bit number for a Ray worker id (hex), to count distinct workers in the ledger."""
    try:
        return int(worker_id[:16], 16)
    except (TypeError, ValueError):
        return None


def _size(task: Any) -> tuple[int, int]:
    """(items, payload bytes) of a task."""
    try:
        items = int(task.num_items)
    except Exception:  # a task whose data does not say (num_items raises on odd payloads)
        items = 0
    return items, payload_nbytes(task)


class StageRunner:
    """One stage instance in one worker process: `setup` once, then batches of exactly `batch_size`."""

    def __init__(self, plan: StagePlan) -> None:
        self.plan = plan
        self.setup_error: FailureRecord | None = None
        self.stage: ProcessingStage[Any, Any] = ray.get(plan.stage_ref)
        self.adapter = BaseStageAdapter(self.stage)
        context = ray.get_runtime_context()
        self.metadata = WorkerMetadata(worker_id=context.get_worker_id(), allocation=None)
        self.worker = _worker_number(self.metadata.worker_id)
        self._torn_down = False
        self._call: Any = None  # the ledger of the call that ran the last batch
        phase = "setup_on_node"
        try:
            if plan.node_setups is not None:
                # This node's setup_on_node for the stage must be over before this worker's setup.
                ray.get(plan.node_setups.ensure.remote(plan.index, context.get_node_id()))
            phase = "setup"
            self.stage.setup(self.metadata)
        except Exception as exc:
            cause = exc.cause if isinstance(exc, ray.exceptions.RayTaskError) else exc
            cause = cause if isinstance(cause, BaseException) else exc
            self.setup_error = FailureRecord.from_exception(plan.name, (), cause)
            self._phase = phase

    def check_setup(self) -> None:
        if self.setup_error is not None:
            f = self.setup_error
            raise StageFailedError(
                f"{self._phase} of stage '{f.stage}' failed: {f.error_type}: {f.message}\n{f.traceback}", f
            )

    def run_batch(
        self,
        batch: list[Any],
        ledger: Any,
        failures: list[FailureRecord],
        measured: dict[int, tuple[int, int]],
    ) -> list[Any]:
        """One `process_batch` call, counted into the call's `ledger`; a failure is raised, or recorded
        under `ignore_failures`.

        `measured` maps `id(task)` to (items, bytes) of tasks measured already (outputs of the
        previous stage of the segment): inputs are looked up there, outputs are added to it."""
        plan = self.plan
        sizes = [measured.pop(id(t), None) or _size(t) for t in batch]
        wall_start = time.time()
        start = time.perf_counter()
        failed: FailureRecord | None = None
        try:
            outputs = self.adapter.process_batch(batch)
        except Exception as exc:
            outputs = []
            failed = FailureRecord.from_exception(plan.name, [t.task_id for t in batch], exc)
            if not plan.ignore_failures:
                raise StageFailedError(str(failed), failed) from exc
            logger.warning(failed.describe() + " (skipped: ignore_failures=True)")
            failures.append(failed)
            if (credit := checkpoint.batch_credit(batch)) is not None:
                failures.append({checkpoint.CREDIT_KEY: credit})  # the failed tasks ended: credit goes back
        else:
            if (credit := checkpoint.split_credit(batch, outputs)) is not None:
                failures.append(
                    {checkpoint.CREDIT_KEY: credit}
                )  # filtered: the credit rides back with the block
        busy = time.perf_counter() - start
        out_sizes = [_size(t) for t in outputs]
        measured.update(zip(map(id, outputs), out_sizes, strict=True))
        first = ledger is not self._call  # this call's first batch of the stage: one more call
        self._call = ledger
        ledger.record(
            plan.index,
            len(batch),
            len(outputs),
            failed_tasks=len(batch) if failed else 0,
            failed_batches=1 if failed else 0,
            filtered_tasks=0 if failed or outputs else len(batch),
            calls=int(first),
            items_in=sum(i for i, _ in sizes),
            items_out=sum(i for i, _ in out_sizes),
            bytes_in=sum(b for _, b in sizes),
            bytes_out=sum(b for _, b in out_sizes),
            busy_s=busy,
            start=wall_start,
            end=wall_start + busy,
            worker=self.worker,
        )
        return outputs

    def teardown(self) -> None:
        if self._torn_down or self.setup_error is not None:
            return
        self._torn_down = True
        self.stage.teardown()


@dataclass
class Children(Task[pa.Table]):
    """Children of a fan-out packed as one row (`data` is their encoded block), so that a repartition
    into one row per block hands the next segment blocks of many children. Never leaves the run."""

    @property
    def num_items(self) -> int:
        return 0

    def validate(self) -> bool:
        return True


def _unpack(tasks: list[Any]) -> list[Any]:
    """`tasks` with each `Children` row replaced by the children it holds."""
    if not any(type(t) is Children for t in tasks):
        return tasks
    out: list[Any] = []
    for task in tasks:
        out.extend(_core.decode_block(task.data)[0] if type(task) is Children else [task])
    return out


class _Packer:
    """Packs a fan-out call's children into `Children` rows of growing size (see `SegmentPlan.pack`)."""

    def __init__(
        self, pack: tuple[int, int, int, int], sink: Any, measured: dict[int, tuple[int, int]]
    ) -> None:
        self.spread, self.batch, self.max_rows, self.max_bytes = pack
        self.sink, self.measured = sink, measured
        self.group: list[Any] = []
        self.bytes = 0
        self.packed = 0

    def add(self, tasks: list[Any]) -> None:
        for task in tasks:
            self.group.append(task)
            self.bytes += self.measured.pop(id(task), (0, 0))[1]
            grown = self.batch << min(30, max(0, self.packed - self.spread + 1))
            if len(self.group) >= min(self.max_rows, grown) or self.bytes >= self.max_bytes:
                self.flush()

    def flush(self) -> None:
        if self.group:
            self.sink.add([Children(task_id="", dataset_name="", data=_core.encode_tasks(self.group))])
            self.group, self.bytes, self.packed = [], 0, self.packed + 1


class SegmentRunner:
    """The stages of a segment in one worker process: block in, tasks through every stage, block out.

    Tasks pass from stage to stage as objects; only the segment's input and output are blocks.
    """

    def __init__(self, plan: SegmentPlan) -> None:
        self.plan = plan
        self.runners = [StageRunner(stage) for stage in plan.stages]
        self._num_stages = plan.stages[0].num_stages

    def process(self, block: pa.Table) -> Iterator[pa.Table]:
        """Tasks go through the stages depth first: a task's intermediate results are dropped as soon
        as the next stage took them, and outputs are encoded and handed to Ray Data in chunks of
        about `chunk_bytes` (it writes them to the object store as its output blocks fill), so a
        call holds about one output block, not one copy of its tasks per stage."""
        for runner in self.runners:
            runner.check_setup()
        # Initial task lists read for this call only: stages mutate the tasks they get, so a list is
        # never reused by a later call (a retry must start from the stored state).
        stored: dict[int, Any] = {}

        def stored_list(index: int) -> Any:
            if index not in stored:
                stored[index] = self._stored_list(index)
            return stored[index]

        tasks, ledgers, failures = _core.decode_block(block, stored=stored_list)
        read = list(stored)
        stored.clear()
        yield from self._run(_unpack(tasks), ledgers, failures)
        if read:
            # Every output of this call is with Ray Data now: the lists it read may go.
            self.plan.input_store.release.remote(self.plan.run_id, read)

    def _run(self, tasks: list[Any], ledgers: list[bytes], failures: list[Any]) -> Iterator[pa.Table]:
        if not tasks and not ledgers and not failures:
            yield _core.empty_block()
            return
        # Encodes outputs as they come (holding the last one back for the ledger) in blocks of
        # about `chunk_bytes`.
        sink = _core.BlockWriter(self.plan.chunk_bytes)
        ledger = _core.Ledger(self._num_stages)
        buffers: list[list[Any]] = [[] for _ in self.runners]
        # (items, bytes) of the tasks between stages of this call, so each task is measured once.
        measured: dict[int, tuple[int, int]] = {}
        packer = _Packer(self.plan.pack, sink, measured) if self.plan.pack else None

        def push(level: int, tasks: list[Any]) -> None:
            if level == len(self.runners):
                if packer is not None:
                    packer.add(tasks)
                    return
                for task in tasks:
                    measured.pop(id(task), None)
                sink.add(tasks)
                return
            buffer = buffers[level]
            buffer.extend(tasks)
            size = self.runners[level].plan.batch_size
            while len(buffer) >= size:
                batch = buffer[:size]
                del buffer[:size]
                push(level + 1, self.runners[level].run_batch(batch, ledger, failures, measured))

        for index in range(len(tasks)):
            task, tasks[index] = tasks[index], None  # the input list no longer holds it
            push(0, [task])
            chunk = sink.ready()
            if chunk is not None:
                yield chunk
        for level, runner in enumerate(self.runners):  # partial batches, upstream first
            if buffers[level]:
                batch, buffers[level] = buffers[level], []
                push(level + 1, runner.run_batch(batch, ledger, failures, measured))
                chunk = sink.ready()
                if chunk is not None:
                    yield chunk
        if packer is not None:
            packer.flush()
        for encoded in ledgers:
            ledger.merge(encoded)
        yield sink.finish(ledger.to_bytes(), failures)

    def _stored_list(self, index: int) -> Any:
        """Initial task list `index` (read from the object store; its Arrow buffers are not copied)."""
        if self.plan.input_store is None:
            raise _core.CodecError(f"segment '{self.plan.label}' got a row of initial task list {index}")
        (ref,) = ray.get(self.plan.input_store.take.remote(self.plan.run_id, index))
        return ray.get(ref)

    def teardown(self) -> None:
        for runner in self.runners:
            try:
                runner.teardown()
            except Exception as exc:
                logger.warning(f"teardown of stage '{runner.plan.name}' failed: {exc!r}")


# ------------------------------------------------------------------------------------------------------------
# The callables handed to `map_batches`.


class SegmentActor:
    """Actor UDF: one `SegmentRunner` per actor; `teardown` when Ray Data retires the actor."""

    def __init__(self, plan: SegmentPlan) -> None:
        self._runner = SegmentRunner(plan)

    def __call__(self, block: pa.Table) -> Iterator[pa.Table]:
        return self._runner.process(block)

    def __del__(self) -> None:
        runner = getattr(self, "_runner", None)
        if runner is not None:
            runner.teardown()


def _udf_name(stages: list[ProcessingStage[Any, Any]], suffix: str) -> str:
    return "_".join(type(s).__name__ for s in stages) + suffix


def actor_class_for(stages: list[ProcessingStage[Any, Any]]) -> type:
    """A `SegmentActor` subclass named after the stages' classes, so Ray Data's plan reads well."""
    return type(_udf_name(stages, "Actor"), (SegmentActor,), {"__module__": SegmentActor.__module__})


# Segment runners of task segments in this worker process, by (run id, segment); a few runs kept.
_RUNNERS: OrderedDict[tuple[str, int], SegmentRunner] = OrderedDict()
_RUNS_KEPT = 4


def run_task_segment(plan: SegmentPlan, block: pa.Table) -> Iterator[pa.Table]:
    key = (plan.run_id, plan.index)
    runner = _RUNNERS.get(key)
    if runner is None:
        runner = SegmentRunner(plan)
        _RUNNERS[key] = runner
        runs = list(dict.fromkeys(run for run, _ in _RUNNERS))
        for old in runs[:-_RUNS_KEPT]:
            for k in [k for k in _RUNNERS if k[0] == old]:
                del _RUNNERS[k]
    return runner.process(block)


def task_function_for(
    stages: list[ProcessingStage[Any, Any]], plan: SegmentPlan
) -> Callable[[pa.Table], Iterator[pa.Table]]:
    """Task UDF for a segment, named after the stages' classes."""

    def fn(block: pa.Table) -> Iterator[pa.Table]:
        yield from run_task_segment(plan, block)

    fn.__name__ = fn.__qualname__ = _udf_name(stages, "Task")
    return fn
