"""nemo_curator.stages.function_decorators.processing_stage."""

from __future__ import annotations

import copy
from typing import TypeVar, get_type_hints

import pytest

from nemo_curator.stages import function_decorators
from nemo_curator.stages.base import _STAGE_REGISTRY, ProcessingStage, get_stage_class
from nemo_curator.stages.function_decorators import processing_stage
from nemo_curator.stages.resources import Resources
from nemo_curator.tasks import Task
from nemo_curator.testing.stages import IntTask
from nemo_curator.utils.performance_utils import StagePerfStats


def test_returns_configured_stage_instance() -> None:
    @processing_stage(name="decorated_double", resources={"cpus": 0.5}, batch_size=4)
    def double(task: IntTask) -> IntTask:
        return IntTask(task_id=f"{task.task_id}_x2", dataset_name=task.dataset_name, data=task.data * 2)

    assert isinstance(double, ProcessingStage)
    stage_class = type(double)
    assert stage_class.__name__ == stage_class.__qualname__ == "decorated_double"
    assert (stage_class.name, stage_class.resources, stage_class.batch_size) == (
        "decorated_double",
        Resources(cpus=0.5),
        4,
    )
    assert double.name == "decorated_double"
    assert get_stage_class("decorated_double") is stage_class
    assert "_FunctionProcessingStage" not in _STAGE_REGISTRY
    assert double.process(IntTask("a", "ds", 3)).data == 6


def test_defaults() -> None:
    @processing_stage(name="decorated_default")
    def identity(task: IntTask) -> IntTask:
        return task

    assert identity.resources == Resources()
    assert identity.batch_size is None
    resources = Resources(cpus=3.0)

    @processing_stage(name="decorated_resources_obj", resources=resources)
    def other(task: IntTask) -> IntTask:
        return task

    assert other.resources is resources


def test_outputs_inherit_copies_of_metadata_and_perf() -> None:
    @processing_stage(name="decorated_split")
    def split(task: IntTask) -> list[IntTask]:
        return [IntTask(task_id=f"{task.task_id}_{i}", dataset_name="ds", data=i) for i in range(2)]

    parent = IntTask("p", "ds", 1)
    parent._metadata["source"] = "file.jsonl"
    parent.add_stage_perf(StagePerfStats("earlier"))
    children = split.process(parent)
    assert [c.task_id for c in children] == ["p_0", "p_1"]
    for child in children:
        assert child._metadata == {"source": "file.jsonl"}
        assert child._metadata is not parent._metadata
        assert child._stage_perf == [StagePerfStats("earlier")]
        assert child._stage_perf is not parent._stage_perf
    children[0]._metadata["x"] = 1
    assert "x" not in children[1]._metadata and "x" not in parent._metadata


def test_none_result_passes_through() -> None:
    @processing_stage(name="decorated_filter")
    def drop(task: IntTask) -> None:
        return None

    assert drop.process(IntTask("p", "ds", 1)) is None
    assert drop.process_batch([IntTask("p", "ds", 1)]) == [None]


@pytest.mark.parametrize("arity", [0, 2])
def test_wrong_arity_raises(arity: int) -> None:
    decorator = processing_stage(name=f"bad_arity_{arity}")
    if arity == 0:

        def fn0() -> None:
            return None

        with pytest.raises(ValueError):
            decorator(fn0)
    else:

        def fn2(a: IntTask, b: int) -> IntTask:
            return a

        with pytest.raises(ValueError):
            decorator(fn2)


def test_decorated_stage_can_be_copied_and_reconfigured() -> None:
    @processing_stage(name="decorated_copy")
    def inc(task: IntTask) -> IntTask:
        task.data += 1
        return task

    clone = copy.deepcopy(inc)
    assert clone.process(IntTask("a", "ds", 1)).data == 2
    tuned = inc.with_(batch_size=8)
    assert tuned.batch_size == 8 and inc.batch_size is None


def test_task_type_variables_are_bound_to_task() -> None:
    for name in ("TIn", "TOut"):
        var = getattr(function_decorators, name)
        assert isinstance(var, TypeVar)
        assert var.__name__ == name
        assert var.__bound__ is Task
    hints = get_type_hints(function_decorators.processing_stage)
    assert "TIn" in str(hints["return"]) and "TOut" in str(hints["return"])
