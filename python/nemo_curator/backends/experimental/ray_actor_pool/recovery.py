"""Outputs lost with a node, made again from their lineage.

An output larger than `inline_bytes` lives only in the object store of the node that produced it; Ray
cannot rebuild it (stage calls run with no Ray retries, and actors do not restart). So the driver keeps,
for each such output still in use, the batch that produced it: its stage and its input payloads (which
may be stored outputs with lineage of their own). When a node leaves, every stored payload with no copy
left on a live node is made again by re-running its producing batch (its own lost inputs first) as one
Ray task, and the new object replaces the lost one; the core then retries the batches that needed it.

The cost: a stored output pins its producing batch's inputs until the output is consumed, so the object
store holds up to one extra generation of in-flight data (Ray spills it when the store fills).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import ray

from nemo_curator.backends.experimental.ray_actor_pool.worker import INLINE, process_as_task


@dataclass
class Producer:
    """The batch that produced some stored outputs: enough to run it again."""

    stage: int
    #: Its input payloads (tasks, pickled bytes or object refs), each with its `Origin` when stored.
    inputs: list[tuple[Any, Origin | None]]
    #: Outputs of a re-run (payloads in output order), once made.
    redone: list[Any] | None = None
    #: Stages fused after `stage` that ran in the same call: the outputs are those of the last one, in
    #: depth-first order (see `worker.run_chain`).
    chain: list[int] = field(default_factory=list)


@dataclass
class Origin:
    """Where a stored output came from: output `index` of `producer`."""

    producer: Producer
    index: int


# Ray returns objects up to this size inline to their owner (the driver), not into a node's store.
_INLINED_BYTES = 100 * 1024


class LostError(RuntimeError):
    """A lost output could not be made again."""


def alive_nodes() -> set[str]:
    return {n["NodeID"] for n in ray.nodes() if n.get("Alive")}


def lost_refs(refs: list[Any], alive: set[str]) -> set[Any]:
    """The refs with no copy on a live node. A spilled object whose copy is gone counts too: making it
    again costs a re-run, reading a dead node's spill file cannot work."""
    if not refs:
        return set()
    where = ray.experimental.get_object_locations(refs)
    lost = set()
    for ref in refs:
        info = where.get(ref)
        if info is None:
            lost.add(ref)  # no location known (Ray is trying to recover it): make it again
            continue
        if set(info.get("node_ids") or ()) & alive:
            continue
        size = info.get("object_size")
        if not info.get("node_ids") and size is not None and size <= _INLINED_BYTES:
            continue  # returned inline into the driver's memory store: it cannot be lost with a node
        lost.add(ref)
    return lost


_OBJECT_ID = re.compile(r"object ([0-9a-f]{56})")


def named_lost(refs: Any, errors: str) -> set[Any]:
    """The refs that Ray's error text says it failed to retrieve (`Failed to retrieve object <id>`)."""
    ids = set(_OBJECT_ID.findall(errors))
    return {r for r in refs if r.hex() in ids} if ids else set()


class Remaker:
    """Re-runs producing batches for the driver (see the module docstring)."""

    def __init__(
        self, stage_refs: list[Any], stage_resources: list[tuple[float, float]], inline_bytes: int
    ) -> None:
        self._stage_refs = stage_refs
        self._resources = stage_resources
        self._inline_bytes = inline_bytes

    def remake(self, origin: Origin, alive: set[str]) -> Any:
        """A fresh payload for the lost output `origin` names."""
        outputs = self._rerun(origin.producer, alive)
        if origin.index >= len(outputs):
            raise LostError(
                f"an output lost with its node could not be made again: the re-run of its batch "
                f"gave {len(outputs)} outputs, not at least {origin.index + 1}"
            )
        return outputs[origin.index]

    def _inputs(self, producer: Producer, gone: set[Any], alive: set[str]) -> list[Any]:
        inputs: list[Any] = []
        for i, (payload, origin) in enumerate(producer.inputs):
            if isinstance(payload, ray.ObjectRef) and payload in gone:
                if origin is None:
                    raise LostError("an input task held in the object store was lost with its node")
                payload = self.remake(origin, alive)
                producer.inputs[i] = (payload, origin)
            inputs.append(payload)
        return inputs

    def _rerun(self, producer: Producer, alive: set[str]) -> list[Any]:
        if producer.redone is not None and not lost_refs(
            [p for p in producer.redone if isinstance(p, ray.ObjectRef)], alive
        ):
            return producer.redone
        gone = lost_refs([p for p, _ in producer.inputs if isinstance(p, ray.ObjectRef)], alive)
        for attempt in range(2):
            inputs = self._inputs(producer, gone, alive)
            refs = [p for p in inputs if isinstance(p, ray.ObjectRef)]
            inline = [None if isinstance(p, ray.ObjectRef) else p for p in inputs]
            cpus, gpus = self._resources[producer.stage]
            holder: list[Any] = [self._stage_refs[producer.stage], [], 1]
            if producer.chain:
                holder.append([[self._stage_refs[j], [], 1] for j in producer.chain])
            gen = process_as_task.options(num_cpus=cpus, num_gpus=gpus).remote(
                holder, self._inline_bytes, [(0, len(inputs))], inline, *refs
            )
            try:
                items = list(gen)
                ((_, ok, _, placed, *_),) = ray.get(items[-1])
                break
            except ray.exceptions.RayError as exc:
                # An input Ray could not fetch although copies were listed (partial ones): make it too.
                gone = named_lost(refs, str(exc))
                if attempt or not gone:
                    raise
        if not ok:
            raise LostError(
                f"re-running the batch of a lost output failed: {placed['error_type']}: {placed['message']}"
            )
        yielded = items[:-1]
        if producer.chain:
            placed = _last_outputs(placed, len(producer.chain))
        producer.redone = [what if where == INLINE else yielded[what] for where, what in placed]
        return producer.redone


def _last_outputs(nodes: list[Any], levels: int) -> list[Any]:
    """The places of the last fused stage's outputs, depth-first (see `worker.run_chain`)."""
    out: list[Any] = []
    for node in nodes:
        if node[0]:
            out.extend(node[2] if levels == 1 else _last_outputs(node[2], levels - 1))
    return out
