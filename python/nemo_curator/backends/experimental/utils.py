"""Ray helpers shared by the Ray executors: head-node lookup, free resources, per-node setup."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

import ray
from loguru import logger
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from nemo_curator.backends.base import NodeInfo, WorkerMetadata

if TYPE_CHECKING:
    from nemo_curator.stages.base import ProcessingStage

_HEAD_NODE_RESOURCE = "node:__internal_head__"

# Read and reset directly by tests; never invalidated (as in Curator).
_HEAD_NODE_ID_CACHE: str | None = None


class RayStageSpecKeys(str, Enum):  # noqa: UP042 (str mixin as in Curator: same str() and format())
    """Keys a stage's ``ray_stage_spec()`` may use (a ``str`` enum, so plain strings match too)."""

    IS_ACTOR_STAGE = "is_actor_stage"
    IS_FANOUT_STAGE = "is_fanout_stage"
    IS_RAFT_ACTOR = "is_raft_actor"
    IS_LSH_STAGE = "is_lsh_stage"
    IS_SHUFFLE_STAGE = "is_shuffle_stage"
    # From Curator v1.2/v1.3: per-stage worker controls (see `backends/stage_controls.py`).
    MAX_CALLS_PER_WORKER = "max_calls_per_worker"
    MIN_WORKERS = "min_workers"
    MAX_WORKERS = "max_workers"
    INITIAL_WORKERS = "initial_workers"
    RAY_REMOTE_ARGS = "ray_remote_args"
    RAY_NUM_CPUS = "ray_num_cpus"


def is_head_node(node: dict[str, Any]) -> bool:
    """Whether a ``ray.nodes()`` entry is the head node."""
    return _HEAD_NODE_RESOURCE in node.get("Resources", {})


def get_head_node_id() -> str | None:
    """The head node's id (cached after the first successful lookup), or ``None`` if there is none."""
    global _HEAD_NODE_ID_CACHE
    if _HEAD_NODE_ID_CACHE is not None:
        return _HEAD_NODE_ID_CACHE
    for node in ray.nodes():
        if is_head_node(node):
            _HEAD_NODE_ID_CACHE = node["NodeID"]
            return _HEAD_NODE_ID_CACHE
    return None


def get_worker_metadata_and_node_id() -> tuple[NodeInfo, WorkerMetadata]:
    """The current Ray worker's node and worker ids."""
    context = ray.get_runtime_context()
    return NodeInfo(node_id=context.get_node_id()), WorkerMetadata(worker_id=context.get_worker_id())


def get_available_cpu_gpu_resources(
    init_and_shutdown: bool = False, ignore_head_node: bool = False
) -> tuple[float, float]:
    """``(cpus, gpus)`` currently free in the cluster, without the head node's total when ``ignore_head_node``."""
    if init_and_shutdown:
        ray.init(ignore_reinit_error=True)
    try:
        available = ray.available_resources()
        cpus = float(available.get("CPU", 0))
        gpus = float(available.get("GPU", 0))
        if ignore_head_node:
            head = get_head_node_id()
            if head is None:
                logger.warning("ignore_head_node=True but no head node found in the cluster")
            else:
                head_total = ray.state.total_resources_per_node().get(head, {})
                cpus = max(0.0, cpus - float(head_total.get("CPU", 0)))
                gpus = max(0.0, gpus - float(head_total.get("GPU", 0)))
    finally:
        if init_and_shutdown:
            ray.shutdown()
    return cpus, gpus


@ray.remote
def _setup_stage_on_node(
    stage: ProcessingStage, node_info: NodeInfo, worker_metadata: WorkerMetadata
) -> None:
    stage.setup_on_node(node_info, worker_metadata)


def execute_setup_on_node(stages: list[ProcessingStage], ignore_head_node: bool = False) -> None:
    """Run every stage's ``setup_on_node`` once on every alive node (not the head when ``ignore_head_node``).

    All (node, stage) setups run concurrently; the call returns when all are done and raises the first error.
    """
    head_node_id = get_head_node_id()
    refs = []
    for node in ray.nodes():
        if not node.get("Alive", True):
            continue
        node_id = node["NodeID"]
        node_info = NodeInfo(node_id=node_id)
        worker_metadata = WorkerMetadata(worker_id="", allocation=None)
        if ignore_head_node and node_id == head_node_id:
            logger.info(f"Ignoring setup on head node {node_id}")
            continue
        logger.info(f"Executing setup on node {node_id} for {len(stages)} stages")
        for stage in stages:
            resources = stage.resources
            refs.append(
                _setup_stage_on_node.options(
                    num_cpus=resources.cpus if resources is not None else 1,
                    num_gpus=resources.gpus if resources is not None else 0,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
                ).remote(stage, node_info, worker_metadata)
            )
    ray.get(refs)
