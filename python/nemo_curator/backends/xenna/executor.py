"""``XennaExecutor``: importable without cosmos_xenna; running it explains which executors to use instead."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nemo_curator.backends.base import BaseExecutor
from nemo_curator.backends.utils import merge_executor_configs

if TYPE_CHECKING:
    from nemo_curator.stages.base import ProcessingStage
    from nemo_curator.tasks import Task

_DEFAULT_CONFIG: dict[str, Any] = {
    "logging_interval": 60,
    "ignore_failures": False,
    "execution_mode": "streaming",
    "cpu_allocation_percentage": 0.95,
    "autoscale_interval_s": 180,
}

SUPPORTED_EXECUTORS = (
    "nemo_curator.backends.experimental.RayActorPoolExecutor",
    "nemo_curator.backends.experimental.RayDataExecutor",
    "nemo_curator.backends.in_process.InProcessExecutor",
)


class XennaExecutor(BaseExecutor):
    """Placeholder for Curator's cosmos-xenna executor, which this package does not provide.

    It is what ``Pipeline.run()`` uses when given no executor; pass one of ``SUPPORTED_EXECUTORS`` instead.
    """

    def __init__(self, config: dict[str, Any] | None = None, ignore_head_node: bool = False) -> None:
        if ignore_head_node:
            msg = "ignore_head_node is not supported by XennaExecutor"
            raise ValueError(msg)
        super().__init__(merge_executor_configs(_DEFAULT_CONFIG, config), ignore_head_node)

    def execute(self, stages: list[ProcessingStage], initial_tasks: list[Task] | None = None) -> list[Task]:
        msg = (
            "XennaExecutor (cosmos-xenna) is not available in nemo-curator-rs. "
            f"Pass one of these executors instead: {', '.join(SUPPORTED_EXECUTORS)}, "
            "e.g. pipeline.run(executor=RayActorPoolExecutor())."
        )
        raise NotImplementedError(msg)
