"""``@processing_stage``: turn a one-argument function into a stage instance."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from nemo_curator.stages.base import _STAGE_REGISTRY, ProcessingStage
from nemo_curator.stages.resources import Resources
from nemo_curator.tasks import Task

# The task types the decorated function takes and returns; both are Tasks, as ProcessingStage requires.
TIn = TypeVar("TIn", bound=Task)
TOut = TypeVar("TOut", bound=Task)


def processing_stage(
    *,
    name: str,
    resources: Resources | dict[str, Any] | None = None,
    batch_size: int | None = None,
) -> Callable[[Callable[[TIn], TOut | list[TOut] | None]], ProcessingStage]:
    """Decorate ``fn(task) -> task | list[task] | None``; the result is a ready-to-use stage *instance*.

    Outputs inherit a copy of the input's ``_metadata`` and ``_stage_perf``.
    """
    if isinstance(resources, dict):
        stage_resources = Resources(**resources)
    elif resources is None:
        stage_resources = Resources()
    else:
        stage_resources = resources

    def decorator(fn: Callable[[TIn], TOut | list[TOut] | None]) -> ProcessingStage:
        parameters = inspect.signature(fn).parameters
        if len(parameters) != 1:
            msg = (
                f"A function decorated with @processing_stage must take exactly one argument (the task); "
                f"{fn.__name__} takes {len(parameters)}"
            )
            raise ValueError(msg)

        class _FunctionProcessingStage(ProcessingStage[Task, Task]):
            def process(self, task: Task) -> Any:
                result = fn(task)
                outputs = result if isinstance(result, list) else [result]
                for output in outputs:
                    if isinstance(output, Task):
                        output._metadata = task._metadata.copy()
                        output._stage_perf = task._stage_perf.copy()
                return result

        _FunctionProcessingStage.name = name
        _FunctionProcessingStage.resources = stage_resources
        _FunctionProcessingStage.batch_size = batch_size
        _FunctionProcessingStage.__name__ = name
        _FunctionProcessingStage.__qualname__ = name
        _FunctionProcessingStage.__doc__ = fn.__doc__
        # The metaclass registered the class under its definition name; register it under the stage name.
        if _STAGE_REGISTRY.get("_FunctionProcessingStage") is _FunctionProcessingStage:
            del _STAGE_REGISTRY["_FunctionProcessingStage"]
        _STAGE_REGISTRY[name] = _FunctionProcessingStage
        return _FunctionProcessingStage()

    return decorator
