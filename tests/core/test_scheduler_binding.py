"""The native scheduler through its Python binding, driven by a small pure-Python mock cluster (no Ray)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_curator._core import (
    ConfigError,
    CuratorCoreError,
    InfeasibleError,
    NodeSpec,
    ProtocolError,
    Scheduler,
    StageSpec,
)

# A stage function maps one payload to its outputs (0..n), like a per-task process_batch.
StageFn = Callable[[int], list[int]]


def explode(x: int) -> list[int]:
    return [x, x + 1_000_000]


def keep_even(x: int) -> list[int]:
    return [x] if x % 2 == 0 else []


def square(x: int) -> list[int]:
    return [x * x]


def reference(inputs: list[int], fns: list[StageFn]) -> Counter[int]:
    values = list(inputs)
    for fn in fns:
        values = [y for x in values for y in fn(x)]
    return Counter(values)


@dataclass
class Outcome:
    emitted: list[int]
    failures: list[dict]
    abort: tuple | None
    created: dict[int, int]
    killed: list[int]
    store: dict[int, int]
    scheduler: Scheduler
    commands: list[tuple] = field(default_factory=list)


@dataclass
class MockCluster:
    """Executes the scheduler's commands in-process, like a driver: payloads live in a dict keyed by task id
    (the object store), calls run a few per round in random order.

    `fail_user` / `fail_infra` decide, per (stage, attempt, first task id), that a batch raises or is lost;
    `kill_actor_after` kills the actor that runs the n-th call.
    """

    fns: list[StageFn]
    seed: int = 0
    fail_user: Callable[[int, int, int], bool] = lambda stage, attempt, task: False
    fail_infra: Callable[[int, int, int], bool] = lambda stage, attempt, task: False
    kill_actor_after: int | None = None
    calls_per_round: int = 3

    def run(self, sched: Scheduler, inputs: list[int], max_rounds: int = 100_000) -> Outcome:
        rng = random.Random(self.seed)
        store: dict[int, int] = {}
        ids = sched.add_tasks([8] * len(inputs), [1] * len(inputs))
        store.update(zip(ids, inputs, strict=True))
        sched.close_input()
        out = Outcome([], [], None, {}, [], store, sched)
        calls: list[tuple[int, list[tuple[int, list[int], int]]]] = []
        n_calls = 0
        now = 0.0
        for _ in range(max_rounds):
            ready = []
            for cmd in sched.poll():
                out.commands.append(cmd)
                tag = cmd[0]
                if tag == "create":
                    out.created[cmd[1]] = cmd[2]
                    ready.append(cmd[1])
                elif tag == "submit":
                    calls.append((cmd[1], cmd[2]))
                elif tag == "kill":
                    out.killed.append(cmd[1])
                    calls = [c for c in calls if c[0] != cmd[1]]
                elif tag == "emit":
                    out.emitted.extend(store.pop(t) for t in cmd[1])
                elif tag == "drop":
                    for t in cmd[1]:
                        del store[t]
                elif tag == "failure":
                    out.failures.append(cmd[1])
                elif tag == "abort":
                    out.abort = cmd
            if sched.finished:
                return out
            sched.actors_ready(ready)
            rng.shuffle(calls)
            todo, calls = calls[: self.calls_per_round], calls[self.calls_per_round :]
            dead: set[int] = set()
            for actor, batches in todo:
                if actor in dead:
                    continue
                n_calls += 1
                if self.kill_actor_after is not None and n_calls == self.kill_actor_after:
                    dead.add(actor)
                    calls = [c for c in calls if c[0] != actor]
                    sched.actor_failed(actor, False, "worker died")
                    continue
                self._run_call(sched, store, out.created[actor], batches)
            now += 0.01
            sched.tick(now)
        raise AssertionError(f"no finish after {max_rounds} rounds: {sched.metrics()}")

    def _run_call(
        self, sched: Scheduler, store: dict[int, int], stage: int, batches: list[tuple[int, list[int], int]]
    ) -> None:
        """One remote call: each batch is processed separately; results are reported together."""
        done_ids, n_out, out_bytes, out_items, busy, payloads = [], [], [], [], [], []
        for batch_id, tasks, attempt in batches:
            if self.fail_user(stage, attempt, tasks[0]):
                sched.batch_failed(batch_id, True, f"ValueError: task {tasks[0]}")
                continue
            if self.fail_infra(stage, attempt, tasks[0]):
                sched.batch_failed(batch_id, False, "ObjectLostError")
                continue
            outs = [y for t in tasks for y in self.fns[stage](store[t])]
            done_ids.append(batch_id)
            n_out.append(len(outs))
            out_bytes.append(8 * len(outs))
            out_items.append(len(outs))
            busy.append(0.0001)
            payloads.extend(outs)
        new_ids = sched.batches_done(done_ids, n_out, out_bytes, out_items, busy)
        if sched.aborted:
            assert new_ids == [], "reports after an abort are ignored"
            return
        assert len(new_ids) == len(payloads)
        store.update(zip(new_ids, payloads, strict=True))


def run(
    stages: list[StageSpec], nodes: list[NodeSpec], cluster: MockCluster, inputs: list[int], **kwargs: object
) -> Outcome:
    return cluster.run(Scheduler(stages, nodes, **kwargs), inputs)  # type: ignore[arg-type]


def check_clean_end(out: Outcome) -> None:
    """Every live actor killed exactly once, finish/abort last, nothing after it."""
    assert sorted(out.killed) == sorted(set(out.killed))
    assert out.commands[-1][0] in ("finish", "abort")
    assert out.scheduler.poll() == []


FNS: list[StageFn] = [explode, keep_even, square]


def three_stages(**overrides: object) -> list[StageSpec]:
    return [
        StageSpec("explode", batch_size=1, **overrides),  # type: ignore[arg-type]
        StageSpec("keep_even", batch_size=8, **overrides),  # type: ignore[arg-type]
        StageSpec("square", batch_size=64, **overrides),  # type: ignore[arg-type]
    ]


def test_a_three_stage_pipeline_gives_the_reference_results() -> None:
    inputs = list(range(1000))
    out = run(three_stages(), [NodeSpec("n0", 4), NodeSpec("n1", 2)], MockCluster(FNS, seed=1), inputs)
    assert out.abort is None and out.failures == []
    assert Counter(out.emitted) == reference(inputs, FNS)
    assert out.store == {}, "every payload was dropped or emitted"
    assert sorted(out.killed) == sorted(out.created), "each actor killed exactly once"
    check_clean_end(out)
    b = out.scheduler.balance()
    assert b["complete"] and b["balanced"]
    assert (b["initial"], b["emitted"], b["failed"]) == (1000, 1000, 0)
    m = out.scheduler.metrics()
    assert [s["tasks_in"] for s in m["stages"]] == [1000, 2000, 1000]
    assert [s["tasks_done"] for s in m["stages"]] == [1000, 2000, 1000]
    assert m["stages"][1]["tasks_out"] == 1000
    assert all(s["finished"] and s["actors_ready"] == 0 for s in m["stages"])
    assert m["finished"] and not m["aborted"] and m["tasks_emitted"] == 1000


def test_a_cluster_smaller_than_the_pipeline_still_finishes() -> None:
    inputs = list(range(200))
    sched_kwargs = {"rebalance_interval_s": 0.05}
    stages = three_stages(queue_max_tasks=16)
    out = run(stages, [NodeSpec("tiny", 2)], MockCluster(FNS, seed=2), inputs, **sched_kwargs)
    assert out.abort is None
    assert Counter(out.emitted) == reference(inputs, FNS)
    assert len(out.created) > 2, "actors moved between stages"
    check_clean_end(out)


def test_user_errors_with_ignore_failures_are_reported_and_skipped() -> None:
    inputs = list(range(100))
    cluster = MockCluster(FNS, seed=3, fail_user=lambda stage, attempt, task: stage == 0 and task % 10 == 0)
    out = run(three_stages(), [NodeSpec("n0", 4)], cluster, inputs, ignore_failures=True)
    assert out.abort is None
    assert len(out.failures) == 10
    f = out.failures[0]
    assert set(f) == {"stage", "stage_name", "batch", "tasks", "roots", "kind", "message", "attempts"}
    assert f["roots"] and set(f["roots"]) <= set(range(len(inputs)))
    assert (f["stage"], f["stage_name"], f["kind"], f["attempts"]) == (0, "explode", "user", 1)
    assert f["message"].startswith("ValueError")
    failed_inputs = {inputs[t] for failure in out.failures for t in failure["tasks"]}
    assert Counter(out.emitted) == reference([x for x in inputs if x not in failed_inputs], FNS)
    b = out.scheduler.balance()
    assert b["complete"] and b["failed"] == 10
    assert out.store == {}


def test_a_user_error_aborts_the_run() -> None:
    cluster = MockCluster(FNS, seed=4, fail_user=lambda stage, attempt, task: stage == 1)
    out = run(three_stages(), [NodeSpec("n0", 4)], cluster, list(range(50)))
    assert out.abort is not None
    _, reason, failure = out.abort
    assert "stage 'keep_even' raised" in reason
    assert failure["stage_name"] == "keep_even" and failure["kind"] == "user"
    assert out.scheduler.finished and out.scheduler.aborted
    # Every actor is killed once, before the abort, which comes last; nothing follows it.
    assert sorted(out.killed) == sorted(out.created)
    assert out.commands[-1] == out.abort
    check_clean_end(out)


def test_lost_batches_are_retried_until_they_succeed() -> None:
    inputs = list(range(300))
    cluster = MockCluster(FNS, seed=5, fail_infra=lambda stage, attempt, task: attempt < 2 and task % 7 == 0)
    out = run(three_stages(), [NodeSpec("n0", 4)], cluster, inputs)
    assert out.abort is None
    assert Counter(out.emitted) == reference(inputs, FNS)
    retried = [b for c in out.commands if c[0] == "submit" for b in c[2] if b[2] > 0]
    assert retried and max(b[2] for b in retried) == 2
    assert sum(s["retries"] for s in out.scheduler.metrics()["stages"]) == len(retried)


def test_exhausted_retries_abort_with_the_failure() -> None:
    cluster = MockCluster(FNS, seed=6, fail_infra=lambda stage, attempt, task: stage == 2)
    out = run(three_stages(max_retries=1), [NodeSpec("n0", 4)], cluster, list(range(20)))
    assert out.abort is not None
    _, reason, failure = out.abort
    assert "failed 2 times" in reason and failure["kind"] == "infra" and failure["attempts"] == 2


def test_a_dead_actor_is_replaced_and_its_work_redone() -> None:
    inputs = list(range(200))
    out = run(three_stages(), [NodeSpec("n0", 3)], MockCluster(FNS, seed=7, kill_actor_after=5), inputs)
    assert out.abort is None
    assert Counter(out.emitted) == reference(inputs, FNS)
    assert sum(s["actors_died"] for s in out.scheduler.metrics()["stages"]) == 1
    dead = set(out.created) - set(out.killed)
    assert len(dead) == 1, "the dead actor is not killed again; all others are"


def test_a_failed_setup_aborts_naming_the_stage() -> None:
    # max_retries=0: no fresh actor gets another try.
    sched = Scheduler(three_stages(max_retries=0), [NodeSpec("n0", 3)])
    creates = [c for c in sched.poll() if c[0] == "create"]
    sched.actor_failed(creates[1][1], True, "ImportError: no module named torch")
    cmds = sched.poll()
    assert cmds[-1][0] == "abort"
    assert "stage 'keep_even'" in cmds[-1][1] and "ImportError" in cmds[-1][1]
    assert cmds[-1][2] is None
    assert sorted(c[1] for c in cmds if c[0] == "kill") == sorted(
        c[1] for c in creates if c is not creates[1]
    )


def test_results_that_arrive_after_an_abort_get_no_ids() -> None:
    # One driver round can hold a failed setup and finished calls: the calls are reported after the
    # abort, and the driver must see that their outputs got no ids.
    sched = Scheduler([StageSpec("a"), StageSpec("b", max_retries=0)], [NodeSpec("n0", 2)])
    sched.add_tasks([10, 10])
    sched.close_input()
    creates = [c for c in sched.poll() if c[0] == "create"]
    sched.actors_ready([creates[0][1]])
    batch = next(c for c in sched.poll() if c[0] == "submit")[2][0][0]
    sched.actor_failed(creates[1][1], True, "RuntimeError: no GPU")
    assert sched.batches_done([batch], [3], [30], [3], [0.01]) == []
    assert sched.poll()[-1][0] == "abort"


def test_lineage_leads_back_to_the_inputs() -> None:
    sched = Scheduler([StageSpec("split"), StageSpec("merge", batch_size=4)], [NodeSpec("n0", 2)])
    inputs = sched.add_tasks([10, 10])
    assert sched.roots(inputs[1]) == [inputs[1]]
    sched.close_input()
    sched.actors_ready([c[1] for c in sched.poll() if c[0] == "create"])
    emitted: list[int] = []
    roots: list[list[int]] = []
    completed: list[int] = []
    for _ in range(20):
        for cmd in sched.poll():
            if cmd[0] == "submit":
                ids = [b[0] for b in cmd[2]]
                out = sched.batches_done(
                    ids, [2] * len(ids), [20] * len(ids), [2] * len(ids), [0.01] * len(ids)
                )
                # Outputs are known until the poll that emits them.
                roots.extend(sched.roots(t) for t in out)
            elif cmd[0] == "emit":
                emitted.extend(cmd[1])
        completed.extend(sched.completed_roots())
        if sched.finished:
            break
    assert sched.finished
    assert len(emitted) == 2, "4 split outputs, one merge batch of 4, 2 outputs"
    assert roots[-2:] == [inputs, inputs]
    assert sorted(completed) == inputs, "each input completed once"
    assert sched.live_records() == {"batches": 0, "calls": 0, "open_roots": 0, "groups": 0}
    assert sched.roots(emitted[0]) == [] and sched.roots(10**9) == []


def test_a_batch_timeout_sends_partial_batches() -> None:
    sched = Scheduler([StageSpec("a", batch_size=10)], [NodeSpec("n0", 1)], batch_timeout_s=1.0)
    sched.tick(50.0)
    sched.actors_ready([c[1] for c in sched.poll() if c[0] == "create"])
    sched.add_tasks([1, 2, 3])
    assert sched.poll() == []
    sched.tick(51.0)
    (submit,) = sched.poll()
    assert submit[0] == "submit" and submit[2][0][1] == [0, 1, 2]
    assert sched.now == 51.0


def test_specs_have_documented_defaults_and_are_immutable() -> None:
    spec = StageSpec("tok")
    assert (spec.name, spec.batch_size, spec.cpus, spec.gpus) == ("tok", 1, 1.0, 0.0)
    assert (spec.pool_size, spec.max_pool_size) == (None, None)
    assert (spec.slots_per_actor, spec.max_batches_per_call, spec.max_retries) == (2, 64, 3)
    assert (spec.queue_max_tasks, spec.queue_max_bytes) == (10_000, 2**30)
    assert "tok" in repr(spec)
    with pytest.raises(AttributeError):
        spec.batch_size = 3  # type: ignore[misc]
    node = NodeSpec("n", 8, gpus=2)
    assert (node.id, node.cpus, node.gpus) == ("n", 8.0, 2.0)
    assert "Scheduler(" in repr(Scheduler([spec], [node]))


def test_fixed_pools_are_capped_with_a_warning_and_gpu_pools_start_full() -> None:
    stages = [StageSpec("read", pool_size=10), StageSpec("embed", cpus=1, gpus=0.5)]
    sched = Scheduler(stages, [NodeSpec("cpu", 2), NodeSpec("gpu", 4, gpus=1)])
    creates = [c for c in sched.poll() if c[0] == "create"]
    assert sorted((c[2], c[3]) for c in creates if c[2] == 1) == [(1, 1), (1, 1)]
    assert sum(1 for c in creates if c[2] == 0) == 4
    (warning,) = sched.take_warnings()
    assert "stage 'read'" in warning and "capped to 4" in warning
    assert sched.take_warnings() == []


def test_errors_map_to_the_exception_hierarchy() -> None:
    node = [NodeSpec("n", 2)]
    with pytest.raises(ConfigError, match="stage 'bad': batch_size must be >= 1"):
        Scheduler([StageSpec("bad", batch_size=0)], node)
    with pytest.raises(ConfigError, match="stage 'neg': slots_per_actor must be >= 0"):
        StageSpec("neg", slots_per_actor=-1)
    with pytest.raises(ConfigError, match="at least one stage"):
        Scheduler([], node)
    with pytest.raises(ConfigError, match="rebalance_interval"):
        Scheduler([StageSpec("a")], node, rebalance_interval_s=-1.0)
    with pytest.raises(InfeasibleError, match="stage 'embed' needs cpus=1, gpus=1"):
        Scheduler([StageSpec("embed", gpus=1)], node)
    with pytest.raises(InfeasibleError, match="no nodes"):
        Scheduler([StageSpec("a")], [])
    sched = Scheduler([StageSpec("a")], node)
    with pytest.raises(ProtocolError, match="unknown batch 7"):
        sched.batches_done([7], [1], [1], [1], [0.1])
    with pytest.raises(ProtocolError, match="unknown actor 9"):
        sched.actors_ready([9])
    with pytest.raises(ValueError, match="busy_s: expected 1 values, got 0"):
        sched.batches_done([0], [1], [1], [1], [])
    sched.actors_ready([c[1] for c in sched.poll() if c[0] == "create"])
    sched.add_tasks([1])
    sched.close_input()
    (submit,) = [c for c in sched.poll() if c[0] == "submit"]
    batch = submit[2][0][0]
    with pytest.raises(ProtocolError, match="attempt 3 was never submitted"):
        sched.batches_done([batch], [1], [5], [1], [0.1], attempts=[3])
    assert sched.batches_done([batch], [1], [5], [1], [0.1]) == [1]
    # A second report of the same attempt is stale: ignored and counted, never a second output.
    assert sched.batches_done([batch], [1], [5], [1], [0.1]) == []
    assert sched.stale_results == 1
    with pytest.raises(ProtocolError, match="after close_input"):
        sched.add_tasks([1])
    for exc in (ConfigError, InfeasibleError, ProtocolError):
        assert issubclass(exc, CuratorCoreError) and issubclass(exc, RuntimeError)


@settings(max_examples=25, deadline=None)
@given(
    batch_sizes=st.lists(st.integers(1, 16), min_size=1, max_size=4),
    cpus=st.integers(1, 4),
    n_inputs=st.integers(0, 120),
    seed=st.integers(0, 2**16),
    queue_max=st.integers(1, 50),
)
def test_any_small_pipeline_finishes_with_the_reference_results(
    batch_sizes: list[int], cpus: int, n_inputs: int, seed: int, queue_max: int
) -> None:
    fns: list[StageFn] = [FNS[i % 3] for i in range(len(batch_sizes))]
    stages = [StageSpec(f"s{i}", batch_size=b, queue_max_tasks=queue_max) for i, b in enumerate(batch_sizes)]
    inputs = list(range(n_inputs))
    cluster = MockCluster(fns, seed=seed, calls_per_round=1 + seed % 4)
    out = run(stages, [NodeSpec("n", cpus)], cluster, inputs, rebalance_interval_s=0.0)
    assert out.abort is None
    assert Counter(out.emitted) == reference(inputs, fns)
    assert out.store == {}
    for cmd in out.commands:
        if cmd[0] == "submit":
            stage = out.created[cmd[1]]
            assert all(1 <= len(b[1]) <= batch_sizes[stage] for b in cmd[2])
    assert out.scheduler.balance()["complete"]
