"""`RayDataExecutor`: a pipeline as one streaming Ray Data dataset over blocks of encoded tasks.

One row is one task (the task codec of `nemo_curator._core`), so Ray Data's row counts are task
counts and its byte counts are the payloads' real sizes. The stages are grouped into segments, each
one `map_batches`:

- consecutive task stages with the same resources form one segment, run in Ray tasks: a call
  takes a block and passes its tasks through every stage of the segment as objects (one decode and
  one encode per segment, not per stage);
- a stage that needs per-worker state (overrides `setup`, uses GPUs and CPUs, or its
  `ray_stage_spec()` says `is_actor_stage`) is a segment of its own, run in an actor pool sized
  from `num_workers()`, `pool_size` or the cluster's resources;
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

`ignore_head_node` keeps every task and actor of the run off the head node with a Ray label
selector on the node id (`DataContext.execution_options.label_selector`) and limits Ray Data's
resource budget to the other nodes.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
import uuid
import warnings
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
from nemo_curator.backends.experimental.ray_data.utils import is_actor_stage
from nemo_curator.backends.experimental.utils import RayStageSpecKeys
from nemo_curator.backends.failures import FailureRecord, StageFailedError
from nemo_curator.backends.ray_utils import ClusterNode, RaySession, cluster_nodes, put_stage
from nemo_curator.backends.ray_utils.nodes import _take_reserved
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
# Fewer initial tasks than this per CPU: a fan-out's children are re-blocked one per block.
_FEW_PARENTS_PER_CPU = 4


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
    pool: tuple[int, int, int] | None = None  # (min, max, initial) actors


class RayDataExecutor(BaseExecutor):
    """Runs a pipeline as one Ray Data dataset whose rows are tasks (see the module docs).

    Config keys: see `RayDataConfig` (`ignore_failures`, `max_retries`, `pool_size`, `reserved_cpus`,
    `reserved_gpus`, `runtime_env`, `max_tasks_per_block`, `target_block_bytes`, `output_block_bytes`,
    `fanout_tasks_per_block`, `exact_batches`, `force_actors`, `preserve_order`, `show_progress`,
    `progress_interval_s`, `ray_data_progress_bars`, `data_context`). Unknown keys raise `ValueError`.
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
        tasks = prepare_initial_tasks(initial_tasks)
        plans = [self._plan(stage) for stage in stages]
        s = self.settings
        with RaySession(runtime_env=_parse_runtime_env(s.runtime_env)):
            started = (time.perf_counter(), time.time())  # the report's clock: from here
            nodes = _usable_nodes(self.ignore_head_node, s.reserved_cpus, s.reserved_gpus)
            segments = _segments(plans, s.exact_batches)
            # Repartitions between segments are Ray tasks of one CPU each.
            repartitions = any(
                plans[seg[0]].batch_size > 1 or plans[prev[-1]].fanout
                for prev, seg in itertools.pairwise(segments)
            )
            _size_pools(plans, nodes, s.pool_size, 1.0 if repartitions else 0.0)
            stage_refs = [put_stage(p.stage) for p in plans]
            # Only stages that override `setup_on_node` need the per-node registry (an actor).
            needs_node_setup = [
                type(p.stage).setup_on_node is not ProcessingStage.setup_on_node for p in plans
            ]
            setups = (
                NodeSetups.remote(stage_refs, [p.stage.name for p in plans])  # type: ignore[attr-defined]
                if any(needs_node_setup)
                else None
            )
            try:
                results = self._run(
                    plans, segments, stage_refs, setups, needs_node_setup, tasks, nodes, started
                )
            finally:
                if setups is not None:
                    ray.kill(setups)
                if self._input_run is not None:
                    input_store().drop.remote(self._input_run)
                    self._input_run = None
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

    # ------------------------------------------------------------------------------------------- build
    def _run(
        self,
        plans: list[_StagePlan],
        segments: list[list[int]],
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
                name=plan.stage.name,
                stage_ref=stage_refs[i],
                batch_size=plan.batch_size,
                ignore_failures=s.ignore_failures,
                node_setups=setups if needs_node_setup[i] else None,
            )
            for i, plan in enumerate(plans)
        ]
        first = segments[0]
        total_cpus = max(1, int(sum(n.cpus for n in nodes)))
        first_batch = math.lcm(*(plans[i].batch_size for i in first))
        groups = _initial_groups(tasks, s.max_tasks_per_block, s.target_block_bytes, total_cpus, first_batch)
        # The initial tasks go into the object store once, as they are (Arrow buffers travel
        # out-of-band: the first stage reads them without a copy); the dataset's first blocks only
        # point at them, and the run's `InputStore` is their only holder, so each list leaves the
        # object store once the first segment has read it.
        store = input_store()
        ray.get(store.put.remote(run_id, [ray.put(group) for group in groups]))
        self._input_run = run_id
        ds: ray.data.Dataset = ray.data.from_arrow(
            [_core.encode_stored(group, k) for k, group in enumerate(groups)]
        )
        del groups
        self._configure_context(ds.context, nodes)
        self._segment_udfs = []
        for k, members in enumerate(segments):
            if k > 0:
                previous = plans[segments[k - 1][-1]]
                head = plans[members[0]].batch_size
                if head > 1:
                    # Otherwise Ray Data cuts batches of `batch_size` rows across the blocks of each
                    # Ray task (`_map_args`): one short batch per task at most, no Ray task per batch.
                    if s.exact_batches:
                        # Blocks of exactly `batch_size` rows, whatever the previous segment emitted.
                        ds = ds.repartition(target_num_rows_per_block=head, strict=True)
                elif previous.fanout and (
                    s.fanout_tasks_per_block is not None or len(tasks) < _FEW_PARENTS_PER_CPU * total_cpus
                ):
                    # Spread a fan-out's outputs over the next segment's workers: needed when few
                    # parents (a few files, a few videos) fan out; many parents already give every
                    # worker blocks of their own, and a block per child would cost a Ray task each.
                    # Strict, so Ray does not fuse it into the previous segment (its calls take
                    # whole blocks).
                    ds = ds.repartition(target_num_rows_per_block=s.fanout_tasks_per_block or 1, strict=True)
            plan = SegmentPlan(
                run_id=run_id,
                index=k,
                stages=tuple(stage_plans[i] for i in members),
                input_store=store if k == 0 else None,
                chunk_bytes=max(1, s.output_block_bytes // 2),
            )
            args = self._map_args([plans[i] for i in members], plan)
            udf = args["fn"].__name__
            self._segment_udfs.append((udf, [plans[i].stage.name for i in members]))
            with warnings.catch_warnings():
                # Ray 2.60 has no named parameter for max_retries / max_restarts / max_task_retries.
                warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
                ds = ds.map_batches(**args)
            logger.debug(
                f"Segment {k + 1}/{len(segments)} {plan.label}: "
                f"{'actors ' + str(plans[members[0]].pool) if plans[members[0]].actor else 'tasks'}, "
                f"batch sizes {[plans[i].batch_size for i in members]}"
            )
        return self._stream(ds, plans, len(tasks), started)

    def _map_args(self, members: list[_StagePlan], plan: SegmentPlan) -> dict[str, Any]:
        stages = [m.stage for m in members]
        res = stages[0].resources  # the same for every stage of a segment
        head = members[0].batch_size
        # A call takes a whole block and the stages cut it into batches (cheaper than a Ray Data
        # call per batch), except: Ray Data insists on a batch size for GPU stages, and a later
        # segment whose first stage batches (B > 1) gets batches of B cut across its blocks (the
        # first segment's blocks are whole batches already; `exact_batches` repartitions instead).
        by_batch = res.gpus > 0 or (plan.index > 0 and head > 1 and not self.settings.exact_batches)
        args: dict[str, Any] = {
            "batch_format": "pyarrow",
            "zero_copy_batch": True,
            "batch_size": head if by_batch else None,
        }
        retries = self.settings.max_retries
        if members[0].actor:
            args["fn"] = actor_class_for(stages)
            # Ray Data restarts dead actors and retries their calls forever by default.
            args["max_restarts"] = retries
            args["max_task_retries"] = retries
            args["fn_constructor_args"] = (plan,)
            assert members[0].pool is not None
            low, high, initial = members[0].pool
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
        if res.cpus > 0:
            args["num_cpus"] = float(res.cpus)
        if res.gpus > 0:
            args["num_gpus"] = float(res.gpus)
        runtime_env = dict(self.settings.runtime_env)
        if res.gpus > 0 or runtime_env:
            args["runtime_env"] = _parse_runtime_env(runtime_env)
        return args

    def _configure_context(self, ctx: Any, nodes: list[ClusterNode]) -> None:
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
        if self.ignore_head_node or s.reserved_cpus or s.reserved_gpus:
            from ray.data import ExecutionResources

            options.resource_limits = ExecutionResources(
                cpu=sum(n.cpus for n in nodes), gpu=sum(n.gpus for n in nodes)
            )
        for key, value in s.data_context.items():
            setattr(ctx, key, value)

    # ------------------------------------------------------------------------------------------ stream
    def _stream(
        self,
        ds: ray.data.Dataset,
        plans: list[_StagePlan],
        num_initial: int,
        started: tuple[float, float],
    ) -> list[Task[Any]]:
        s = self.settings
        names = [p.stage.name for p in plans]
        start, epoch0 = started
        view = LedgerView(names, num_initial, [p.actor for p in plans], epoch0)
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
            for bundle in ds.iter_internal_ref_bundles():
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
def _usable_nodes(ignore_head_node: bool, reserved_cpus: float, reserved_gpus: float) -> list[ClusterNode]:
    """The nodes the run may use with their *total* CPUs/GPUs, less the reserved ones (taken off the
    first usable node first: the head, unless `ignore_head_node` left it out).

    Totals, not what is free right now (`cluster_nodes`' `cpus`/`gpus`): a worker that fits a
    node's total runs there eventually, and Ray Data's own scheduling follows what is free. So
    `cluster_nodes` only says which nodes are usable and what they have in all (and raises the
    shared, clear error when `ignore_head_node` leaves none), without waiting for free resources to
    settle; the reserved split is the helper it uses, applied to the totals of the usable nodes.
    """
    nodes = [
        ClusterNode(n.node_id, n.is_head, n.total_cpus, n.total_gpus, n.total_cpus, n.total_gpus)
        for n in cluster_nodes(ignore_head_node=ignore_head_node, settle_s=0.0)
    ]
    return _take_reserved(nodes, reserved_cpus, reserved_gpus)


def _fits(node: ClusterNode, cpus: float, gpus: float) -> int:
    """How many workers needing `cpus`/`gpus` fit on `node` (a large number when they need nothing)."""
    by_cpu = math.floor(node.cpus / cpus + 1e-9) if cpus > 0 else 1 << 20
    by_gpu = math.floor(node.gpus / gpus + 1e-9) if gpus > 0 else 1 << 20
    return min(by_cpu, by_gpu)


def _size_pools(
    plans: list[_StagePlan], nodes: list[ClusterNode], pool_size: int | None, other_cpus: float
) -> None:
    """Check that every stage fits somewhere (else fail now, rather than wait forever) and size actor pools.

    Pools start at a fair share of what the cluster leaves after one worker of each task stage and
    `other_cpus` (repartitions): actors that hold every CPU would starve the tasks that feed them.
    """
    actor_plans = [p for p in plans if p.actor]
    task_plans = [p for p in plans if not p.actor]
    cpu_left = sum(n.cpus for n in nodes) - sum(_worker_cpus(p) for p in task_plans) - other_cpus
    gpu_left = sum(n.gpus for n in nodes) - sum(float(p.stage.resources.gpus) for p in task_plans)
    for plan in plans:
        stage = plan.stage
        cpus = _worker_cpus(plan)
        gpus = float(stage.resources.gpus)
        capacity = sum(_fits(n, cpus, gpus) for n in nodes)
        if capacity == 0:
            largest_cpu = max((n.cpus for n in nodes), default=0.0)
            largest_gpu = max((n.gpus for n in nodes), default=0.0)
            raise _core.InfeasibleError(
                f"stage '{stage.name}' needs {cpus:g} CPU and {gpus:g} GPU per worker but no usable node "
                f"has that many (largest: {largest_cpu:g} CPU, {largest_gpu:g} GPU)"
            )
        if not plan.actor:
            continue
        share = min(
            cpu_left / len(actor_plans) / cpus,
            gpu_left / len(actor_plans) / gpus if gpus > 0 else float("inf"),
        )
        fair = max(1, min(capacity, math.floor(share + 1e-9)))
        wanted = stage.num_workers()
        spec = stage.ray_stage_spec() or {}
        fixed = int(wanted) if wanted is not None and wanted > 0 else pool_size
        if fixed is not None:
            if fixed > capacity:
                logger.warning(
                    f"Stage '{stage.name}' asks for {fixed} actors but only {capacity} fit the cluster; "
                    f"using {capacity}."
                )
                fixed = capacity
            plan.pool = (fixed, fixed, fixed)
        else:
            low = min(int(spec.get(RayStageSpecKeys.MIN_WORKERS.value) or 1), capacity)
            high = max(low, min(int(spec.get(RayStageSpecKeys.MAX_WORKERS.value) or capacity), capacity))
            initial = int(spec.get(RayStageSpecKeys.INITIAL_WORKERS.value) or fair)
            plan.pool = (low, high, min(max(initial, low), high))
    _fit_minimum_pools(actor_plans, cpu_left, gpu_left)


def _worker_cpus(plan: _StagePlan) -> float:
    # Ray Data gives a worker that asks for no CPU one CPU anyway.
    return float(plan.stage.resources.cpus) if plan.stage.resources.cpus > 0 else 1.0


def _fit_minimum_pools(actors: list[_StagePlan], cpu_budget: float, gpu_budget: float) -> None:
    """Shrink fixed or minimum pool sizes until all pools fit the budget together (pools that can
    only start once others finish could wait for each other forever)."""

    def over() -> bool:
        cpus = sum(p.pool[0] * _worker_cpus(p) for p in actors if p.pool)
        gpus = sum(p.pool[0] * float(p.stage.resources.gpus) for p in actors if p.pool)
        return cpus > cpu_budget + 1e-9 or gpus > gpu_budget + 1e-9

    shrunk = False
    while actors and over():
        largest = max(actors, key=lambda p: p.pool[0] if p.pool else 0)
        if largest.pool is None or largest.pool[0] <= 1:
            break
        low, high, initial = largest.pool
        largest.pool = (low - 1, high if high != low else low - 1, min(initial, low - 1))
        shrunk = True
    if shrunk:
        sizes = {p.stage.name: p.pool[0] for p in actors if p.pool}
        logger.warning(f"Actor pools shrunk to fit the cluster next to the task stages: {sizes}")


def _segments(plans: list[_StagePlan], exact_batches: bool) -> list[list[int]]:
    """Stage indices grouped into segments (see the module docs)."""
    segments: list[list[int]] = []
    for i, plan in enumerate(plans):
        if segments:
            prev = plans[i - 1]
            same = (
                not plan.actor
                and not prev.actor
                and not prev.fanout
                and not (exact_batches and plan.batch_size > 1)
                and (plan.stage.resources.cpus, plan.stage.resources.gpus)
                == (prev.stage.resources.cpus, prev.stage.resources.gpus)
            )
            if same:
                segments[-1].append(i)
                continue
        segments.append([i])
    return segments


def _initial_groups(
    tasks: list[Task[Any]], max_tasks: int, max_bytes: int, total_cpus: int, first_batch: int
) -> list[list[Task[Any]]]:
    """The initial tasks cut into blocks: enough blocks for every CPU to have work, each within
    `max_tasks` tasks and `max_bytes`, and whole batches of the first stage (except the last)."""
    from nemo_curator.backends.ray_utils import payload_nbytes

    per_block = max(1, min(max_tasks, math.ceil(len(tasks) / (2 * total_cpus))))
    per_block = max(first_batch, per_block - per_block % first_batch)
    groups: list[list[Task[Any]]] = []
    current: list[Task[Any]] = []
    current_bytes = 0
    seen: set[int] = set()
    for task in tasks:
        if id(task) in seen:
            # The same object twice (`[EmptyTask()] * 8`): pickling a list keeps it one object,
            # which every stage would then update once per occurrence.
            task = copy.deepcopy(task)
        seen.add(id(task))
        size = payload_nbytes(task)
        too_big = current_bytes + size > max_bytes and len(current) % first_batch == 0
        if current and (len(current) >= per_block or too_big):
            groups.append(current)
            current, current_bytes = [], 0
        current.append(task)
        current_bytes += size
    if current:
        groups.append(current)
    return groups
