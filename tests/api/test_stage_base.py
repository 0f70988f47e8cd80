"""nemo_curator.stages.base: registry, ProcessingStage, CompositeStage."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pytest

from nemo_curator.stages.base import (
    _STAGE_REGISTRY,
    CompositeStage,
    ProcessingStage,
    StageMeta,
    get_stage_class,
)
from nemo_curator.stages.resources import Resources
from nemo_curator.tasks import DocumentBatch, Task
from nemo_curator.testing.stages import (
    AddConstantStage,
    FilterEvenStage,
    IntTask,
    PassthroughStage,
    make_int_tasks,
)


class _Doubler(ProcessingStage[IntTask, IntTask]):
    name = "doubler"

    def process(self, task: IntTask) -> IntTask:
        task.data *= 2
        return task


class _Listing(ProcessingStage[IntTask, IntTask]):
    name = "listing"

    def process(self, task: IntTask) -> list[IntTask] | None:
        if task.data == 0:
            return None
        return [task] * task.data


class _NeedsColumns(ProcessingStage[DocumentBatch, DocumentBatch]):
    name = "needs_columns"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], ["text"]

    def process(self, task: DocumentBatch) -> DocumentBatch:
        return task


class _BatchStage(ProcessingStage[IntTask, IntTask]):
    def process(self, task: IntTask) -> IntTask:
        return task

    def process_batch(self, tasks: list[IntTask]) -> list[IntTask]:
        return tasks


class TestRegistry:
    def test_concrete_stages_registered_by_class_name(self) -> None:
        assert get_stage_class("_Doubler") is _Doubler
        assert _STAGE_REGISTRY["PassthroughStage"] is PassthroughStage
        assert isinstance(_Doubler, StageMeta)

    def test_abstract_and_root_classes_not_registered(self) -> None:
        class _AbstractStage(ProcessingStage[Task, Task]):
            pass

        assert "_AbstractStage" not in _STAGE_REGISTRY
        assert "ProcessingStage" not in _STAGE_REGISTRY
        assert "CompositeStage" not in _STAGE_REGISTRY

    def test_opt_out_with_abstract_root_flag(self) -> None:
        class _HiddenStage(ProcessingStage[Task, Task]):
            _is_abstract_root = True

            def process(self, task: Task) -> Task:
                return task

        assert "_HiddenStage" not in _STAGE_REGISTRY

        class _ChildOfHidden(_HiddenStage):
            pass

        assert get_stage_class("_ChildOfHidden") is _ChildOfHidden

    def test_unknown_name_raises_key_error(self) -> None:
        with pytest.raises(KeyError):
            get_stage_class("NoSuchStage")


class TestProcessingStageAttributes:
    def test_class_defaults(self) -> None:
        assert ProcessingStage.name == "ProcessingStage"
        assert ProcessingStage.batch_size == 1
        assert ProcessingStage.resources == Resources(cpus=1.0)
        # One shared Resources object, as in Curator.
        assert _Doubler().resources is ProcessingStage.resources

    def test_private_views(self) -> None:
        stage = _Doubler()
        assert stage._name == "doubler"
        assert stage._resources is stage.resources
        assert stage._batch_size == 1

    @pytest.mark.parametrize("attr", ["_name", "_resources", "_batch_size"])
    def test_overriding_private_views_rejected(self, attr: str) -> None:
        with pytest.raises(TypeError, match=f"_Bad must not override '{attr}'"):
            type("_Bad", (_Doubler,), {attr: "x"})

    def test_simple_defaults(self) -> None:
        stage = _Doubler()
        assert stage.num_workers() is None
        assert stage.inputs() == ([], [])
        assert stage.outputs() == ([], [])
        assert stage.xenna_stage_spec() == {}
        assert stage.ray_stage_spec() == {}
        assert repr(stage) == "_Doubler"
        assert stage.setup_on_node() is None and stage.setup() is None and stage.teardown() is None

    def test_process_is_abstract(self) -> None:
        class _NoProcess(ProcessingStage[Task, Task]):
            pass

        with pytest.raises(TypeError):
            _NoProcess()  # type: ignore[abstract]

    def test_supports_batch_processing(self) -> None:
        assert _Doubler().supports_batch_processing() is False
        assert _BatchStage().supports_batch_processing() is True

    def test_get_config(self) -> None:
        assert _BatchStage().get_config() == {
            "name": "ProcessingStage",
            "resources": Resources(cpus=1.0),
            "batch_size": 1,
            "supports_batch_processing": True,
        }


class TestDefaultProcessBatch:
    def test_single_results_appended_lists_extended_none_kept(self) -> None:
        tasks = make_int_tasks(4)  # data 0..3
        results = _Listing().process_batch(tasks)
        # 0 -> None (kept by the stage: the executor drops it), 1 -> [t1], 2 -> [t2, t2], 3 -> [t3]*3
        assert results[0] is None
        assert [t.task_id for t in results[1:]] == ["int_1", "int_2", "int_2", "int_3", "int_3", "int_3"]
        assert [t.data for t in _Doubler().process_batch(make_int_tasks(3))] == [0, 2, 4]

    def test_validation_failure_raises(self, caplog: pytest.LogCaptureFixture) -> None:
        bad = DocumentBatch("d1", "ds", pd.DataFrame({"other": [1]}))
        with pytest.raises(
            ValueError,
            match=r"Task DocumentBatch\(task_id=d1, dataset_name=ds\) failed validation for stage _NeedsColumns",
        ):
            _NeedsColumns().process_batch([bad])
        assert any(r.levelname == "ERROR" and "text" in r.getMessage() for r in caplog.records)

    def test_validate_input_pandas_and_arrow_columns(self) -> None:
        stage = _NeedsColumns()
        assert stage.validate_input(DocumentBatch("p", "ds", pd.DataFrame({"text": ["a"]})))
        assert stage.validate_input(DocumentBatch("a", "ds", pa.table({"text": ["a"]})))
        assert not stage.validate_input(DocumentBatch("m", "ds", pa.table({"x": ["a"]})))


class TestWith:
    def test_returns_modified_copy(self) -> None:
        stage = _Doubler()
        new_resources = Resources(cpus=2.0)
        copy = stage.with_(name="renamed", resources=new_resources, batch_size=8)
        assert copy is not stage
        assert (copy.name, copy.resources, copy.batch_size) == ("renamed", new_resources, 8)
        assert (stage.name, stage.batch_size) == ("doubler", 1)
        assert "name" not in vars(stage)

    def test_none_arguments_leave_values(self) -> None:
        stage = _Doubler().with_(batch_size=4)
        again = stage.with_(name="x")
        assert again.batch_size == 4
        assert again.with_(batch_size=None).batch_size == 4

    def test_is_deep_copy(self) -> None:
        @dataclass
        class _Holder(ProcessingStage[Task, Task]):
            payload: list[int] | None = None

            def process(self, task: Task) -> Task:
                return task

        stage = _Holder(payload=[1])
        copy = stage.with_(name="h2")
        copy.payload.append(2)  # type: ignore[union-attr]
        assert stage.payload == [1]

    def test_class_level_changes(self, monkeypatch: pytest.MonkeyPatch) -> None:
        plain = _Doubler()
        configured = plain.with_(batch_size=2)
        monkeypatch.setattr(_Doubler, "batch_size", 16)
        assert plain.batch_size == 16
        assert configured.batch_size == 2


class TestCustomMetrics:
    def test_log_and_consume(self, caplog: pytest.LogCaptureFixture) -> None:
        stage = _Doubler()
        assert stage._consume_custom_metrics() == {}
        stage._log_metric("a", 1)
        stage._log_metrics({"b": 2.5, "bad": "x", "c": True})
        assert any(r.levelname == "WARNING" and "bad" in r.getMessage() for r in caplog.records)
        metrics = stage._consume_custom_metrics()
        assert metrics == {"a": 1.0, "b": 2.5, "c": 1.0}
        assert all(type(v) is float for v in metrics.values())
        assert not hasattr(stage, "_custom_metrics")
        assert stage._consume_custom_metrics() == {}

    def test_later_value_wins(self) -> None:
        stage = _Doubler()
        stage._log_metric("a", 1)
        stage._log_metric("a", 3)
        assert stage._consume_custom_metrics() == {"a": 3.0}


class _Composite(CompositeStage[IntTask, IntTask]):
    name = "composite"

    def __init__(self, stages: list[ProcessingStage] | None = None) -> None:
        super().__init__()
        self._stages = stages

    def decompose(self) -> list[ProcessingStage]:
        if self._stages is not None:
            return list(self._stages)
        return [AddConstantStage(value=1), FilterEvenStage()]


class TestCompositeStage:
    def test_basics(self) -> None:
        composite = _Composite()
        assert composite._with_operations == []
        assert composite.get_description() == "Composite stage: composite"
        with pytest.raises(RuntimeError, match="Composite stage 'composite' should not be executed directly"):
            composite.process(IntTask("t", "ds", 1))
        assert get_stage_class("_Composite") is _Composite
        assert "CompositeStage" not in _STAGE_REGISTRY

    def test_inputs_outputs_delegate(self) -> None:
        class _In(PassthroughStage):
            def inputs(self) -> tuple[list[str], list[str]]:
                return ["data"], ["a"]

        class _Out(PassthroughStage):
            def outputs(self) -> tuple[list[str], list[str]]:
                return ["data"], ["b"]

        composite = _Composite([_In(name="in"), _Out(name="out")])
        assert composite.inputs() == (["data"], ["a"])
        assert composite.outputs() == (["data"], ["b"])

    def test_with_mutates_and_applies_in_order(self) -> None:
        composite = _Composite()
        result = composite.with_({"add_constant": {"batch_size": 5, "name": "adder"}}).with_(
            {"adder": {"resources": Resources(cpus=0.5)}, "filter_even": {"name": "odd_only"}}
        )
        assert result is composite
        assert len(composite._with_operations) == 2
        stages = composite.decompose_and_apply_with()
        assert [s.name for s in stages] == ["adder", "odd_only"]
        assert stages[0].batch_size == 5
        assert stages[0].resources == Resources(cpus=0.5)
        # decompose() itself is untouched.
        assert [s.name for s in composite.decompose()] == ["add_constant", "filter_even"]

    def test_unknown_stage_name(self) -> None:
        composite = _Composite().with_({"nope": {"batch_size": 2}})
        with pytest.raises(
            ValueError,
            match=r"Stage nope not found in composite stage to apply configuration changes using with_\(\)\.",
        ):
            composite.decompose_and_apply_with()

    def test_duplicate_names(self) -> None:
        composite = _Composite([PassthroughStage(), PassthroughStage()]).with_({"passthrough": {}})
        with pytest.raises(
            ValueError,
            match=r"All stages must have unique names in composite stage to apply configuration changes using with_\(\)\.",
        ):
            composite.decompose_and_apply_with()

    def test_without_operations_returns_decomposition(self) -> None:
        stages = _Composite([PassthroughStage(), PassthroughStage()]).decompose_and_apply_with()
        assert [s.name for s in stages] == ["passthrough", "passthrough"]
