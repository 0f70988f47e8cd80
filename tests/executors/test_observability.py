"""What a run shows: the run report's numbers, progress output (terminal and log modes), the plot."""

from __future__ import annotations

import io
from typing import Any

import pytest

from nemo_curator.backends.experimental.ray_actor_pool import RayActorPoolExecutor
from nemo_curator.observability import ProgressDisplay, StageCounts, StageMetrics
from nemo_curator.testing.probes import CrashOnce, RaiseOn, numbered_tasks
from nemo_curator.testing.stages import FanOutStage, FilterEvenStage, make_int_tasks

pytestmark = pytest.mark.usefixtures("ray_session")


def test_report_lists_failures_and_retries(tmp_path: Any) -> None:
    ex = RayActorPoolExecutor(config={"show_progress": False, "ignore_failures": True, "pool_size": 1})
    ex.execute([CrashOnce(str(tmp_path), "t2"), RaiseOn("t5")], numbered_tasks(8))
    report = ex.last_run
    assert report is not None and report.balanced
    # One actor died; every batch it had in flight (packed calls, 2 slots) went back to the queue.
    assert report.stage("crash_once").actors_died == 1
    assert report.stage("crash_once").retries >= 1
    assert report.stage("raise_on").tasks_failed == 1
    assert [(f["stage"], f["task_ids"], f["error_type"]) for f in report.failures] == [
        ("raise_on", ["t5"], "ValueError")
    ]
    assert report.balance["failed"] == 1
    summary = report.format_summary()
    assert "raise_on" in summary and "count balance OK" in summary and "ValueError" in summary


def test_progress_bars_on_a_terminal_stream() -> None:
    stream = io.StringIO()
    display = ProgressDisplay(["read", "filter"], mode="bars", interval_s=0.1, stream=stream)
    metrics = [
        StageMetrics(
            "read",
            StageCounts(tasks_in=4, tasks_done=4),
            queued_tasks=0,
            in_flight_tasks=0,
            actors_ready=1,
        ),
        # Gauges an executor cannot know (Ray Data's queues) are None and left out.
        StageMetrics("filter", StageCounts(tasks_in=4, tasks_done=1, tasks_failed=1)),
    ]
    display.update(metrics, 1.0)
    display.close()
    text = stream.getvalue()
    assert "read" in text and "4/4" in text and "2/4" in text


def test_report_counts_the_workers_of_task_mode_stages() -> None:
    # The report's counts, JSON and plot on every executor: test_contract.py.
    ex = RayActorPoolExecutor(config={"show_progress": False})
    ex.execute([FanOutStage(n=2), FilterEvenStage()], make_int_tasks(20))
    assert ex.last_run is not None
    assert ex.last_run.stage("fan_out").actors >= 1 and ex.last_run.stage("filter_even").actors >= 1
