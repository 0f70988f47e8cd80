"""nemo_curator.pipeline.Pipeline and its default executor."""

from __future__ import annotations

from unittest import mock

import pytest

import nemo_curator.backends.xenna as xenna_package
from nemo_curator.backends.base import BaseExecutor
from nemo_curator.backends.in_process import InProcessExecutor
from nemo_curator.backends.xenna import XennaExecutor
from nemo_curator.pipeline import Pipeline
from nemo_curator.stages.base import CompositeStage, ProcessingStage
from nemo_curator.tasks import Task
from nemo_curator.testing.stages import (
    AddConstantStage,
    AddThenFilterStage,
    IntSourceStage,
    IntTask,
    PassthroughStage,
)


class _Nested(CompositeStage[IntTask, IntTask]):
    name = "nested"

    def __init__(self) -> None:
        super().__init__()

    def decompose(self) -> list[ProcessingStage]:
        return [PassthroughStage(), AddThenFilterStage()]


class _Single(CompositeStage[IntTask, IntTask]):
    name = "single"

    def __init__(self) -> None:
        super().__init__()

    def decompose(self) -> list[ProcessingStage]:
        return [AddConstantStage(value=10)]


class TestConstruction:
    def test_attributes(self) -> None:
        stages: list[ProcessingStage] = [PassthroughStage()]
        pipeline = Pipeline("p", description="d", stages=stages, config={"k": 1})
        assert (pipeline.name, pipeline.description, pipeline.config) == ("p", "d", {"k": 1})
        assert pipeline.stages is stages  # aliases the caller's list
        empty = Pipeline("e")
        assert empty.stages == [] and empty.description is None

    def test_add_stage(self, caplog: pytest.LogCaptureFixture) -> None:
        pipeline = Pipeline("p")
        stage = PassthroughStage()
        assert pipeline.add_stage(stage) is pipeline
        assert pipeline.stages == [stage]
        assert any(r.getMessage() == "Added stage 'passthrough' to pipeline 'p'" for r in caplog.records)

    def test_add_stage_rejects_non_stage(self) -> None:
        with pytest.raises(TypeError, match="Stage must be a ProcessingStage, got"):
            Pipeline("p").add_stage("nope")  # type: ignore[arg-type]
        Pipeline("p").add_stage(mock.Mock(spec=ProcessingStage))

    def test_repr_and_describe(self) -> None:
        pipeline = Pipeline("demo", description="a demo", stages=[IntSourceStage(), AddThenFilterStage()])
        assert (
            repr(pipeline)
            == "Pipeline(name='demo', stages=[int_source(IntSourceStage), add_then_filter(AddThenFilterStage)])"
        )
        pipeline.build()
        text = pipeline.describe()
        assert text.splitlines()[0] == "Pipeline: demo"
        assert "a demo" in text and "add_constant" in text and "filter_even" in text
        assert "add_then_filter -> add_constant, filter_even" in text


class TestBuild:
    def test_empty_pipeline(self) -> None:
        with pytest.raises(ValueError, match="Pipeline 'nothing' has no stages"):
            Pipeline("nothing").build()

    def test_decomposes_composites_and_applies_with(self) -> None:
        composite = AddThenFilterStage(value=2).with_({"add_constant": {"batch_size": 7, "name": "plus_two"}})
        pipeline = Pipeline("p", stages=[IntSourceStage(), composite, PassthroughStage()])
        pipeline.build()
        assert [s.name for s in pipeline.stages] == ["int_source", "plus_two", "filter_even", "passthrough"]
        assert pipeline.stages[1].batch_size == 7
        assert pipeline.decomposition_info == {"add_then_filter": ["plus_two", "filter_even"]}
        pipeline.build()  # idempotent
        assert len(pipeline.stages) == 4
        assert pipeline.decomposition_info == {"add_then_filter": ["plus_two", "filter_even"]}

    def test_nested_composition_rejected(self) -> None:
        with pytest.raises(TypeError, match=r"Nested composition is not supported\."):
            Pipeline("p", stages=[_Nested()]).build()

    def test_single_stage_composite_is_replaced_by_its_stage(self) -> None:
        pipeline = Pipeline("p", stages=[_Single()])
        pipeline.build()
        assert [type(s) for s in pipeline.stages] == [AddConstantStage]
        assert pipeline.decomposition_info == {"single": ["add_constant"]}


class TestRun:
    def test_runs_with_given_executor(self) -> None:
        pipeline = Pipeline("p", stages=[IntSourceStage(n=6), AddThenFilterStage(value=1)])
        results = pipeline.run(InProcessExecutor())
        assert results is not None
        assert sorted(t.data for t in results) == [1, 3, 5]
        assert [s.name for s in pipeline.stages] == ["int_source", "add_constant", "filter_even"]

    def test_passes_stages_and_initial_tasks_to_executor(self) -> None:
        class _Recording(BaseExecutor):
            def execute(
                self, stages: list[ProcessingStage], initial_tasks: list[Task] | None = None
            ) -> list[Task]:
                self.seen = (stages, initial_tasks)
                return ["sentinel"]  # type: ignore[list-item]

        executor = _Recording()
        tasks = [IntTask("a", "ds", 1)]
        pipeline = Pipeline("p", stages=[AddThenFilterStage()])
        assert pipeline.run(executor, tasks) == ["sentinel"]
        assert executor.seen[0] is pipeline.stages and executor.seen[1] is tasks

    def test_default_executor_is_xenna(self) -> None:
        with mock.patch("nemo_curator.backends.xenna.XennaExecutor") as patched:
            patched.return_value.execute.return_value = []
            Pipeline("p", stages=[PassthroughStage()]).run()
        patched.assert_called_once_with()
        patched.return_value.execute.assert_called_once()


class TestXennaImport:
    def test_importable_without_ray_started(self) -> None:
        assert xenna_package.XennaExecutor is XennaExecutor
        executor = XennaExecutor(config={"ignore_failures": True})
        assert executor.config == {"ignore_failures": True}
        assert executor.settings.ignore_failures is True
        assert executor.execution_mode == "streaming"
