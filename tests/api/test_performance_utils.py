"""nemo_curator.utils.performance_utils: StagePerfStats and StageTimer."""

from __future__ import annotations

import time

import attrs
import pytest

from nemo_curator.testing.stages import PassthroughStage
from nemo_curator.utils import performance_utils
from nemo_curator.utils.performance_utils import StagePerfStats, StageTimer


class TestStagePerfStats:
    def test_defaults_and_slots(self) -> None:
        stats = StagePerfStats("s")
        assert attrs.has(StagePerfStats)
        assert (stats.process_time, stats.actor_idle_time, stats.input_data_size_mb) == (0.0, 0.0, 0.0)
        assert stats.num_items_processed == 0
        assert stats.custom_metrics == {}
        assert StagePerfStats("t").custom_metrics is not stats.custom_metrics
        assert not hasattr(stats, "__dict__")

    def test_add(self) -> None:
        left = StagePerfStats("a", 1.0, 2.0, 3.0, 4, {"x": 1.0, "y": 2.0})
        right = StagePerfStats("b", 0.5, 0.5, 0.5, 1, {"y": 3.0, "z": 4.0})
        total = left + right
        assert total == StagePerfStats("a", 1.5, 2.5, 3.5, 5, {"x": 1.0, "y": 5.0, "z": 4.0})
        assert left.custom_metrics == {"x": 1.0, "y": 2.0}

    def test_sum_uses_radd_zero(self) -> None:
        one = StagePerfStats("a", process_time=1.0, num_items_processed=1)
        assert (0 + one) is one
        total = sum([one, StagePerfStats("a", process_time=2.0, num_items_processed=3)])
        assert total == StagePerfStats("a", process_time=3.0, num_items_processed=4)

    def test_reset(self) -> None:
        stats = StagePerfStats("a", 1.0, 2.0, 3.0, 4, {"x": 1.0})
        stats.reset()
        assert stats == StagePerfStats("a")

    def test_to_dict_and_items(self) -> None:
        stats = StagePerfStats("a", 1.0, 2.0, 3.0, 4, {"m": 5.0})
        assert stats.to_dict() == {
            "stage_name": "a",
            "process_time": 1.0,
            "actor_idle_time": 2.0,
            "input_data_size_mb": 3.0,
            "num_items_processed": 4,
            "custom_metrics": {"m": 5.0},
        }
        assert stats.items() == [
            ("process_time", 1.0),
            ("actor_idle_time", 2.0),
            ("input_data_size_mb", 3.0),
            ("num_items_processed", 4),
            ("custom.m", 5.0),
        ]


class _FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class TestStageTimer:
    def test_stats_follow_the_clock(self, monkeypatch: pytest.MonkeyPatch) -> None:
        clock = _FakeClock(100.0)
        monkeypatch.setattr(performance_utils.time, "time", clock)
        timer = StageTimer(PassthroughStage(name="my_stage"))
        clock.now = 103.0
        timer.reinit(2 * 1024 * 1024)
        with timer.time_process(5):
            clock.now = 104.5
        with timer.time_process(3):
            clock.now = 105.0
        name, stats = timer.log_stats()
        assert name == "my_stage"
        assert stats.stage_name == "my_stage"
        assert stats.process_time == pytest.approx(2.0)
        assert stats.actor_idle_time == 0.0  # first batch: time before it is start-up, not idleness
        assert stats.input_data_size_mb == pytest.approx(2.0)
        assert stats.num_items_processed == 8

        clock.now = 110.0
        timer.reinit(1)
        with timer.time_process(1):
            clock.now = 111.0
        _, second = timer.log_stats()
        assert second.actor_idle_time == pytest.approx(5.0)
        assert second.process_time == pytest.approx(1.0)
        assert second.num_items_processed == 1
        assert second.input_data_size_mb == pytest.approx(1 / 1024 / 1024)

    def test_time_process_is_constant_time_in_items(self) -> None:
        timer = StageTimer(PassthroughStage())
        timer.reinit(10**9)
        started = time.perf_counter()
        with timer.time_process(10**9):
            pass
        assert time.perf_counter() - started < 0.5
        assert timer.log_stats()[1].num_items_processed == 10**9

    def test_time_process_counts_items_on_error(self) -> None:
        timer = StageTimer(PassthroughStage())
        timer.reinit(4)
        with pytest.raises(RuntimeError), timer.time_process(4):
            raise RuntimeError("boom")
        assert timer.log_stats()[1].num_items_processed == 4

    def test_zero_items_and_verbose_logging(self, caplog: pytest.LogCaptureFixture) -> None:
        timer = StageTimer(PassthroughStage(name="quiet"))
        timer.reinit(0)
        with timer.time_process(0):
            pass
        _, stats = timer.log_stats(verbose=True)
        assert stats.num_items_processed == 0
        assert any("quiet" in record.getMessage() for record in caplog.records)

    def test_stage_name_is_str_of_name(self) -> None:
        stage = PassthroughStage()
        stage.name = 123  # type: ignore[assignment]
        assert StageTimer(stage).log_stats()[0] == "123"
