"""`RayDataExecutor`: a pipeline as one streaming Ray Data dataset over blocks of encoded tasks.

One row is one task (the task codec of `nemo_curator._core`), so Ray Data's row counts are task
counts and its byte counts are the payloads' real sizes. The run's plan comes from the core (`_core.plan_ray_data`,
`rust/curator-core/src/planning.rs`): the segments, each actor pool's size, the repartitions and
the initial blocks; this module only turns it into Ray Data calls. The stages are grouped into
segments, each one `map_batches`:

- consecutive task stages with the same resources form one segment, run in Ray tasks: a call
  takes a block and passes its tasks through every stage of the segment as objects (one decode and
  one encode per segment, not per stage);
- a stage that needs per-worker state (overrides `setup`, uses GPUs and CPUs, or its
  `ray_stage_spec()` says `is_actor_stage`) is a segment of its own, run in an actor pool sized
  from `num_workers()`, `pool_size` or the cluster's *free* resources, with the actor-pool
  executor's feasibility rules, leaving room for one worker of every task segment (and for the
  repartitions) so that the stages feeding a pool always run; when the free resources cannot hold
  that (other work holds part of the cluster), the plan fuses neighbouring segments into one actor
  pool rather than wait forever;
- a fan-out stage ends its segment; when the run has few initial tasks (under 4 per CPU), a strict
  streaming repartition re-blocks its outputs (`fanout_tasks_per_block`, default 1) so the next
  segment spreads them over its workers; with more, each call's outputs stay its own blocks.

Batches: each stage calls `process_batch` on consecutive slices of exactly `batch_size` of the tasks
it receives. The first segment's initial blocks hold whole batches of its first stage. A later
segment whose first stage has a batch size B > 1 gets batches of B rows that Ray Data cuts across
the blocks of each of its Ray tasks (`map_batches(batch_size=B)`), so at most the last batch of a
Ray task is short, as in Curator; a later stage of a segment is full too unless an earlier stage of
the same segment filtered or fanned out tasks (then each call may end with a short batch).
`exact_batches` starts a new segment at every stage with B > 1 and repartitions its input into
blocks of exactly B rows, for full batches everywhere but the very last, at the cost of one more
pass and a Ray task per batch.

The driver streams the final blocks (`iter_internal_ref_bundles`), decodes each as it arrives
(Arrow payloads stay in the object store, referenced without a copy) and merges the per-block
ledgers into one `nemo_curator._core.Ledger`, whose balance check proves that every input task
was output, filtered or reported as failed. The ledgers also carry what the run report needs
(items, bytes, busy time, first start / last end, workers per stage): the driver feeds the merged
ledger to the same `RunMonitor` as the actor-pool executor (`observe.py`), for the progress display
while blocks arrive, the summary at the end (`show_progress`) and `executor.last_run`.

Runs of one process started at the same time see each other's reservations: a run whose plan
does not fit next to them waits for them to end. A run that still cannot go on (no Ray Data
progress while no waiting stage has room for a worker) logs a warning naming the stages and the
free vs needed resources, and fails after `stall_timeout_s`.

`ignore_head_node` keeps every task and actor of the run off the head node with a Ray label
selector on the node id (`DataContext.execution_options.label_selector`) and limits Ray Data's
resource budget to the other nodes.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ray
from loguru import logger

from nemo_curator import _core
from nemo_curator.backends.base import (
    BaseExecutor,
    prepare_initial_tasks,
    resolve_batch_size,
    validate_stages,
)
from nemo_curator.backends.experimental.ray_data.adapter import (
    NodeSetups,
    SegmentPlan,
    StagePlan,
    actor_class_for,
    input_store,
    task_function_for,
)
from nemo_curator.backends.experimental.ray_data.config import RayDataConfig, _parse_runtime_env
from nemo_curator.backends.experimental.ray_data.observe import LedgerView
from nemo_curator.backends.experimental.ray_data.release import StageActors
from nemo_curator.backends.experimental.ray_data.utils import is_actor_stage
from nemo_curator.backends.experimental.utils import RayStageSpecKeys
from nemo_curator.backends.failures import FailureRecord, StageFailedError
from nemo_curator.backends.ray_utils import ClusterNode, RaySession, cluster_nodes, payload_nbytes, put_stage
from nemo_curator.backends.ray_utils.nodes import needs_setup_on_node
from nemo_curator.backends.ray_utils.session import execute_through_client
from nemo_curator.observability import RunMonitor, RunReport
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.tasks import Task

__all__ = ["RayDataConfig", "RayDataExecutor", "StageFailedError"]

_UNSUPPORTED_KINDS = (
    RayStageSpecKeys.IS_RAFT_ACTOR,
    RayStageSpecKeys.IS_LSH_STAGE,
    RayStageSpecKeys.IS_SHUFFLE_STAGE,
)
_NODE_ID_LABEL = "ray.io/node-id"
# Blocks fetched per `ray.get` while streaming the results; fewer when they come slowly, so the
# progress display follows (they are fetched at least every `_FETCH_INTERVAL_S`).
_FETCH_BLOCKS = 8
_FETCH_INTERVAL_S = 0.25

# Runs of this process that have started, with what their plans reserve per node: a run planned
# while another one is starting sees those reservations as taken (Ray's view of free resources
# lags), and waits for it when they leave no room, instead of both taking half and waiting for
# each other forever.
_ACTIVE = threading.Condition()
_CLAIMS: dict[str, dict[str, tuple[float, float]]] = {}


def _runs_in_actors(stage: ProcessingStage[Any, Any]) -> bool:
    """Curator's rule: an explicit `is_actor_stage` wins; otherwise `utils.is_actor_stage`."""
    spec = stage.ray_stage_spec() or {}
    explicit = spec.get(RayStageSpecKeys.IS_ACTOR_STAGE.value)
    if explicit is not None:
        return bool(explicit)
    return is_actor_stage(stage)


