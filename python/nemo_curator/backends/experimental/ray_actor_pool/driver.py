"""The driver loop: turns the Rust scheduler's commands into Ray calls and Ray's answers into events.

No decision is made here. Per round: feed the clock, execute the commands the core returns, then one
`ray.wait` over the bounded set of things in flight (calls, starting actors, teardowns), and feed back
everything that finished, in batched calls to the core.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import ray
from loguru import logger
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from nemo_curator import _core
from nemo_curator.backends import checkpoint
from nemo_curator.backends.config import per_stage
from nemo_curator.backends.experimental.ray_actor_pool.config import ActorPoolConfig, StageOptions
from nemo_curator.backends.experimental.ray_actor_pool.recovery import (
    LostError,
    Origin,
    Producer,
    Remaker,
    alive_nodes,
    lost_refs,
    named_lost,
)
from nemo_curator.backends.experimental.ray_actor_pool.worker import (
    INLINE,
    SetupFailedError,
    is_stateless,
    loads,
    process_as_task,
    worker_class_for,
)
from nemo_curator.backends.failures import FailureRecord, StageFailedError
from nemo_curator.backends.ray_utils import ClusterNode, payload_nbytes, put_stage, run_setup_on_node
from nemo_curator.backends.ray_utils.nodes import needs_setup_on_node
from nemo_curator.backends.stage_controls import ACTOR_POOL_MANAGED_ARGS, StageControls, stage_controls
from nemo_curator.observability import RunMonitor, RunReport
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.tasks import Task

# Results fetched per `ray.get` at the end of the run (bounded driver memory per round trip).
_FETCH_CHUNK = 1024
# A queue bound no run reaches.
_UNBOUNDED = 1 << 62


@dataclass
class _Actor:
    actor_id: int
    stage: int
    node: ClusterNode
    #: None for a stage run as Ray tasks (`stateless_as_tasks`): a slot holder with no process of its own.
    handle: Any
    ready: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    #: Completion refs of its calls in flight, oldest first.
    calls: list[Any] = field(default_factory=list)


@dataclass
class _Call:
    actor_id: int
    gen: Any
    batch_ids: list[int]
    #: The core's ids of its input tasks, in order.
    tasks: list[int]
    #: When it started running: at submit when its slot had nothing else in flight, else when the
    #: call before it on the slot finished.
    started: float | None = None
    #: The attempt of each batch, as the core submitted it (results carry it back: a late result of an
    #: attempt the core gave up is ignored there).
    attempts: dict[int, int] = field(default_factory=dict)
    #: Per batch, its input payloads with the origin of each stored one (to make its outputs again).
    inputs: dict[int, list[tuple[Any, Origin | None]]] = field(default_factory=dict)
    #: Index of the stage it runs (-1: not known).
    stage: int = -1


class ActorPoolDriver:
    """One run of a pipeline on stage actor pools, driven by `nemo_curator._core.Scheduler`."""

    def __init__(
        self,
        stages: list[ProcessingStage[Any, Any]],
        batch_sizes: list[int],
        nodes: list[ClusterNode],
        config: ActorPoolConfig,
        monitor: RunMonitor | None = None,
        *,
        stage_options: list[StageOptions] | None = None,
        controls: list[StageControls] | None = None,
        stage_by_stage: bool = False,
        growth_interval_s: float = 0.0,
    ) -> None:
        self.stages = stages
        self.nodes = nodes
        self.config = config
        self.monitor = monitor
        self._stage_refs = [put_stage(s) for s in stages]
        self._options = stage_options or [StageOptions() for _ in stages]
        self._controls = controls or [
            stage_controls(s, executor="RayActorPoolExecutor", managed=ACTOR_POOL_MANAGED_ARGS)
            for s in stages
        ]
        #: Each stage's worker runtime_env: the executor's, with the stage's own merged over it.
        self._stage_envs = [c.worker_env(config.runtime_env) for c in self._controls]
        pools = [
            _pool_bounds(s, o, c, config)
            for s, o, c in zip(stages, self._options, self._controls, strict=True)
        ]
        self._timeouts = per_stage("call_timeout_s", config.call_timeout_s, [s.name for s in stages])
        #: Batches whose call ran past its timeout (their failures say so).
        self._timed_out: set[int] = set()
        # A stage that runs only after the one before it has finished must not be held back by a
        # bounded queue: nothing would drain it.
        unbounded = stage_by_stage
        # Stateless stages run their calls as Ray tasks on pooled worker processes: no actor start-up.
        # A stage whose workers are recycled or take Ray options of their own gets actors: the core
        # counts each actor's batches, and Ray's pooled task workers are shared by every stage.
        self._as_tasks = [
            config.stateless_as_tasks
            and is_stateless(s)
            and not (c.max_calls_per_worker or c.ray_remote_args)
            for s, c in zip(stages, self._controls, strict=True)
        ]
        #: Per stage: the stages fused after it (see `_fused_chains`), run in the same call.
        self._chain = _fused_chains(
            stages,
            batch_sizes,
            self._as_tasks,
            [(p, o, e) for p, o, e in zip(pools, self._options, self._stage_envs, strict=True)],
            self._timeouts,
            enabled=config.fuse_stateless_stages and not stage_by_stage,
        )
        # A fused stage's batches run inside the calls of the stage before it: its slots hold nothing.
        inner = [i > 0 and bool(self._chain[i - 1]) for i in range(len(stages))]
        #: Per core task id: the result the stage it waits for already computed on it in a fused call
        #: (stage index, result node as `worker.run_chain` returns it, where the call came from).
        self._pre: dict[int, tuple[int, tuple[Any, ...], _Fused]] = {}
        #: Batches of fused stages whose results are known, answered without a call: (batch, task, attempt).
        self._instant: list[tuple[int, int, int]] = []
        specs = [
            _core.StageSpec(
                name=s.name,
                batch_size=batch_sizes[i],
                cpus=0.0 if inner[i] else float(s.resources.cpus),
                gpus=0.0 if inner[i] else float(s.resources.gpus),
                pool_size=pools[i][0],
                max_pool_size=pools[i][1],
                min_pool_size=pools[i][2],
                initial_pool_size=pools[i][3],
                max_batches_per_actor=self._controls[i].max_calls_per_worker,
                slots_per_actor=o.slots_per_actor or config.slots_per_actor,
                max_batches_per_call=config.max_batches_per_call,
                max_retries=config.max_retries,
                queue_max_tasks=_UNBOUNDED if unbounded else config.queue_max_tasks,
                queue_max_bytes=_UNBOUNDED if unbounded else config.queue_max_bytes,
                max_user_retries=config.max_user_retries
                if o.max_user_retries is None
                else o.max_user_retries,
                ignore_failures=o.ignore_failures,
                max_actor_age_s=o.max_actor_age_s,
                actor_restart_interval_s=o.actor_restart_interval_s,
                replace_actor_on_failure=o.replace_actor_on_failure,
            )
            for i, (s, o) in enumerate(zip(stages, self._options, strict=True))
        ]
        #: True when the run starts no actor: nothing to hand back at the end (a finished Ray task's CPU
        #: is free at once, even while the cluster's resource view takes ~100 ms to show it).
        self.actorless = all(self._as_tasks)
        # Slots that are Ray tasks cost nothing to start: when every stage has them, pools start whole.
        start_s = 0.0 if self.actorless else config.actor_start_s
        self.scheduler = self._new_scheduler(
            specs, nodes, config, start_s, stage_by_stage=stage_by_stage, growth_interval_s=growth_interval_s
        )
        for msg in self.scheduler.take_warnings():
            # Stages waiting for a slot are expected (not worth a warning) when slots are Ray tasks.
            (logger.debug if self.actorless and "gets no actor at start" in msg else logger.warning)(msg)
        self._workers = [worker_class_for(s) for s in stages]
        self._ready_now: list[int] = []
        self._setup_refs: dict[tuple[int, str], Any] = {}
        self._actors: dict[int, _Actor] = {}
        self._starting: dict[Any, int] = {}  # ready() ref -> actor id
        self._calls: dict[Any, _Call] = {}  # generator completion ref -> call
        self._teardowns: dict[Any, _Actor] = {}
        self._payloads: dict[int, Any] = {}  # core task id -> Task or ObjectRef
        self._ref_task_ids: dict[int, str] = {}  # task_id strings of payloads held as refs or bytes
        self._results: list[Any] = []
        #: Lineage of stored outputs still in use (by core task id; by index into `_results` once
        #: emitted), so that outputs lost with a node can be made again.
        self._origins: dict[int, Origin] = {}
        self._result_origins: dict[int, Origin] = {}
        self._lost_nodes: set[str] = set()
        self._remaker = Remaker(
            self._stage_refs,
            [(float(s.resources.cpus), float(s.resources.gpus)) for s in stages],
            config.inline_bytes,
        )
        self.failures: list[FailureRecord] = []
        #: The core's roots of each failure's tasks (what a checkpoint's manifest lists as their sources).
        self._failure_roots: list[list[int]] = []
        # The user's error and input task ids per failed batch, until the core decides its fate.
        self._user_errors: dict[int, tuple[dict[str, str], list[str]]] = {}
        self.actor_events: list[dict[str, Any]] = []
        self._abort: tuple[str, FailureRecord | None] | None = None
        self._finished = False
        self._t0 = time.monotonic()

    @staticmethod
    def _new_scheduler(
        specs: list[Any],
        nodes: list[ClusterNode],
        config: ActorPoolConfig,
        actor_start_s: float,
        *,
        stage_by_stage: bool,
        growth_interval_s: float,
    ) -> Any:
        """The core, sized from the nodes' free resources; from their totals when other work holds
        so much that some stage would get no actor (its actors then wait in Ray's queue), so only a
        stage that no node could ever hold is infeasible."""

        def make(capacity: list[tuple[str, float, float]]) -> Any:
            return _core.Scheduler(
                specs,
                [_core.NodeSpec(*c) for c in capacity],
                ignore_failures=config.ignore_failures,
                batch_timeout_s=config.batch_timeout_s,
                actor_start_s=actor_start_s,
                # Slots that are all Ray tasks cost nothing to move between stages: move them at once
                # (on a cluster with fewer CPUs than stages, a wait per move adds up to seconds).
                rebalance_interval_s=0.0 if actor_start_s == 0.0 else 0.5,
                call_overhead_s=config.call_overhead_s,
                stage_by_stage=stage_by_stage,
                growth_interval_s=growth_interval_s,
            )

        try:
            return make([(n.node_id, n.cpus, n.gpus) for n in nodes])
        except _core.InfeasibleError:
            if all(n.total_cpus <= n.cpus and n.total_gpus <= n.gpus for n in nodes):
                raise
        scheduler = make([(n.node_id, max(n.cpus, n.total_cpus), max(n.gpus, n.total_gpus)) for n in nodes])
        logger.warning(
            "Other work holds most of the cluster's resources: actor pools are sized from the nodes' totals "
            "and their actors start as Ray frees resources."
        )
        return scheduler

    # ----------------------------------------------------------------------------------- run
    def run(self, initial_tasks: list[Task[Any]]) -> list[Task[Any]]:
        """Run to completion; returns the final tasks (completion order). Raises `StageFailedError`."""
        self._add_initial(initial_tasks)
        try:
            while not (self._finished or self._abort):
                self.scheduler.tick(self.now())
                for cmd in self.scheduler.poll():
                    self._execute(cmd)
                if self._checkpoint is not None:
                    self._record_completed()
                if self._ready_now:
                    # Task-mode slots are ready as soon as they exist: dispatch to them at once.
                    self.scheduler.actors_ready(self._ready_now)
                    self._ready_now = []
                    continue
                if self._instant:
                    # Batches a fused call already ran: their results go in now, their outputs on.
                    self._answer_instant()
                    continue
                if self.monitor is not None:
                    self.monitor.on_round(self.scheduler, self.now(), running=self.running_oldest)
                if self._finished or self._abort:
                    break
                self._wait_and_feed()
                self._check_timeouts()
        finally:
            self._stop_all_actors()
        if self._abort:
            reason, failure = self._abort
            if failure is not None:
                reason = str(failure)
            raise StageFailedError(reason, failure)
        return self._fetch_results()

    def now(self) -> float:
        return time.monotonic() - self._t0

    def _record_completed(self) -> None:
        """Checkpointed run: the core's completed roots (sources), after the failures that ended them."""
        failures = self.failures[self._failures_recorded :]
        roots = self._failure_roots[self._failures_recorded :]
        self._failures_recorded = len(self.failures)
        self._checkpoint.roots_completed(self.scheduler.completed_roots(), failures, roots)

    def _add_initial(self, tasks: list[Task[Any]]) -> None:
        sizes = [payload_nbytes(t) for t in tasks]
        ids = self.scheduler.add_tasks(sizes, [int(t.num_items) for t in tasks])
        self._checkpoint = checkpoint.active()
        self._failures_recorded = 0
        if self._checkpoint is not None:
            self._checkpoint.bind_roots(ids, tasks)
        for tid, task, size in zip(ids, tasks, sizes, strict=True):
            if size > self.config.inline_bytes:
                self._payloads[tid] = ray.put(task)
                self._ref_task_ids[tid] = task.task_id
            else:
                self._payloads[tid] = task
        self.scheduler.close_input()

    # ------------------------------------------------------------------------------ commands
    def _execute(self, cmd: tuple[Any, ...]) -> None:
        kind = cmd[0]
        if kind == "submit":
            self._submit(cmd[1], cmd[2])
        elif kind == "emit":
            pop, forget = self._payloads.pop, self._ref_task_ids.pop
            origins = self._origins
            for t in cmd[1]:
                if origins:
                    origin = origins.pop(t, None)
                    if origin is not None:
                        self._result_origins[len(self._results)] = origin
                self._results.append(pop(t))
                forget(t, None)
        elif kind == "drop":
            for t in cmd[1]:
                self._pre.pop(t, None)
                self._payloads.pop(t, None)
                self._ref_task_ids.pop(t, None)
                self._origins.pop(t, None)
        elif kind == "create":
            self._create(cmd[1], cmd[2], cmd[3])
        elif kind == "kill":
            self._kill(cmd[1])
        elif kind == "failure":
            self._record_failure(cmd[1])
        elif kind == "finish":
            self._finished = True
        elif kind == "abort":
            failure = self._describe_failure(cmd[2]) if cmd[2] is not None else None
            self._abort = (cmd[1], failure)
        else:  # pragma: no cover - the core and this table are written together
            raise RuntimeError(f"unknown scheduler command {cmd!r}")

    def _node_setup(self, stage_idx: int, node_id: str) -> list[Any]:
        """The ref of `setup_on_node` for (stage, node), started on first use; [] when the stage keeps
        the base class's no-op (a task for it would cost a worker process)."""
        key = (stage_idx, node_id)
        if key not in self._setup_refs:
            stage = self.stages[stage_idx]
            self._setup_refs[key] = (
                [run_setup_on_node(self._stage_refs[stage_idx], stage.name, node_id)]
                if needs_setup_on_node(stage)
                else []
            )
        return self._setup_refs[key]

    def _create(self, actor_id: int, stage_idx: int, node_idx: int) -> None:
        stage = self.stages[stage_idx]
        node = self.nodes[node_idx]
        if self._as_tasks[stage_idx]:
            self._node_setup(stage_idx, node.node_id)
            self._actors[actor_id] = _Actor(actor_id, stage_idx, node, None, ready=True)
            self.actor_events.append(
                {
                    "event": "ready",
                    "actor": actor_id,
                    "stage": stage.name,
                    "t": self.now(),
                    "node_id": node.node_id,
                }
            )
            self._ready_now.append(actor_id)
            return
        node_setup = self._node_setup(stage_idx, node.node_id)
        handle = (
            self._workers[stage_idx]
            .options(
                # The stage's own Ray options first: the managed ones below are rejected there.
                **{"max_concurrency": 1, **self._controls[stage_idx].ray_remote_args},
                num_cpus=float(stage.resources.cpus),
                num_gpus=float(stage.resources.gpus),
                scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False),
                # Only what needs it: an actor with its own runtime_env cannot reuse a pooled worker.
                runtime_env=self._stage_envs[stage_idx] if self._needs_env(stage_idx) else None,
            )
            .remote(
                self._stage_refs[stage_idx],
                node_setup,
                self.config.inline_bytes,
                self._options[stage_idx].setup_attempts,
            )
        )
        self._actors[actor_id] = _Actor(actor_id, stage_idx, node, handle)
        self._starting[handle.ready.remote()] = actor_id

    def _needs_env(self, stage_idx: int) -> bool:
        # The CUDA_VISIBLE_DEVICES switch matters to GPU actors only; user env vars to every actor.
        return (
            bool(self.config.runtime_env)
            or bool(self._controls[stage_idx].runtime_env)
            or float(self.stages[stage_idx].resources.gpus) > 0
        )

    def _submit(self, actor_id: int, batches: list[tuple[int, list[int], int]]) -> None:
        actor = self._actors[actor_id]
        if self._pre:
            # A batch a fused call already ran is answered from its result, without a call.
            pre, real = self._pre, []
            for b in batches:
                known = pre.get(b[1][0]) if len(b[1]) == 1 else None
                if known is not None and known[0] == actor.stage:
                    self._instant.append((b[0], b[1][0], b[2]))
                else:
                    real.append(b)
            if not real:
                return
            batches = real
        payloads = self._payloads
        layout = [(b[0], len(b[1])) for b in batches]
        args = [payloads[t] for b in batches for t in b[1]]
        # Small tasks travel pickled together; stored ones as top-level refs (see `worker.call_inputs`).
        stored = [a for a in args if isinstance(a, ray.ObjectRef)]
        inline = [None if isinstance(a, ray.ObjectRef) else a for a in args] if stored else args
        if actor.handle is None:
            stage = self.stages[actor.stage]
            gen = process_as_task.options(
                num_cpus=float(stage.resources.cpus),
                scheduling_strategy=NodeAffinitySchedulingStrategy(actor.node.node_id, soft=False),
                name=stage.name,
                runtime_env=self._stage_envs[actor.stage]
                if self.config.runtime_env or self._controls[actor.stage].runtime_env
                else None,
            ).remote(
                self._holder(actor.stage, actor.node.node_id),
                self.config.inline_bytes,
                layout,
                inline,
                *stored,
            )
        else:
            gen = actor.handle.process.remote(layout, inline, *stored)
        ref = gen.completed()
        # A Ray task runs at once; an actor runs its calls one after another.
        # A slot's second call waits for the first (on an actor; a Ray task waits for a free CPU, which
        # the slot's first call holds): its clock starts when the call before it ends, never too early.
        started = self.now() if not actor.calls else None
        self._calls[ref] = _Call(
            actor_id,
            gen,
            [b[0] for b in batches],
            [t for b in batches for t in b[1]],
            started,
            {b[0]: b[2] for b in batches},
            {b[0]: [(payloads[t], self._origins.get(t)) for t in b[1]] for b in batches},
            actor.stage,
        )
        actor.calls.append(ref)

    def _holder(self, stage_idx: int, node_id: str, fused: bool = True) -> list[Any]:
        """`process_as_task`'s stage holder: the stage's, then (`fused`) one per stage fused after it."""
        holder = [
            self._stage_refs[stage_idx],
            self._node_setup(stage_idx, node_id),
            self._options[stage_idx].setup_attempts,
        ]
        if fused and self._chain[stage_idx]:
            holder.append([self._holder(j, node_id, fused=False) for j in self._chain[stage_idx]])
        return holder

    def _answer_instant(self) -> None:
        """Feed the core the results of fused stages' batches (see `_submit`), as if their calls ended."""
        instant, self._instant = self._instant, []
        done: list[tuple[int, int, tuple[Any, ...], _Fused, int]] = []
        for batch_id, tid, attempt in instant:
            stage, node, fused = self._pre.pop(tid)
            if node[0]:
                done.append((batch_id, attempt, node, fused, stage))
                continue
            # (False, busy_s, error, input bytes, input task ids): the stage raised on this task.
            _, _, err, blob, task_ids = node
            if blob is not None:
                self._payloads[tid] = blob  # a retry runs this batch alone, from its own input
            stale = self.scheduler.stale_results
            self.scheduler.batch_failed(batch_id, True, f"{err['error_type']}: {err['message']}", attempt)
            if self.scheduler.stale_results == stale:
                self._user_errors[batch_id] = (err, task_ids)
        if not done:
            return
        firsts = self.scheduler.batch_results(
            [d[0] for d in done],
            [d[1] for d in done],
            [len(d[2][2]) for d in done],
            [sum(d[2][3]) for d in done],
            [sum(d[2][4]) for d in done],
            [d[2][1] for d in done],
        )
        for first, (_, _, node, fused, stage) in zip(firsts, done, strict=True):
            if first is not None:
                self._place_outputs(first, stage, node[2], node[5], fused)

    def _place_outputs(
        self, first: int, stage: int, placed: list[Any], task_ids: list[str], fused: _Fused | None
    ) -> None:
        """Record the outputs of one batch of `stage` under their core ids `first`, `first + 1`, ...:
        a payload each, or, when fused stages follow, the next stage's result on it."""
        payloads = self._payloads
        nxt = stage + 1 if self._chain[stage] else None
        for tid, what, task_id in zip(range(first, first + len(placed)), placed, task_ids, strict=True):
            self._ref_task_ids[tid] = task_id
            if nxt is not None:
                assert fused is not None
                self._pre[tid] = (nxt, what, fused)
                payloads[tid] = _FUSED
            elif what[0] == INLINE:
                payloads[tid] = what[1]
            else:
                assert fused is not None
                payloads[tid] = fused.yielded[what[1]]
                self._origins[tid] = Origin(fused.producer, what[2] if len(what) > 2 else what[1])

    def _kill(self, actor_id: int) -> None:
        actor = self._actors.pop(actor_id, None)
        if actor is None:
            return
        self.actor_events.append(
            {"event": "stopped", "actor": actor_id, "stage": self.stages[actor.stage].name, "t": self.now()}
        )
        if actor.handle is None:
            return  # a task-mode slot: nothing runs between calls
        if actor.ready:
            self._teardowns[actor.handle.teardown.remote()] = actor
        else:
            # Never became ready (still starting, or its setup failed): nothing to tear down.
            for ref, aid in list(self._starting.items()):
                if aid == actor_id:
                    del self._starting[ref]
            ray.kill(actor.handle, no_restart=True)

    # -------------------------------------------------------------------------------- events
    def _wait_and_feed(self) -> None:
        waitables = [*self._calls, *self._starting, *self._teardowns]
        if not waitables:
            # Nothing in flight: only the clock can unblock the core (a batch timeout).
            time.sleep(self.config.poll_interval_s)
            return
        ready, _ = ray.wait(waitables, num_returns=len(waitables), timeout=0, fetch_local=False)
        if not ready:
            ready, _ = ray.wait(
                waitables, num_returns=1, timeout=self.config.poll_interval_s, fetch_local=False
            )
        done_calls: list[_Call] = []
        for ref in ready:
            if ref in self._starting:
                self._on_actor_started(ref, self._starting.pop(ref))
            elif ref in self._teardowns:
                self._on_teardown(ref, self._teardowns.pop(ref))
            elif ref in self._calls:
                call = self._calls.pop(ref)
                self._call_ended(call, ref)
                done_calls.append(call)
        if done_calls:
            self._on_calls_done(done_calls)

    def _call_ended(self, call: _Call, ref: Any) -> None:
        actor = self._actors.get(call.actor_id)
        if actor is None:
            return
        actor.calls.remove(ref)
        if actor.calls:
            nxt = self._calls.get(actor.calls[0])
            if nxt is not None and nxt.started is None:
                nxt.started = self.now()

    def _check_timeouts(self) -> None:
        """Cancel calls that ran past their stage's timeout: the worker is killed and the core retries
        their batches as after a worker death (alone first, then counted)."""
        now = self.now()
        late: dict[int, float] = {}
        for call in self._calls.values():
            actor = self._actors.get(call.actor_id)
            if actor is None or call.started is None:
                continue
            limit = self._timeouts[actor.stage]
            if limit is not None and now - call.started > limit:
                late[call.actor_id] = limit
        for actor_id, limit in late.items():
            actor = self._actors[actor_id]
            stage = self.stages[actor.stage].name
            running = [c for c in self._calls.values() if c.actor_id == actor_id]
            oldest = min(running, key=lambda c: c.started if c.started is not None else now)
            self._timed_out.update(oldest.batch_ids)
            task_ids = [self._task_id_of(t) for t in oldest.tasks]
            message = f"call timed out after {limit:g} s (call_timeout_s) on task(s) {task_ids}"
            logger.warning(f"Stage '{stage}': {message}; cancelling it")
            if actor.handle is None:
                for call in running:
                    ray.cancel(call.gen, force=True)
            else:
                ray.kill(actor.handle, no_restart=True)
            self._actor_failed(actor, False, message)

    def running_oldest(self) -> dict[int, tuple[str, float]]:
        """Per stage index: the first task of its longest-running call and how long it has run (s)."""
        now = self.now()
        best: dict[int, tuple[float, _Call]] = {}
        for call in self._calls.values():
            actor = self._actors.get(call.actor_id)
            if actor is None or call.started is None:
                continue
            if actor.stage not in best or call.started < best[actor.stage][0]:
                best[actor.stage] = (call.started, call)
        out = {}
        for stage, (started, call) in best.items():
            out[stage] = (self._task_id_of(call.tasks[0]), now - started)
        return out

    def _on_actor_started(self, ref: Any, actor_id: int) -> None:
        actor = self._actors.get(actor_id)
        if actor is None:
            return
        try:
            actor.info = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            user = isinstance(cause, SetupFailedError) if hasattr(exc, "cause") else True
            # The user's own error first (Ray's wrapper starts with its call site).
            self._actor_failed(actor, user, str(cause) if isinstance(cause, SetupFailedError) else str(exc))
            return
        except ray.exceptions.RayError as exc:
            self._check_nodes()
            if actor_id not in self._actors:
                return  # it was on a node that left
            # A constructor that raised (e.g. the stage cannot be unpickled on the worker) fails the same
            # way on every retry: it is the user's error, not the cluster's.
            self._actor_failed(actor, bool(getattr(exc, "actor_init_failed", False)), str(exc))
            return
        actor.ready = True
        self.actor_events.append(
            {
                "event": "ready",
                "actor": actor_id,
                "stage": self.stages[actor.stage].name,
                "t": self.now(),
                **actor.info,
            }
        )
        self.scheduler.actors_ready([actor_id])

    def _actor_failed(self, actor: _Actor, user_error: bool, message: str) -> None:
        stage = self.stages[actor.stage].name
        lines = [line for line in message.splitlines() if line.strip()]
        first_line = lines[0] if lines else ""
        if user_error:
            # The exception's own line (Ray's wrapper puts its call site first).
            logger.warning(
                f"Setup of stage '{stage}' failed on actor {actor.actor_id}: {lines[-1] if lines else ''}"
            )
        else:
            logger.warning(f"Actor {actor.actor_id} of stage '{stage}' died: {first_line}")
        self.actor_events.append(
            {
                "event": "died",
                "actor": actor.actor_id,
                "stage": stage,
                "t": self.now(),
                "user_error": user_error,
                "message": message,
            }
        )
        # Calls still in flight on a dead actor are abandoned: the core retries their batches.
        for ref, call in list(self._calls.items()):
            if call.actor_id == actor.actor_id:
                del self._calls[ref]
        self._actors.pop(actor.actor_id, None)
        if user_error and lines:
            message = f"{lines[-1]}\n{message}"  # the error first, then where it came from
        self.scheduler.actor_failed(actor.actor_id, user_error, message)

    def _on_teardown(self, ref: Any, actor: _Actor) -> None:
        try:
            ray.get(ref)
        except ray.exceptions.RayError as exc:
            logger.warning(f"teardown of stage '{self.stages[actor.stage].name}' failed: {exc}")
        ray.kill(actor.handle, no_restart=True)

    def _on_calls_done(self, calls: list[_Call]) -> None:
        metas: list[tuple[_Call, list[Any], Any]] = []
        dead: list[tuple[_Call, BaseException]] = []
        for call in calls:
            try:
                refs = list(call.gen)
                metas.append((call, refs[:-1], refs[-1]))
            except ray.exceptions.RayError as exc:
                dead.append((call, exc))
        values = _get_each(m[2] for m in metas)
        # Successes first: a batch that finished before its actor died must not be retried.
        done_ids: list[int] = []
        attempts: list[int] = []
        n_out: list[int] = []
        out_bytes: list[int] = []
        out_items: list[int] = []
        busy: list[float] = []
        placed_all: list[tuple[list[Any], list[Any], list[str]]] = []
        producers: list[Producer] = []
        user_failures: list[tuple[int, dict[str, Any], list[str], int]] = []
        for (call, yielded, _), value in zip(metas, values, strict=True):
            if isinstance(value, BaseException):
                dead.append((call, value))
                continue
            actor = self._actors.get(call.actor_id)
            for res in value:
                if res[1]:
                    batch_id, _, busy_s, placed, sizes, items, ids = res
                    done_ids.append(batch_id)
                    attempts.append(call.attempts[batch_id])
                    n_out.append(len(placed))
                    out_bytes.append(sum(sizes))
                    out_items.append(sum(items))
                    busy.append(busy_s)
                    placed_all.append((placed, yielded, ids))
                    producers.append(
                        Producer(call.stage, call.inputs[batch_id], chain=self._chain[call.stage])
                        if call.stage >= 0 and self._chain[call.stage]
                        else Producer(actor.stage if actor else -1, call.inputs[batch_id])
                    )
                else:
                    stage_idx = actor.stage if actor else -1
                    user_failures.append((res[0], res[3], res[4], stage_idx, call.attempts[res[0]]))
        if done_ids:
            firsts = self.scheduler.batch_results(done_ids, attempts, n_out, out_bytes, out_items, busy)
            payloads = self._payloads
            for first, (placed, yielded, ids), producer in zip(firsts, placed_all, producers, strict=True):
                if first is None:
                    # Ignored by the core (a given-up attempt, or the run ended earlier in this round,
                    # e.g. a setup failed): these outputs have no ids and nothing will consume them.
                    continue
                if producer.chain:
                    # A fused call: each output's place holds the next stage's result on it.
                    _number_outputs(placed, len(producer.chain), [0])
                    self._place_outputs(first, producer.stage, placed, ids, _Fused(yielded, producer))
                    continue
                for k, (tid, ((where, what), task_id)) in enumerate(
                    enumerate(zip(placed, ids, strict=True), first)
                ):
                    # Pickled bytes or an object ref: either way the task id is kept beside it.
                    if where == INLINE:
                        payloads[tid] = what
                    else:
                        payloads[tid] = yielded[what]
                        self._origins[tid] = Origin(producer, k)
                    self._ref_task_ids[tid] = task_id
        for batch_id, err, task_ids, _stage_idx, attempt in user_failures:
            stale = self.scheduler.stale_results
            self.scheduler.batch_failed(batch_id, True, f"{err['error_type']}: {err['message']}", attempt)
            if self.scheduler.stale_results == stale:
                self._user_errors[batch_id] = (err, task_ids)
        if dead:
            self._check_nodes(" ".join(str(exc) for _, exc in dead))
        for call, exc in dead:
            actor = self._actors.get(call.actor_id)
            refs = [p for b in call.inputs.values() for p, _ in b if isinstance(p, ray.ObjectRef)]
            if actor is not None and named_lost(refs, str(exc)):
                # An input was lost with a node (now made again): the actor is fine, the batches retry.
                for batch_id in call.batch_ids:
                    self.scheduler.batch_failed(
                        batch_id, False, f"an input was lost with its node: {exc}", call.attempts[batch_id]
                    )
                continue
            if actor is not None:
                # A stage (or task type) its workers cannot load fails the same way on every retry:
                # the user's error, handled like a failed setup.
                user = (
                    bool(getattr(exc, "actor_init_failed", False))
                    or isinstance(getattr(exc, "cause", None), SetupFailedError)
                    or _cannot_load(exc)
                )
                self._actor_failed(actor, user, str(exc))

    # ---------------------------------------------------------------------------- node loss
    def _check_nodes(self, errors: str = "") -> set[str]:
        """After a death: when a node of the run has left, tell the core (nothing is placed there
        again), fail its actors (their batches are retried elsewhere) and make again the stored outputs
        that were only there, or that `errors` (the text of failed calls) name as lost. Returns the
        live nodes."""
        alive = alive_nodes()
        gone = [
            i
            for i, n in enumerate(self.nodes)
            if n.node_id not in alive and n.node_id not in self._lost_nodes
        ]
        if not gone and not self._lost_nodes:
            return alive
        for i in gone:
            node_id = self.nodes[i].node_id
            self._lost_nodes.add(node_id)
            logger.warning(f"node {node_id} left the cluster: its work runs again on the nodes left")
            self.scheduler.node_lost(i)
            for actor in [a for a in self._actors.values() if a.node.node_id == node_id]:
                self._actor_failed(actor, False, f"node {node_id} left the cluster")
        stored = {t: p for t, p in self._payloads.items() if isinstance(p, ray.ObjectRef)}
        # Copies left on live nodes may be partial: Ray's own word that it could not get one wins.
        lost = lost_refs(list(stored.values()), alive) | named_lost(stored.values(), errors)
        for tid, ref in stored.items():
            if ref in lost:
                new = self._remade(self._origins.get(tid), alive, self._task_id_of(tid))
                if new is not None:
                    self._payloads[tid] = new
        return alive

    def _remade(self, origin: Origin | None, alive: set[str], task_id: str) -> Any:
        """A new payload for a lost output; None when it cannot be made (the batches that need it
        then fail as their retries run out, naming the task)."""
        if origin is None:
            logger.error(f"task {task_id} was held only in the store of a node that left: it is lost")
            return None
        try:
            payload = self._remaker.remake(origin, alive)
        except (LostError, ray.exceptions.RayError) as exc:
            logger.error(f"task {task_id} was lost with its node and could not be made again: {exc}")
            return None
        stage = self.stages[origin.producer.stage].name
        logger.warning(f"task {task_id} was lost with its node; made again by stage '{stage}'")
        return payload

    # ------------------------------------------------------------------------------ failures
    def _describe_failure(self, failure: dict[str, Any]) -> FailureRecord:
        err, task_ids = self._user_errors.pop(failure["batch"], (None, None))
        if task_ids is None:
            task_ids = [self._task_id_of(t) for t in failure["tasks"]]
        timed_out = failure["kind"] == "infra" and failure["batch"] in self._timed_out
        return FailureRecord(
            stage=failure["stage_name"],
            task_ids=task_ids,
            error_type=err["error_type"]
            if err
            else ("CallTimeout" if timed_out else "ActorDied" if failure["kind"] == "infra" else "Error"),
            message=err["message"] if err else failure["message"],
            traceback=err["traceback"] if err else "",
            attempts=failure["attempts"],
            kind=failure["kind"],
        )

    def _record_failure(self, failure: dict[str, Any]) -> None:
        record = self._describe_failure(failure)
        logger.warning(f"{record.describe()} (skipped: ignore_failures=True)")
        self.failures.append(record)
        self._failure_roots.append(failure["roots"])

    def _task_id_of(self, tid: int) -> str:
        if tid in self._ref_task_ids:
            return self._ref_task_ids[tid]
        payload = self._payloads.get(tid)
        return getattr(payload, "task_id", f"<task {tid}>")

    # ------------------------------------------------------------------------------ shutdown
    def _stop_all_actors(self) -> None:
        """Tear down whatever is still alive (normally nothing: the core kills every actor it made)."""
        for actor_id in list(self._actors):
            self._kill(actor_id)
        deadline = time.monotonic() + 60.0
        while self._teardowns and time.monotonic() < deadline:
            ready, _ = ray.wait(list(self._teardowns), num_returns=len(self._teardowns), timeout=1.0)
            for ref in ready:
                self._on_teardown(ref, self._teardowns.pop(ref))
        for actor in self._teardowns.values():
            logger.warning(f"teardown of stage '{self.stages[actor.stage].name}' timed out; killing it")
            ray.kill(actor.handle, no_restart=True)
        self._teardowns.clear()

    def report(self) -> RunReport | None:
        """The run report (after `run()`), when a monitor was attached."""
        if self.monitor is None:
            return None
        return self.monitor.finish(
            self.scheduler, self.now(), failures=self.failures, actor_events=self.actor_events
        )

    def _fetch_results(self) -> list[Task[Any]]:
        out: list[Task[Any]] = []
        results = self._results
        if self._result_origins and any(n.node_id not in alive_nodes() for n in self.nodes):
            self._remake_results()
        for start in range(0, len(results), _FETCH_CHUNK):
            chunk = results[start : start + _FETCH_CHUNK]
            idx = [i for i, r in enumerate(chunk) if isinstance(r, ray.ObjectRef)]
            if idx:
                fetched = self._get_results(chunk, idx, start)
                for i, value in zip(idx, fetched, strict=True):
                    chunk[i] = value
            out.extend(loads(r) if isinstance(r, bytes) else r for r in chunk)
        self._results = []
        self._result_origins.clear()
        return out

    def _get_results(self, chunk: list[Any], idx: list[int], start: int) -> list[Any]:
        """`ray.get` of the stored results in `chunk`; ones Ray says it lost are made again first."""
        for _ in range(3):
            try:
                return ray.get([chunk[i] for i in idx])
            except ray.exceptions.ObjectLostError as exc:
                named = named_lost([chunk[i] for i in idx], str(exc))
                if not named or not self._result_origins:
                    raise
                alive = alive_nodes()
                for i in idx:
                    if chunk[i] in named:
                        new = self._remade(
                            self._result_origins.get(start + i), alive, f"<output {start + i}>"
                        )
                        if new is None:
                            raise
                        chunk[i] = self._results[start + i] = new
        return ray.get([chunk[i] for i in idx])

    def _remake_results(self) -> None:
        """Final outputs lost with a node after their stage finished are made again before the fetch."""
        alive = alive_nodes()
        held = {i: r for i, r in enumerate(self._results) if isinstance(r, ray.ObjectRef)}
        lost = lost_refs(list(held.values()), alive)
        for i, ref in held.items():
            if ref in lost:
                new = self._remade(self._result_origins.get(i), alive, f"<output {i}>")
                if new is None:
                    raise StageFailedError(
                        f"final output {i} was lost with its node and could not be made again"
                    )
                self._results[i] = new


