"""``nemo_curator.core.client.RayClient``: Curator's way to start a cluster before running pipelines.

A real head (``ray start --head``, 2 CPUs, 256 MiB object store) in a private temp dir: the Ray executors
connect to it through ``RAY_ADDRESS`` instead of starting one of their own, and ``stop()`` ends exactly the
processes of that head (never a ``ray stop``, which would end every Ray cluster on this machine).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import ray

from nemo_curator.backends.experimental import RayActorPoolExecutor, RayDataExecutor
from nemo_curator.core import RayClient
from nemo_curator.core.client import RayClient as RayClientFromModule
from nemo_curator.pipeline import Pipeline
from nemo_curator.testing.probes import LifecycleProbe, read_records
from nemo_curator.testing.stages import AddConstantStage, make_int_tasks

pytestmark = [pytest.mark.ray, pytest.mark.ray_client]

SMALL = {"num_cpus": 2, "object_store_memory": 256 * 2**20, "include_dashboard": False}


@pytest.fixture
def temp_dir() -> Iterator[str]:
    # Short and private: Ray's socket paths under it must stay under 108 bytes, and the head must not
    # register itself in /tmp/ray, where `ray.init()` of other people on this machine would find it.
    path = tempfile.mkdtemp(prefix="rcs-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_session() -> Iterator[None]:
    if ray.is_initialized():
        ray.shutdown()
    yield
    if ray.is_initialized():
        ray.shutdown()


def _head_processes(client: RayClient) -> list[tuple[int, float]]:
    """(pid, start time) of the head command and everything it started, workers included."""
    assert client.ray_process is not None
    root = psutil.Process(client.ray_process.pid)
    return [(p.pid, p.create_time()) for p in [root, *root.children(recursive=True)]]


def _alive(procs: list[tuple[int, float]]) -> list[int]:
    alive = []
    for pid, created in procs:
        try:
            p = psutil.Process(pid)
            if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            continue
    return alive


def test_start_run_on_both_ray_executors_then_stop(
    temp_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert RayClient is RayClientFromModule
    client = RayClient(ray_temp_dir=temp_dir, **SMALL)
    client.start()
    try:
        assert client.is_running and os.environ["RAY_ADDRESS"] == client.address
        records: dict[str, Path] = {}
        for executor in (RayActorPoolExecutor(config={"show_progress": False}), RayDataExecutor()):
            name = type(executor).__name__
            records[name] = tmp_path / name
            records[name].mkdir()
            stages = [AddConstantStage(value=10), LifecycleProbe(str(records[name]), name="probe")]
            out = Pipeline(name="on_ray_client", stages=stages).run(executor, make_int_tasks(6))
            assert sorted((t.task_id, t.data) for t in out or []) == [(f"int_{i}", i + 10) for i in range(6)]
            assert executor.last_run is not None and executor.last_run.balance["emitted"] == 6
        # The stages ran on the client's head: the executors connected to it, they did not start a Ray.
        ray.init()
        head_node = ray.get_runtime_context().get_node_id()
        assert ray.cluster_resources()["CPU"] == 2.0
        assert ray.cluster_resources()["object_store_memory"] == 256 * 2**20
        for name, directory in records.items():
            nodes = {r["node"] for r in read_records(directory, "batch")}
            assert nodes == {head_node}, name
        # Workers that ran stage code are the head's descendants, so stop() ends them too.
        procs = _head_processes(client)
        assert len(procs) > 3
    finally:
        client.stop()
    assert not client.is_running and client.ray_process is None
    assert _alive(procs) == [], "the head's processes outlived stop()"
    assert "RAY_ADDRESS" not in os.environ
    assert not ray.is_initialized()  # the driver connected to the stopped head was disconnected
    client.stop()  # a second stop does nothing


def test_context_manager_restores_the_environment_even_after_an_error(
    temp_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    procs: list[tuple[int, float]] = []
    with (
        pytest.raises(KeyError, match="inside the block"),
        RayClient(ray_temp_dir=temp_dir, **SMALL) as client,
    ):
        assert os.environ["RAY_ADDRESS"] == client.address != "10.0.0.1:6379"
        procs = _head_processes(client)
        with pytest.raises(RuntimeError, match="already started"):
            client.start()
        raise KeyError("inside the block")
    assert procs and _alive(procs) == []
    assert os.environ["RAY_ADDRESS"] == "10.0.0.1:6379"
    assert os.environ["RAY_AUTH_MODE"] == "disabled"


def test_a_port_in_use_moves_to_the_next_free_one(temp_dir: str) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        client = RayClient(ray_temp_dir=temp_dir, ray_port=taken, **SMALL)
        client._pick_ports()
    assert client.ray_port > taken
    ports = [
        client.ray_port,
        client.ray_client_server_port,
        client.ray_dashboard_port,
        client.ray_metrics_port,
    ]
    assert len(set(ports)) == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_cpus": -1}, "'num_cpus' must be None or an int >= 0"),
        ({"num_gpus": 1.5}, "'num_gpus' must be None or an int >= 0"),
        ({"num_cpus": True}, "'num_cpus'"),
        ({"object_store_memory": 1024}, "'object_store_memory' must be None or an int of bytes"),
        ({"ray_port": 0}, "'ray_port' must be a port number"),
        ({"ray_dashboard_port": 70000}, "'ray_dashboard_port' must be a port number"),
        ({"ray_client_server_port": "10001"}, "'ray_client_server_port'"),
        ({"include_dashboard": "yes"}, "'include_dashboard' must be a bool"),
        ({"ray_temp_dir": ""}, "'ray_temp_dir' must be a non-empty path"),
    ],
)
def test_bad_arguments_are_errors_naming_them(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RayClient(**kwargs)


def test_stop_before_start_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    RayClient().stop()
    assert os.environ["RAY_ADDRESS"] == "10.0.0.1:6379"


def test_a_temp_dir_that_is_a_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    client = RayClient(ray_temp_dir=str(not_a_dir), **SMALL)
    with pytest.raises(ValueError, match=r"'ray_temp_dir' .* is not a directory"):
        client.start()
    assert client.ray_process is None and "RAY_ADDRESS" not in os.environ
