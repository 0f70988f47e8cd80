"""One small local Ray per test module that needs one (2-core shared machine)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import ray

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A fresh local Ray with 4 logical CPUs and a 256 MB object store."""
    if ray.is_initialized():
        ray.shutdown()
    # "local": a new instance, never a cluster someone else registered in /tmp/ray on this machine.
    ray.init(
        address="local",
        num_cpus=4,
        object_store_memory=256 * 1024 * 1024,
        include_dashboard=False,
        log_to_driver=False,
    )
    yield
    ray.shutdown()


@pytest.fixture(autouse=True, scope="module")
def _stages_travel_by_value(request: pytest.FixtureRequest) -> Iterator[None]:
    """Ray workers cannot import this test package: its stage classes are pickled by value."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(request.module)
    yield
    cloudpickle.unregister_pickle_by_value(request.module)
