"""XennaExecutor on the actor-pool engine: Curator's config and `xenna_stage_spec()` keys, both modes.

One local Ray with 2 CPUs, as on a small machine where cosmos-xenna's CPU budget (floor of 95%) leaves
one CPU and a multi-stage streaming pipeline cannot start.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from loguru import logger

from nemo_curator.backends.base import StageFailedError
from nemo_curator.backends.in_process import InProcessExecutor
from nemo_curator.backends.xenna import XennaExecutor
from nemo_curator.pipeline import Pipeline
from nemo_curator.testing.probes import (
    LifecycleProbe,
    RaiseOn,
    RaiseOnceEach,
    SetupFailsFirst,
    numbered_tasks,
    read_records,
)
from nemo_curator.testing.stages import AddConstantStage, PassthroughStage, make_int_tasks

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]
RAY_SESSION_OPTIONS = {"num_cpus": 2}

QUIET = {"show_progress": False}


def _ids(tasks: list[Any]) -> list[str]:
    return sorted(t.task_id for t in tasks)


def test_pipeline_run_without_executor_uses_xenna() -> None:
    stages = [AddConstantStage(value=2), AddConstantStage(value=3).with_(name="add_more")]
    expected = Pipeline("p", stages=list(stages)).run(InProcessExecutor(), make_int_tasks(8))
    got = Pipeline("p", stages=list(stages)).run(initial_tasks=make_int_tasks(8))
    assert got is not None and expected is not None
    assert sorted((t.task_id, t.data) for t in got) == sorted((t.task_id, t.data) for t in expected)


def test_bad_config_and_stage_specs_are_errors_naming_the_key() -> None:
    with pytest.raises(ValueError, match=r"Unknown XennaExecutor config key.*'max_workers'"):
        XennaExecutor({"max_workers": 3})
    with pytest.raises(ValueError, match="'execution_mode' must be one of"):
        XennaExecutor({"execution_mode": "fast"})
    for pct in (0, 1.5, float("nan"), True):
        with pytest.raises(ValueError, match="'cpu_allocation_percentage'"):
            XennaExecutor({"cpu_allocation_percentage": pct})
    with pytest.raises(ValueError, match="'logging_interval'"):
        XennaExecutor({"logging_interval": -1})
    with pytest.raises(ValueError, match="'max_workers_per_stage'"):
        XennaExecutor({"max_workers_per_stage": 0})
    # An explicit None keeps the default; engine keys are accepted too.
    assert XennaExecutor({"logging_interval": None, "pool_size": 2}).settings.status_interval_s == 60
    probe = LifecycleProbe("/nonexistent", xenna_spec={"num_worker": 2})
    with pytest.raises(ValueError, match=r"Stage 'lifecycle_probe': unknown xenna_stage_spec.*'num_worker'"):
        XennaExecutor(QUIET).execute([probe], numbered_tasks(1))
    both = LifecycleProbe("/nonexistent", xenna_spec={"num_workers": 1, "num_workers_per_node": 1})
    with pytest.raises(ValueError, match="both 'num_workers' and 'num_workers_per_node'"):
        XennaExecutor(QUIET).execute([both], numbered_tasks(1))
    bad = LifecycleProbe("/nonexistent", xenna_spec={"num_run_attempts_python": 0})
    with pytest.raises(ValueError, match="'num_run_attempts_python' must be an int >= 1"):
        XennaExecutor(QUIET).execute([bad], numbered_tasks(1))


def test_streaming_runs_actor_stages_at_once_on_two_cpus(tmp_path: Any) -> None:
    # Three 1-CPU actor stages on 2 CPUs (Xenna's budget here is 1 CPU: it refuses to start).
    stages = [LifecycleProbe(str(tmp_path), name=n, sleep_s=0.1) for n in ("a", "b", "c")]
    out = XennaExecutor(QUIET).execute(stages, numbered_tasks(12))
    assert _ids(out) == _ids(numbered_tasks(12))
    batches = read_records(tmp_path, "batch")
    a_last = max(r["t"] for r in batches if r["stage"] == "a")
    # Streaming: the second stage has started long before the first one is done.
    assert min(r["start"] for r in batches if r["stage"] == "b") < a_last - 0.3


def test_batch_mode_runs_each_stage_to_completion_before_the_next(tmp_path: Any) -> None:
    stages = [LifecycleProbe(str(tmp_path), name=n, sleep_s=0.02) for n in ("a", "b", "c")]
    executor = XennaExecutor({**QUIET, "execution_mode": "batch"})
    out = executor.execute(stages, numbered_tasks(12))
    assert _ids(out) == _ids(numbered_tasks(12))
    batches = read_records(tmp_path, "batch")
    for first, second in (("a", "b"), ("b", "c")):
        done = max(r["t"] for r in batches if r["stage"] == first)
        assert min(r["start"] for r in batches if r["stage"] == second) >= done
    # Each stage's actors were set up only once the stage before had finished.
    setups = read_records(tmp_path, "setup")
    assert min(r["t"] for r in setups if r["stage"] == "c") >= max(
        r["t"] for r in batches if r["stage"] == "b"
    )
    assert executor.last_run is not None
    assert executor.last_run.to_dict()["executor"] == "XennaExecutor"


def test_num_run_attempts_python_retries_a_raising_batch(tmp_path: Any) -> None:
    flaky = RaiseOnceEach(str(tmp_path), xenna_spec={"num_run_attempts_python": 2})
    executor = XennaExecutor(QUIET)
    out = executor.execute([flaky], numbered_tasks(6))
    assert _ids(out) == _ids(numbered_tasks(6))
    assert executor.last_run is not None
    stage = executor.last_run.to_dict()["stages"][0]
    assert stage["retries"] == 6 and stage["tasks_failed"] == 0

    once = RaiseOnceEach(str(tmp_path / "fresh"))
    os.makedirs(tmp_path / "fresh")
    with pytest.raises(StageFailedError, match=r"raise_once_each.*transient error"):
        XennaExecutor(QUIET).execute([once], numbered_tasks(2))


def test_num_setup_attempts_python_retries_setup_in_the_actor(tmp_path: Any) -> None:
    stage = SetupFailsFirst(str(tmp_path), xenna_spec={"num_setup_attempts_python": 2, "num_workers": 1})
    out = XennaExecutor(QUIET).execute([stage], numbered_tasks(3))
    assert len(out) == 3
    assert [r["attempt"] for r in read_records(tmp_path, "setup_try")] == [1, 2]

    once = SetupFailsFirst(str(tmp_path / "once"), xenna_spec={"num_workers": 1})
    os.makedirs(tmp_path / "once")
    with pytest.raises(StageFailedError, match=r"setup_fails_first.*model server not reachable"):
        XennaExecutor(QUIET).execute([once], numbered_tasks(3))


def test_stage_level_ignore_failures_skips_only_that_stage(tmp_path: Any) -> None:
    lenient = RaiseOn("t3", xenna_spec={"ignore_failures": True})
    executor = XennaExecutor(QUIET)
    out = executor.execute([lenient, PassthroughStage()], numbered_tasks(6))
    assert _ids(out) == [f"t{i}" for i in (0, 1, 2, 4, 5)]
    assert [f["task_ids"] for f in executor.failures] == [["t3"]]
    assert executor.failures[0]["error_type"] == "ValueError"
    strict = RaiseOn("t3", name="strict")
    with pytest.raises(StageFailedError, match="Stage 'strict' failed on task"):
        XennaExecutor(QUIET).execute([strict], numbered_tasks(6))


def test_worker_max_lifetime_replaces_old_actors(tmp_path: Any) -> None:
    # 0.6 s lifetime, at most one replacement per 0.3 s, one actor: ~3 s of work needs several actors.
    spec = {"num_workers": 1, "worker_max_lifetime_m": 0.01, "worker_restart_interval_m": 0.005}
    probe = LifecycleProbe(str(tmp_path), sleep_s=0.1, xenna_spec=spec)
    out = XennaExecutor(QUIET).execute([probe], numbered_tasks(30))
    assert _ids(out) == _ids(numbered_tasks(30))
    setups = read_records(tmp_path, "setup")
    assert len(setups) >= 2
    assert len({r["pid"] for r in read_records(tmp_path, "batch")}) >= 2
    # Each replaced actor was torn down, not just dropped.
    assert len(read_records(tmp_path, "teardown")) == len(setups)


def test_logging_interval_logs_status_tables(tmp_path: Any) -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, level="INFO", format="{message}")
    try:
        probe = LifecycleProbe(str(tmp_path), sleep_s=0.1)
        XennaExecutor({"logging_interval": 0.2}).execute([probe], numbered_tasks(10))
    finally:
        logger.remove(sink)
    assert sum(1 for line in lines if line.startswith("status\n")) >= 2
    assert any("run summary" in line and "XennaExecutor" in line for line in lines)
