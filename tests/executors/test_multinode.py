"""RayActorPoolExecutor on a real three-node cluster (`ray.cluster_utils.Cluster`, one machine)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from nemo_curator.backends.experimental.ray_actor_pool import RayActorPoolExecutor
from nemo_curator.testing.probes import LifecycleProbe, WorkerProbe, numbered_tasks, read_records

pytestmark = pytest.mark.multinode


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": 100 * 1024 * 1024, "include_dashboard": False},
    )
    for _ in range(2):
        c.add_node(num_cpus=2, object_store_memory=100 * 1024 * 1024)
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


def _head_id() -> str:
    return next(n["NodeID"] for n in ray.nodes() if "node:__internal_head__" in n["Resources"])


def test_setup_on_node_once_per_node_before_setup_and_work_spread(cluster: Cluster, tmp_path: Any) -> None:
    a = LifecycleProbe(str(tmp_path), name="a", sleep_s=0.05)
    b = LifecycleProbe(str(tmp_path), name="b")
    out = RayActorPoolExecutor(config={"pool_size": 2}).execute([a, b], numbered_tasks(20))
    assert len(out) == 20
    on_node = read_records(tmp_path, "setup_on_node")
    setups = read_records(tmp_path, "setup")
    # Exactly once per (stage, node that hosts actors of the stage).
    pairs = Counter((r["stage"], r["node"]) for r in on_node)
    assert set(pairs.values()) == {1}
    # Every actor's node had its setup_on_node; a node may have had one for an actor that the run, ending
    # first, no longer started (seen on a loaded machine).
    assert {(r["stage"], r["node"]) for r in setups} <= set(pairs)
    for r in setups:
        first = min(x["t"] for x in on_node if (x["stage"], x["node"]) == (r["stage"], r["node"]))
        assert first <= r["t"]
    # Four actors (2 per stage) cannot fit on one node: work lands on several nodes.
    nodes = {r["node"] for r in read_records(tmp_path, "batch")}
    assert len(nodes) >= 2


def test_ignore_head_node_keeps_all_stage_work_off_the_head(cluster: Cluster, tmp_path: Any) -> None:
    a = LifecycleProbe(str(tmp_path), name="a")
    out = RayActorPoolExecutor(ignore_head_node=True).execute([a], numbered_tasks(12))
    assert len(out) == 12
    head = _head_id()
    records = read_records(tmp_path)
    assert records
    assert all(r["node"] != head for r in records if r.get("node"))


def test_reserved_resources_come_off_the_nodes_the_run_uses(cluster: Cluster) -> None:
    from nemo_curator.backends.ray_utils import cluster_nodes

    nodes = cluster_nodes(ignore_head_node=True, reserved_cpus=1.0)
    assert _head_id() not in {n.node_id for n in nodes}
    assert sum(n.cpus for n in nodes) == pytest.approx(3.0)  # 2 + 2 on the workers, minus 1 reserved
    everything = cluster_nodes(reserved_cpus=1.0)
    assert sum(n.cpus for n in everything) == pytest.approx(4.0)  # 1 + 2 + 2, minus 1 off the head
    assert next(n for n in everything if n.is_head).cpus == pytest.approx(0.0)


def test_xenna_ignore_head_node_and_workers_per_node(cluster: Cluster, tmp_path: Any) -> None:
    from nemo_curator.backends.xenna import XennaExecutor

    # num_workers_per_node is a total of ceil(value x nodes) actors, over the nodes the run may use.
    probe = LifecycleProbe(str(tmp_path), sleep_s=0.05, xenna_spec={"num_workers_per_node": 1})
    executor = XennaExecutor({"show_progress": False, "execution_mode": "batch"}, ignore_head_node=True)
    out = executor.execute([probe], numbered_tasks(16))
    assert len(out) == 16
    head = _head_id()
    setups = read_records(tmp_path, "setup")
    # Two actors, one on each worker node (a replacement after a slow start may add a setup).
    assert len({r["node"] for r in setups}) == 2, setups
    assert all(r["node"] != head for r in read_records(tmp_path) if r.get("node"))


def test_stage_controls_on_a_cluster(cluster: Cluster, tmp_path: Any) -> None:
    # Actors spread over the nodes, each replaced after 2 batches, all with the stage's env and options.
    probe = WorkerProbe(
        str(tmp_path),
        name="controlled",
        env={"env_vars": {"CURATOR_PROBE_VAR": "stage"}},
        spec={"max_calls_per_worker": 2, "ray_remote_args": {"memory": 32 * 2**20}},
        workers=3,
    )
    executor = RayActorPoolExecutor(config={"show_progress": False})
    assert len(executor.execute([probe], numbered_tasks(12))) == 12
    calls = read_records(tmp_path, "call")
    assert len(calls) == 12
    assert {r["env"]["CURATOR_PROBE_VAR"] for r in calls} == {"stage"}
    assert {r["memory"] for r in calls} == {32 * 2**20}
    per_pid = Counter(r["pid"] for r in calls)
    assert max(per_pid.values()) <= 2 and len(per_pid) >= 6
    assert len({r["node"] for r in calls}) >= 2
