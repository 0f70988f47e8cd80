"""Resume after SIGKILL on a multi-node `ray.cluster_utils.Cluster` (a head and two one-CPU workers on this
machine), started once for the module: the driver (a subprocess) joins it through `RAY_ADDRESS`, as Curator
v1.3 requires, is killed mid-run, and a second driver resumes from the checkpoint. The checks are those of
`test_resume.kill_and_resume`: the clean run's output, only unrecorded sources redone, no more than were in
flight.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from resume.test_resume import N_SOURCES, clean_run, kill_and_resume

pytestmark = pytest.mark.multinode

_STORE = 80 * 2**20


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    if ray.is_initialized():
        ray.shutdown()
    # Three raylets start on a small, busy machine: give them time to register.
    os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")
    c = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": _STORE, "include_dashboard": False},
    )
    try:
        for _ in range(2):
            c.add_node(num_cpus=1, object_store_memory=_STORE)
        c.wait_for_nodes()
        yield c.address
    finally:
        c.shutdown()


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[int]]:
    return clean_run(tmp_path_factory.mktemp("clean"), RESUME_REGROUP="1")


@pytest.mark.parametrize("executor", ["ray_actor_pool", "ray_data"])
def test_sigkill_then_resume_on_a_cluster(
    executor: str, cluster: str, clean: dict[str, list[int]], tmp_path: Path
) -> None:
    # On a cluster on this busy machine, stages run well ahead of the writer and a call can write many
    # tasks before it returns to the driver: when the kill comes, every source may have been started, or
    # written but not yet reported. Checked without an in-flight bound: no source recorded before all its
    # outputs were written, exactly the unrecorded sources redone, the clean run's output.
    # The job regroups rows into tasks with random ids before the writer (see
    # `test_resume.test_sigkill_then_resume_with_random_ids`).
    kill_and_resume(
        executor, clean, tmp_path, max_in_flight=N_SOURCES, RAY_ADDRESS=cluster, RESUME_REGROUP="1"
    )
