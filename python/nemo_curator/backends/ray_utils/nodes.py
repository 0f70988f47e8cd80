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
    """One alive node the run may use: what is free now and what it has in all (fractional allowed)."""

    node_id: str
    is_head: bool
    cpus: float
    gpus: float
    total_cpus: float = 0.0
    total_gpus: float = 0.0


def _available_per_node() -> dict[str, dict[str, float]]:
    # Ray exposes per-node availability only through its state module; fall back to totals.
    try:
        from ray._private import state

        return dict(state.available_resources_per_node())
    except Exception:  # pragma: no cover - depends on Ray internals
        return {n["NodeID"]: dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")}


def _settled_available(totals: dict[str, dict[str, float]], settle_s: float) -> dict[str, dict[str, float]]:
    """Per-node availability once it stops changing.

    Actors killed just before (a previous run, other work in the same session) give their resources
    back a moment after `ray.kill` returns; sizing pools from that moment's view would see a smaller
    cluster. Returns at once when every node is idle, else when the view has not changed for
    `settle_s`/2, and at the latest after `settle_s` (resources held by other work stay held).
    """

    def idle(view: dict[str, dict[str, float]]) -> bool:
        return all(
            view.get(node, {}).get(key, 0.0) >= total.get(key, 0.0) - 1e-6
            for node, total in totals.items()
            for key in ("CPU", "GPU")
        )

    view = _available_per_node()
    start = last_change = time.monotonic()
    while not idle(view):
        now = time.monotonic()
        if now - start >= settle_s or now - last_change >= settle_s / 2:
            break
        time.sleep(0.05)
        new = _available_per_node()
        if new != view:
            view, last_change = new, time.monotonic()
    return view


def cluster_nodes(
    *,
    ignore_head_node: bool = False,
    reserved_cpus: float = 0.0,
    reserved_gpus: float = 0.0,
    settle_s: float = 1.0,
) -> list[ClusterNode]:
    """Alive nodes with their available CPUs/GPUs (and totals), once the view has settled.

    With `ignore_head_node` the head is left out entirely, so no stage work lands there; `reserved_*`
    are then taken off the nodes that are left: the head node first (where the driver runs), then
    the others.
    """
    alive = [info for info in ray.nodes() if info.get("Alive")]
    totals = {info["NodeID"]: dict(info.get("Resources", {})) for info in alive}
    available = _settled_available(totals, settle_s)
    nodes: list[ClusterNode] = []
    for info in alive:
        node_id = info["NodeID"]
        res = available.get(node_id, {})
        total = totals[node_id]
        nodes.append(
            ClusterNode(
                node_id,
                _HEAD_MARKER in total,
                float(res.get("CPU", 0.0)),
                float(res.get("GPU", 0.0)),
                float(total.get("CPU", 0.0)),
                float(total.get("GPU", 0.0)),
            )
        )
    nodes.sort(key=lambda n: (not n.is_head, n.node_id))
    if ignore_head_node:
        kept = [n for n in nodes if not n.is_head]
        if not kept:
            raise RuntimeError(
                "ignore_head_node=True but the Ray cluster has no node other than the head node: "
                "there is nowhere to run the stages. Add worker nodes or set ignore_head_node=False."
            )
        nodes = kept
    # Reserved resources come off the nodes the run uses (the head first, where the driver runs).
    return _take_reserved(nodes, reserved_cpus, reserved_gpus)


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
        time.sleep(0.01)  # the view refreshes about every 100 ms; poll finer to return soon after


def _take_reserved(nodes: list[ClusterNode], cpus: float, gpus: float) -> list[ClusterNode]:
    out = []
    for n in nodes:
        take_c, take_g = min(cpus, n.cpus), min(gpus, n.gpus)
        cpus, gpus = cpus - take_c, gpus - take_g
        out.append(
            ClusterNode(
                n.node_id,
                n.is_head,
                n.cpus - take_c,
                n.gpus - take_g,
                max(0.0, n.total_cpus - take_c),
                max(0.0, n.total_gpus - take_g),
            )
        )
    return out


def needs_setup_on_node(stage: Any) -> bool:
    """Whether `stage.setup_on_node` does anything, so that a run must start a task (a worker process) per
    node for it: the stage overrides it and does not say it is a no-op this time (a stage may answer
    `_setup_on_node_needed()`; the text modules do from their filters: only a model download needs it)."""
    from nemo_curator.stages.base import ProcessingStage

    if type(stage).setup_on_node is ProcessingStage.setup_on_node:
        return False
    needed = getattr(stage, "_setup_on_node_needed", None)
    return bool(needed()) if callable(needed) else True


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
