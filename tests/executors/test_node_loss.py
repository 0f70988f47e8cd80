"""A worker node dies mid-run (`ray.cluster_utils.Cluster`, one machine): every output arrives exactly once.

Stage `make` gives each task a payload larger than `inline_bytes`, so it lives only in the object store of
the node that made it; stage `slow` consumes them slowly, so when a node is removed some of its outputs are
still waiting there. The run must make them again (or find them elsewhere) and finish with nothing lost.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import ray
from ray import cloudpickle
from ray.cluster_utils import Cluster

from nemo_curator.stages.base import ProcessingStage
from nemo_curator.tasks import Task
from nemo_curator.testing.probes import numbered_tasks

pytestmark = [pytest.mark.ray, pytest.mark.multinode]

_PAYLOAD = 256 * 1024  # above the default inline_bytes (64 KiB): stored in the producing node's store


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if ray.is_initialized():
        ray.shutdown()
    store = 80 * 1024 * 1024
    # The head runs nothing (0 CPUs): removing a worker node never takes the driver with it.
    c = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "object_store_memory": store, "include_dashboard": False},
    )
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    # Ray workers cannot import this test module: its stage classes travel by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield c
    ray.shutdown()
    c.shutdown()


def _fresh_workers(cluster: Cluster, n: int) -> list[Any]:
    """Remove worker nodes left by an earlier test, then add `n` new ones (2 CPUs each)."""
    for node in list(cluster.worker_nodes):
        cluster.remove_node(node)
    nodes = [cluster.add_node(num_cpus=2, object_store_memory=80 * 1024 * 1024) for _ in range(n)]
    cluster.wait_for_nodes()
    deadline = time.monotonic() + 60
    while sum(1 for x in ray.nodes() if x["Alive"]) != n + 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    return nodes


@dataclass
class Make(ProcessingStage[Task[Any], Task[Any]]):
    """Gives each task a large payload derived from its id (checked at the end)."""

    name: str = "make"
    directory: str = ""

    def process(self, task: Task[Any]) -> Task[Any]:
        node = ray.get_runtime_context().get_node_id()
        (Path(self.directory) / f"make-{task.task_id}-{node}").touch()
        task.data = pa.table({"blob": [_payload(task.task_id)]})
        return task


@dataclass
class Slow(ProcessingStage[Task[Any], Task[Any]]):
    """Consumes slowly, so outputs of `make` wait in the stores; marks each task it saw."""

    name: str = "slow"
    directory: str = ""
    sleep_s: float = 0.3

    def process(self, task: Task[Any]) -> Task[Any]:
        time.sleep(self.sleep_s)
        assert _blob(task) == _payload(task.task_id), f"payload of {task.task_id} was corrupted"
        (Path(self.directory) / f"slow-{task.task_id}").touch()
        return task


def _payload(task_id: str) -> bytes:
    return (task_id.encode() * (_PAYLOAD // len(task_id) + 1))[:_PAYLOAD]


def _blob(task: Any) -> bytes:
    return task.data.column("blob")[0].as_py()


def _run_and_kill(cluster: Cluster, nodes: list[Any], executor: Any, tmp_path: Path, n: int) -> list[Any]:
    """Run in a thread; once `slow` has seen 2 tasks, remove the node that made the most outputs."""
    stages = [Make(directory=str(tmp_path)), Slow(directory=str(tmp_path))]
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["out"] = executor.execute(stages, numbered_tasks(n))
        except BaseException as exc:  # handed to the test thread
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("slow-*"))) < 2 and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert thread.is_alive(), f"the run ended before a node could be removed: {result}"
    made = Counter(p.name.rsplit("-", 1)[1] for p in tmp_path.glob("make-*"))
    by_id = {node.node_id: node for node in nodes}
    victim = max((node_id for node_id in made if node_id in by_id), key=lambda k: made[k])
    cluster.remove_node(by_id[victim])
    thread.join(timeout=300)
    assert not thread.is_alive(), "the run did not finish after the node was removed"
    if "error" in result:
        raise result["error"]
    return result["out"]


def _check_exactly_once(out: list[Any], n: int) -> None:
    ids = Counter(t.task_id for t in out)
    assert set(ids) == {f"t{i}" for i in range(n)}, sorted(ids)
    assert set(ids.values()) == {1}, [k for k, v in ids.items() if v > 1]
    for t in out:
        assert _blob(t) == _payload(t.task_id)


@pytest.mark.parametrize("fused", [False, True], ids=["apart", "fused"])
def test_actor_pool_survives_losing_a_node(cluster: Cluster, tmp_path: Path, fused: bool) -> None:
    # Apart: `make`'s outputs wait in the stores for `slow`. Fused: both stages run in one call, and
    # the final outputs lost with the node are made again by re-running the fused call.
    from nemo_curator.backends.experimental.ray_actor_pool import RayActorPoolExecutor

    nodes = _fresh_workers(cluster, 2)
    n = 16
    executor = RayActorPoolExecutor(
        config={"pool_size": 2, "max_batches_per_call": 1, "fuse_stateless_stages": fused}
    )
    out = _run_and_kill(cluster, nodes, executor, tmp_path, n)
    _check_exactly_once(out, n)
    assert not executor.failures


def test_ray_data_survives_losing_a_node(cluster: Cluster, tmp_path: Path) -> None:
    from nemo_curator.backends.experimental.ray_data import RayDataExecutor

    nodes = _fresh_workers(cluster, 2)
    n = 16
    executor = RayDataExecutor(config={"pool_size": 2, "max_tasks_per_block": 1})
    out = _run_and_kill(cluster, nodes, executor, tmp_path, n)
    _check_exactly_once(out, n)
    assert not executor.failures
