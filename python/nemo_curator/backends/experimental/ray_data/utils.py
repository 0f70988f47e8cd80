"""Curator's Ray Data helpers: which stages run in actors and how many (kept for API compatibility).

`RayDataExecutor` sizes its pools in the core (`_core.plan_ray_data`); these functions keep Curator's
documented behaviour for code that calls them directly.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from nemo_curator.backends.experimental.utils import get_available_cpu_gpu_resources

if TYPE_CHECKING:
    from nemo_curator.stages.base import ProcessingStage

__all__ = ["calculate_concurrency_for_actors_for_stage", "get_available_cpu_gpu_resources", "is_actor_stage"]


def calculate_concurrency_for_actors_for_stage(
    stage: ProcessingStage, ignore_head_node: bool = False
) -> int | tuple[int, int]:
    """A fixed pool of `stage.num_workers()` actors when it is set, else `(1, N)` with N the number of
    workers the free CPUs and GPUs hold. Raises `OverflowError` when the stage needs no CPU and no GPU."""
    num_workers = stage.num_workers()
    if num_workers is not None and num_workers > 0:
        return max(1, num_workers)
    cpus, gpus = get_available_cpu_gpu_resources(init_and_shutdown=False, ignore_head_node=ignore_head_node)
    res = stage.resources
    cpu_cap = cpus // res.cpus if res.cpus > 0 else math.inf
    gpu_cap = gpus // res.gpus if res.gpus > 0 else math.inf
    return (1, int(min(cpu_cap, gpu_cap)))


def is_actor_stage(stage: ProcessingStage) -> bool:
    """Curator's heuristic: a stage that overrides `setup`, or needs both GPUs and CPUs, runs in actors.

    An explicit `ray_stage_spec()["is_actor_stage"]` takes precedence (the executor checks it first).
    """
    from nemo_curator.stages.base import ProcessingStage

    res = stage.resources
    return type(stage).setup is not ProcessingStage.setup or (res.gpus > 0 and res.cpus > 0)
