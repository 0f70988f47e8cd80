"""Shared pytest configuration: loguru records in ``caplog``, and the one local Ray fixture."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from loguru import logger

from nemo_curator.testing import ray_env


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
