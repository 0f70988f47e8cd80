"""`RayActorPoolExecutor`: all stages' actor pools alive at once, tasks streaming between them.

The executor validates, opens the Ray session, finds the nodes and hands everything to the driver loop
(`driver.py`), which executes the Rust scheduler's decisions with Ray calls.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import ray
from loguru import logger

from nemo_curator.backends import checkpoint
from nemo_curator.backends.base import BaseExecutor, prepare_initial_tasks, validate_stages
from nemo_curator.backends.experimental.ray_actor_pool.config import (
    ActorPoolConfig,
    StageOptions,
    _parse_runtime_env,
)
from nemo_curator.backends.experimental.ray_actor_pool.driver import ActorPoolDriver, StageFailedError
from nemo_curator.backends.failures import FailureRecord
from nemo_curator.backends.ray_utils import ClusterNode, RaySession, cluster_nodes, wait_for_resources
from nemo_curator.backends.ray_utils.checks import check_ray_stage
from nemo_curator.backends.ray_utils.session import execute_through_client
from nemo_curator.backends.stage_controls import ACTOR_POOL_MANAGED_ARGS, stage_controls
from nemo_curator.observability import RunMonitor, RunReport
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.tasks import Task

__all__ = [
    "ActorPoolConfig",
    "ActorPoolRun",
    "RayActorPoolExecutor",
    "StageFailedError",
    "StageOptions",
    "_parse_runtime_env",
]


class RayActorPoolExecutor(BaseExecutor):
    """Runs a pipeline on Ray actor pools, one pool per stage, all streaming at once.

    Config keys: see `ActorPoolConfig` (`pool_size`, `ignore_failures`, `reserved_cpus`,
    `reserved_gpus`, `runtime_env`, `max_retries`, `slots_per_actor`, `max_batches_per_call`,
    `queue_max_tasks`, `queue_max_bytes`, `inline_bytes`, `batch_timeout_s`, ...). Unknown keys raise.

    After `execute()`, `failures` lists the batches skipped under `ignore_failures` (`FailureRecord`s:
    stage, task ids, error type, message, traceback, attempts, kind).
    """

    def __init__(self, config: dict[str, Any] | None = None, ignore_head_node: bool = False) -> None:
        super().__init__(config, ignore_head_node)
        self.settings = ActorPoolConfig.from_dict(self.config)
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
        run = ActorPoolRun("RayActorPoolExecutor", self.settings, self.ignore_head_node)
        return run.execute_for(self, stages, initial_tasks)


class ActorPoolRun:
    """One `execute()` on the actor-pool engine; shared by `RayActorPoolExecutor` and `XennaExecutor`.

    `stage_options` are per-stage overrides (`StageOptions`, one per stage), `stage_by_stage` runs each
    stage to completion before the next starts, `cpu_fraction` is the share of each node's CPUs the run
    may use, `growth_interval_s` spaces out moves of actors between stages that all have actors.
    """

    def __init__(
        self,
        name: str,
        settings: ActorPoolConfig,
        ignore_head_node: bool,
        *,
        stage_options: Callable[[list[ProcessingStage[Any, Any]], int], list[StageOptions]] | None = None,
        stage_by_stage: bool = False,
        cpu_fraction: float | None = None,
        growth_interval_s: float = 0.0,
    ) -> None:
        self.name = name
        self.settings = settings
        self.ignore_head_node = ignore_head_node
        self.stage_options = stage_options
        self.stage_by_stage = stage_by_stage
        self.cpu_fraction = cpu_fraction
        self.growth_interval_s = growth_interval_s
        self.failures: list[FailureRecord] = []
        self.report: RunReport | None = None

    def execute_for(
        self,
        executor: Any,
        stages: list[ProcessingStage[Any, Any]],
        initial_tasks: list[Task[Any]] | None,
    ) -> list[Task[Any]]:
        """`execute` on behalf of `executor`: through Ray Client on the cluster, else here; leaves
        `failures` and `last_run` on the executor."""
        executor.failures = []
        remote = execute_through_client(executor, stages, initial_tasks)
        if remote is not NotImplemented:
            return remote
        try:
            return self.execute(stages, initial_tasks)
        finally:
            executor.failures, executor.last_run = self.failures, self.report

    def execute(
        self, stages: list[ProcessingStage[Any, Any]], initial_tasks: list[Task[Any]] | None
    ) -> list[Task[Any]]:
        called = time.monotonic()  # the report's start-up is counted from here
        if not stages:
            return []
        validate_stages(stages)
        batch_sizes = [_batch_size(s) for s in stages]
        for stage in stages:
            check_ray_stage(stage, self.name)
        controls = [stage_controls(st, executor=self.name, managed=ACTOR_POOL_MANAGED_ARGS) for st in stages]
        tasks = prepare_initial_tasks(initial_tasks)
        s = self.settings
        with RaySession(runtime_env=_parse_runtime_env(s.runtime_env)) as session:
            free_before = ray.available_resources()
            nodes = cluster_nodes(
                ignore_head_node=self.ignore_head_node,
                reserved_cpus=s.reserved_cpus,
                reserved_gpus=s.reserved_gpus,
            )
            if self.cpu_fraction is not None:
                nodes = [_cpu_share(n, self.cpu_fraction) for n in nodes]
            options = self.stage_options(stages, len(nodes)) if self.stage_options else None
            monitor = RunMonitor(
                self.name,
                [st.name for st in stages],
                progress="auto" if s.show_progress else "off",
                progress_interval_s=s.progress_interval_s,
                status_interval_s=s.status_interval_s,
            )
            driver = ActorPoolDriver(
                stages,
                batch_sizes,
                nodes,
                s,
                monitor=monitor,
                stage_options=options,
                controls=controls,
                stage_by_stage=self.stage_by_stage,
                growth_interval_s=self.growth_interval_s,
            )
            monitor.clock_offset_s = time.monotonic() - called - driver.now()
            finished = False
            try:
                results = driver.run(tasks)
                finished = True
            except StageFailedError as exc:
                logger.error(f"Error during pipeline execution: {exc}")
                raise
            finally:
                self.failures = driver.failures
                self.report = driver.report()
                if not session.started and not (finished and driver.actorless):
                    # The caller's session outlives this run: hand its resources back before returning
                    # (after a run that started no actor and finished, nothing is still running).
                    wait_for_resources(free_before.get("CPU", 0.0), free_before.get("GPU", 0.0))
        logger.info(f"Pipeline completed. Final results: {len(results)} tasks")
        if s.show_progress and self.report is not None:
            logger.info("run summary\n" + self.report.format_summary())
        return results


def _cpu_share(node: ClusterNode, fraction: float) -> ClusterNode:
    """The node with its CPU budget cut to `fraction` of its total, rounded up to whole CPUs (so a small
    node keeps all of them), minus what other work holds."""
    budget = float(math.ceil(node.total_cpus * fraction - 1e-9))
    held = node.total_cpus - node.cpus
    return dataclasses.replace(node, cpus=max(0.0, budget - held), total_cpus=budget)


def _batch_size(stage: ProcessingStage[Any, Any]) -> int:
    if stage.batch_size is None:
        logger.warning(f"batch size not set for stage {stage}. Setting it to 1.")
        return 1
    return int(stage.batch_size)
