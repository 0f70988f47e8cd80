"""One error model, every executor a parameter: the same `StageFailedError` with the same typed record.

A stage that raises on one task either stops the run with `StageFailedError` (whose `failure` is a
`FailureRecord`: stage, task ids, error type, message, traceback, attempts, kind) or, under
`ignore_failures`, leaves that record in `executor.failures` and `last_run.failures`; both pickle whole.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import pytest

from nemo_curator.backends import base
from nemo_curator.backends.base import BaseExecutor
from nemo_curator.backends.failures import FailureRecord, StageFailedError
from nemo_curator.testing.probes import RaiseOn, numbered_tasks


def _in_process(config: dict[str, Any]) -> BaseExecutor:
    from nemo_curator.backends.in_process import InProcessExecutor

    return InProcessExecutor(config)


def _actor_pool(config: dict[str, Any]) -> BaseExecutor:
    from nemo_curator.backends.experimental import RayActorPoolExecutor

    return RayActorPoolExecutor(config={"show_progress": False, **config})


def _ray_data(config: dict[str, Any]) -> BaseExecutor:
    from nemo_curator.backends.experimental import RayDataExecutor

    return RayDataExecutor(config={"show_progress": False, **config})


def _xenna(config: dict[str, Any]) -> BaseExecutor:
    from nemo_curator.backends.xenna import XennaExecutor

    return XennaExecutor(config={"show_progress": False, **config})


EXECUTORS: dict[str, Callable[[dict[str, Any]], BaseExecutor]] = {
    "in_process": _in_process,
    "ray_actor_pool": _actor_pool,
    "ray_data": _ray_data,
    "xenna": _xenna,
}


@pytest.fixture(params=sorted(EXECUTORS), scope="module")
def make(request: pytest.FixtureRequest, ray_session: None) -> Callable[[dict[str, Any]], BaseExecutor]:
    return EXECUTORS[request.param]


def _check_record(failure: Any) -> None:
    assert isinstance(failure, FailureRecord)
    assert (failure.stage, failure.task_ids, failure.error_type) == ("raise_on", ("t3",), "ValueError")
    assert failure.message == "broken row (t3)"
    assert "Traceback" in failure.traceback and "broken row (t3)" in failure.traceback
    assert (failure.attempts, failure.kind) == (1, "user")
    # Read as the dicts executors used to hand out.
    assert failure["task_ids"] == ["t3"] and failure.get("stage") == "raise_on"
    assert failure.to_dict()["task_ids"] == ["t3"]


def test_a_failing_stage_raises_the_one_stage_failed_error(make: Callable[..., BaseExecutor]) -> None:
    with pytest.raises(StageFailedError) as info:
        make({}).execute([RaiseOn("t3", message="broken row")], numbered_tasks(5))
    error = info.value
    assert type(error) is StageFailedError and base.StageFailedError is StageFailedError
    assert str(error).startswith("Stage 'raise_on' failed on task(s) ['t3']: ValueError: broken row (t3)")
    _check_record(error.failure)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is StageFailedError and str(copy) == str(error) and copy.failure == error.failure


def test_ignored_failures_are_the_same_typed_records(make: Callable[..., BaseExecutor]) -> None:
    executor = make({"ignore_failures": True})
    out = executor.execute([RaiseOn("t3", message="broken row")], numbered_tasks(5))
    assert sorted(t.task_id for t in out) == ["t0", "t1", "t2", "t4"]
    [failure] = executor.failures  # type: ignore[attr-defined]
    _check_record(failure)
    assert pickle.loads(pickle.dumps(failure)) == failure
    report = getattr(executor, "last_run", None)
    if report is not None:  # the in-process executor keeps no run report
        assert report.failures == [failure] and report.num_failed_tasks == 1
        assert report.to_dict()["failures"] == [failure.to_dict()]