@dataclass
class _StagePlan:
    stage: ProcessingStage[Any, Any]
    batch_size: int
    actor: bool
    fanout: bool


class RayDataExecutor(BaseExecutor):
    """Runs a pipeline as one Ray Data dataset whose rows are tasks (see the module docs).

    Config keys: see `RayDataConfig` (`ignore_failures`, `max_retries`, `pool_size`, `reserved_cpus`,
    `reserved_gpus`, `runtime_env`, `max_tasks_per_block`, `target_block_bytes`, `output_block_bytes`,
    `fanout_tasks_per_block`, `exact_batches`, `force_actors`, `preserve_order`, `show_progress`,
    `progress_interval_s`, `ray_data_progress_bars`, `stall_timeout_s`, `data_context`). Unknown keys raise `ValueError`.
    A stage's `ray_stage_spec()` may also size its actor pool with `min_workers` / `max_workers` /
    `initial_workers`.

    After `execute()`: `failures` lists the batches skipped under `ignore_failures` (`FailureRecord`s:
    stage, task ids, error type, message, traceback); `last_run` is the run's `RunReport` (per stage tasks, items and
    bytes in/out, batches, calls, busy and wall time, actors; failures; count balance; timeline; see
    `observe.py` for what the counts cover), also after a run that failed; `last_run_stats` has the
    ledger's counts per stage as dicts.
    """

    def __init__(self, config: dict[str, Any] | None = None, ignore_head_node: bool = False) -> None:
        super().__init__(config, ignore_head_node)
        self.settings = RayDataConfig.from_dict(self.config)
        self.failures: list[FailureRecord] = []
        self.last_run_stats: list[dict[str, Any]] = []
        #: Report of the last `execute()`: per-stage metrics, failures, count balance, timeline.
        self.last_run: RunReport | None = None
        self._segment_udfs: list[tuple[str, list[str]]] = []
        #: Run id of the running execute()'s initial task lists in the job's `InputStore`.
        self._input_run: str | None = None

    # ----------------------------------------------------------------------------------------- execute
    def execute(
        self, stages: list[ProcessingStage[Any, Any]], initial_tasks: list[Task[Any]] | None = None
    ) -> list[Task[Any]]:
        """Run `stages` over `initial_tasks` (default: one empty task); returns the final tasks."""
        self.failures = []
        self.last_run_stats = []
        self.last_run = None
        remote = execute_through_client(self, stages, initial_tasks)
        if remote is not NotImplemented:
            return remote
        validate_stages(stages)
        if not stages:
            return []
        tasks = _distinct(prepare_initial_tasks(initial_tasks))
        plans = [self._plan(stage) for stage in stages]
        s = self.settings
        with RaySession(runtime_env=_parse_runtime_env(s.runtime_env)):
            started = (time.perf_counter(), time.time())  # the report's clock: from here
            token = uuid.uuid4().hex
            nodes, plan = self._admit(token, plans, [payload_nbytes(t) for t in tasks])
            try:
                stage_refs = [put_stage(p.stage) for p in plans]
                # Only stages with real per-node work need the per-node registry (an actor).
                needs_node_setup = [needs_setup_on_node(p.stage) for p in plans]
                setups = (
                    NodeSetups.remote(stage_refs, [p.stage.name for p in plans])  # type: ignore[attr-defined]
                    if any(needs_node_setup)
                    else None
                )
                try:
                    results = self._run(
                        plans, plan, stage_refs, setups, needs_node_setup, tasks, nodes, started
                    )
                finally:
                    if setups is not None:
                        ray.kill(setups)
                    if self._input_run is not None:
                        input_store().drop.remote(self._input_run)
                        self._input_run = None
            finally:
                with _ACTIVE:
                    _CLAIMS.pop(token, None)
                    _ACTIVE.notify_all()
        logger.info(f"Pipeline completed. Final results: {len(results)} tasks")
        if s.show_progress and self.last_run is not None:
            logger.info("run summary\n" + self.last_run.format_summary())
        return results

    def _plan(self, stage: ProcessingStage[Any, Any]) -> _StagePlan:
        spec = stage.ray_stage_spec() or {}
        for key in _UNSUPPORTED_KINDS:
            if spec.get(key.value):
                raise NotImplementedError(
                    f"Stage '{stage.name}' sets ray_stage_spec '{key.value}': RAFT, LSH and shuffle stages are "
                    "not supported by RayDataExecutor."
                )
        res = stage.resources
        if res.gpus <= 0 and (getattr(res, "nvdecs", 0) > 0 or getattr(res, "nvencs", 0) > 0):
            raise ValueError(
                f"Stage '{stage.name}': Ray Data does not support nvdecs / nvencs. Please use gpus instead."
            )
        return _StagePlan(
            stage=stage,
            batch_size=resolve_batch_size(stage),
            actor=self.settings.force_actors or _runs_in_actors(stage),
            fanout=bool(spec.get(RayStageSpecKeys.IS_FANOUT_STAGE.value, False)),
        )

    # -------------------------------------------------------------------------------------------- plan
    def _core_plan(
        self, plans: list[_StagePlan], nodes: list[ClusterNode], task_sizes: list[int]
    ) -> dict[str, Any]:
        """The run's plan from the core (`curator_core::planning`): segments, pools, blocks."""
        s = self.settings
        stages = []
        for p in plans:
            spec = p.stage.ray_stage_spec() or {}
            stages.append(
                {
                    "name": p.stage.name,
                    "batch_size": p.batch_size,
                    "cpus": float(p.stage.resources.cpus),
                    "gpus": float(p.stage.resources.gpus),
                    "actor": p.actor,
                    "fanout": p.fanout,
                    "num_workers": p.stage.num_workers(),
                    "min_workers": spec.get(RayStageSpecKeys.MIN_WORKERS.value),
                    "max_workers": spec.get(RayStageSpecKeys.MAX_WORKERS.value),
                    "initial_workers": spec.get(RayStageSpecKeys.INITIAL_WORKERS.value),
                }
            )
        return _core.plan_ray_data(
            stages,
            [(n.node_id, n.total_cpus, n.total_gpus, n.cpus, n.gpus) for n in nodes],
            task_sizes,
            pool_size=s.pool_size,
            exact_batches=s.exact_batches,
            fanout_tasks_per_block=s.fanout_tasks_per_block,
            max_tasks_per_block=s.max_tasks_per_block,
            target_block_bytes=s.target_block_bytes,
        )

    def _admit(
        self, token: str, plans: list[_StagePlan], task_sizes: list[int]
    ) -> tuple[list[ClusterNode], dict[str, Any]]:
        """Plan the run on what is free now, and record what it reserves (see `_CLAIMS`).

        When the plan does not fit because other runs of this process hold the room, wait for
        them to end; when others outside this process hold it, start anyway (one actor per pool,
        see the plan's warnings): the stall check in `_stream` reports a run that cannot go on.
        """
        s = self.settings
        while True:
            nodes = cluster_nodes(
                ignore_head_node=self.ignore_head_node,
                reserved_cpus=s.reserved_cpus,
                reserved_gpus=s.reserved_gpus,
            )
            with _ACTIVE:
                free = _less_claims(nodes, _CLAIMS.values())
                plan = self._core_plan(plans, free, task_sizes)
                if plan["fits"] or not _CLAIMS:
                    _CLAIMS[token] = {
                        n.node_id: claim for n, claim in zip(nodes, plan["claims"], strict=True)
                    }
                    break
                logger.info("RayDataExecutor: waiting for another run of this process to free resources")
                _ACTIVE.wait(timeout=5.0)
        for warning in plan["warnings"]:
            logger.warning(f"RayDataExecutor: {warning}")
        if not plan["fits"]:
            logger.warning(
                "RayDataExecutor: the free resources "
                f"({sum(n.cpus for n in free):g} CPU, {sum(n.gpus for n in free):g} GPU) cannot hold one "
                "worker of every stage; the run starts and waits for other work to free them "
                f"(at most stall_timeout_s={s.stall_timeout_s:g}s without progress)"
            )
        return free, plan

    # ------------------------------------------------------------------------------------------- build
    def _run(
        self,
        plans: list[_StagePlan],
        plan: dict[str, Any],
        stage_refs: list[Any],
        setups: Any,
        needs_node_setup: list[bool],
        tasks: list[Task[Any]],
        nodes: list[ClusterNode],
        started: tuple[float, float],
    ) -> list[Task[Any]]:
        s = self.settings
        run_id = uuid.uuid4().hex
        n = len(plans)
        stage_plans = [
            StagePlan(
                index=i,
                num_stages=n,
                name=p.stage.name,
                stage_ref=stage_refs[i],
                batch_size=p.batch_size,
                ignore_failures=s.ignore_failures,
                node_setups=setups if needs_node_setup[i] else None,
            )
            for i, p in enumerate(plans)
        ]
        groups = [tasks[start:end] for start, end in plan["blocks"]]
        # The initial tasks go into the object store once, as they are (Arrow buffers travel
        # out-of-band: the first stage reads them without a copy); the dataset's first blocks only
        # point at them, and the run's `InputStore` is their only holder, so each list leaves the
        # object store once the first segment has read it.
        store = input_store()
        ray.get(store.put.remote(run_id, [ray.put(group) for group in groups]))
        self._input_run = run_id
        ds = _dataset_of([_core.encode_stored(group, k) for k, group in enumerate(groups)])
        del groups
        self._configure_context(ds.context, nodes, plan)
        self._segment_udfs = []
        segments = plan["segments"]
        for k, segment in enumerate(segments):
            if segment["repartition"] is not None:
                # Strict, so Ray does not fuse it into the previous segment (its calls take whole
                # blocks): exact batches, or a fan-out's children spread over the next workers.
                ds = ds.repartition(target_num_rows_per_block=segment["repartition"], strict=True)
            members = segment["stages"]
            segment_plan = SegmentPlan(
                run_id=run_id,
                index=k,
                stages=tuple(stage_plans[i] for i in members),
                input_store=store if k == 0 else None,
                chunk_bytes=max(1, s.output_block_bytes // 2),
            )
            args = self._map_args([plans[i].stage for i in members], segment, segment_plan)
            udf = args["fn"].__name__
            self._segment_udfs.append((udf, [plans[i].stage.name for i in members]))
            with warnings.catch_warnings():
                # Ray 2.60 has no named parameter for max_retries / max_restarts / max_task_retries.
                warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
                ds = ds.map_batches(**args)
            logger.debug(
                f"Segment {k + 1}/{len(segments)} {segment_plan.label}: "
                f"{'actors ' + str(segment['pool']) if segment['actor'] else 'tasks'}, "
                f"batch sizes {[plans[i].batch_size for i in members]}"
            )
        return self._stream(ds, plans, plan, len(tasks), started)

    def _map_args(
        self, stages: list[ProcessingStage[Any, Any]], segment: dict[str, Any], plan: SegmentPlan
    ) -> dict[str, Any]:
        # `batch_size`: the plan says whether Ray Data cuts the batches (GPU stages, and a later
        # segment whose first stage batches) or a call takes whole blocks.
        args: dict[str, Any] = {
            "batch_format": "pyarrow",
            "zero_copy_batch": True,
            "batch_size": segment["batch_size"],
        }
        retries = self.settings.max_retries
        if segment["actor"]:
            args["fn"] = actor_class_for(stages)
            # Ray Data restarts dead actors and retries their calls forever by default.
            args["max_restarts"] = retries
            args["max_task_retries"] = retries
            args["fn_constructor_args"] = (plan,)
            low, high, initial = segment["pool"]
            if low == high:
                args["compute"] = ray.data.ActorPoolStrategy(size=low)
            else:
                args["compute"] = ray.data.ActorPoolStrategy(
                    min_size=low, max_size=high, initial_size=initial
                )
        else:
            args["fn"] = task_function_for(stages, plan)
            # Ray Data retries a task whose worker died forever by default: a task that always
            # kills its worker would never end.
            args["max_retries"] = retries
        # The segment's request: its stages' (the same for a task segment; the largest when a busy
        # cluster made the plan fuse stages into one actor pool).
        if segment["cpus"] > 0:
            args["num_cpus"] = float(segment["cpus"])
        if segment["gpus"] > 0:
            args["num_gpus"] = float(segment["gpus"])
        runtime_env = dict(self.settings.runtime_env)
        if segment["gpus"] > 0 or runtime_env:
            args["runtime_env"] = _parse_runtime_env(runtime_env)
        return args

    def _configure_context(self, ctx: Any, nodes: list[ClusterNode], plan: dict[str, Any]) -> None:
        s = self.settings
        ctx.raise_original_map_exception = True
        ctx.max_errored_blocks = 0
        ctx.enable_progress_bars = s.show_progress and s.ray_data_progress_bars
        ctx.print_on_execution_start = s.show_progress and s.ray_data_progress_bars
        ctx.target_max_block_size = s.output_block_bytes
        options = ctx.execution_options
        options.preserve_order = s.preserve_order
        if self.ignore_head_node:
            head = next(
                (n["NodeID"] for n in ray.nodes() if "node:__internal_head__" in n.get("Resources", {})), None
            )
            if head is not None:
                options.label_selector = {_NODE_ID_LABEL: f"!{head}"}
        free = (sum(n.cpus for n in nodes), sum(n.gpus for n in nodes))
        total = (sum(n.total_cpus for n in nodes), sum(n.total_gpus for n in nodes))
        if self.ignore_head_node or s.reserved_cpus or s.reserved_gpus or (plan["fits"] and free != total):
            from ray.data import ExecutionResources

            # What the plan was made for: Ray Data's budget is the whole cluster otherwise, and it
            # would scale pools into resources that others hold (then wait for them). A plan that
            # does not fit the free resources gets the totals, to use them once they come back.
            cpus, gpus = free if plan["fits"] else total
            options.resource_limits = ExecutionResources(cpu=cpus, gpu=gpus)
        for key, value in s.data_context.items():
            setattr(ctx, key, value)

    # ------------------------------------------------------------------------------------------ stream
    def _stream(
        self,
        ds: ray.data.Dataset,
        plans: list[_StagePlan],
        plan: dict[str, Any],
        num_initial: int,
        started: tuple[float, float],
    ) -> list[Task[Any]]:
        s = self.settings
        names = [p.stage.name for p in plans]
        start, epoch0 = started
        in_actors = [False] * len(plans)
        for segment in plan["segments"]:
            for i in segment["stages"]:
                in_actors[i] = segment["actor"]
        view = LedgerView(names, num_initial, in_actors, epoch0)
        monitor = RunMonitor(
            "RayDataExecutor",
            names,
            progress="auto" if s.show_progress else "off",
            progress_interval_s=s.progress_interval_s,
        )
        results: list[Task[Any]] = []
        failures: list[FailureRecord] = []
        try:
            pending: list[tuple[Any, Any]] = []
            last_fetch = time.perf_counter()
            for bundle in _Bundles(ds, self._watch(plan), s.stall_timeout_s):
                if bundle is None:  # nothing new: keep the display going
                    if pending and time.perf_counter() - last_fetch >= _FETCH_INTERVAL_S:
                        self._take(pending, view, results, failures)
                        pending = []
                        last_fetch = time.perf_counter()
                    monitor.on_round(view, time.perf_counter() - start)
                    continue
                pending.extend(zip((e.ref for e in bundle.blocks), bundle.slices, strict=True))
                now = time.perf_counter()
                if len(pending) >= _FETCH_BLOCKS or now - last_fetch >= _FETCH_INTERVAL_S:
                    self._take(pending, view, results, failures)
                    pending = []
                    last_fetch = now
                    monitor.on_round(view, time.perf_counter() - start)
            self._take(pending, view, results, failures)
            view.finished = True
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, StageFailedError):
                # The worker's message names the stage, the task ids and the original error.
                raise StageFailedError(str(cause.args[0]), cause.failure) from None
            raise self._infra_failure(exc) from exc
        except ray.exceptions.RayError as exc:
            raise self._infra_failure(exc) from exc
        finally:
            # Also after a failure: the report of what came back until then.
            self.failures = failures
            self.last_run_stats = [
                {"stage": name, **counts} for name, counts in zip(names, view.ledger.stages(), strict=True)
            ]
            self.last_run = monitor.finish(
                view, time.perf_counter() - start, failures=failures, actor_events=[]
            )
        for failure in failures:
            logger.warning(failure.describe() + " (skipped: ignore_failures=True)")
        problems = view.problems()
        if problems:
            raise RuntimeError("RayDataExecutor lost track of tasks: " + "; ".join(problems))
        return results

    def _watch(self, plan: dict[str, Any]) -> _Watch:
        segments = [
            (udf, names, float(seg["cpus"]) or 1.0, float(seg["gpus"]))
            for (udf, names), seg in zip(self._segment_udfs, plan["segments"], strict=True)
        ]
        return _Watch(segments, self.ignore_head_node)

    def _infra_failure(self, exc: BaseException) -> StageFailedError:
        """A worker or actor died more often than `max_retries` allows: name the stages it ran."""
        text = str(exc)
        stages = [name for udf, names in self._segment_udfs if udf in text for name in names]
        if stages:
            where = f"stage(s) {stages}"
        else:  # Ray's error does not name the task: list every stage the worker may have run.
            stages = [name for _, names in self._segment_udfs for name in names]
            where = f"one of the stages {stages}"
        failure = FailureRecord(
            stage=stages[0] if len(stages) == 1 else "",
            error_type=type(exc).__name__,
            message=text.splitlines()[0] if text else "",
            traceback=text,
            attempts=self.settings.max_retries + 1,
            kind="infra",
        )
        return StageFailedError(
            f"A Ray worker running {where} died {failure.attempts} time(s) (max_retries="
            f"{self.settings.max_retries}): {failure.error_type}: {failure.message}",
            failure,
        )

    @staticmethod
    def _take(
        pending: list[tuple[Any, Any]],
        view: LedgerView,
        results: list[Task[Any]],
        failures: list[FailureRecord],
    ) -> None:
        if not pending:
            return
        blocks = ray.get([ref for ref, _ in pending])
        for block, piece in zip(blocks, (p for _, p in pending), strict=True):
            if piece is not None:
                block = block.slice(piece.start_offset, piece.end_offset - piece.start_offset)
            tasks, ledgers, block_failures = _core.decode_block(block)
            results.extend(tasks)
            failures.extend(FailureRecord.from_dict(f) for f in block_failures)
            for encoded in ledgers:
                view.merge(encoded)
        view.emitted = len(results)
        view.failure_records = len(failures)


