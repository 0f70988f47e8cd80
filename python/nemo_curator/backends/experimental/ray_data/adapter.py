"""What runs inside Ray Data's workers: a segment of stages over codec blocks.

Each `map_batches` call gets a block of tasks and runs a segment (consecutive stages) on it, each stage
calling `process_batch` on slices of exactly `batch_size`; the outputs go back as blocks with the
merged ledger and failure records. Actor segments are a class per actor; task segments keep their
stage instances per worker process, so `setup` runs once per process. `setup_on_node` runs once per
(stage, node) through `NodeSetups`. A watchdog thread per worker reports long batches and enforces
`call_timeout_s`.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import ray
from loguru import logger
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

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
    timeout_s: float | None = None  # `call_timeout_s` of the stage


@dataclass(frozen=True)
class SegmentPlan:
    """Consecutive stages that one `map_batches` call runs one after the other, tasks in memory."""

    run_id: str
    index: int
    stages: tuple[StagePlan, ...]
    input_store: Any = None  # handle of the job's `InputStore` (initial task lists, call reports)
    release_inputs: bool = True  # first segment: a call lets the initial lists it read go
    max_retries: int = 3  # attempts of a call whose worker died, when the segment has a timeout
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
    """Per Ray job (`input_store()`): each run's initial task lists, and what its workers report.

    Ray Data keeps a dataset's input blocks until the run ends (lineage), so the first blocks only
    point at lists held here. On one node a list goes once the call that read it handed over its
    outputs (`release`); on several, lists stay for the run, so Ray can re-run the calls whose
    outputs a lost node held (the driver put the lists: they live on its node). Workers report long
    batches (`running`), batches past `call_timeout_s` (`timed_out`) and call attempts (`begin`);
    the bookkeeping is `_core.RunBook`.
    """

    def __init__(self) -> None:
        self._book = _core.RunBook()

    def put(self, run_id: str, refs: list[Any]) -> None:
        self._book.put(run_id, refs)

    def take(self, run_id: str, index: int) -> list[Any]:
        """`[ref]` of list `index` (in a list, so Ray hands over the ref, not the value)."""
        return [self._book.take(run_id, index)]

    def release(self, run_id: str, indices: list[int]) -> None:
        self._book.release(run_id, indices)

    def drop(self, run_id: str) -> None:
        self._book.drop_run(run_id)

    def held(self) -> dict[str, int]:
        return self._book.held()

    def running(self, run_id: str, stage: int, worker: str, task_id: str | None, started: float) -> None:
        self._book.report(run_id, stage, worker, task_id, started, time.time())

    def oldest(self, run_id: str, fresh_s: float) -> dict[int, tuple[str, float]]:
        return self._book.oldest(run_id, time.time(), fresh_s)

    def timed_out(self, run_id: str, stage: int, task_ids: tuple[str, ...], limit: float, call: str) -> None:
        self._book.timed_out(run_id, stage, list(task_ids), limit, call)

    def begin(
        self, run_id: str, call: str
    ) -> tuple[int, dict[tuple[int, tuple[str, ...]], tuple[int, float]]]:
        return self._book.begin(run_id, call)


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
        # On the driver's node: it outlives the loss of any other node (so do the lists it holds).
        here = NodeAffinitySchedulingStrategy(ctx.get_node_id(), soft=False)
        handle = InputStore.options(  # type: ignore[attr-defined]
            name=input_store_name(), get_if_exists=True, scheduling_strategy=here
        ).remote()
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


# A batch running at least this long is reported to the run's store (seconds), then every
# `_REPORT_S` while it runs; the driver forgets reports older than `REPORT_FRESH_S`.
_REPORT_AFTER_S = 1.0
_REPORT_S = 2.0
REPORT_FRESH_S = 3 * _REPORT_S


@dataclass
class _Call:
    """The batch a worker process runs now."""

    store: Any
    run_id: str
    plan: StagePlan
    worker: str
    task_ids: tuple[str, ...]
    call: str  # Ray task id of the `map_batches` call
    started: float = field(default_factory=time.monotonic)
    epoch: float = field(default_factory=time.time)
    reported: float | None = None


class _Watchdog:
    """One thread per worker process that watches the batch it runs: reports long ones to the run's
    store and ends the process when one outlives its stage's `call_timeout_s`. A hung Python call
    cannot be stopped from another thread; ending the process makes Ray re-run the block (see
    `InputStore.begin`), and the batch's next attempt knows it timed out."""

    def __init__(self) -> None:
        self.call: _Call | None = None
        self._thread: threading.Thread | None = None

    def start(self, call: _Call) -> None:
        self.call = call
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, daemon=True, name="curator-call-watchdog")
            self._thread.start()

    def stop(self) -> None:
        call, self.call = self.call, None
        if call is not None and call.reported is not None and call.store is not None:
            call.store.running.remote(call.run_id, call.plan.index, call.worker, None, 0.0)

    def _watch(self) -> None:
        while True:
            time.sleep(0.1)
            call = self.call
            if call is None or call.store is None:
                continue
            age = time.monotonic() - call.started
            limit = call.plan.timeout_s
            if limit is not None and age > limit:
                self._expire(call, limit)
            if age >= _REPORT_AFTER_S and (call.reported is None or age - call.reported >= _REPORT_S):
                call.reported = age
                first = call.task_ids[0] if call.task_ids else ""
                try:
                    call.store.running.remote(call.run_id, call.plan.index, call.worker, first, call.epoch)
                except Exception as exc:  # the store is gone (the run ended): nothing to report to
                    logger.debug(f"cannot report a long call: {exc!r}")

    @staticmethod
    def _expire(call: _Call, limit: float) -> None:
        logger.error(
            f"Stage '{call.plan.name}': {timeout_message(limit, call.task_ids)}; ending this worker process "
            "so that Ray re-runs its block"
        )
        try:
            ray.get(
                call.store.timed_out.remote(call.run_id, call.plan.index, call.task_ids, limit, call.call),
                timeout=30,
            )
        finally:
            os._exit(1)


