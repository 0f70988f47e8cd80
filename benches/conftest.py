"""Shared set-up of the pytest benchmarks: ``workloads`` importable here and in Ray workers, one Ray session."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

BENCHES = str(Path(__file__).resolve().parent)
if BENCHES not in sys.path:
    sys.path.insert(0, BENCHES)
# Ray workers of a local cluster inherit the driver's environment: they import `workloads` by module name.
_paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
if BENCHES not in _paths:
    os.environ["PYTHONPATH"] = os.pathsep.join([BENCHES, *_paths])
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

BENCH_NUM_CPUS = 2
BENCH_OBJECT_STORE_BYTES = 512 * 2**20


@pytest.fixture(scope="module")
def bench_ray() -> Iterator[None]:
    """A local Ray session for one benchmark module (reused, not stopped, if one is already running)."""
    import ray

    if ray.is_initialized():
        yield
        return
    # "local": a fresh instance, never the last cluster that `ray start` or ray.cluster_utils registered in
    # /tmp/ray/ray_current_cluster (on a shared machine, someone else's).
    ray.init(
        address="local",
        num_cpus=BENCH_NUM_CPUS,
        object_store_memory=BENCH_OBJECT_STORE_BYTES,
        include_dashboard=False,
        log_to_driver=False,
    )
    try:
        yield
    finally:
        ray.shutdown()
