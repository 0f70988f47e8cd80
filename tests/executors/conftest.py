"""One real local Ray per test module, started small (2 cores, shared machine)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import ray

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
RAY_CPUS = 4
OBJECT_STORE = 256 * 1024 * 1024


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """A local Ray with 4 logical CPUs (oversubscribed on purpose: tests check behaviour, not speed)."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        address="local",
        num_cpus=RAY_CPUS,
        object_store_memory=OBJECT_STORE,
        include_dashboard=False,
        log_to_driver=False,
    )
    yield
    ray.shutdown()