class _FusedPayload:
    """Stands for a task that lives only inside a fused call: the stage it goes to already ran on it."""

    def __repr__(self) -> str:
        return "<task of a fused call>"


_FUSED = _FusedPayload()


@dataclass
class _Fused:
    """What the results of one fused batch share: its call's yielded objects and its lineage."""

    yielded: list[Any]
    producer: Producer


def _number_outputs(nodes: list[Any], levels: int, counter: list[int]) -> None:
    """Tag each last-stage output of a fused batch's results (`nodes`: one result per output of the
    stage before, `levels` stages deep) with its position among them in depth-first order, which a
    re-run of the batch reproduces (how `Remaker` finds an output lost with its node)."""
    for node in nodes:
        if not node[0]:
            continue
        if levels == 1:
            placed = node[2]
            for i, (where, what) in enumerate(placed):
                placed[i] = (where, what, counter[0])
                counter[0] += 1
        else:
            _number_outputs(node[2], levels - 1, counter)


_LOAD_ERRORS = ("ModuleNotFoundError", "No module named", "ImportError", "Can't get attribute")


def _cannot_load(exc: BaseException) -> bool:
    """Ray could not unpickle a call's stage or input tasks on the worker (their module is missing there)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, ImportError):
        return True
    return isinstance(exc, ray.exceptions.RaySystemError) and any(e in str(exc) for e in _LOAD_ERRORS)


def _get_each(refs: Any) -> list[Any]:
    """`ray.get` many small refs in one round trip; per-ref errors are returned, not raised."""
    refs = list(refs)
    if not refs:
        return []
    try:
        return list(ray.get(refs))
    except ray.exceptions.RayError:
        out: list[Any] = []
        for ref in refs:
            try:
                out.append(ray.get(ref))
            except ray.exceptions.RayError as exc:
                out.append(exc)
        return out


def _fused_chains(
    stages: list[ProcessingStage[Any, Any]],
    batch_sizes: list[int],
    as_tasks: list[bool],
    settings: list[Any],
    timeouts: list[float | None],
    *,
    enabled: bool,
) -> list[list[int]]:
    """Per stage, the stages after it that its calls also run (`fuse_stateless_stages`): a stage joins
    the one before it when both run as Ray tasks with the same resources, pool bounds, options and
    worker environment (`settings`), neither has a call timeout, the earlier one does not fan out (its
    outputs should spread over the workers) and the later one takes batches of one task (so that its
    batches are exactly what it would get on its own: one output of the stage before)."""
    n = len(stages)
    joins = [False] * n
    for j in range(1, n if enabled else 1):
        prev, cur = stages[j - 1], stages[j]
        joins[j] = (
            as_tasks[j - 1]
            and as_tasks[j]
            and batch_sizes[j] == 1
            and not (prev.ray_stage_spec() or {}).get("is_fanout_stage", False)
            and float(prev.resources.cpus) == float(cur.resources.cpus)
            and float(prev.resources.gpus) == float(cur.resources.gpus)
            and settings[j] == settings[j - 1]
            and timeouts[j] is None
            and timeouts[j - 1] is None
        )
    chains: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        j = i + 1
        while j < n and joins[j]:
            chains[i].append(j)
            j += 1
    fused = [i for i in range(n) if chains[i] and not (i > 0 and joins[i])]
    for i in fused:
        names = [stages[k].name for k in (i, *chains[i])]
        logger.debug(f"stages {names} run fused: one call per batch of '{stages[i].name}'")
    return chains


def _pool_size(stage: ProcessingStage[Any, Any], config: ActorPoolConfig) -> int | None:
    n = stage.num_workers()
    if n is not None and n > 0:
        return int(n)
    return config.pool_size


def _pool_bounds(
    stage: ProcessingStage[Any, Any], options: StageOptions, controls: StageControls, config: ActorPoolConfig
) -> tuple[int | None, int | None, int, int | None]:
    """`(pool_size, max_pool_size, min_pool_size, initial_pool_size)` for the core: an exact size
    (`xenna_stage_spec`, `num_workers()`, `pool_size`) wins over the `min/max/initial_workers` bounds
    of an automatic pool, with a warning when both are given (as on Ray Data)."""
    fixed = options.pool_size if options.pool_size is not None else _pool_size(stage, config)
    sizing = controls.sizing
    if fixed is not None:
        if sizing:
            logger.warning(
                f"Stage '{stage.name}' has an exact pool size ({fixed}); ignoring its ray_stage_spec "
                f"worker sizing keys {sorted(sizing)}"
            )
        return fixed, options.max_pool_size, 0, None
    caps = [c for c in (options.max_pool_size, controls.max_workers) if c]
    return fixed, min(caps) if caps else None, controls.min_workers or 0, controls.initial_workers
