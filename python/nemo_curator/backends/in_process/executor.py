"""``InProcessExecutor``: runs stages one after another in the calling process, without Ray."""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING, Any

from loguru import logger

from nemo_curator.backends import checkpoint
from nemo_curator.backends.base import (
    BaseExecutor,
    BaseStageAdapter,
    NodeInfo,
    WorkerMetadata,
    prepare_initial_tasks,
    resolve_batch_size,
    validate_stages,
)
from nemo_curator.backends.failures import FailureRecord, StageFailedError
from nemo_curator.observability.metrics import StageCounts
from nemo_curator.observability.report import RunReport, StageReport

if TYPE_CHECKING:
    from nemo_curator.stages.base import ProcessingStage
    from nemo_curator.tasks import Task

_CONFIG_KEYS = {"ignore_failures": bool}
_NODE_ID = "local"
_WORKER_ID = "in_process"
#: Checkpointed runs: the time one chunk of sources should take (see `execute`).
_CHUNK_S = 0.05


class InProcessExecutor(BaseExecutor):
    """Runs each stage over the whole output of the previous one, in the driver, with one stage instance.

    Lifecycle per run: ``setup_on_node`` of every stage first, then for each stage ``setup``, one
    ``process_batch`` per ``batch_size`` slice of its input (``None`` means 1), and ``teardown`` (also when the
    stage fails). The caller's stages and tasks are copied first and never mutated.

    Config: ``{"ignore_failures": bool}`` (default False). With it, a batch whose stage raises is skipped and
    recorded in ``failures`` (a ``FailureRecord`` each); otherwise the run stops with ``StageFailedError``, as
    on every executor, whose ``failure`` names the stage and task ids and whose ``__cause__`` is the original
    exception.
    """

    def __init__(self, config: dict[str, Any] | None = None, ignore_head_node: bool = False) -> None:
        super().__init__(config, ignore_head_node)
        for key, value in self.config.items():
            if key not in _CONFIG_KEYS:
                msg = f"Unknown InProcessExecutor config key {key!r}; valid keys: {sorted(_CONFIG_KEYS)}"
                raise ValueError(msg)
            if not isinstance(value, _CONFIG_KEYS[key]):
                msg = f"InProcessExecutor config {key!r} must be {_CONFIG_KEYS[key].__name__}, got {value!r}"
                raise TypeError(msg)
        self.ignore_failures: bool = self.config.get("ignore_failures", False)
        # One record per skipped batch of the last run.
        self.failures: list[FailureRecord] = []
        #: The sources of each failure's tasks, as far as their metadata says (checkpointed runs).
        self._failure_sources: list[list[str]] = []
        # One entry per stage of the last run: {stage, tasks_in, tasks_out, seconds}.
        self.last_run_stats: list[dict[str, Any]] = []
        #: Report of the last `execute()`: per-stage tasks in/out and wall time, failures, `startup_s`.
        self.last_run: RunReport | None = None
        self._first_call: float | None = None

    @checkpoint.resumable
    def execute(self, stages: list[ProcessingStage], initial_tasks: list[Task] | None = None) -> list[Task]:
        validate_stages(stages)
        self.failures = []
        self._failure_sources = []
        self.last_run_stats = []
        self.last_run = None
        self._first_call = None
        if not stages:
            return []
        called = time.perf_counter()
        # Ray executors pickle stages and tasks; copying each one separately gives the same isolation here.
        run_stages = [copy.deepcopy(stage) for stage in stages]
        tasks = [copy.deepcopy(task) for task in prepare_initial_tasks(initial_tasks)]

        node_info = NodeInfo(node_id=_NODE_ID)
        worker_metadata = WorkerMetadata(worker_id=_WORKER_ID)
        adapters = [BaseStageAdapter(stage) for stage in run_stages]
        for adapter in adapters:
            adapter.setup_on_node(node_info, worker_metadata)

        ckpt = checkpoint.active()
        if ckpt is None:
            tasks = self._run_stages(adapters, tasks, worker_metadata)
        else:
            # Sources go through every stage a chunk at a time; each chunk's sources complete with it.
            self.last_run_stats = [
                {"stage": a.stage.name, "tasks_in": 0, "tasks_out": 0, "seconds": 0.0} for a in adapters
            ]
            batch = chunk = resolve_batch_size(run_stages[0], warn=False)
            outputs: list[Task] = []
            for adapter in adapters:
                adapter.setup(worker_metadata)
            try:
                start = 0
                while start < len(tasks):
                    sources = tasks[start : start + chunk]
                    start += len(sources)
                    failed_before = len(self.failures)
                    began = time.perf_counter()
                    outputs.extend(self._run_stages(adapters, sources, worker_metadata, lifecycle=False))
                    ckpt.record(
                        [t._metadata[checkpoint.SOURCE_KEY] for t in sources],
                        self.failures[failed_before:],
                        self._failure_sources[failed_before:],
                    )
                    # Chunks of tiny sources grow until one takes about _CHUNK_S, so that the per-chunk
                    # bookkeeping costs little while what a crash redoes stays small (a multiple of batch).
                    took = time.perf_counter() - began
                    if took < _CHUNK_S / 2:
                        chunk *= 2
                    elif took > _CHUNK_S * 2 and chunk > batch:
                        chunk = max(batch, chunk // 2 // batch * batch)
            finally:
                for adapter in adapters:
                    adapter.teardown()
            tasks = outputs
        logger.debug(f"Pipeline completed. Final results: {len(tasks)} tasks")
        reports = []
        for s in self.last_run_stats:
            failed = sum(len(f.task_ids) for f in self.failures if f.stage == s["stage"])
            counts = StageCounts(
                tasks_in=s["tasks_in"],
                tasks_done=s["tasks_in"] - failed,
                tasks_out=s["tasks_out"],
                tasks_failed=failed,
            )
            reports.append(StageReport.from_counts(s["stage"], counts))
        self.last_run = RunReport(
            executor="InProcessExecutor",
            total_s=time.perf_counter() - called,
            startup_s=None if self._first_call is None else self._first_call - called,
            stages=reports,
            failures=list(self.failures),
        )
        return tasks

    def _run_stages(
        self,
        adapters: list[BaseStageAdapter],
        tasks: list[Task],
        worker_metadata: WorkerMetadata,
        *,
        lifecycle: bool = True,
    ) -> list[Task]:
        for index, adapter in enumerate(adapters):
            stage = adapter.stage
            if lifecycle:
                logger.debug(f"Processing stage {index + 1}/{len(adapters)}: {stage} ({len(tasks)} tasks)")
            started = time.perf_counter()
            tasks_in = len(tasks)
            tasks = self._run_stage(adapter, tasks, worker_metadata, lifecycle=lifecycle)
            if lifecycle:
                self.last_run_stats.append(
                    {"stage": stage.name, "tasks_in": 0, "tasks_out": 0, "seconds": 0.0}
                )
            entry = self.last_run_stats[index]
            entry["tasks_in"] += tasks_in
            entry["tasks_out"] += len(tasks)
            entry["seconds"] += time.perf_counter() - started
        return tasks

    def _run_stage(
        self,
        adapter: BaseStageAdapter,
        tasks: list[Task],
        worker_metadata: WorkerMetadata,
        *,
        lifecycle: bool = True,
    ) -> list[Task]:
        stage = adapter.stage
        batch_size = resolve_batch_size(stage, warn=lifecycle)
        if lifecycle:
            adapter.setup(worker_metadata)
        outputs: list[Task] = []
        try:
            for start in range(0, len(tasks), batch_size):
                batch = tasks[start : start + batch_size]
                if self._first_call is None:
                    self._first_call = time.perf_counter()
                try:
                    outputs.extend(adapter.process_batch(batch))
                except Exception as error:
                    failure = FailureRecord.from_exception(
                        stage.name, [task.task_id for task in batch], error
                    )
                    if not self.ignore_failures:
                        raise StageFailedError.from_record(failure) from error
                    logger.warning(f"{failure.describe()}, skipping them")
                    self.failures.append(failure)
                    # For the manifest: a task with a random id (after N -> K) names no source itself.
                    self._failure_sources.append(checkpoint.task_sources(batch))
        finally:
            if lifecycle:
                adapter.teardown()
        return outputs
