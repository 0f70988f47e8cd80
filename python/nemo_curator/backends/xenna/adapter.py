"""`XennaStageAdapter`: Curator's per-stage wrapper for Xenna, kept for code that imports it.

`XennaExecutor` runs stages on the actor-pool engine and does not use it; it offers the same surface
as Curator's (batch size, resources, `process_data`; setup hooks from `BaseStageAdapter`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nemo_curator.backends.base import BaseStageAdapter

if TYPE_CHECKING:
    from nemo_curator.stages.base import ProcessingStage
    from nemo_curator.stages.resources import Resources
    from nemo_curator.tasks import Task


class XennaStageAdapter(BaseStageAdapter):
    """A stage seen as a Xenna stage: batch size (None -> 1), resources, and `process_data`."""

    @property
    def stage_batch_size(self) -> int:
        return int(self.stage.batch_size) if self.stage.batch_size is not None else 1

    @property
    def required_resources(self) -> Resources:
        return self.stage.resources

    @property
    def env_info(self) -> None:
        return None

    def process_data(self, tasks: list[Task]) -> list[Task]:
        return self.process_batch(tasks)


def create_named_xenna_stage_adapter(stage: ProcessingStage[Any, Any]) -> XennaStageAdapter:
    """An adapter whose class is named after the stage's class (so tables and logs read well)."""
    cls = type(type(stage).__name__, (XennaStageAdapter,), {"__module__": XennaStageAdapter.__module__})
    return cls(stage)
