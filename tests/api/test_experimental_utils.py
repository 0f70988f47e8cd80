"""nemo_curator.backends.experimental.utils, against a real one-node Ray cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from nemo_curator.backends.base import NodeInfo, WorkerMetadata
from nemo_curator.backends.experimental import utils as ray_utils
from nemo_curator.backends.experimental.utils import (
    RayStageSpecKeys,
    execute_setup_on_node,
    get_available_cpu_gpu_resources,
    get_head_node_id,
    get_worker_metadata_and_node_id,
    is_head_node,
)
from nemo_curator.testing.stages import StageWithSetup, count_markers, read_markers

pytestmark = pytest.mark.ray

_SETUP_LINE = "Executing setup on node"


RAY_SESSION_OPTIONS = {"num_cpus": 2}


@pytest.fixture(autouse=True)
def _fresh_head_cache() -> Iterator[None]:
    ray_utils._HEAD_NODE_ID_CACHE = None
    yield
    ray_utils._HEAD_NODE_ID_CACHE = None


def test_ray_stage_spec_keys() -> None:
    values = {key.value for key in RayStageSpecKeys}
    assert {
        "is_actor_stage",
        "is_fanout_stage",
        "is_raft_actor",
        "is_lsh_stage",
        "is_shuffle_stage",
    } <= values
    assert {"max_calls_per_worker", "min_workers", "max_workers", "initial_workers"} <= values
    assert {"ray_remote_args", "ray_num_cpus"} <= values
    # A str enum: plain-string keys and enum keys find each other.
    assert {"is_actor_stage": True}.get(RayStageSpecKeys.IS_ACTOR_STAGE) is True
    assert {RayStageSpecKeys.IS_FANOUT_STAGE: True}.get("is_fanout_stage") is True
    assert RayStageSpecKeys.IS_LSH_STAGE == "is_lsh_stage"


def test_is_head_node() -> None:
    assert is_head_node({"Resources": {"CPU": 4.0, "node:__internal_head__": 1.0}})
    assert not is_head_node({"Resources": {"CPU": 4.0}})
    assert not is_head_node({})


def test_get_head_node_id_without_head(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ray, "nodes", lambda: [{"NodeID": "w1", "Alive": True, "Resources": {"CPU": 1.0}}])
    assert get_head_node_id() is None
    assert ray_utils._HEAD_NODE_ID_CACHE is None


def test_get_head_node_id_real_cluster_and_cache(ray_session: None, monkeypatch: pytest.MonkeyPatch) -> None:
    head = get_head_node_id()
    assert head == ray.get_runtime_context().get_node_id()
    assert ray_utils._HEAD_NODE_ID_CACHE == head
    # Cached: no further ray.nodes() calls.
    monkeypatch.setattr(ray, "nodes", lambda: pytest.fail("ray.nodes() called despite the cache"))
    assert get_head_node_id() == head


def test_get_worker_metadata_and_node_id(ray_session: None) -> None:
    @ray.remote(num_cpus=0.1)
    def _remote() -> tuple[NodeInfo, WorkerMetadata]:
        return get_worker_metadata_and_node_id()

    node_info, worker_metadata = ray.get(_remote.remote())
    assert isinstance(node_info, NodeInfo) and isinstance(worker_metadata, WorkerMetadata)
    assert node_info.node_id == ray.get_runtime_context().get_node_id()
    assert worker_metadata.worker_id and worker_metadata.allocation is None
    driver_node, driver_worker = get_worker_metadata_and_node_id()
    assert driver_node.node_id == node_info.node_id
    assert driver_worker.worker_id != worker_metadata.worker_id


def test_get_available_cpu_gpu_resources(ray_session: None, monkeypatch: pytest.MonkeyPatch) -> None:
    real = ray.available_resources
    answers: list[dict[str, float]] = []

    def _recording() -> dict[str, float]:
        answers.append(real())
        return answers[-1]

    monkeypatch.setattr(ray, "available_resources", _recording)
    cpus, gpus = get_available_cpu_gpu_resources()
    assert len(answers) == 1
    assert cpus == answers[0]["CPU"] and 0.0 < cpus <= 2.0
    assert gpus == 0.0
    assert isinstance(cpus, float) and isinstance(gpus, float)
    # The only node is the head: ignoring it leaves nothing.
    assert get_available_cpu_gpu_resources(ignore_head_node=True) == (0.0, 0.0)
    assert len(answers) == 2


def test_ignore_head_node_without_head_warns(
    ray_session: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ray, "nodes", lambda: [])
    cpus, _ = get_available_cpu_gpu_resources(ignore_head_node=True)
    assert 0.0 < cpus <= 2.0  # nothing subtracted
    assert any(
        "ignore_head_node=True but no head node found in the cluster" in r.getMessage()
        for r in caplog.records
    )


def _setup_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(_SETUP_LINE)]


def test_execute_setup_on_node_runs_once_per_node_and_stage(
    ray_session: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = (
        StageWithSetup(marker_dir=str(tmp_path / "a")),
        StageWithSetup(marker_dir=str(tmp_path / "b")),
    )
    execute_setup_on_node([first, second])
    node_id = ray.get_runtime_context().get_node_id()
    assert read_markers(tmp_path / "a", "setup_on_node") == [node_id]
    assert read_markers(tmp_path / "b", "setup_on_node") == [node_id]
    assert count_markers(tmp_path / "a", "setup") == 0  # only setup_on_node
    assert _setup_lines(caplog) == [f"{_SETUP_LINE} {node_id} for 2 stages"]
    assert ray_utils._HEAD_NODE_ID_CACHE == node_id
    # The driver's stage objects are shipped, not mutated.
    assert first._worker_id is None


def test_execute_setup_on_node_ignores_head(
    ray_session: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    execute_setup_on_node([StageWithSetup(marker_dir=str(tmp_path))], ignore_head_node=True)
    node_id = ray.get_runtime_context().get_node_id()
    assert count_markers(tmp_path, "setup_on_node") == 0
    assert _setup_lines(caplog) == []
    assert any(r.getMessage() == f"Ignoring setup on head node {node_id}" for r in caplog.records)


def test_execute_setup_on_node_skips_dead_nodes(
    ray_session: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_nodes = ray.nodes()
    dead: dict[str, Any] = {"NodeID": "f" * 56, "Alive": False, "Resources": {"CPU": 2.0}}
    monkeypatch.setattr(ray, "nodes", lambda: [*real_nodes, dead])
    execute_setup_on_node([StageWithSetup(marker_dir=str(tmp_path))])
    assert count_markers(tmp_path, "setup_on_node") == 1
    assert len(_setup_lines(caplog)) == 1


def test_execute_setup_on_node_propagates_errors(ray_session: None) -> None:
    # A marker "directory" that is a file makes setup_on_node fail inside the Ray task.
    with pytest.raises(Exception, match=r"FileExistsError|File exists"):
        execute_setup_on_node([StageWithSetup(marker_dir=__file__)])


def test_ray_data_actor_concurrency_as_curator_computes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from unittest.mock import Mock

    from nemo_curator.backends.experimental.ray_data import utils as rd_utils
    from nemo_curator.stages.resources import Resources

    monkeypatch.setattr(rd_utils, "get_available_cpu_gpu_resources", lambda **_: (7, 2))
    stage = Mock(num_workers=lambda: 3, resources=Resources(cpus=1.0))
    assert rd_utils.calculate_concurrency_for_actors_for_stage(stage) == 3
    stage = Mock(num_workers=lambda: None, resources=Resources(cpus=2.0))
    assert rd_utils.calculate_concurrency_for_actors_for_stage(stage) == (1, 3)
    stage = Mock(num_workers=lambda: None, resources=Resources(cpus=1.0, gpus=1.0))
    assert rd_utils.calculate_concurrency_for_actors_for_stage(stage) == (1, 2)
    stage = Mock(num_workers=lambda: None, resources=Resources(cpus=0.0))
    with pytest.raises(OverflowError):
        rd_utils.calculate_concurrency_for_actors_for_stage(stage)
