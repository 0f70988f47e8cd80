"""GPU placement on a local Ray that declares GPUs (no physical GPU needed)."""

from __future__ import annotations

from typing import Any

import pytest

from nemo_curator.backends.experimental.ray_actor_pool import RayActorPoolExecutor
from nemo_curator.testing.probes import GpuProbe, numbered_tasks, read_records

pytestmark = pytest.mark.usefixtures("ray_session")
# GPUs declared to Ray, none needed physically.
RAY_SESSION_OPTIONS = {"num_cpus": 4, "num_gpus": 2, "object_store_memory": 128 * 1024 * 1024}


def test_whole_gpu_actors_each_get_their_own_device(tmp_path: Any) -> None:
    stage = GpuProbe(str(tmp_path), gpus=1.0, wait_for_actors=2)
    out = RayActorPoolExecutor(config={"pool_size": 2}).execute([stage], numbered_tasks(4))
    assert len(out) == 4
    recs = read_records(tmp_path, "gpu")
    assert len(recs) == 2
    assert sorted(r["cuda"] for r in recs) == ["0", "1"]


def test_fractional_gpu_actors_share_a_device(tmp_path: Any) -> None:
    stage = GpuProbe(str(tmp_path), gpus=0.5, name="half_gpu", wait_for_actors=4)
    out = RayActorPoolExecutor(config={"pool_size": 4}).execute([stage], numbered_tasks(8))
    assert len(out) == 8
    recs = read_records(tmp_path, "gpu")
    assert len(recs) == 4  # 4 half-GPU actors on 2 GPUs: two per device
    assert all(r["cuda"] in ("0", "1") for r in recs)
    per_device = sorted(sum(1 for r in recs if r["cuda"] == d) for d in ("0", "1"))
    assert per_device == [2, 2]
