"""Curator's rule for which stages run in actors (the pools are sized by the core: `_core.plan_ray_data`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nemo_curator.stages.base import ProcessingStage

__all__ = ["is_actor_stage"]


def is_actor_stage(stage: ProcessingStage) -> bool:
    """Curator's heuristic: a stage that overrides `setup`, or needs both GPUs and CPUs, runs in actors.

    An explicit `ray_stage_spec()["is_actor_stage"]` takes precedence (the executor checks it first).
    """
    from nemo_curator.stages.base import ProcessingStage

    res = stage.resources
    return type(stage).setup is not ProcessingStage.setup or (res.gpus > 0 and res.cpus > 0)
