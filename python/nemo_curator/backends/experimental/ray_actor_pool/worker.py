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

from nemo_curator.backends.base import BaseStageAdapter, WorkerMetadata, validate_stage_outputs
from nemo_curator.backends.ray_utils.payload import payload_nbytes
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.tasks import Task

# Where an output travels: the Task itself inside the metadata, or the index of its own yielded object.
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


class StageWorker:
    """Pool member for one stage. Subclassed per stage (named after it) so Ray's dashboard reads well."""

    def __init__(self, stage: ProcessingStage[Any, Any], setup_on_node: list[Any], inline_bytes: int) -> None:
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
            stage.setup(self._metadata)
        except ray.exceptions.RayTaskError as exc:
            self._setup_error = {
                "error_type": "SetupOnNodeError",
                "message": str(exc),
                "traceback": str(exc),
            }
        except Exception as exc:
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
    def process(self, layout: list[tuple[int, int]], *tasks: Task[Any]) -> Iterator[Any]:
        """Run each batch of `layout` ((batch_id, n_tasks) pairs over `tasks`) through `process_batch`.

        Yields large outputs one by one, then one metadata list with, per batch,
        `(batch_id, ok, busy_s, outputs, out_bytes, out_items, out_task_ids)` when it succeeded or
        `(batch_id, ok, busy_s, error_dict, input_task_ids)` when the user's code raised.
        """
        results: list[tuple[Any, ...]] = []
        n_yielded = 0
        pos = 0
        for batch_id, n in layout:
            batch = list(tasks[pos : pos + n])
            pos += n
            start = time.perf_counter()
            try:
                outputs = validate_stage_outputs(self._stage.name, self._adapter.process_batch(batch))
            except Exception as exc:
                busy = time.perf_counter() - start
                results.append((batch_id, False, busy, _describe(exc), [t.task_id for t in batch]))
                continue
            busy = time.perf_counter() - start
            placed: list[tuple[int, Any]] = []
            sizes: list[int] = []
            items: list[int] = []
            ids: list[str] = []
            for out in outputs:
                nbytes = payload_nbytes(out)
                sizes.append(nbytes)
                items.append(int(out.num_items))
                ids.append(out.task_id)
                if nbytes > self._inline_bytes:
                    yield out
                    placed.append((YIELDED, n_yielded))
                    n_yielded += 1
                else:
                    placed.append((INLINE, out))
            results.append((batch_id, True, busy, placed, sizes, items, ids))
        yield results

    def teardown(self) -> None:
        """Run the stage's teardown (once, at the end of this actor's life)."""
        self._stage.teardown()


def worker_class_for(stage: ProcessingStage[Any, Any]) -> Any:
    """A Ray actor class named after the stage's class, so the dashboard shows which stage is which."""
    cls = type(type(stage).__name__, (StageWorker,), {"__module__": StageWorker.__module__})
    return ray.remote(cls)