# ------------------------------------------------------------------------------------------------ helpers
def _distinct(tasks: list[Task[Any]]) -> list[Task[Any]]:
    """The same object twice (`[EmptyTask()] * 8`) becomes two: pickling a list keeps it one
    object, which every stage would then update once per occurrence."""
    seen: set[int] = set()
    out = []
    for task in tasks:
        if id(task) in seen:
            task = copy.deepcopy(task)
        seen.add(id(task))
        out.append(task)
    return out


def _dataset_of(tables: list[Any]) -> ray.data.Dataset:
    """`ray.data.from_arrow(tables)` without its metadata task: that Ray task asks for a CPU, and
    on a cluster whose CPUs other work holds it would wait before the stall check can see the run.
    The metadata of these small tables is computed here instead."""
    try:
        from ray.data import DataContext
        from ray.data._internal.logical.interfaces import LogicalPlan
        from ray.data._internal.logical.operators import FromArrow
        from ray.data._internal.stats import DatasetStats
        from ray.data._internal.util import get_table_block_metadata_schema
        from ray.data.dataset import MaterializedDataset
    except ImportError:  # pragma: no cover - other Ray versions
        return ray.data.from_arrow(tables)
    metadata = [get_table_block_metadata_schema(t) for t in tables]
    refs = [ray.put(t) for t in tables]
    stats = DatasetStats(metadata={"FromArrow": metadata}, parent=None)
    context = DataContext.get_current().copy()
    return MaterializedDataset(LogicalPlan(FromArrow(refs, metadata), context), context, stats)


