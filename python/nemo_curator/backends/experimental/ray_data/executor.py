"""`RayDataExecutor`: a pipeline as one streaming Ray Data dataset over blocks of encoded tasks.

One row is one task (`_core`'s task codec), so Ray Data counts tasks and their real bytes. The core
plans the run (`_core.plan_ray_data`: segments, pools, repartitions, initial blocks, fan-out packing);
this module turns the plan into one `map_batches` per segment and streams the final blocks, whose
merged ledgers (`observe.py`) prove every input task was output, filtered or failed. Runs of one
process see each other's reservations (`_core.Claims`); a run that makes no progress while no waiting
stage has room warns, then fails after `stall_timeout_s` (`_core.StallClock`).
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
import ray.data  # here, not on the first run: ~0.6 s, and this module is only loaded by those who use it
from loguru import logger
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from nemo_curator import _core
from nemo_curator.backends import checkpoint
from nemo_curator.backends.base import (
    BaseExecutor,
    prepare_initial_tasks,
    resolve_batch_size,
    validate_stages,
)
from nemo_curator.backends.config import per_stage
from nemo_curator.backends.experimental.ray_data.adapter import (
    REPORT_FRESH_S,
    NodeSetups,
    SegmentPlan,
    StagePlan,
    actor_class_for,
    input_store,
    task_function_for,
)
from nemo_curator.backends.experimental.ray_data.config import RayDataConfig, _parse_runtime_env
from nemo_curator.backends.experimental.ray_data.observe import LedgerView, RunningCalls
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
_CLAIMS = _core.Claims()


class RayDataExecutor(BaseExecutor):
    """Runs a pipeline as one Ray Data dataset whose rows are tasks (see the module docs).

    Config keys: the fields of `RayDataConfig`; unknown keys raise `ValueError`. A stage's
    `ray_stage_spec()` may also size its actor pool (`min_workers` / `max_workers` / `initial_workers`).

    After `execute()`: `failures` lists the batches skipped under `ignore_failures` (`FailureRecord`s);
    `last_run` is the run's `RunReport` (see `observe.py` for what the counts cover), also after a run
    that failed; `last_run_stats` has the ledger's counts per stage as dicts.
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
        limits = per_stage("call_timeout_s", s.call_timeout_s, [st.name for st in stages])
        for spec, limit in zip(specs, limits, strict=True):
            spec["timeout_s"] = limit  # not read by the core
        with RaySession(runtime_env=_parse_runtime_env(s.runtime_env)):
            started = (time.perf_counter(), time.time())  # the report's clock: from here
            token = uuid.uuid4().hex
            nodes, plan = self._admit(token, specs, [payload_nbytes(t) for t in tasks])
            try:
                stage_refs = [put_stage(stage) for stage in stages]
                # Only stages with real per-node work need the per-node registry (an actor).
                needs_node_setup = [needs_setup_on_node(stage) for stage in stages]
                setups = (
                    NodeSetups.options(  # type: ignore[attr-defined]
                        scheduling_strategy=NodeAffinitySchedulingStrategy(
                            ray.get_runtime_context().get_node_id(), soft=False
                        )
                    ).remote(stage_refs, [st.name for st in stages])
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
                    _CLAIMS.remove(token)
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
                room = _CLAIMS.free([(n.node_id, n.cpus, n.gpus, n.total_cpus, n.total_gpus) for n in nodes])
                free = [
                    ClusterNode(n.node_id, n.is_head, c, g, n.total_cpus, n.total_gpus)
                    for n, (c, g) in zip(nodes, room, strict=True)
                ]
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
                    _CLAIMS.add(token, {n.node_id: c for n, c in zip(nodes, plan["claims"], strict=True)})
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
                timeout_s=specs[i]["timeout_s"],
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
                input_store=store,
                # On several nodes the initial lists stay for the run: a lost node's blocks are made
                # again from them (see `InputStore`).
                release_inputs=len({n.node_id for n in nodes}) <= 1,
                max_retries=s.max_retries,
                chunk_bytes=max(1, s.output_block_bytes // 2),
                pack=segment["pack"],
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
        running = RunningCalls(store, run_id, REPORT_FRESH_S)
        return self._stream(ds, [st.name for st in stages], plan, len(tasks), started, running)

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
        if any(stage.timeout_s is not None for stage in plan.stages):
            retries = -1  # a timeout ends the worker: the call's attempts are counted by the adapter
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
        if not any(segment["actor"] for segment in plan["segments"]):
            # Ray Data's per-operator reservation gives each operator a share of the CPUs and lets a task
            # operator go past it only once its first outputs are sized: a one-segment run of CPU-bound
            # calls used one of two CPUs until its first block came back (62% of the cores busy, 89%
            # without it). Runs of tasks alone need no share kept for an actor pool; the cluster-wide
            # limits still bound them. (With actor pools it stays on: pools then came up short.)
            ctx.op_resource_reservation_enabled = False
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
        running: RunningCalls,
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
            status_interval_s=s.status_interval_s,
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
            stall = _Bundles(
                ds, watch, self.ignore_head_node, s.stall_timeout_s, lambda: running.describe(names)
            )
            for bundle in stall:
                if bundle is None:  # nothing new: keep the display going
                    if pending and time.perf_counter() - last_fetch >= _FETCH_INTERVAL_S:
                        self._take(pending, view, results, failures)
                        pending = []
                        last_fetch = time.perf_counter()
                    monitor.on_round(view, time.perf_counter() - start, running)
                    continue
                pending.extend(zip((e.ref for e in bundle.blocks), bundle.slices, strict=True))
                now = time.perf_counter()
                if len(pending) >= _FETCH_BLOCKS or now - last_fetch >= _FETCH_INTERVAL_S:
                    self._take(pending, view, results, failures)
                    pending = []
                    last_fetch = now
                    monitor.on_round(view, time.perf_counter() - start, running)
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


class _Bundles:
    """The dataset's result bundles, read by a thread so the driver can notice a run that stopped.

    Yields each bundle as it arrives and `None` every `_FETCH_INTERVAL_S` without one. When Ray Data's
    operators make no progress while no segment still waiting has room for a worker, it warns, then
    fails the run after `stall_timeout_s` (`_core.StallClock`).
    """

    def __init__(
        self,
        ds: ray.data.Dataset,
        segments: list[tuple[str, list[str], float, float]],
        ignore_head_node: bool,
        stall_timeout_s: float,
        running: Any = lambda: "",
    ) -> None:
        self._running = running  # "; oldest running: ..." for the messages
        self._segments = segments  # each segment's UDF name, stages and request per worker
        self._ignore_head_node = ignore_head_node
        self._timeout = stall_timeout_s
        self._queue: queue.Queue[Any] = queue.Queue()
        self._executor: Any = None
        # Ray Data's actor pools' handles, noted as the run goes: after an error Ray Data drops them
        # and lets reference counting end the actors (10-30 s holding their CPUs); this kills them.
        self._actors: dict[Any, None] = {}
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

    def _progress(self) -> list[int]:
        """A fingerprint of what the operators did so far (inputs, outputs, tasks, completion)."""
        try:
            ops = list(self._executor._topology or {})
            for pool in (getattr(op, "_actor_pool", None) for op in ops):
                if pool is not None:
                    self._actors.update(
                        dict.fromkeys([*pool._running_actors, *pool._pending_actors.values()])
                    )
            counts = (
                "num_inputs_received",
                "num_task_outputs_generated",
                "num_tasks_finished",
                "num_outputs_taken",
            )
            return [int(getattr(op.metrics, c)) for op in ops for c in counts] + [
                op.has_completed() for op in ops
            ]
        except Exception:  # pragma: no cover - Ray internals changed (or no executor)
            return []

    def _starved(self) -> str | None:
        """Why the waiting segments cannot run (None: one of them has room for a worker)."""
        try:
            open_ops = [op.name for op in list(self._executor._topology or {}) if not op.has_completed()]
            waiting = [seg for seg in self._segments if any(seg[0] in name for name in open_ops)]
        except Exception:
            waiting = self._segments
        nodes = cluster_nodes(ignore_head_node=self._ignore_head_node, settle_s=0.0)
        if not waiting or not _core.starved(
            [(c, g) for *_, c, g in waiting], [(n.cpus, n.gpus) for n in nodes]
        ):
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
        clock = _core.StallClock(self._timeout, time.monotonic())
        try:
            while True:
                try:
                    kind, item = self._queue.get(timeout=_FETCH_INTERVAL_S)
                except queue.Empty:
                    now = time.monotonic()
                    verdict = clock.quiet(self._progress(), now)
                    why = self._starved() if verdict != "wait" else None
                    if verdict != "wait" and why is None:
                        clock.busy(now)  # busy, not starved
                    elif verdict == "fail":
                        raise RuntimeError(
                            f"RayDataExecutor made no progress for {clock.idle(now):.0f}s: {why}"
                            f"{self._running()}. Free resources or raise 'stall_timeout_s' to wait longer."
                        ) from None
                    elif verdict == "warn":
                        logger.warning(
                            f"RayDataExecutor: no progress for {clock.idle(now):.0f}s: {why}{self._running()}"
                        )
                    yield None
                    continue
                if kind == "end":
                    self._actors.clear()
                    return
                if kind == "error":
                    raise item
                clock.progress(self._progress(), time.monotonic())
                yield item
        finally:
            if self._executor is not None and self._thread.is_alive():
                # Stop Ray Data's execution (its actors and pending tasks) before leaving.
                self._executor.shutdown(force=True)
                self._thread.join(timeout=10.0)
            # A run that failed or was interrupted: its actors go now, not when Ray collects them.
            for handle in self._actors:
                try:
                    ray.kill(handle, no_restart=True)
                except Exception as exc:  # an actor already gone
                    logger.debug(f"kill of a stage actor failed: {exc}")


def _apply_controls(
    args: dict[str, Any], controls: StageControls, executor_env: dict[str, Any], actor: bool
) -> None:
    """A one-stage segment's `map_batches` arguments with the stage's own worker controls."""
    args.update(controls.ray_remote_args)  # managed keys were rejected when the stage was planned
    if controls.runtime_env:
        args["runtime_env"] = controls.worker_env(executor_env)
    if controls.max_calls_per_worker and not actor:
        args["max_calls"] = controls.max_calls_per_worker
