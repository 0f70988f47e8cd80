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
    """A local Ray for one benchmark module (the helper shared with the tests: tests/conftest.py)."""
    from nemo_curator.testing import ray_env

    ray_env.ensure_local_ray(num_cpus=BENCH_NUM_CPUS, object_store_memory=BENCH_OBJECT_STORE_BYTES)
    try:
        yield
    finally:
        ray_env.shutdown_local_ray()