def _less_claims(nodes: list[ClusterNode], claims: Any) -> list[ClusterNode]:
    """`nodes` with what other runs of this process reserved taken off their free resources (Ray's
    view may not show the workers they are starting yet; those it shows are not counted twice)."""
    out = []
    for n in nodes:
        held_c = sum(c.get(n.node_id, (0.0, 0.0))[0] for c in claims)
        held_g = sum(c.get(n.node_id, (0.0, 0.0))[1] for c in claims)
        cpus = max(0.0, min(n.cpus, n.total_cpus - held_c))
        gpus = max(0.0, min(n.gpus, n.total_gpus - held_g))
        out.append(ClusterNode(n.node_id, n.is_head, cpus, gpus, n.total_cpus, n.total_gpus))
    return out


@dataclass
class _Watch:
    """What the stall check needs: each segment's UDF name, stages and request per worker."""

    segments: list[tuple[str, list[str], float, float]]
    ignore_head_node: bool


class _Bundles:
    """The dataset's result bundles, read by a thread so the driver can notice a run that stopped.

    Yields each bundle as it arrives and `None` every `_FETCH_INTERVAL_S` without one. When Ray
    Data's operators make no progress (no inputs taken, no outputs, no task finished) while the
    cluster has no room for a worker of any segment that is still waiting, it logs a warning at a
    quarter of `stall_timeout_s` (at most a minute) and fails the run at `stall_timeout_s`.
    """

    def __init__(self, ds: ray.data.Dataset, watch: _Watch, stall_timeout_s: float) -> None:
        self._watch = watch
        self._timeout = stall_timeout_s
        self._queue: queue.Queue[Any] = queue.Queue()
        self._executor: Any = None
        self._actors = StageActors()
        try:  # Ray Data's own executor, for its operators' progress and to stop it on a stall
            self._executor = ds._create_executor()
            source: Any = ds._build_bundle_iterator(self._executor)
        except Exception:  # pragma: no cover - other Ray versions: only the result blocks count
            self._executor = None
            source = ds.iter_internal_ref_bundles()
        self._thread = threading.Thread(
            target=self._pump, args=(source,), daemon=True, name="ray-data-results"
        )

    def _pump(self, source: Any) -> None:
        try:
            for bundle in source:
                self._queue.put(("bundle", bundle))
            self._queue.put(("end", None))
        except BaseException as exc:  # handed to the driver thread
            self._queue.put(("error", exc))

    def _progress(self) -> tuple[Any, ...]:
        if self._executor is None:
            return ()
        self._actors.note(self._executor)
        try:
            return tuple(
                (
                    m.num_inputs_received,
                    m.num_task_outputs_generated,
                    m.num_tasks_finished,
                    m.num_outputs_taken,
                    op.has_completed(),
                )
                for op in list(self._executor._topology or {})
                for m in [op.metrics]
            )
        except Exception:  # pragma: no cover - Ray internals changed
            return ()

    def _waiting(self) -> list[tuple[str, list[str], float, float]]:
        """Segments whose operator has not completed."""
        try:
            open_ops = [op.name for op in list(self._executor._topology or {}) if not op.has_completed()]
        except Exception:
            return self._watch.segments
        return [seg for seg in self._watch.segments if any(seg[0] in name for name in open_ops)]

    def _starved(self) -> str | None:
        """Why the waiting segments cannot run (None: one of them has room for a worker)."""
        waiting = self._waiting()
        if not waiting:
            return None
        nodes = cluster_nodes(ignore_head_node=self._watch.ignore_head_node, settle_s=0.0)
        for _, _, cpus, gpus in waiting:
            if any(n.cpus >= cpus - 1e-9 and n.gpus >= gpus - 1e-9 for n in nodes):
                return None
        free = (sum(n.cpus for n in nodes), sum(n.gpus for n in nodes))
        total = (sum(n.total_cpus for n in nodes), sum(n.total_gpus for n in nodes))
        needs = ", ".join(
            f"{'+'.join(names)} needs {c:g} CPU, {g:g} GPU per worker" for _, names, c, g in waiting
        )
        stages = [name for _, names, _, _ in waiting for name in names]
        return (
            f"stage(s) {stages} are waiting for resources ({needs}); the cluster has {free[0]:g} CPU, "
            f"{free[1]:g} GPU free of {total[0]:g} CPU, {total[1]:g} GPU (held by other work)"
        )

    def __iter__(self) -> Iterator[Any]:
        self._thread.start()
        warn_after = min(60.0, self._timeout / 4)
        last = self._progress()
        since = time.monotonic()
        warned = False
        try:
            while True:
                try:
                    kind, item = self._queue.get(timeout=_FETCH_INTERVAL_S)
                except queue.Empty:
                    now, progress = time.monotonic(), self._progress()
                    if progress != last:
                        last, since, warned = progress, now, False
                    elif now - since >= warn_after and (not warned or now - since >= self._timeout):
                        why = self._starved()
                        if why is None:
                            since = now  # busy, not starved
                        elif now - since >= self._timeout:
                            raise RuntimeError(
                                f"RayDataExecutor made no progress for {now - since:.0f}s: {why}. "
                                "Free resources or raise 'stall_timeout_s' to wait longer."
                            ) from None
                        else:
                            warned = True
                            logger.warning(f"RayDataExecutor: no progress for {now - since:.0f}s: {why}")
                    yield None
                    continue
                if kind == "end":
                    self._actors.forget()
                    return
                if kind == "error":
                    raise item
                last, since, warned = self._progress(), time.monotonic(), False
                yield item
        finally:
            if self._executor is not None and self._thread.is_alive():
                # Stop Ray Data's execution (its actors and pending tasks) before leaving.
                self._executor.shutdown(force=True)
                self._thread.join(timeout=10.0)
            # A run that failed or was interrupted: its actors go now, not when Ray collects them.
            self._actors.kill()
