"""``Pipeline``: an ordered list of stages, decomposed and handed to an executor."""

from __future__ import annotations

from typing import Any

from loguru import logger

from nemo_curator.backends.base import BaseExecutor
from nemo_curator.stages.base import CompositeStage, ProcessingStage
from nemo_curator.tasks import Task


def _decompose_stages(
    stages: list[ProcessingStage],
) -> tuple[list[ProcessingStage], dict[str, list[str]]]:
    """Replace each composite by its stages (with its queued ``with_`` changes applied)."""
    execution_stages: list[ProcessingStage] = []
    decomposition_info: dict[str, list[str]] = {}
    for stage in stages:
        if not isinstance(stage, CompositeStage):
            execution_stages.append(stage)
            continue
        sub_stages = stage.decompose_and_apply_with()
        for sub_stage in sub_stages:
            if isinstance(sub_stage, CompositeStage):
                msg = (
                    f"Composite stage '{stage.name}' contains the composite stage '{sub_stage.name}'. "
                    "Nested composition is not supported."
                )
                raise TypeError(msg)
        # Curator appends a composite that decomposes into a single stage as the composite itself, which
        # then fails at run time; the decomposed stage is appended instead.
        execution_stages.extend(sub_stages)
        decomposition_info[stage.name] = [sub_stage.name for sub_stage in sub_stages]
        logger.debug(f"Decomposed composite stage '{stage.name}' into {decomposition_info[stage.name]}")
    return execution_stages, decomposition_info


class Pipeline:
    """A named, ordered list of processing stages."""

    def __init__(
        self,
        name: str,
        description: str | None = None,
        stages: list[ProcessingStage] | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.description = description
        self.stages = stages or []
        self.config = config or {}
        self.decomposition_info: dict[str, list[str]] = {}

    def add_stage(self, stage: ProcessingStage) -> Pipeline:
        if not isinstance(stage, ProcessingStage):
            msg = f"Stage must be a ProcessingStage, got {type(stage)}"
            raise TypeError(msg)
        self.stages.append(stage)
        logger.info(f"Added stage '{stage.name}' to pipeline '{self.name}'")
        return self

    def build(self) -> None:
        """Decompose composite stages into the stages an executor runs."""
        if not self.stages:
            msg = f"Pipeline '{self.name}' has no stages"
            raise ValueError(msg)
        self.stages, decomposition_info = _decompose_stages(self.stages)
        # A second build finds nothing left to decompose; keep what the first one recorded.
        self.decomposition_info.update(decomposition_info)

    def __repr__(self) -> str:
        stages = ", ".join(f"{stage.name}({type(stage).__name__})" for stage in self.stages)
        return f"Pipeline(name={self.name!r}, stages=[{stages}])"

    def describe(self) -> str:
        """A multi-line, human-readable description of the pipeline and its stages."""
        lines = [f"Pipeline: {self.name}"]
        if self.description:
            lines.append(f"Description: {self.description}")
        lines.append(f"Stages: {len(self.stages)}")
        for index, stage in enumerate(self.stages, start=1):
            lines.append(f"  {index}. {stage.name} ({type(stage).__name__})")
            if isinstance(stage, CompositeStage):
                lines.append(f"     {stage.get_description()}")
            lines.append(f"     Resources: {stage.resources}")
            lines.append(f"     Batch size: {stage.batch_size}")
            input_attrs, input_columns = stage.inputs()
            output_attrs, output_columns = stage.outputs()
            if input_attrs or input_columns:
                lines.append(f"     Inputs: attributes={input_attrs}, columns={input_columns}")
            if output_attrs or output_columns:
                lines.append(f"     Outputs: attributes={output_attrs}, columns={output_columns}")
        if self.decomposition_info:
            lines.append("Decomposed composite stages:")
            for composite, sub_stages in self.decomposition_info.items():
                lines.append(f"  {composite} -> {', '.join(sub_stages)}")
        return "\n".join(lines)

    def run(
        self,
        executor: BaseExecutor | None = None,
        initial_tasks: list[Task] | None = None,
        checkpoint_path: str | None = None,
        retry_failed: bool = False,
    ) -> list[Task] | None:
        """Build the pipeline and run it with ``executor`` (Curator's default: ``XennaExecutor()``).

        ``checkpoint_path``: a directory where completed source tasks are recorded; a rerun with the same
        directory skips them and returns only the outputs of the sources it redid. ``retry_failed``: also
        redo the sources whose tasks failed (listed in the failed-task manifest) in that run.
        """
        self.build()
        if executor is None:
            from nemo_curator.backends.xenna import XennaExecutor

            executor = XennaExecutor()
        if checkpoint_path is None and not retry_failed:
            return executor.execute(self.stages, initial_tasks)
        return executor.execute(
            self.stages, initial_tasks, checkpoint_path=checkpoint_path, retry_failed=retry_failed
        )
