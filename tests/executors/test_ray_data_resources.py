"""RayDataExecutor on a busy 2-CPU Ray: the plan follows the free resources, concurrent runs in one
process both finish, infeasible stages fail at once, and a run that cannot start fails with an error
naming its stages instead of hanging."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import ray

from nemo_curator import _core
from nemo_curator.backends.experimental.ray_data import RayDataExecutor
from nemo_curator.stages.resources import Resources
from nemo_curator.testing.stages import AddConstantStage, IntTask, make_int_tasks

pytestmark = pytest.mark.ray

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@dataclass
class ActorAdd(AddConstantStage):
    """`AddConstantStage` run in an actor pool (per-worker state in Curator's terms)."""

    name: str = "actor_add"

    def ray_stage_spec(self) -> dict[str, Any]:
        return {"is_actor_stage": True}


@ray.remote
class Holder:
    """Holds the CPUs it was created with until killed."""

    def ready(self) -> bool:
        return True


@pytest.fixture(scope="module", autouse=True)
def two_cpu_ray() -> Iterator[None]:
    from ray import cloudpickle

    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        address="local",
        num_cpus=2,
        object_store_memory=256 * 1024 * 1024,
        include_dashboard=False,
        log_to_driver=False,
    )
    # Ray workers cannot import this test module: its stage class travels by value.
    cloudpickle.register_pickle_by_value(__import__(__name__))
    yield
    cloudpickle.unregister_pickle_by_value(__import__(__name__))
    ray.shutdown()


def _hold(cpus: float) -> Any:
    holder = Holder.options(num_cpus=cpus).remote()  # type: ignore[attr-defined]
    ray.get(holder.ready.remote(), timeout=60)
    deadline = time.monotonic() + 10  # Ray's view of free resources lags the actor's start
    while ray.available_resources().get("CPU", 0.0) > 2 - cpus + 1e-6 and time.monotonic() < deadline:
        time.sleep(0.05)
    return holder


def _release(holder: Any) -> None:
    ray.kill(holder)
    deadline = time.monotonic() + 10
    while ray.available_resources().get("CPU", 0.0) < 2 - 1e-6 and time.monotonic() < deadline:
        time.sleep(0.05)


def _values(tasks: list[Any]) -> list[int]:
    assert all(isinstance(t, IntTask) for t in tasks)
    return sorted(t.data for t in tasks)


CONFIG = {"show_progress": False, "stall_timeout_s": 60.0}


def test_one_cpu_held_elsewhere_the_pipeline_still_finishes() -> None:
    holder = _hold(1)
    try:
        out = RayDataExecutor(config=CONFIG).execute(
            [AddConstantStage(value=1), ActorAdd(value=10)], make_int_tasks(8)
        )
    finally:
        _release(holder)
    assert _values(out) == [i + 11 for i in range(8)]


def test_two_runs_at_once_on_one_small_session_both_finish() -> None:
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def run(offset: int) -> None:
        try:
            out = RayDataExecutor(config=CONFIG).execute(
                [AddConstantStage(value=offset), ActorAdd(value=100)], make_int_tasks(6)
            )
            results[offset] = _values(out)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not any(t.is_alive() for t in threads), "a run did not finish"
    assert not errors, errors
    assert results == {k: [i + k + 100 for i in range(6)] for k in (1, 2)}


def test_infeasible_stage_fails_at_once_naming_it() -> None:
    huge = ActorAdd(value=1).with_(name="huge", resources=Resources(cpus=8.0))
    start = time.monotonic()
    with pytest.raises(_core.InfeasibleError, match="huge"):
        RayDataExecutor(config=CONFIG).execute([AddConstantStage(value=1), huge], make_int_tasks(2))
    assert time.monotonic() - start < 30


def test_bad_stall_timeout_is_rejected() -> None:
    for bad in (0, -1.0, float("nan"), "60"):
        with pytest.raises(ValueError, match="stall_timeout_s"):
            RayDataExecutor(config={"stall_timeout_s": bad})


def test_a_run_that_cannot_start_fails_naming_its_stages() -> None:
    holder = _hold(2)
    start = time.monotonic()
    try:
        with pytest.raises(RuntimeError, match=r"no progress.*actor_add.*waiting for resources"):
            RayDataExecutor(config={"show_progress": False, "stall_timeout_s": 3.0}).execute(
                [AddConstantStage(value=1), ActorAdd(value=10)], make_int_tasks(4)
            )
        elapsed = time.monotonic() - start
    finally:
        _release(holder)
    assert elapsed < 60, elapsed
    # The stopped run left nothing behind: the next one gets the whole cluster.
    out = RayDataExecutor(config=CONFIG).execute(
        [AddConstantStage(value=1), ActorAdd(value=10)], make_int_tasks(3)
    )
    assert _values(out) == [i + 11 for i in range(3)]


@dataclass
class FailingActorAdd(ActorAdd):
    """An actor stage whose batches all raise after a moment (the actors are up by then)."""

    name: str = "failing_actor_add"

    def process(self, task: IntTask) -> IntTask:
        time.sleep(0.5)
        raise ValueError("boom")


def test_a_failed_run_gives_its_actors_cpus_back_at_once() -> None:
    from nemo_curator.backends.experimental.ray_data import StageFailedError

    with pytest.raises(StageFailedError, match="failing_actor_add"):
        RayDataExecutor(config={"pool_size": 2, "show_progress": False}).execute(
            [FailingActorAdd()], make_int_tasks(8)
        )
    # Killed by the executor, not collected later: both CPUs are free within Ray's resource-view
    # refresh (Ray Data's own release after a failure takes 10-30 s).
    deadline = time.monotonic() + 5.0
    while ray.available_resources().get("CPU", 0.0) < 2 - 1e-6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ray.available_resources().get("CPU", 0.0) == pytest.approx(2.0)
    holder = _hold(2.0)  # a new 2-CPU actor fits at once
    _release(holder)
