"""RayDataExecutor on a three-node `ray.cluster_utils.Cluster` (one machine): per-node setup, head node."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from nemo_curator.backends.experimental.ray_data import RayDataExecutor
from nemo_curator.testing.probes import LifecycleProbe, WorkerProbe, numbered_tasks, read_records

pytestmark = [pytest.mark.ray, pytest.mark.multinode]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if ray.is_initialized():
        ray.shutdown()
    store = 80 * 1024 * 1024
    c = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": store, "include_dashboard": False},
    )
    for _ in range(2):
        c.add_node(num_cpus=2, object_store_memory=store)
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


@dataclass
class TaskProbe(LifecycleProbe):
    """A `LifecycleProbe` that Ray Data runs in tasks, not actors."""

    def ray_stage_spec(self) -> dict[str, Any]:
        return {"is_actor_stage": False}


def _head_id() -> str:
    return next(n["NodeID"] for n in ray.nodes() if "node:__internal_head__" in n["Resources"])


def test_setup_on_node_once_per_node_and_stage_before_setup(cluster: Cluster, tmp_path: Any) -> None:
    # Enough work that every actor gets some: Ray Data hands each ready actor up to 4 blocks at
    # once, so with little work the first two actors (on one node) could take all of it.
    a = LifecycleProbe(str(tmp_path), name="a", sleep_s=0.2)
    b = TaskProbe(str(tmp_path), name="b")
    out = RayDataExecutor(config={"pool_size": 3, "max_tasks_per_block": 1}).execute(
        [a, b], numbered_tasks(24)
    )
    assert len(out) == 24
    on_node = read_records(tmp_path, "setup_on_node")
    setups = read_records(tmp_path, "setup")
    # Exactly once per (stage, node where the stage ran), never once per worker.
    pairs = Counter((r["stage"], r["node"]) for r in on_node)
    assert set(pairs.values()) == {1}
    assert {(r["stage"], r["node"]) for r in setups} == set(pairs)
    assert Counter(r["stage"] for r in setups)["a"] == 3  # setup once per actor
    for r in setups:
        first = min(x["t"] for x in on_node if (x["stage"], x["node"]) == (r["stage"], r["node"]))
        assert first <= r["t"]
    # Three 1-CPU actors do not fit on one node: the actors and the work are spread.
    assert len({r["node"] for r in setups if r["stage"] == "a"}) >= 2
    assert len({r["node"] for r in read_records(tmp_path, "batch") if r["stage"] == "a"}) >= 2


def test_ignore_head_node_keeps_all_stage_work_off_the_head(cluster: Cluster, tmp_path: Any) -> None:
    stages = [TaskProbe(str(tmp_path), name="tasks"), LifecycleProbe(str(tmp_path), name="actors")]
    out = RayDataExecutor(ignore_head_node=True, config={"max_tasks_per_block": 1}).execute(
        stages, numbered_tasks(12)
    )
    assert len(out) == 12
    head = _head_id()
    records = read_records(tmp_path)
    assert {r["stage"] for r in records if r["kind"] == "batch"} == {"tasks", "actors"}
    assert all(r["node"] != head for r in records if r.get("node"))


def test_stage_controls_on_a_cluster(cluster: Cluster, tmp_path: Any) -> None:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # One worker node chosen by the stage's own `scheduling_strategy`; recycled workers; its own env.
    target = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != _head_id())
    probe = WorkerProbe(
        str(tmp_path),
        name="controlled",
        env={"env_vars": {"CURATOR_PROBE_VAR": "stage"}},
        spec={
            "is_actor_stage": False,
            "max_calls_per_worker": 2,
            "ray_remote_args": {"scheduling_strategy": NodeAffinitySchedulingStrategy(target, soft=False)},
        },
    )
    executor = RayDataExecutor(config={"show_progress": False, "max_tasks_per_block": 1})
    assert len(executor.execute([probe], numbered_tasks(8))) == 8
    calls = read_records(tmp_path, "call")
    assert len(calls) == 8
    assert {r["node"] for r in calls} == {target}
    assert {r["env"]["CURATOR_PROBE_VAR"] for r in calls} == {"stage"}
    assert max(Counter(r["pid"] for r in calls).values()) <= 2
