"""Fused stateless stages on the actor pool: one call runs a chain of stages, each keeps its own
counts, failures and retries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from nemo_curator.backends.experimental.ray_actor_pool import RayActorPoolExecutor
from nemo_curator.backends.experimental.ray_actor_pool.driver import StageFailedError, _fused_chains
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.stages.resources import Resources
from nemo_curator.tasks import Task
from nemo_curator.testing.probes import RaiseOn, RaiseOnceEach, SameObjectProbe, numbered_tasks

pytestmark = pytest.mark.usefixtures("ray_session")


def _ids(tasks: list[Task[Any]]) -> list[str]:
    return sorted(t.task_id for t in tasks)


def _run(stages: list[Any], n: int, **config: Any) -> tuple[list[Task[Any]], RayActorPoolExecutor]:
    ex = RayActorPoolExecutor(config={"show_progress": False, **config})
    return ex.execute(stages, numbered_tasks(n)), ex


def _probes() -> list[Any]:
    return [SameObjectProbe(name="a"), SameObjectProbe(name="b"), SameObjectProbe(name="c")]


def test_fused_stages_hand_tasks_on_in_the_worker_and_count_per_stage() -> None:
    fused, ex_fused = _run(_probes(), 12)
    apart, ex_apart = _run(_probes(), 12, fuse_stateless_stages=False)
    assert _ids(fused) == _ids(apart) == _ids(numbered_tasks(12))
    # After the first stage, every task came straight from the stage before it when fused, never apart.
    assert all(t._metadata["b"] and t._metadata["c"] for t in fused)
    assert not any(t._metadata["b"] or t._metadata["c"] for t in apart)
    assert ex_fused.last_run is not None and ex_apart.last_run is not None
    for name in ("a", "b", "c"):
        f, a = ex_fused.last_run.stage(name), ex_apart.last_run.stage(name)
        assert (
            (f.tasks_in, f.tasks_out, f.batches)
            == (a.tasks_in, a.tasks_out, a.batches)
            == (
                12,
                12,
                12,
            )
        )
    # Every stage's batches and their perf stats, in order, as when the stages run apart.
    assert [s.stage_name for s in fused[0]._stage_perf] == ["a", "b", "c"]


def test_a_fused_stage_that_raises_is_blamed_for_its_own_task() -> None:
    stages = [SameObjectProbe(name="a"), RaiseOn("t3"), SameObjectProbe(name="c")]
    out, ex = _run(stages, 6, ignore_failures=True)
    assert _ids(out) == ["t0", "t1", "t2", "t4", "t5"]
    [failure] = ex.failures
    assert failure.stage == "raise_on" and list(failure.task_ids) == ["t3"] and failure.kind == "user"
    assert failure.error_type == "ValueError" and "bad document (t3)" in failure.message
    assert ex.last_run is not None
    raise_on = ex.last_run.stage("raise_on")
    assert (raise_on.tasks_failed, raise_on.tasks_out) == (1, 5)
    assert ex.last_run.stage("c").tasks_in == 5
    with pytest.raises(StageFailedError) as info:
        _run(stages, 6)
    assert info.value.failure is not None and info.value.failure.stage == "raise_on"
    assert list(info.value.failure.task_ids) == ["t3"]


def test_a_fused_stage_retries_a_raising_batch_from_its_own_input(tmp_path: Any) -> None:
    stages = [SameObjectProbe(name="a"), RaiseOnceEach(str(tmp_path)), SameObjectProbe(name="c")]
    out, ex = _run(stages, 5, max_user_retries=1)
    assert _ids(out) == _ids(numbered_tasks(5))
    assert ex.last_run is not None and ex.last_run.stage("raise_once_each").retries == 5
    assert ex.last_run.stage("c").tasks_out == 5
    # The first stage ran once per task: only the failed stage ran again.
    assert ex.last_run.stage("a").batches == 5


@dataclass
class _Plain(ProcessingStage[Task[Any], Task[Any]]):
    name: str = "plain"
    batch_size: int = 1
    resources: Resources = field(default_factory=lambda: Resources(cpus=1.0))
    fanout: bool = False

    def ray_stage_spec(self) -> dict[str, Any]:
        return {"is_fanout_stage": True} if self.fanout else {}

    def process(self, task: Task[Any]) -> Task[Any]:
        return task


def _chains(stages: list[Any], as_tasks: list[bool] | None = None, **kw: Any) -> list[list[int]]:
    n = len(stages)
    return _fused_chains(
        stages,
        [s.batch_size for s in stages],
        as_tasks or [True] * n,
        kw.get("settings", [None] * n),
        kw.get("timeouts", [None] * n),
        enabled=kw.get("enabled", True),
    )


def test_which_stages_fuse() -> None:
    four = [_Plain(name=f"s{i}") for i in range(4)]
    assert _chains(four) == [[1, 2, 3], [2, 3], [3], []]
    assert _chains(four, enabled=False) == [[], [], [], []]
    # Not after a fan-out, not into a stage with larger batches, other resources or settings, an
    # actor stage, or a stage with a call timeout.
    assert _chains([_Plain(fanout=True), _Plain(), _Plain()]) == [[], [2], []]
    assert _chains([_Plain(), _Plain(batch_size=4), _Plain()]) == [[], [2], []]
    assert _chains([_Plain(), _Plain(resources=Resources(cpus=2.0)), _Plain()]) == [[], [], []]
    assert _chains(four, as_tasks=[True, False, True, True]) == [[], [], [3], []]
    assert _chains(four, settings=[1, 1, 2, 2]) == [[1], [], [3], []]
    assert _chains(four, timeouts=[None, None, 5.0, None]) == [[1], [], [], []]
