"""The nodes a run may use, and `setup_on_node` pinned to one node."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import ray
from loguru import logger
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from nemo_curator.backends.base import NodeInfo, WorkerMetadata

_HEAD_MARKER = "node:__internal_head__"


@dataclass(frozen=True)
class ClusterNode:
    """Capacity of one alive node that the run may use (CPU and GPU counts, fractional allowed)."""

    node_id: str
    is_head: bool
    cpus: float
    gpus: float


def _available_per_node() -> dict[str, dict[str, float]]:
    # Ray exposes per-node availability only through its state module; fall back to totals.
    try:
        from ray._private import state

        return dict(state.available_resources_per_node())
    except Exception:  # pragma: no cover - depends on Ray internals
        return {n["NodeID"]: dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")}


def cluster_nodes(
    *, ignore_head_node: bool = False, reserved_cpus: float = 0.0, reserved_gpus: float = 0.0
) -> list[ClusterNode]:
    """Alive nodes with their currently available CPUs/GPUs.

    `reserved_*` are taken off the head node first (where the driver runs), then the others.
    With `ignore_head_node` the head is left out entirely, so no stage work lands there.
    """
    available = _available_per_node()
    nodes: list[ClusterNode] = []
    for info in ray.nodes():
        if not info.get("Alive"):
            continue
        node_id = info["NodeID"]
        res = available.get(node_id, {})
        total = info.get("Resources", {})
        is_head = _HEAD_MARKER in total
        nodes.append(ClusterNode(node_id, is_head, float(res.get("CPU", 0.0)), float(res.get("GPU", 0.0))))
    nodes.sort(key=lambda n: (not n.is_head, n.node_id))
    nodes = _take_reserved(nodes, reserved_cpus, reserved_gpus)
    if ignore_head_node:
        kept = [n for n in nodes if not n.is_head]
        if not kept:
            raise RuntimeError(
                "ignore_head_node=True but the Ray cluster has no node other than the head node: "
                "there is nowhere to run the stages. Add worker nodes or set ignore_head_node=False."
            )
        nodes = kept
    return nodes


def wait_for_resources(cpus: float, gpus: float, timeout_s: float = 10.0) -> None:
    """Block until the cluster has `cpus`/`gpus` available again (or `timeout_s` passed).

    `ray.kill` returns before the raylet takes the actor's resources back; a run that returns while its
    actors still hold them would make the next run see a smaller cluster.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        free = ray.available_resources()
        if free.get("CPU", 0.0) >= cpus - 1e-6 and free.get("GPU", 0.0) >= gpus - 1e-6:
            return
        time.sleep(0.05)


def _take_reserved(nodes: list[ClusterNode], cpus: float, gpus: float) -> list[ClusterNode]:
    out = []
    for n in nodes:
        take_c, take_g = min(cpus, n.cpus), min(gpus, n.gpus)
        cpus, gpus = cpus - take_c, gpus - take_g
        out.append(ClusterNode(n.node_id, n.is_head, n.cpus - take_c, n.gpus - take_g))
    return out


@ray.remote(num_cpus=0)
def _setup_on_node(stage: Any, node_id: str) -> str:
    stage.setup_on_node(NodeInfo(node_id=node_id), WorkerMetadata(worker_id="", allocation=None))
    return node_id


def run_setup_on_node(stage_ref: Any, stage_name: str, node_id: str) -> ray.ObjectRef:
    """Start `stage.setup_on_node` on `node_id`; the returned ref is passed to that node's actors.

    The task asks for no resources: the stage's actors may already hold all of them, and waiting for a
    CPU there would deadlock. Actors take the ref as a constructor argument, so Ray starts their
    `setup` only after this finished (and fails them with its error if it raised).
    """
    logger.debug(f"setup_on_node for stage {stage_name} on node {node_id}")
    return _setup_on_node.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        name=f"{stage_name}.setup_on_node",
    ).remote(stage_ref, node_id)


def put_stage(stage: Any) -> Any:
    """`ray.put` the stage once (its workers share that copy); an unpicklable stage fails here, early."""
    try:
        return ray.put(stage)
    except Exception as exc:
        raise TypeError(
            f"Stage '{stage.name}' ({type(stage).__name__}) cannot be pickled to send it to Ray workers: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
