"""RayActorPoolExecutor behaviour on a real local Ray: streaming, lifecycle, failures, bad input."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pytest
import ray
from loguru import logger

from nemo_curator.backends.experimental.ray_actor_pool import RayActorPoolExecutor
from nemo_curator.backends.experimental.ray_actor_pool.driver import StageFailedError
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.tasks import Task
from nemo_curator.testing.probes import (
    CrashAlways,
    ExitOn,
    FailingSetup,
    HangOn,
    LifecycleProbe,
    RaiseOn,
    RaiseOnceEach,
    SetupFailsOnce,
    UnpicklableOn,
    numbered_tasks,
    read_records,
)

pytestmark = pytest.mark.usefixtures("ray_session")


def _ids(tasks: list[Task[Any]]) -> list[str]:
    return sorted(t.task_id for t in tasks)


def test_import_paths_name_one_class() -> None:
    from nemo_curator.backends.experimental import RayActorPoolExecutor as A
    from nemo_curator.backends.experimental.ray_actor_pool import RayActorPoolExecutor as B
    from nemo_curator.backends.ray_actor_pool import RayActorPoolExecutor as C

    assert A is B is C


def test_pool_size_must_be_positive() -> None:
    # Unknown keys and a non-bool ignore_failures: test_contract.py, for every executor.
    with pytest.raises(ValueError, match="pool_size"):
        RayActorPoolExecutor(config={"pool_size": 0})


def test_later_stage_starts_before_earlier_stage_finishes(tmp_path: Any) -> None:
    a = LifecycleProbe(str(tmp_path), name="slow", sleep_s=0.3)
    b = LifecycleProbe(str(tmp_path), name="next")
    out = RayActorPoolExecutor(config={"pool_size": 1}).execute([a, b], numbered_tasks(6))
    assert _ids(out) == _ids(numbered_tasks(6))
    batches = read_records(tmp_path, "batch")
    slow_end = max(r["t"] for r in batches if r["stage"] == "slow")
    next_start = min(r["start"] for r in batches if r["stage"] == "next")
    # Streaming: the second stage already ran while the first still had work.
    assert next_start < slow_end


def test_pool_size_bounds_the_actors_of_a_stage(tmp_path: Any) -> None:
    # The order of setup_on_node / setup / teardown on every executor: test_contract.py.
    stage = LifecycleProbe(str(tmp_path), name="probe", sleep_s=0.2)
    out = RayActorPoolExecutor(config={"pool_size": 2}).execute([stage], numbered_tasks(8))
    assert _ids(out) == _ids(numbered_tasks(8))
    setups = read_records(tmp_path, "setup")
    assert 1 <= len(setups) <= 2 and len({r["pid"] for r in setups}) == len(setups)


# Stateless stages run as Ray tasks by default; `stateless_as_tasks=False` puts them in actors.
MODES = pytest.mark.parametrize("as_tasks", [True, False], ids=["tasks", "actors"])


def test_stateless_stages_run_as_tasks_and_stateful_ones_in_actors(tmp_path: Any) -> None:
    stateless = RaiseOn("never")
    stateful = LifecycleProbe(str(tmp_path), name="stateful")
    ex = RayActorPoolExecutor()
    out = ex.execute([stateless, stateful], numbered_tasks(6))
    assert _ids(out) == _ids(numbered_tasks(6))
    ready = [e for e in ex.last_run.actor_events if e["event"] == "ready"]
    # Actors report their process; task-mode slots have none (any pooled worker runs their calls).
    assert {e["stage"] for e in ready if "pid" in e} == {"stateful"}
    assert {e["stage"] for e in ready if "pid" not in e} == {"raise_on"}
    assert ex.last_run.stage("raise_on").tasks_in == 6
    assert len(read_records(tmp_path, "setup")) == sum(1 for e in ready if e["stage"] == "stateful")


def test_retries_run_out_with_ignore_failures_reports_infra_failure() -> None:
    ex = RayActorPoolExecutor(config={"max_retries": 1, "ignore_failures": True})
    out = ex.execute([CrashAlways("t1")], numbered_tasks(3))
    assert _ids(out) == ["t0", "t2"]
    assert [f["task_ids"] for f in ex.failures] == [["t1"]]
    # Two counted tries; one more when its first death also took a batch running beside it.
    assert ex.failures[0]["kind"] == "infra" and ex.failures[0]["attempts"] in (2, 3)


@MODES
def test_a_worker_death_blames_only_the_batch_that_caused_it(as_tasks: bool) -> None:
    # No retries at all: the batches that shared the dead worker's calls still run again, alone, and
    # only the task that kills its worker every time is reported.
    config = {"max_retries": 0, "ignore_failures": True, "pool_size": 1, "stateless_as_tasks": as_tasks}
    ex = RayActorPoolExecutor(config={**config, "show_progress": False})
    out = ex.execute([CrashAlways("t7")], numbered_tasks(30))
    assert _ids(out) == sorted(f"t{i}" for i in range(30) if i != 7)
    assert [f["task_ids"] for f in ex.failures] == [["t7"]]


def test_failing_setup_fails_fast_naming_stage() -> None:
    with pytest.raises(StageFailedError, match=r"failing_setup.*model weights not found"):
        RayActorPoolExecutor(config={"max_retries": 0}).execute([FailingSetup()], numbered_tasks(2))
    # With retries, fresh actors try again; a setup that always raises still ends the run.
    with pytest.raises(StageFailedError, match=r"(?s)failing_setup.*\(2 actors in all\).*model weights"):
        RayActorPoolExecutor(config={"max_retries": 1}).execute([FailingSetup()], numbered_tasks(2))


def test_a_setup_that_raises_once_is_retried_on_a_fresh_actor(tmp_path: Any) -> None:
    out = RayActorPoolExecutor(config={"show_progress": False}).execute(
        [SetupFailsOnce(str(tmp_path))], numbered_tasks(4)
    )
    assert _ids(out) == _ids(numbered_tasks(4))
    tries = read_records(tmp_path, "setup_try")
    assert len(tries) == 2 and tries[0]["pid"] != tries[1]["pid"]


def test_sys_exit_in_user_code_is_a_user_error_not_a_crash() -> None:
    ex = RayActorPoolExecutor(config={"ignore_failures": True, "show_progress": False})
    out = ex.execute([ExitOn("t2")], numbered_tasks(5))
    assert _ids(out) == ["t0", "t1", "t3", "t4"]
    [failure] = ex.failures
    assert failure["task_ids"] == ["t2"] and failure["error_type"] == "SystemExit"
    assert failure["attempts"] == 1 and failure["kind"] == "user"
    assert ex.last_run is not None
    assert ex.last_run.stage("exit_on").actors_died == 0


@dataclass
class _ReturnsString(ProcessingStage[Task[Any], Task[Any]]):
    name: str = "returns_string"

    def process(self, task: Task[Any]) -> Any:
        return "not a task"


def test_stage_workers_cannot_import_fails_fast_naming_stage() -> None:
    # Defined in this test module, which Ray's workers cannot import: a clear error, not endless retries.
    with pytest.raises(StageFailedError, match=r"(?s)returns_string.*test_actor_pool"):
        RayActorPoolExecutor().execute([_ReturnsString()], numbered_tasks(1))


@ray.remote
class _Holder:
    def ping(self) -> bool:
        return True


def test_cluster_busy_with_other_work_waits_instead_of_failing() -> None:
    # Another actor holds every CPU when the run starts and lets go a moment later: the pools are
    # sized from the node's totals and the run completes (only resources no node has are infeasible).
    holder = _Holder.options(num_cpus=ray.cluster_resources()["CPU"]).remote()
    ray.get(holder.ping.remote())
    threading.Timer(3.0, ray.kill, args=(holder,)).start()
    out = RayActorPoolExecutor().execute([RaiseOn("never")], numbered_tasks(3))
    assert _ids(out) == _ids(numbered_tasks(3))


@MODES
def test_a_call_past_call_timeout_s_is_cancelled_retried_then_failed(as_tasks: bool) -> None:
    # The clock starts when the call is sent to an idle worker: leave room for a worker's start-up.
    config = {
        # Ray tasks are timed from submission: room for a worker process that Ray starts on a busy machine.
        "call_timeout_s": {"hang_on": 10},
        "max_retries": 0,
        "ignore_failures": True,
        "stateless_as_tasks": as_tasks,
        "show_progress": False,
    }
    # Warm worker processes first: on a loaded machine a cold start alone can take longer than 5 s.
    warm = {k: v for k, v in config.items() if k not in ("call_timeout_s", "max_retries")}
    RayActorPoolExecutor(config=warm).execute([HangOn("none", seconds=0)], numbered_tasks(6))
    ex = RayActorPoolExecutor(config=config)
    out = ex.execute([HangOn("t2", seconds=600)], numbered_tasks(6))
    assert _ids(out) == ["t0", "t1", "t3", "t4", "t5"]
    [failure] = ex.failures
    assert failure["task_ids"] == ["t2"] and failure["error_type"] == "CallTimeout"
    assert "timed out after 10 s" in failure["message"] and "t2" in failure["message"]


def test_call_timeout_s_must_name_stages_of_the_pipeline() -> None:
    with pytest.raises(ValueError, match=r"call_timeout_s"):
        RayActorPoolExecutor(config={"call_timeout_s": -1})
    with pytest.raises(ValueError, match=r"names no stage of this pipeline: \['hang'\]"):
        RayActorPoolExecutor(config={"call_timeout_s": {"hang": 2}}).execute([HangOn("x")], numbered_tasks(1))


def test_status_table_names_the_oldest_running_task() -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, level="INFO", format="{message}")
    try:
        config = {"status_interval_s": 0.3, "show_progress": False, "pool_size": 1}
        RayActorPoolExecutor(config=config).execute([HangOn("t1", seconds=2.0)], numbered_tasks(2))
    finally:
        logger.remove(sink)
    tables = [line for line in lines if line.startswith("status\n")]
    assert any("oldest running" in t and "t1 (" in t for t in tables), tables[-3:]


@pytest.mark.parametrize("big", [0, 200_000], ids=["inline", "stored"])
def test_an_output_that_cannot_be_pickled_is_the_users_error(big: int) -> None:
    ex = RayActorPoolExecutor(config={"ignore_failures": True, "show_progress": False})
    out = ex.execute([UnpicklableOn("t1", big=big)], numbered_tasks(4))
    assert _ids(out) == ["t0", "t2", "t3"]
    [failure] = ex.failures
    assert failure["task_ids"] == ["t1"] and failure["kind"] == "user" and failure["attempts"] == 1
    assert failure["error_type"] == "TypeError" and "pickle" in failure["message"]
    assert ex.last_run is not None and ex.last_run.stage("unpicklable_on").actors_died == 0


def test_max_user_retries_runs_a_raising_batch_again(tmp_path: Any) -> None:
    ex = RayActorPoolExecutor(config={"max_user_retries": 1, "show_progress": False})
    out = ex.execute([RaiseOnceEach(str(tmp_path))], numbered_tasks(4))
    assert _ids(out) == _ids(numbered_tasks(4))
    assert ex.last_run is not None and ex.last_run.stage("raise_once_each").retries == 4
    with pytest.raises(ValueError, match="max_user_retries"):
        RayActorPoolExecutor(config={"max_user_retries": -1})


def test_a_stage_that_says_it_needs_no_actor_runs_as_tasks_with_its_setup(tmp_path: Any) -> None:
    # ScoreFilter's case: setup hooks of its own, but `is_actor_stage: False` (no model to load).
    probe = LifecycleProbe(str(tmp_path), name="light", actor_stage=False)
    ex = RayActorPoolExecutor(config={"show_progress": False})
    out = ex.execute([probe], numbered_tasks(8))
    assert _ids(out) == _ids(numbered_tasks(8))
    assert ex.last_run is not None
    assert all("pid" not in e for e in ex.last_run.actor_events if e["event"] == "ready")
    batch_pids = {r["pid"] for r in read_records(tmp_path, "batch")}
    # setup once per worker process that ran batches; setup_on_node once for the node, before them.
    assert sorted(r["pid"] for r in read_records(tmp_path, "setup")) == sorted(batch_pids)
    [on_node] = read_records(tmp_path, "setup_on_node")
    assert on_node["t"] <= min(r["t"] for r in read_records(tmp_path, "setup"))
    assert read_records(tmp_path, "teardown") == []
