"""Shared pytest configuration: loguru records in ``caplog``, and the one local Ray fixture."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from loguru import logger

from nemo_curator.testing import ray_env

#: Modules that take longest (Ray started in subprocesses, multi-node clusters, Ray Client heads), in about
#: that order. `make test` runs the suite on two pytest-xdist workers, one file each at a time (`--dist
#: loadfile`, so a module still shares one Ray); they go first so that neither worker ends on a long one.
SLOW_FIRST = (
    "tests/resume/test_resume.py",
    "tests/resume/test_resume_cluster.py",
    "tests/test_ray_client_start.py",
    "tests/executors/test_ray_data_reliability.py",
    "tests/executors/test_node_loss.py",
    "tests/ray_data/test_ray_data_multinode.py",
    "tests/executors/test_stage_controls.py",
    "tests/executors/test_actor_pool.py",
    "tests/executors/test_ray_client.py",
    "tests/executors/test_multinode.py",
    "tests/executors/test_contract.py",
)


def pytest_configure(config: pytest.Config) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and "RAY_TMPDIR" not in os.environ:
        # A Ray temp dir per worker: `ray.init()` without an address joins the cluster registered in the temp
        # dir (`ray_current_cluster`), which another worker's `ray.cluster_utils.Cluster` writes. Short: Ray's
        # socket paths under it must stay under 108 bytes.
        os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix=f"r{worker}-", dir="/tmp")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(SLOW_FIRST)}

    def key(item: pytest.Item) -> int:
        return rank.get(os.path.relpath(item.path, config.rootpath), len(rank))

    items.sort(key=key)  # stable: the order within a module, and of the other modules, is kept


@pytest.fixture
def caplog(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """pytest's ``caplog``, also receiving loguru records (level and message text as logged)."""
    handler_id = logger.add(
        caplog.handler,
        format="{message}",
        level=0,
        filter=lambda record: record["level"].no >= caplog.handler.level,
        enqueue=False,
    )
    yield caplog
    logger.remove(handler_id)


@pytest.fixture(scope="module")
def ray_session(request: pytest.FixtureRequest) -> None:
    """A small local Ray (4 logical CPUs, 256 MiB object store: oversubscribed on purpose, tests check
    behaviour, not speed). A module that needs other resources says so in ``RAY_SESSION_OPTIONS``
    (e.g. ``{"num_cpus": 2}``). Modules with the same options share one Ray: starting one costs seconds.
    """
    options: dict[str, Any] = getattr(request.module, "RAY_SESSION_OPTIONS", {})
    ray_env.ensure_local_ray(**options)


@pytest.fixture(scope="session", autouse=True)
def _ray_down_at_the_end() -> Iterator[None]:
    yield
    ray_env.shutdown_local_ray()
