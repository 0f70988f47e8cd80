"""`RayDataExecutor`: a pipeline as one streaming Ray Data dataset over blocks of encoded tasks.

One row is one task (the task codec of `nemo_curator._core`), so Ray Data's row counts are task
counts and its byte counts are the payloads' real sizes. The plan comes from the core
(`_core.plan_ray_data`, `rust/curator-core/src/planning.rs`: segments, pool sizes with the actor
pool's feasibility rules, repartitions, initial blocks); this module turns it into Ray Data calls,
one `map_batches` per segment (consecutive task stages with the same resources share one; a stage
with per-worker state is an actor pool of its own). Each stage calls `process_batch` on slices of
exactly `batch_size` of the tasks a call gets (`adapter.py`); `exact_batches` repartitions for full
batches everywhere but the last.

After a fan-out with few parents, a strict repartition gives each block one row, and the fan-out
packs its children into rows of growing size (`SegmentPlan.pack`): a few children still reach every
worker, a huge fan-out makes blocks of many children (at most `max_tasks_per_block` rows or
`target_block_bytes`), not one block per child.

The driver streams the final blocks, decodes them (Arrow payloads are not copied) and merges the
per-call ledgers into one `_core.Ledger` whose balance check proves that every input task was
output, filtered or reported as failed; the same `RunMonitor` as the actor pool's reads it
(`observe.py`) for progress and `executor.last_run`. Runs of one process see each other's
reservations and wait for room; a run that cannot go on (no progress while no waiting stage has room
for a worker) warns, then fails after `stall_timeout_s`. `ignore_head_node` keeps the run off the
head node with a Ray label selector and limits Ray Data's budget to the other nodes.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import ray
from loguru import logger

from nemo_curator import _core
from nemo_curator.backends import checkpoint
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
from nemo_curator.backends.ray_utils.checks import check_ray_stage
from nemo_curator.backends.ray_utils.nodes import needs_setup_on_node
from nemo_curator.backends.ray_utils.session import execute_through_client
from nemo_curator.backends.stage_controls import RAY_DATA_MANAGED_ARGS, StageControls, stage_controls
from nemo_curator.observability import RunMonitor, RunReport
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.tasks import Task

__all__ = ["RayDataConfig", "RayDataExecutor", "StageFailedError"]

_NODE_ID_LABEL = "ray.io/node-id"
_POOL_KEYS = (RayStageSpecKeys.MIN_WORKERS, RayStageSpecKeys.MAX_WORKERS, RayStageSpecKeys.INITIAL_WORKERS)
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
    @checkpoint.resumable
    def execute(
        self,
        stages: list[ProcessingStage[Any, Any]],
        initial_tasks: list[Task[Any]] | None = None,
    ) -> list[Task[Any]]:
        """Run `stages` over `initial_tasks` (default: one empty task); returns the final tasks.
        `checkpoint_path` / `retry_failed`: see `checkpoint.resumable`."""
        called = time.perf_counter()  # the report's start-up is counted from here
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
        if (ckpt := checkpoint.active()) is not None:
            ckpt.give_credit(tasks)
        specs = [self._stage_spec(stage) for stage in stages]
        s = self.settings
        with RaySession(runtime_env=_parse_runtime_env(s.runtime_env)):
            started = (time.perf_counter(), time.time())  # the report's clock: from here
            token = uuid.uuid4().hex
            nodes, plan = self._admit(token, specs, [payload_nbytes(t) for t in tasks])
            try:
                stage_refs = [put_stage(stage) for stage in stages]
                # Only stages with real per-node work need the per-node registry (an actor).
                needs_node_setup = [needs_setup_on_node(stage) for stage in stages]
                setups = (
                    NodeSetups.remote(stage_refs, [st.name for st in stages])  # type: ignore[attr-defined]
                    if any(needs_node_setup)
                    else None
                )
                try:
                    results = self._run(
                        stages,
                        specs,
                        plan,
                        stage_refs,
                        setups,
                        needs_node_setup,
                        tasks,
                        nodes,
                        (*started, started[0] - called),
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

    def _stage_spec(self, stage: ProcessingStage[Any, Any]) -> dict[str, Any]:
        """What the core plans a stage from (`_core.plan_ray_data`)."""
        spec = check_ray_stage(stage, "RayDataExecutor")
        res = stage.resources
        if res.gpus <= 0 and (getattr(res, "nvdecs", 0) > 0 or getattr(res, "nvencs", 0) > 0):
            raise ValueError(
                f"Stage '{stage.name}': Ray Data does not support nvdecs / nvencs. Please use gpus instead."
            )
        # Curator's rule: an explicit `is_actor_stage` wins; otherwise `utils.is_actor_stage`.
        explicit = spec.get(RayStageSpecKeys.IS_ACTOR_STAGE.value)
        actor = self.settings.force_actors or (
            bool(explicit) if explicit is not None else is_actor_stage(stage)
        )
        controls = stage_controls(stage, executor="RayDataExecutor", managed=RAY_DATA_MANAGED_ARGS)
        if actor and controls.max_calls_per_worker:
            # Ray Data has no call budget for actors, and an actor that exits on purpose is not restarted.
            raise ValueError(
                f"Stage '{stage.name}': ray_stage_spec 'max_calls_per_worker' works on Ray Data task stages "
                "only, and this stage runs in actors (it has setup(), a GPU, is_actor_stage or force_actors); "
                "use RayActorPoolExecutor, which replaces its actors after that many calls"
            )
        return {
            "name": stage.name,
            "batch_size": resolve_batch_size(stage),
            "cpus": float(res.cpus) if controls.ray_num_cpus is None else controls.ray_num_cpus,
            "gpus": float(res.gpus),
            "actor": actor,
            "fanout": bool(spec.get(RayStageSpecKeys.IS_FANOUT_STAGE.value, False)),
            "num_workers": stage.num_workers(),
            **{key.value: spec.get(key.value) for key in _POOL_KEYS},
            "alone": controls.own_workers,  # a segment of its own (see `_apply_controls`)
            "controls": controls,  # not read by the core
        }

    def _admit(
        self, token: str, specs: list[dict[str, Any]], task_sizes: list[int]
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
                plan = _core.plan_ray_data(
                    specs,
                    [(n.node_id, n.total_cpus, n.total_gpus, n.cpus, n.gpus) for n in free],
                    task_sizes,
                    pool_size=s.pool_size,
                    exact_batches=s.exact_batches,
                    fanout_tasks_per_block=s.fanout_tasks_per_block,
                    max_tasks_per_block=s.max_tasks_per_block,
                    target_block_bytes=s.target_block_bytes,
                )
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
        stages: list[ProcessingStage[Any, Any]],
        specs: list[dict[str, Any]],
        plan: dict[str, Any],
        stage_refs: list[Any],
        setups: Any,
        needs_node_setup: list[bool],
        tasks: list[Task[Any]],
        nodes: list[ClusterNode],
        started: tuple[float, float, float],
    ) -> list[Task[Any]]:
        s = self.settings
        run_id = uuid.uuid4().hex
        stage_plans = [
            StagePlan(
                index=i,
                num_stages=len(stages),
                name=stage.name,
                stage_ref=stage_refs[i],
                batch_size=specs[i]["batch_size"],
                ignore_failures=s.ignore_failures,
                node_setups=setups if needs_node_setup[i] else None,
            )
            for i, stage in enumerate(stages)
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
                pack=self._pack(specs, segments, k, nodes),
            )
            args = self._map_args([stages[i] for i in members], segment, segment_plan)
            if len(members) == 1:  # stages with controls of their own are segments of their own
                _apply_controls(
                    args, specs[members[0]]["controls"], self.settings.runtime_env, segment["actor"]
                )
            udf = args["fn"].__name__
            self._segment_udfs.append((udf, [stages[i].name for i in members]))
            with warnings.catch_warnings():
                # Ray 2.60 has no named parameter for max_retries / max_restarts / max_task_retries.
                warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
                ds = ds.map_batches(**args)
            logger.debug(
                f"Segment {k + 1}/{len(segments)} {segment_plan.label}: "
                f"{'actors ' + str(segment['pool']) if segment['actor'] else 'tasks'}, "
                f"batch sizes {[specs[i]['batch_size'] for i in members]}"
            )
        return self._stream(ds, [st.name for st in stages], plan, len(tasks), started)

    def _pack(
        self, specs: list[dict[str, Any]], segments: list[dict[str, Any]], k: int, nodes: list[ClusterNode]
    ) -> tuple[int, int, int, int] | None:
        """`SegmentPlan.pack` of segment `k`: when it ends with a fan-out whose children the plan
        re-blocks one row per block (few parents), pack them into rows of many children."""
        s = self.settings
        after = segments[k + 1] if k + 1 < len(segments) else None
        if after is None or after["repartition"] != 1 or s.fanout_tasks_per_block is not None:
            return None
        if not specs[segments[k]["stages"][-1]]["fanout"]:
            return None
        batch = specs[after["stages"][0]]["batch_size"]
        max_rows = max(batch, s.max_tasks_per_block // batch * batch)
        spread = max(1, int(sum(n.total_cpus for n in nodes)))
        return (spread, batch, max_rows, s.target_block_bytes)

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
        names: list[str],
        plan: dict[str, Any],
        num_initial: int,
        started: tuple[float, float, float],
    ) -> list[Task[Any]]:
        s = self.settings
        start, epoch0, offset = started
        in_actors = [False] * len(names)
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
        monitor.clock_offset_s = offset
        results: list[Task[Any]] = []
        failures: list[FailureRecord] = []
        try:
            pending: list[tuple[Any, Any]] = []
            last_fetch = time.perf_counter()
            watch = [
                (udf, names, float(seg["cpus"]) or 1.0, float(seg["gpus"]))
                for (udf, names), seg in zip(self._segment_udfs, plan["segments"], strict=True)
            ]
            for bundle in _Bundles(ds, watch, self.ignore_head_node, s.stall_timeout_s):
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
            if (ckpt := checkpoint.active()) is not None:
                block_failures = ckpt.take_block(tasks, block_failures)
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


class _Bundles:
    """The dataset's result bundles, read by a thread so the driver can notice a run that stopped.

    Yields each bundle as it arrives and `None` every `_FETCH_INTERVAL_S` without one. When Ray
    Data's operators make no progress (no inputs taken, no outputs, no task finished) while the
    cluster has no room for a worker of any segment that is still waiting, it logs a warning at a
    quarter of `stall_timeout_s` (at most a minute) and fails the run at `stall_timeout_s`.
    """

    def __init__(
        self,
        ds: ray.data.Dataset,
        segments: list[tuple[str, list[str], float, float]],
        ignore_head_node: bool,
        stall_timeout_s: float,
    ) -> None:
        self._segments = segments  # each segment's UDF name, stages and request per worker
        self._ignore_head_node = ignore_head_node
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
            return self._segments
        return [seg for seg in self._segments if any(seg[0] in name for name in open_ops)]

    def _starved(self) -> str | None:
        """Why the waiting segments cannot run (None: one of them has room for a worker)."""
        waiting = self._waiting()
        if not waiting:
            return None
        nodes = cluster_nodes(ignore_head_node=self._ignore_head_node, settle_s=0.0)
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


def _apply_controls(
    args: dict[str, Any], controls: StageControls, executor_env: dict[str, Any], actor: bool
) -> None:
    """A one-stage segment's `map_batches` arguments with the stage's own worker controls."""
    args.update(controls.ray_remote_args)  # managed keys were rejected when the stage was planned
    if controls.runtime_env:
        args["runtime_env"] = controls.worker_env(executor_env)
    if controls.max_calls_per_worker and not actor:
        args["max_calls"] = controls.max_calls_per_worker
