"""InProcessExecutor: the reference semantics (batching, filtering, perf stats, lifecycle, isolation, errors)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_curator.backends.base import BaseExecutor
from nemo_curator.backends.failures import FailureRecord, StageFailedError
from nemo_curator.backends.in_process import InProcessExecutor
from nemo_curator.backends.in_process.executor import InProcessExecutor as InProcessExecutorFromModule
from nemo_curator.pipeline import Pipeline
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.tasks import DocumentBatch, EmptyTask, Task
from nemo_curator.testing.stages import (
    AddConstantStage,
    AddLengthStage,
    AddThenFilterStage,
    BatchRecorderStage,
    CpuBurnStage,
    DocumentSourceStage,
    FanOutStage,
    FilterEvenStage,
    InjectedFailure,
    IntSourceStage,
    IntTask,
    PassthroughStage,
    RaiseOnTaskStage,
    ReturnsNonTaskStage,
    SleepStage,
    SplitIntoRowsStage,
    StageWithSetup,
    count_markers,
    make_document_batches,
    make_int_tasks,
    read_markers,
)


def _run(stages: list[ProcessingStage], tasks: list[Task] | None = None, **config: bool) -> list[Task]:
    return InProcessExecutor(config or None).execute(stages, tasks)


def _distinct_entries(tasks: list[Task], stage_name: str) -> list:
    """The distinct StagePerfStats objects of one stage (one per process_batch call that produced output)."""
    seen: dict[int, object] = {}
    for task in tasks:
        for entry in task._stage_perf:
            if entry.stage_name == stage_name:
                seen.setdefault(id(entry), entry)
    return list(seen.values())


def test_exports() -> None:
    assert InProcessExecutor is InProcessExecutorFromModule
    assert issubclass(InProcessExecutor, BaseExecutor)


class TestBasicRuns:
    def test_source_and_fan_out(self) -> None:
        results = _run([IntSourceStage(n=4), FanOutStage(n=3)])
        assert [t.task_id for t in results] == [f"int_{i}_{j}" for i in range(4) for j in range(3)]
        assert [t.data for t in results] == [i for i in range(4) for _ in range(3)]

    @pytest.mark.parametrize("use_empty_list", [False, True])
    def test_filtering_with_none_or_empty_list(self, use_empty_list: bool) -> None:
        results = _run([IntSourceStage(n=7), FilterEvenStage(use_empty_list=use_empty_list)])
        assert [t.data for t in results] == [1, 3, 5]

    def test_everything_filtered_then_later_stages_see_nothing(self) -> None:
        executor = InProcessExecutor()
        results = executor.execute([IntSourceStage(n=3), FanOutStage(n=0), AddConstantStage()])
        assert results == []
        assert [(s["tasks_in"], s["tasks_out"]) for s in executor.last_run_stats] == [(1, 3), (3, 0), (0, 0)]

    def test_document_pipeline(self) -> None:
        results = _run(
            [DocumentSourceStage(num_batches=2, rows_per_batch=3), SplitIntoRowsStage(), AddLengthStage()]
        )
        assert [t.task_id for t in results] == [
            f"doc_{b}_row_{r}_add_length" for b in range(2) for r in range(3)
        ]
        assert all(isinstance(t, DocumentBatch) and t.num_items == 1 for t in results)
        rows = [t.to_pyarrow().to_pylist()[0] for t in results]
        assert [row["length"] for row in rows] == [len(row["text"]) for row in rows] == [1, 2, 3, 4, 5, 6]

    def test_order_is_preserved(self) -> None:
        results = _run([SleepStage(seconds=0.0), CpuBurnStage(iterations=10)], make_int_tasks(20))
        assert [t.task_id for t in results] == [f"int_{i}" for i in range(20)]

    def test_composite_through_pipeline(self) -> None:
        pipeline = Pipeline("p", stages=[IntSourceStage(n=10), AddThenFilterStage(value=2)])
        results = pipeline.run(InProcessExecutor())
        assert results is not None
        assert [t.data for t in results] == [3, 5, 7, 9, 11]
        assert [s.name for s in pipeline.stages] == ["int_source", "add_constant", "filter_even"]
        assert [e.stage_name for e in results[0]._stage_perf] == ["int_source", "add_constant", "filter_even"]

    def test_last_run_stats(self) -> None:
        executor = InProcessExecutor()
        executor.execute([IntSourceStage(n=5), FilterEvenStage(), FanOutStage(n=2)])
        assert [(s["stage"], s["tasks_in"], s["tasks_out"]) for s in executor.last_run_stats] == [
            ("int_source", 1, 5),
            ("filter_even", 5, 2),
            ("fan_out", 2, 4),
        ]
        assert all(s["seconds"] >= 0 for s in executor.last_run_stats)


class TestBatching:
    @pytest.mark.parametrize(("batch_size", "expected"), [(1, [1] * 10), (3, [3, 3, 3, 1]), (64, [10])])
    def test_batches_slice_the_whole_stage_input(self, batch_size: int, expected: list[int]) -> None:
        results = _run([BatchRecorderStage(batch_size=batch_size)], make_int_tasks(10))
        batches: list[list[str]] = []
        for task in results:
            ids = task._metadata["batch_recorder_batch_ids"]
            if not batches or batches[-1] != ids:
                batches.append(ids)
        assert [len(b) for b in batches] == expected
        assert [i for b in batches for i in b] == [f"int_{i}" for i in range(10)]
        assert len(_distinct_entries(results, "batch_recorder")) == len(expected)

    def test_batch_size_none_means_one_with_warning(self, caplog: pytest.LogCaptureFixture) -> None:
        results = _run([BatchRecorderStage(batch_size=None)], make_int_tasks(4))
        assert [t._metadata["batch_recorder_batch_len"] for t in results] == [1, 1, 1, 1]
        assert sum("batch size not set for stage" in r.getMessage() for r in caplog.records) == 1

    def test_batches_span_outputs_of_different_parents(self) -> None:
        # Batches are cut from the whole stage input, not per upstream batch.
        results = _run([FanOutStage(n=2), BatchRecorderStage(batch_size=3)], make_int_tasks(3))
        assert [t._metadata["batch_recorder_batch_ids"] for t in results][:3] == [
            ["int_0_0", "int_0_1", "int_1_0"]
        ] * 3

    def test_with_batch_size(self) -> None:
        stage = BatchRecorderStage().with_(batch_size=5)
        results = _run([stage], make_int_tasks(7))
        assert sorted({t._metadata["batch_recorder_batch_len"] for t in results}) == [2, 5]

    @settings(max_examples=40, deadline=None)
    @given(
        n=st.integers(min_value=0, max_value=40),
        batch_size=st.one_of(st.none(), st.integers(min_value=1, max_value=12)),
        fan_out=st.integers(min_value=0, max_value=3),
    )
    def test_counts_and_batch_bounds(self, n: int, batch_size: int | None, fan_out: int) -> None:
        stages: list[ProcessingStage] = [
            FanOutStage(n=fan_out),
            BatchRecorderStage(batch_size=batch_size),
            FilterEvenStage(),
        ]
        results = _run(stages, make_int_tasks(n) if n else [IntTask("int_0", "ds", 0)])
        inputs = max(n, 1)
        kept_per_fan = sum(1 for i in range(inputs) if i % 2 == 1)
        assert len(results) == kept_per_fan * fan_out
        limit = batch_size or 1
        assert all(t._metadata["batch_recorder_batch_len"] <= limit for t in results)
        assert len(_distinct_entries(results, "batch_recorder")) <= math.ceil(inputs * fan_out / limit)


class TestPerfStats:
    def test_one_entry_per_stage_per_output(self) -> None:
        stages = [
            DocumentSourceStage(num_batches=4, rows_per_batch=8),
            AddLengthStage().with_(batch_size=2),
            PassthroughStage().with_(name="renamed_passthrough"),
        ]
        results = _run(stages)
        assert len(results) == 4
        for task in results:
            assert [e.stage_name for e in task._stage_perf] == [
                "document_source",
                "add_length",
                "renamed_passthrough",
            ]
            source, add_length, passthrough = task._stage_perf
            assert source.num_items_processed == 0  # the empty task has no items
            assert add_length.num_items_processed == 16  # two batches of 8 rows
            assert passthrough.num_items_processed == 8
            assert all(e.process_time > 0 for e in task._stage_perf)
        # Outputs of one call share its entry; different calls have different entries.
        assert len(_distinct_entries(results, "add_length")) == 2
        assert len(_distinct_entries(results, "renamed_passthrough")) == 4
        assert len(_distinct_entries(results, "document_source")) == 1

    def test_idle_time_between_batches_of_a_stage(self) -> None:
        results = _run([SleepStage(seconds=0.0)], make_int_tasks(3))
        idle = [t._stage_perf[0].actor_idle_time for t in results]
        assert idle[0] == 0.0 and all(i >= 0.0 for i in idle)

    def test_custom_metrics(self) -> None:
        results = _run([BatchRecorderStage(batch_size=3)], make_document_batches(4, rows_per_batch=5))
        metrics = [t._stage_perf[0].custom_metrics for t in results]
        assert metrics == [{"batch_tasks": 3.0, "batch_items": 15.0}] * 3 + [
            {"batch_tasks": 1.0, "batch_items": 5.0}
        ]

    def test_stage_without_history_propagation_resets_it(self) -> None:
        # IntSourceStage builds fresh tasks, so nothing from before it survives: one entry per stage from it on.
        results = _run([PassthroughStage(), IntSourceStage(n=2), AddConstantStage()])
        assert [[e.stage_name for e in t._stage_perf] for t in results] == [
            ["int_source", "add_constant"]
        ] * 2


class _Counting(StageWithSetup):
    """StageWithSetup that raises on a chosen task (defined here: the in-process executor needs no import)."""

    fail_on: str = ""

    def process(self, task: Task) -> Task:
        if task.task_id == self.fail_on:
            raise InjectedFailure(f"failing on {task.task_id}")
        return super().process(task)


class TestLifecycle:
    def test_setup_and_teardown_once_per_stage(self, tmp_path: Path) -> None:
        first = StageWithSetup(marker_dir=str(tmp_path / "a"), name="first")
        second = StageWithSetup(marker_dir=str(tmp_path / "b"), name="second")
        results = _run([first, FanOutStage(n=3), second], make_int_tasks(4))
        assert len(results) == 12
        for directory in ("a", "b"):
            assert count_markers(tmp_path / directory, "setup_on_node") == 1
            assert count_markers(tmp_path / directory, "setup") == 1
            assert count_markers(tmp_path / directory, "teardown") == 1
            assert read_markers(tmp_path / directory, "setup_on_node") == ["local"]
            assert read_markers(tmp_path / directory, "setup") == ["in_process"]
        assert all(t._metadata["first_worker"] == "in_process" for t in results)

    def test_setup_on_node_of_every_stage_runs_before_processing(self, tmp_path: Path) -> None:
        with pytest.raises(StageFailedError):
            _run(
                [RaiseOnTaskStage(task_id="int_0"), StageWithSetup(marker_dir=str(tmp_path))],
                make_int_tasks(1),
            )
        assert count_markers(tmp_path, "setup_on_node") == 1
        assert count_markers(tmp_path, "setup") == 0  # the later stage never started

    def test_teardown_after_failure(self, tmp_path: Path) -> None:
        stage = _Counting(marker_dir=str(tmp_path))
        stage.fail_on = "int_2"
        with pytest.raises(StageFailedError):
            _run([stage], make_int_tasks(4))
        assert count_markers(tmp_path, "setup") == 1
        assert count_markers(tmp_path, "teardown") == 1


class TestIsolation:
    def test_initial_tasks_not_mutated(self) -> None:
        tasks = make_int_tasks(3)
        tasks[0]._metadata["k"] = "v"
        snapshot = [(t.task_id, t.data, dict(t._metadata), list(t._stage_perf)) for t in tasks]
        results = _run(
            [BatchRecorderStage(batch_size=2), CpuBurnStage(iterations=5), PassthroughStage()], tasks
        )
        assert [(t.task_id, t.data, dict(t._metadata), list(t._stage_perf)) for t in tasks] == snapshot
        assert all(r is not t for r in results for t in tasks)
        assert results[0]._metadata["k"] == "v"

    def test_document_data_not_mutated(self) -> None:
        import pandas as pd

        class _AddColumnInPlace(ProcessingStage[DocumentBatch, DocumentBatch]):
            name = "in_place"

            def process(self, task: DocumentBatch) -> DocumentBatch:
                task.data["new"] = 1
                return task

        frame = pd.DataFrame({"text": ["a", "b"]})
        batch = DocumentBatch("d", "ds", frame)
        results = _run([_AddColumnInPlace()], [batch])
        assert list(frame.columns) == ["text"] and batch.data is frame
        assert list(results[0].to_pandas().columns) == ["text", "new"]

    def test_stages_not_mutated(self, tmp_path: Path) -> None:
        recorder = BatchRecorderStage(batch_size=2)
        with_setup = StageWithSetup(marker_dir=str(tmp_path))
        before = copy.deepcopy(vars(recorder))
        _run([recorder, with_setup], make_int_tasks(3))
        assert vars(recorder) == before
        assert with_setup._worker_id is None
        assert not hasattr(recorder, "_custom_metrics")

    def test_repeated_runs_are_identical(self) -> None:
        executor = InProcessExecutor()
        stages = [IntSourceStage(n=3), PassthroughStage()]
        first = executor.execute(stages)
        second = executor.execute(stages)
        assert [(t.task_id, len(t._stage_perf)) for t in first] == [
            (t.task_id, len(t._stage_perf)) for t in second
        ]
        assert all(len(t._stage_perf) == 2 for t in second)
        assert EmptyTask._stage_perf == []


class TestErrors:
    def test_stage_exception_propagates_with_context(self) -> None:
        with pytest.raises(StageFailedError, match="injected failure on task int_2") as info:
            _run([RaiseOnTaskStage(task_id="int_2").with_(batch_size=2)], make_int_tasks(4))
        # The same error as on every executor: the stage, the batch's task ids, the original error.
        assert str(info.value).startswith(
            "Stage 'raise_on_task' failed on task(s) ['int_2', 'int_3']: InjectedFailure: injected failure"
        )
        assert isinstance(info.value.__cause__, InjectedFailure)
        failure = info.value.failure
        assert failure is not None and failure.task_ids == ("int_2", "int_3")
        assert (failure.stage, failure.error_type, failure.attempts, failure.kind) == (
            "raise_on_task",
            "InjectedFailure",
            1,
            "user",
        )
        assert "Traceback" in failure.traceback

    def test_non_task_output(self) -> None:
        # A str on every executor: test_contract.py.
        with pytest.raises(StageFailedError, match=r"returned an object of type dict") as info:
            _run([ReturnsNonTaskStage(value={"a": 1})], make_int_tasks(1))
        assert isinstance(info.value.__cause__, TypeError)

    def test_a_negative_batch_size_fails_before_any_work(self, tmp_path: Path) -> None:
        # Zero on every executor: test_contract.py.
        stage = BatchRecorderStage(name="bad_batch")
        stage.batch_size = -3
        with pytest.raises(ValueError, match="Stage 'bad_batch' has invalid batch_size"):
            _run([StageWithSetup(marker_dir=str(tmp_path)), stage], make_int_tasks(2))
        assert count_markers(tmp_path, "setup_on_node") == 0

    def test_invalid_stages(self) -> None:
        with pytest.raises(TypeError, match="is a CompositeStage"):
            _run([AddThenFilterStage()])
        with pytest.raises(TypeError, match="is not a ProcessingStage"):
            _run([PassthroughStage, PassthroughStage()])  # type: ignore[list-item]

    def test_input_validation_failure(self) -> None:
        with pytest.raises(StageFailedError, match="failed validation for stage"):
            _run([AddLengthStage(column="missing")], make_document_batches(1, 2))

    def test_config_validation(self) -> None:
        assert InProcessExecutor().ignore_failures is False
        assert InProcessExecutor({}).config == {}
        assert InProcessExecutor({"ignore_failures": True}).ignore_failures is True
        # Unknown keys and a non-bool ignore_failures: tests/executors/test_contract.py, every executor.


class TestIgnoreFailures:
    def test_failed_batches_are_skipped_and_reported(self, caplog: pytest.LogCaptureFixture) -> None:
        executor = InProcessExecutor({"ignore_failures": True})
        stages = [
            IntSourceStage(n=6),
            RaiseOnTaskStage(task_id="int_3").with_(batch_size=2),
            AddConstantStage(value=100),
        ]
        results = executor.execute(stages)
        assert [t.data for t in results] == [100, 101, 104, 105]
        [failure] = executor.failures
        assert isinstance(failure, FailureRecord)
        assert {k: failure[k] for k in ("stage", "task_ids", "error_type", "message")} == {
            "stage": "raise_on_task",
            "task_ids": ["int_2", "int_3"],
            "error_type": "InjectedFailure",
            "message": "injected failure on task int_3",
        }
        assert any(r.levelname == "WARNING" and "raise_on_task" in r.getMessage() for r in caplog.records)
        # A new run starts a new report.
        executor.execute([PassthroughStage()], make_int_tasks(1))
        assert executor.failures == []

    def test_every_input_ends_as_output_or_failure(self) -> None:
        executor = InProcessExecutor({"ignore_failures": True})
        results = executor.execute([RaiseOnTaskStage(task_id="int_5")], make_int_tasks(8))
        failed = [task_id for failure in executor.failures for task_id in failure["task_ids"]]
        assert sorted([t.task_id for t in results] + failed) == sorted(f"int_{i}" for i in range(8))
