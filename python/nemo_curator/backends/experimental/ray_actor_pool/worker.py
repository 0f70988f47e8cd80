"""The actor that runs one stage: `setup` once, then packed `process_batch` calls, `teardown` once.

Outputs stay in Ray's object store: a call is a streaming generator, and every output larger than
`inline_bytes` is yielded as its own object (owned by the driver, stored on this node, surviving this
actor's death). Small outputs ride along in the final metadata item, which is cheaper than an object each.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Iterator
from typing import Any

import ray
from loguru import logger
from ray import cloudpickle

from nemo_curator.backends.base import BaseStageAdapter, WorkerMetadata, validate_stage_outputs
from nemo_curator.backends.ray_utils.payload import payload_nbytes
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.tasks import Task

loads = cloudpickle.loads

# Where an output travels: pickled inside the metadata, or the index of its own yielded object.
INLINE = 0
YIELDED = 1


class SetupFailedError(RuntimeError):
    """`setup_on_node` or `setup` raised in the user's stage code."""


def _describe(exc: BaseException) -> dict[str, str]:
    return {
        "error_type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


def call_inputs(
    inline: list[Task[Any] | bytes | None], stored: tuple[Task[Any], ...]
) -> tuple[Task[Any], ...]:
    """A call's input tasks in order. Small tasks come together in one `inline` list (one serialisation
    per call, not per task), as the bytes an earlier stage's worker pickled them to (the driver never
    unpickles them) or as tasks; tasks held in the object store are top-level ref arguments (so Ray
    fetches them before the call runs, while the previous call runs) and fill the `None`s."""
    it = iter(stored)
    return tuple(next(it) if t is None else loads(t) if isinstance(t, bytes) else t for t in inline)


def _discard(_: Any) -> None:
    return None


def _place(outputs: list[Task[Any]], inline_bytes: int) -> tuple[list[Any], list[Any], list[int], list[int]]:
    """Small outputs pickled here (so an output that cannot be pickled fails its own batch, as the
    user's error), large ones checked for the same without copying their buffers (they are yielded
    as objects of their own). Returns (small blobs or None per output, large outputs, sizes, items)."""
    blobs: list[Any] = []
    large: list[Any] = []
    sizes: list[int] = []
    items: list[int] = []
    for out in outputs:
        nbytes = payload_nbytes(out)
        sizes.append(nbytes)
        items.append(int(out.num_items))
        if nbytes > inline_bytes:
            cloudpickle.dumps(out, protocol=5, buffer_callback=_discard)
            blobs.append(None)
            large.append(out)
        else:
            blobs.append(cloudpickle.dumps(out, protocol=5))
    return blobs, large, sizes, items


def run_batches(
    stage: ProcessingStage[Any, Any],
    adapter: BaseStageAdapter,
    inline_bytes: int,
    layout: list[tuple[int, int]],
    tasks: tuple[Task[Any], ...],
    chain: list[tuple[ProcessingStage[Any, Any], BaseStageAdapter]] | None = None,
) -> Iterator[Any]:
    """Run each batch of `layout` ((batch_id, n_tasks) pairs over `tasks`) through `process_batch`.

    Yields large outputs one by one, then one metadata list with, per batch,
    `(batch_id, ok, busy_s, placed, out_bytes, out_items, out_task_ids)` when it succeeded (`placed`:
    per output, `(INLINE, pickled bytes)` or `(YIELDED, index)`) or
    `(batch_id, ok, busy_s, error_dict, input_task_ids)` when the user's code raised.

    With a `chain` (the stages fused after `stage`, see `run_chain`), `placed` holds instead, per output,
    the result of the chain's first stage on that output.
    """
    results: list[tuple[Any, ...]] = []
    n_yielded = 0
    pos = 0
    for batch_id, n in layout:
        batch = list(tasks[pos : pos + n])
        pos += n
        start = time.perf_counter()
        large: list[Any] = []
        try:
            outputs = validate_stage_outputs(stage.name, adapter.process_batch(batch))
            busy = time.perf_counter() - start
            if chain:
                sizes = [payload_nbytes(out) for out in outputs]
                items = [int(out.num_items) for out in outputs]
            else:
                blobs, big, sizes, items = _place(outputs, inline_bytes)
        except (Exception, SystemExit) as exc:  # sys.exit() in user code is its error, not a crash
            busy = time.perf_counter() - start
            results.append((batch_id, False, busy, _describe(exc), [t.task_id for t in batch]))
            continue
        if chain:
            placed: list[Any] = [run_chain(chain, 0, out, inline_bytes, large, n_yielded) for out in outputs]
        else:
            placed = _placed(blobs, big, large, n_yielded)
        n_yielded += len(large)
        for out in large:  # noqa: UP028 (`yield from` fails: Ray's generator driver sends into it)
            yield out
        results.append((batch_id, True, busy, placed, sizes, items, [out.task_id for out in outputs]))
    yield results


def _placed(blobs: list[Any], big: list[Any], large: list[Any], n_yielded: int) -> list[tuple[int, Any]]:
    """Per output, `(INLINE, bytes)` or `(YIELDED, index)`; the large outputs are appended to `large`
    (yielded after the `n_yielded` the call yielded before)."""
    placed: list[tuple[int, Any]] = []
    it = iter(big)
    for blob in blobs:
        if blob is None:
            placed.append((YIELDED, n_yielded + len(large)))
            large.append(next(it))
        else:
            placed.append((INLINE, blob))
    return placed


def run_chain(
    chain: list[tuple[ProcessingStage[Any, Any], BaseStageAdapter]],
    level: int,
    task: Task[Any],
    inline_bytes: int,
    large: list[Any],
    n_yielded: int,
) -> tuple[Any, ...]:
    """Stage `chain[level]` (a stateless stage of batch size 1 fused after the call's stage) on one
    task, then the rest of the chain on each of its outputs, in this process: what the driver would
    otherwise send as one call per stage and task. Returns, as `run_batches` does per batch,
    `(True, busy_s, placed, out_bytes, out_items, out_task_ids)`, where `placed` holds the next level's
    result per output (outputs of the last stage: `(INLINE, bytes)` or `(YIELDED, index among the call's yielded objects)`),
    or `(False, busy_s, error_dict, input_bytes, input_task_ids)` when the user's code raised: the
    input travels back pickled, so that a retry of the failed batch can run it alone."""
    stage, adapter = chain[level]
    start = time.perf_counter()
    last = level + 1 == len(chain)
    try:
        outputs = validate_stage_outputs(stage.name, adapter.process_batch([task]))
        busy = time.perf_counter() - start
        if last:
            blobs, big, sizes, items = _place(outputs, inline_bytes)
        else:
            sizes = [payload_nbytes(out) for out in outputs]
            items = [int(out.num_items) for out in outputs]
    except (Exception, SystemExit) as exc:
        busy = time.perf_counter() - start
        try:
            blob = cloudpickle.dumps(task, protocol=5)
        except Exception:
            blob = None  # an input that cannot travel cannot be retried either: the failure stands
        return (False, busy, _describe(exc), blob, [task.task_id])
    if last:
        placed: list[Any] = _placed(blobs, big, large, n_yielded)
    else:
        placed = [run_chain(chain, level + 1, out, inline_bytes, large, n_yielded) for out in outputs]
    return (True, busy, placed, sizes, items, [out.task_id for out in outputs])


def is_stateless(stage: ProcessingStage[Any, Any]) -> bool:
    """Can any pooled Ray worker run this stage's batches (no actor of its own)? Never for a GPU stage.
    Otherwise the stage's own word wins (`ray_stage_spec()["is_actor_stage"]`, as Curator's Ray Data
    executor reads it: `ScoreFilter` says False unless a filter loads a model); without it, a stage with
    no `setup`, `setup_on_node` or `teardown` of its own. A stateless stage's `setup` (and its node's
    `setup_on_node`) run once per worker process that loads it; its `teardown` never runs."""
    if float(stage.resources.gpus) > 0:
        return False
    explicit = (stage.ray_stage_spec() or {}).get("is_actor_stage")
    if explicit is not None:
        return not explicit
    cls = type(stage)
    return (
        cls.setup is ProcessingStage.setup
        and cls.setup_on_node is ProcessingStage.setup_on_node
        and cls.teardown is ProcessingStage.teardown
    )


# Stages (and their adapters) already read by this worker process, by the object ref of the stage.
# Room for every stage of a long pipeline: a fused call loads all of its stages, and an evicted stage
# costs a fetch, an unpickle and its `setup` again.
_LOADED: dict[str, tuple[ProcessingStage[Any, Any], BaseStageAdapter]] = {}
_MAX_LOADED = 256


def _load(holder: list[Any]) -> tuple[ProcessingStage[Any, Any], BaseStageAdapter]:
    """The stage of `holder` ([stage ref, this node's setup_on_node refs, setup attempts, ...]) with its
    adapter, read (and set up) once per worker process."""
    key = holder[0].hex()
    loaded = _LOADED.get(key)
    if loaded is not None:
        return loaded
    try:
        stage = ray.get(holder[0])
    except Exception as exc:
        raise SetupFailedError(
            f"the stage cannot be loaded on this worker: {type(exc).__name__}: {exc}"
        ) from exc
    if type(stage).setup is not ProcessingStage.setup or holder[1]:
        try:
            ray.get(holder[1])
            worker_id = ray.get_runtime_context().get_worker_id()
            _setup_with_attempts(stage, WorkerMetadata(worker_id=worker_id, allocation=None), holder[2])
        except Exception as exc:
            err = _describe(exc)
            raise SetupFailedError(
                f"setup of stage '{stage.name}' failed: {err['error_type']}: {err['message']}\n"
                f"{err['traceback']}"
            ) from exc
    if len(_LOADED) >= _MAX_LOADED:
        _LOADED.pop(next(iter(_LOADED)))
    loaded = _LOADED[key] = (stage, BaseStageAdapter(stage))
    return loaded


@ray.remote(num_returns="streaming", max_retries=0)
def process_as_task(
    stage_holder: list[Any],
    inline_bytes: int,
    layout: list[tuple[int, int]],
    inline: list[Task[Any] | None],
    *stored: Task[Any],
) -> Iterator[Any]:
    """`StageWorker.process` for a stateless stage, as a Ray task on a pooled worker process (no actor to
    start). `stage_holder` is [stage ref, this node's setup_on_node refs, setup attempts] and, for a call
    that also runs the stages fused after it (see `run_chain`), a fourth item: one such holder per fused
    stage. Inside a list, so Ray does not unpickle the stages for every call; each worker process reads
    them (and runs their `setup`) once. Ray must not retry: the scheduler decides what runs again."""
    stage, adapter = _load(stage_holder)
    chain = [_load(h) for h in stage_holder[3]] if len(stage_holder) > 3 else None
    yield from run_batches(stage, adapter, inline_bytes, layout, call_inputs(inline, stored), chain)


def _setup_with_attempts(stage: ProcessingStage[Any, Any], metadata: WorkerMetadata, attempts: int) -> None:
    """`stage.setup`, tried up to `attempts` times in this actor; waits min(2**k, 16) s after the k-th
    failure (a model download or a busy service often recovers), then raises the last error."""
    for attempt in range(attempts):
        try:
            stage.setup(metadata)
            return
        except Exception as exc:
            if attempt + 1 >= attempts:
                raise
            wait = min(2.0**attempt, 16.0)
            logger.warning(
                f"setup of stage '{stage.name}' failed (attempt {attempt + 1}/{attempts}): "
                f"{type(exc).__name__}: {exc}; retrying in {wait:.0f} s"
            )
            time.sleep(wait)


class StageWorker:
    """Pool member for one stage. Subclassed per stage (named after it) so Ray's dashboard reads well."""

    def __init__(
        self,
        stage: ProcessingStage[Any, Any],
        setup_on_node: list[Any],
        inline_bytes: int,
        setup_attempts: int = 1,
    ) -> None:
        ctx = ray.get_runtime_context()
        self._node_id = ctx.get_node_id()
        self._metadata = WorkerMetadata(worker_id=ctx.get_worker_id(), allocation=None)
        self._stage = stage
        self._adapter = BaseStageAdapter(stage)
        self._inline_bytes = inline_bytes
        self._setup_error: dict[str, str] | None = None
        try:
            # The node's setup_on_node must finish before this actor's setup: wait on its ref.
            ray.get(setup_on_node)
            _setup_with_attempts(stage, self._metadata, setup_attempts)
        except ray.exceptions.RayTaskError as exc:
            self._setup_error = {
                "error_type": "SetupOnNodeError",
                "message": str(exc),
                "traceback": str(exc),
            }
        except (Exception, SystemExit) as exc:
            self._setup_error = _describe(exc)

    def ready(self) -> dict[str, Any]:
        """Called once by the driver: where the actor landed, or the user's setup error."""
        if self._setup_error is not None:
            err = self._setup_error
            raise SetupFailedError(
                f"setup of stage '{self._stage.name}' failed: {err['error_type']}: {err['message']}\n"
                f"{err['traceback']}"
            )
        return {
            "node_id": self._node_id,
            "pid": os.getpid(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }

    @ray.method(num_returns="streaming")  # type: ignore[misc]
    def process(
        self, layout: list[tuple[int, int]], inline: list[Task[Any] | None], *stored: Task[Any]
    ) -> Iterator[Any]:
        """Run each batch of `layout` through `process_batch` (see `run_batches` and `call_inputs`)."""
        yield from run_batches(
            self._stage, self._adapter, self._inline_bytes, layout, call_inputs(inline, stored)
        )

    def teardown(self) -> None:
        """Run the stage's teardown (once, at the end of this actor's life)."""
        self._stage.teardown()


def worker_class_for(stage: ProcessingStage[Any, Any]) -> Any:
    """A Ray actor class named after the stage's class, so the dashboard shows which stage is which."""
    cls = type(type(stage).__name__, (StageWorker,), {"__module__": StageWorker.__module__})
    return ray.remote(cls)
