"""A cluster started with ``ray start`` (what ``ray[default]`` provides) and a pipeline run through Ray Client.

Curator users start clusters with ``ray start --head`` and connect with ``ray.init("ray://host:10001")``.
The test starts its own head node in a private temp dir on free ports (Ray 2.60 enables token auth by default:
``RAY_AUTH_MODE=disabled`` turns it off for the cluster and the client), checks ``ray status``, connects through
Ray Client, runs a pipeline on ``RayActorPoolExecutor`` and stops exactly that cluster's processes: never
``ray stop``, which ends every Ray process on the machine, other people's included.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import ray

from nemo_curator.backends.base import StageFailedError
from nemo_curator.backends.experimental import RayActorPoolExecutor, RayDataExecutor
from nemo_curator.backends.xenna import XennaExecutor
from nemo_curator.pipeline import Pipeline
from nemo_curator.testing.probes import RaiseOn, numbered_tasks
from nemo_curator.testing.stages import AddConstantStage, FanOutStage, make_int_tasks

pytestmark = [pytest.mark.ray, pytest.mark.ray_client]

RAY = Path(sys.executable).parent / "ray"
OBJECT_STORE = 256 * 1024 * 1024


@dataclass(frozen=True)
class Cluster:
    gcs_port: int
    client_port: int
    env: dict[str, str]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cluster_processes(temp_dir: Path, gcs_port: int) -> list[psutil.Process]:
    """This cluster's daemons (they name its temp dir or its GCS port) and all their descendants."""
    roots = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if proc.pid == os.getpid():
            continue
        if str(temp_dir) in cmd or ("ray.util.client.server" in cmd and f":{gcs_port}" in cmd):
            roots.append(proc)
    family: dict[int, psutil.Process] = {}
    for root in roots:
        try:
            for proc in [root, *root.children(recursive=True)]:
                family[proc.pid] = proc
        except psutil.NoSuchProcess:
            continue
    return list(family.values())


def _stop_cluster(temp_dir: Path, gcs_port: int) -> None:
    procs = _cluster_processes(temp_dir, gcs_port)
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=10)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


def _connect(address: str, attempts: int = 3) -> None:
    """``ray.init`` through Ray Client. Ray's client proxy sometimes loses the server process it starts for a
    new client before that server is up ("SpecificServer startup failed"; here mostly on the first client of
    a fresh cluster), so a refused connection is tried again; anything else fails at once."""
    for attempt in range(attempts):
        try:
            ray.init(address)
            return
        except ConnectionAbortedError:
            ray.shutdown()
            if attempt == attempts - 1:
                raise


@pytest.fixture
def ray_cluster() -> Iterator[Cluster]:
    if ray.is_initialized():
        ray.shutdown()
    # Short path: Ray's unix socket paths under it must stay under 108 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))
    gcs_port, client_port, dashboard_port = _free_port(), _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    command = [
        str(RAY),
        "start",
        "--head",
        f"--port={gcs_port}",
        "--num-cpus=2",
        f"--object-store-memory={OBJECT_STORE}",
        f"--ray-client-server-port={client_port}",
        f"--dashboard-port={dashboard_port}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    try:
        started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
        assert started.returncode == 0, f"ray start failed:\n{started.stdout}\n{started.stderr}"
        yield Cluster(gcs_port, client_port, env)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        _stop_cluster(temp_dir, gcs_port)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not _cluster_processes(temp_dir, gcs_port), "the test cluster's processes outlived the test"


def test_ray_status_and_pipeline_through_ray_client(
    ray_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The autoscaler's first status report comes a few seconds after `ray start` returns.
    deadline = time.monotonic() + 90
    while True:
        status = subprocess.run(
            [str(RAY), "status", f"--address=127.0.0.1:{ray_cluster.gcs_port}"],
            env=ray_cluster.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert status.returncode == 0, status.stderr
        if "No cluster status" not in status.stdout or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert "0.0/2.0 CPU" in status.stdout, status.stdout

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    _connect(f"ray://127.0.0.1:{ray_cluster.client_port}")
    assert ray.util.client.ray.is_connected()
    assert ray.cluster_resources().get("CPU") == 2.0

    # Through Ray Client the driver loop runs in a task on the cluster; results and reports come back.
    expected = sorted((f"int_{i}_{j}", i + 10) for i in range(8) for j in range(2))
    for executor in (RayActorPoolExecutor(), XennaExecutor({"execution_mode": "batch"}), RayDataExecutor()):
        out = Pipeline(name="ray_client", stages=[AddConstantStage(value=10), FanOutStage(n=2)]).run(
            executor, make_int_tasks(8)
        )
        assert sorted((t.task_id, t.data) for t in out) == expected, type(executor).__name__
        assert executor.last_run is not None and executor.last_run.balance["emitted"] == 16
    # A failing stage raises the executor's own error, with its failure record.
    with pytest.raises(StageFailedError, match="raise_on") as info:
        RayActorPoolExecutor().execute([RaiseOn("t1")], numbered_tasks(3))
    assert info.value.failure is not None and info.value.failure["task_ids"] == ["t1"]
