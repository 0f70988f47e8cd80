"""What a RayDataExecutor run shows: `last_run` (RunReport) numbers, progress output, JSON, the plot."""

from __future__ import annotations

import json
from typing import Any

import pytest
import ray
from loguru import logger

from nemo_curator.backends.experimental.ray_data import RayDataExecutor
from nemo_curator.backends.experimental.ray_data.adapter import (
    SegmentPlan,
    actor_class_for,
    task_function_for,
)
from nemo_curator.observability import RunReport
from nemo_curator.testing.stages import (
    BatchRecorderStage,
    FanOutStage,
    FilterEvenStage,
    PassthroughStage,
    make_int_tasks,
)

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


@pytest.fixture
def log_lines() -> Any:
    lines: list[str] = []
    handler = logger.add(lambda m: lines.append(str(m)), level="INFO", format="{message}")
    yield lines
    logger.remove(handler)


@pytest.fixture(scope="module")
def fan_filter(ray_session: None) -> tuple[RayDataExecutor, list[Any]]:
    """10 ints fan out to 30, the 15 with even data are filtered: one run shared by several tests."""
    ex = RayDataExecutor(config={"show_progress": False})
    out = ex.execute([FanOutStage(n=3), FilterEvenStage()], make_int_tasks(10))
    return ex, out


def test_report_counts_fan_out_and_filtering(fan_filter: tuple[RayDataExecutor, list[Any]]) -> None:
    ex, out = fan_filter
    report = ex.last_run
    assert isinstance(report, RunReport) and report.executor == "RayDataExecutor"
    assert report.balanced and len(out) == 15
    assert [s.name for s in report.stages] == ["fan_out", "filter_even"]
    fan, filt = report.stage("fan_out"), report.stage("filter_even")
    assert (fan.tasks_in, fan.tasks_out, fan.tasks_failed, fan.batches) == (10, 30, 0, 10)
    assert (filt.tasks_in, filt.tasks_out, filt.tasks_failed, filt.batches) == (30, 15, 0, 30)
    assert (fan.items_in, fan.items_out, filt.items_in, filt.items_out) == (10, 30, 30, 15)
    assert fan.bytes_in > 0 and fan.bytes_out > fan.bytes_in and filt.bytes_out > 0
    for s in (fan, filt):
        assert s.busy_s > 0 and s.wall_s >= 0 and s.calls >= 1 and s.retries == 0
        assert s.actors == 0  # both run in Ray tasks
    # The first batch started before the last ended; the report is not longer than the run.
    assert 0 < fan.wall_s <= report.total_s
    b = report.balance
    assert {k: b[k] for k in ("initial", "emitted", "filtered", "failed", "balanced")} == {
        "initial": 10,
        "emitted": 15,
        "filtered": 15,
        "failed": 0,
        "balanced": True,
    }
    # The same keys as the actor pool's scheduler balance.
    assert {"produced", "consumed", "queued", "in_flight", "complete"} <= set(b)
    assert (b["produced"], b["consumed"], b["queued"], b["in_flight"], b["complete"]) == (45, 40, 0, 0, True)
    assert report.failures == [] == ex.failures
    # last_run_stats (the ledger's counts) agree.
    assert [(s["stage"], s["tasks_in"], s["tasks_out"]) for s in ex.last_run_stats] == [
        ("fan_out", 10, 30),
        ("filter_even", 30, 15),
    ]


def test_timeline_follows_result_blocks(fan_filter: tuple[RayDataExecutor, list[Any]]) -> None:
    report = fan_filter[0].last_run
    assert report is not None and len(report.timeline) >= 1
    times = [s["t"] for s in report.timeline]
    assert times == sorted(times)
    last = report.timeline[-1]
    assert last["done"] == [10, 30] and last["queued"] == [0, 0]
    assert all(len(s[k]) == 2 for s in report.timeline for k in ("done", "in_flight", "queued", "actors"))


def test_json_round_trip_and_plot(fan_filter: tuple[RayDataExecutor, list[Any]], tmp_path: Any) -> None:
    report = fan_filter[0].last_run
    assert report is not None
    path = tmp_path / "run.json"
    text = report.to_json(path)
    data = json.loads(path.read_text())
    assert data == json.loads(text) == json.loads(json.dumps(report.to_dict(), default=str))
    assert data["executor"] == "RayDataExecutor" and data["balanced"] is True
    assert [s["name"] for s in data["stages"]] == ["fan_out", "filter_even"]
    assert data["stages"][0]["tasks_out"] == 30 and data["balance"]["filtered"] == 15
    png = report.plot_timeline(tmp_path / "timeline.png")
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_operators_are_named_after_the_stage_classes(fan_filter: tuple[RayDataExecutor, list[Any]]) -> None:
    # A fan-out ends its segment: two map_batches, each named after its stages' classes.
    assert fan_filter[0]._segment_udfs == [
        ("FanOutStageTask", ["fan_out"]),
        ("FilterEvenStageTask", ["filter_even"]),
    ]
    # And Ray Data names its operators after those callables (nothing is executed here).
    plan = SegmentPlan(run_id="names", index=0, stages=())
    ds = ray.data.range(1).map_batches(task_function_for([PassthroughStage(), FilterEvenStage()], plan))
    ds = ds.map_batches(
        actor_class_for([BatchRecorderStage()]),
        fn_constructor_args=(plan,),
        compute=ray.data.ActorPoolStrategy(size=1),
    )
    op = ds._logical_plan.dag
    assert op.name == "MapBatches(BatchRecorderStageActor)"
    assert op.input_dependencies[0].name == "MapBatches(PassthroughStage_FilterEvenStageTask)"


def test_report_of_an_actor_stage_with_batches() -> None:
    ex = RayDataExecutor(
        config={"force_actors": True, "pool_size": 2, "exact_batches": True, "show_progress": False}
    )
    out = ex.execute([PassthroughStage(), BatchRecorderStage(batch_size=3)], make_int_tasks(8))
    report = ex.last_run
    assert report is not None and report.balanced and len(out) == 8
    assert ex._segment_udfs == [
        ("PassthroughStageActor", ["passthrough"]),
        ("BatchRecorderStageActor", ["batch_recorder"]),
    ]
    rec = report.stage("batch_recorder")
    assert (rec.tasks_in, rec.tasks_out, rec.batches) == (8, 8, 3)  # 3 + 3 + 2
    for s in report.stages:
        assert 1 <= s.actors <= 2  # the actors that ran batches
        assert s.busy_s > 0
    assert report.balance["filtered"] == 0 and report.balance["emitted"] == 8


def test_no_progress_bars_of_ray_data_either_when_silenced(log_lines: list[str], capfd: Any) -> None:
    # Progress lines, one run summary, and silence on every executor: tests/executors/test_contract.py.
    capfd.readouterr()
    RayDataExecutor(config={"show_progress": False}).execute([FanOutStage(n=2)], make_int_tasks(4))
    assert not any(line.startswith(("progress", "run summary")) for line in log_lines)
    err = capfd.readouterr().err
    assert "progress " not in err and "Running Dataset" not in err  # neither ours nor Ray Data's bars


def test_progress_config_is_validated() -> None:
    with pytest.raises(ValueError, match="progress_interval_s"):
        RayDataExecutor(config={"progress_interval_s": 0})
    with pytest.raises(ValueError, match="ray_data_progress_bars"):
        RayDataExecutor(config={"ray_data_progress_bars": "yes"})
    with pytest.raises(ValueError, match=r"progress_intervall_s.*valid keys"):
        RayDataExecutor(config={"progress_intervall_s": 1.0})
    assert RayDataExecutor().settings.show_progress is True
