"""Typed run metrics: one set of counts from the scheduler and the Ray Data ledger alike (no Ray needed)."""

from __future__ import annotations

from dataclasses import fields

import pytest

from nemo_curator import _core
from nemo_curator.backends.experimental.ray_data.observe import LedgerView
from nemo_curator.observability import RunMetrics, RunMonitor, StageCounts, StageMetrics
from nemo_curator.observability.metrics import SchedulerMetrics, as_metrics_source
from nemo_curator.observability.progress import ProgressDisplay

_GAUGES = (
    "queued_tasks",
    "queued_bytes",
    "in_flight_batches",
    "in_flight_tasks",
    "actors_ready",
    "slots_in_use",
)


def _run_scheduler(n: int) -> _core.Scheduler:
    """A one-stage run that keeps even inputs and filters odd ones, driven to its end."""
    sched = _core.Scheduler(
        [_core.StageSpec("keep_even", batch_size=1, max_batches_per_call=1)],
        [_core.NodeSpec("n0", 2.0)],
        actor_start_s=0.0,
    )
    values = dict(zip(sched.add_tasks([8] * n, [1] * n), range(n), strict=True))
    sched.close_input()
    now = 0.0
    for _ in range(1000):
        now += 0.5
        sched.tick(now)
        created = []
        for cmd in sched.poll():
            if cmd[0] == "create":
                created.append(cmd[1])
            elif cmd[0] == "submit":
                for batch_id, tasks, _ in cmd[2]:
                    kept = [values[t] for t in tasks if values[t] % 2 == 0]
                    new = sched.batches_done([batch_id], [len(kept)], [8 * len(kept)], [len(kept)], [0.25])
                    values.update(zip(new, kept, strict=True))
        if sched.finished:
            return sched
        sched.actors_ready(created)
    raise AssertionError(f"no finish: {sched.metrics()}")


def test_the_counts_are_defined_once() -> None:
    names = tuple(f.name for f in fields(StageCounts))
    assert _core.STAGE_COUNT_FIELDS == names
    sched = _core.Scheduler([_core.StageSpec("a")], [_core.NodeSpec("n0", 1.0)])
    assert set(names) <= set(sched.metrics()["stages"][0])
    ledger = _core.Ledger(1)
    ledger.record(0, 3, 1, failed_tasks=1, batches=3, failed_batches=1, filtered_tasks=1, busy_s=0.5)
    (stage,) = ledger.stages()
    assert set(names) <= set(stage)
    counts = StageCounts.from_mapping(stage)
    assert (counts.tasks_in, counts.tasks_done, counts.tasks_failed, counts.tasks_filtered) == (3, 2, 1, 1)
    assert (counts.batches_done, counts.batches_failed, counts.batches, counts.busy_s) == (2, 1, 3, 0.5)
    # The older ledger names stay readable.
    assert (stage["batches"], stage["failed_tasks"], stage["failed_batches"], stage["filtered_tasks"]) == (
        3,
        1,
        1,
        1,
    )
    with pytest.raises(ValueError, match="failed_batches"):
        ledger.record(0, 1, 0, batches=1, failed_batches=2)


def test_scheduler_metrics_become_typed_counts_and_gauges() -> None:
    sched = _run_scheduler(6)
    metrics = SchedulerMetrics(sched).metrics()
    assert isinstance(metrics, RunMetrics) and metrics.finished and metrics.tasks_emitted == 3
    (stage,) = metrics.stages
    c = stage.counts
    assert (c.tasks_in, c.tasks_done, c.tasks_out, c.tasks_filtered, c.batches) == (6, 6, 3, 3, 6)
    assert (c.items_in, c.items_out, c.bytes_in, c.bytes_out) == (6, 3, 48, 24)
    assert c.busy_s == pytest.approx(1.5) and c.calls == 6 and c.pending == 0
    assert c.first_start is not None and c.last_end is not None and c.wall_s > 0
    # The scheduler sees its queues and actors: every gauge is a number.
    assert all(getattr(stage, g) == 0 for g in _GAUGES)
    assert stage.finished and stage.backpressured is False
    assert as_metrics_source(sched).metrics() == metrics


def _ledger_view() -> LedgerView:
    view = LedgerView(["split", "filter"], num_initial=4, actor_stages=[False, True], epoch0=1000.0)
    part = _core.Ledger(2)
    part.record(0, 4, 8, calls=1, busy_s=0.5, start=1001.0, end=1002.5, worker=1)
    part.record(1, 5, 2, calls=1, filtered_tasks=3, busy_s=0.25, start=1002.0, end=1003.0, worker=7)
    view.merge(part.to_bytes())
    view.emitted = 2
    return view


def test_ray_data_metrics_leave_what_it_cannot_see_none() -> None:
    view = _ledger_view()
    metrics = view.metrics()
    split, filt = metrics.stages
    assert (split.counts.tasks_in, split.counts.tasks_out, split.counts.pending) == (4, 8, 0)
    # 8 reached the filter, 5 came back: 3 still waiting or running (which of the two is unknown).
    assert (filt.counts.tasks_in, filt.counts.tasks_done, filt.counts.pending) == (8, 5, 3)
    assert (split.counts.first_start, split.counts.last_end) == (1.0, 2.5)
    assert (split.counts.actors_created, filt.counts.actors_created) == (0, 1)  # one actor ran the filter
    for stage in metrics.stages:
        assert all(getattr(stage, g) is None for g in _GAUGES)
        assert stage.backpressured is None and not stage.finished
    assert metrics.tasks_queued is None and metrics.free_cpus is None and metrics.tasks_emitted == 2
    table = RunMonitor.status_table(metrics.stages)
    assert table.splitlines()[1].split()[1:3] == ["-", "-"]  # queued, MB
    assert ProgressDisplay.line(metrics.stages, 2.0).endswith("filter 5/8 (2.5/s)")
    # Once the dataset is exhausted nothing waits or runs anywhere.
    view.finished = True
    done = view.metrics()
    assert all(s.queued_tasks == 0 and s.in_flight_tasks == 0 and s.finished for s in done.stages)


def test_both_sources_feed_the_same_monitor_and_report() -> None:
    reports = []
    for source, name in ((_run_scheduler(4), "keep_even"), (_ledger_view(), "split")):
        monitor = RunMonitor(
            "x", [s.name for s in as_metrics_source(source).metrics().stages], progress="off"
        )
        monitor.on_round(source, 1.0)
        report = monitor.finish(source, 2.0, failures=[], actor_events=[])
        stage = report.stage(name)
        assert stage.tasks_in == 4 and stage.batches >= 1 and stage.busy_s > 0
        assert set(report.timeline[-1]) == {"t", "done", "pending", "in_flight", "queued", "actors"}
        reports.append(report)
    sched_report, ledger_report = reports
    assert sched_report.stage("keep_even").tasks_filtered == 2
    assert ledger_report.stage("filter").tasks_filtered == 3
    assert ledger_report.timeline[-1]["queued"] == [None, None]  # not known while the run goes on
    assert ledger_report.timeline[-1]["pending"] == [0, 3]


def test_stage_metrics_defaults_are_unknown_gauges() -> None:
    stage = StageMetrics("s")
    assert stage.counts == StageCounts() and stage.queued_tasks is None and not stage.finished
    assert stage.with_oldest("t1", 3.0).oldest_task == "t1" and stage.oldest_task is None