_WATCHDOG = _Watchdog()


def timeout_message(limit: float, task_ids: Any) -> str:
    return f"call timed out after {limit:g} s (call_timeout_s) on task(s) {list(task_ids)}"


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
        # Set by `SegmentRunner` per call: where to report, the Ray task id, timed-out batches.
        self.store: Any = None
        self.run_id = ""
        self.call_id = ""
        self.timed_out: dict[tuple[int, tuple[str, ...]], tuple[int, float]] = {}
        self.max_retries = 0
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
        ids = tuple(str(t.task_id) for t in batch)
        wall_start = time.time()
        start = time.perf_counter()
        failed: FailureRecord | None = None
        cause: BaseException | None = None
        outputs: list[Any] = []
        expired = self.timed_out.get((plan.index, ids)) if self.timed_out else None
        try:
            if expired is not None and expired[0] > self.max_retries:
                # Timed out on every attempt it had: not run again.
                failed = FailureRecord(
                    plan.name,
                    ids,
                    "CallTimeout",
                    timeout_message(expired[1], ids),
                    attempts=expired[0],
                    kind="infra",
                )
            else:
                _WATCHDOG.start(
                    _Call(self.store, self.run_id, plan, self.metadata.worker_id, ids, self.call_id)
                )
                try:
                    outputs = self.adapter.process_batch(batch)
                finally:
                    _WATCHDOG.stop()
        except Exception as exc:
            failed, cause = FailureRecord.from_exception(plan.name, ids, exc), exc
        if failed is not None:
            if not plan.ignore_failures:
                raise StageFailedError(str(failed), failed) from cause
            logger.warning(failed.describe() + " (skipped: ignore_failures=True)")
            failures.append(failed)
            if (credit := checkpoint.batch_credit(batch)) is not None:
                failures.append({checkpoint.CREDIT_KEY: credit})  # the failed tasks ended: credit goes back
        elif (credit := checkpoint.split_credit(batch, outputs)) is not None:
            failures.append({checkpoint.CREDIT_KEY: credit})  # filtered: the credit rides back with the block
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
        self.pack, self.max_bytes = pack, pack[3]
        self.sink, self.measured = sink, measured
        self.group: list[Any] = []
        self.bytes = 0
        self.packed = 0

    def add(self, tasks: list[Any]) -> None:
        """The children one call gave (how many came at once decides the rows' size: `_core.pack_rows`)."""
        rows = _core.pack_rows(self.pack, self.packed, len(tasks))
        for task in tasks:
            self.group.append(task)
            self.bytes += self.measured.pop(id(task), (0, 0))[1]
            if len(self.group) >= rows or self.bytes >= self.max_bytes:
                self.flush()
                rows = _core.pack_rows(self.pack, self.packed, len(tasks))

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
        self._begin()
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
        if read and self.plan.release_inputs:
            # Every output of this call is with Ray Data now: the lists it read may go.
            self.plan.input_store.release.remote(self.plan.run_id, read)

    def _begin(self) -> None:
        """Tell the stage runners about this call; in a segment with a call timeout, count its attempt
        (Ray re-runs it without limit there: the retries of dying workers are bounded here)."""
        plan = self.plan
        call_id = ray.get_runtime_context().get_task_id() or ""
        timed_out: dict[Any, tuple[int, float]] = {}
        if any(stage.timeout_s is not None for stage in plan.stages):
            died, timed_out = ray.get(plan.input_store.begin.remote(plan.run_id, call_id))
            if died > plan.max_retries:
                names = [stage.name for stage in plan.stages]
                failure = FailureRecord(
                    names[0] if len(names) == 1 else "",
                    error_type="WorkerDied",
                    message=f"a worker running stage(s) {names} died {died} time(s) (max_retries={plan.max_retries})",
                    attempts=died,
                    kind="infra",
                )
                raise StageFailedError(failure.describe(), failure)
        for runner in self.runners:
            runner.store, runner.run_id, runner.call_id = plan.input_store, plan.run_id, call_id
            runner.timed_out, runner.max_retries = timed_out, plan.max_retries

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
        if self.plan.index != 0:
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
