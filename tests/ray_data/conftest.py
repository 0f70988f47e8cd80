"""Ray Data executor tests: the shared ``ray_session`` fixture (tests/conftest.py), stages pickled by value."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="module")
def _stages_travel_by_value(request: pytest.FixtureRequest) -> Iterator[None]:
    """Ray workers cannot import this test package: its stage classes are pickled by value."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(request.module)
    yield
    cloudpickle.unregister_pickle_by_value(request.module)
