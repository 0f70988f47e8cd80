"""One contract suite, every executor a parameter: each must give the in-process executor's answers.

Compared per output task: type, task_id, data, metadata, and the perf-stat history (stage names and, where
batching is deterministic, items processed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from nemo_curator.backends.base import BaseExecutor
from nemo_curator.backends.in_process import InProcessExecutor
from nemo_curator.pipeline import Pipeline
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.tasks import Task
from nemo_curator.testing.stages import (
    AddConstantStage,
    AddLengthStage,
    AddThenFilterStage,
    BatchRecorderStage,
    DocumentSourceStage,
    FanOutStage,
    FilterEvenStage,
    IntSourceStage,
    PassthroughStage,
    SplitIntoRowsStage,
    make_document_batches,
    make_int_tasks,
)


def _actor_pool() -> BaseExecutor:
    from nemo_curator.backends.experimental import RayActorPoolExecutor

    return RayActorPoolExecutor(config={"show_progress": False})


def _actor_pool_actors() -> BaseExecutor:
    from nemo_curator.backends.experimental import RayActorPoolExecutor

    # Every stage in actors of its own, also the stateless ones that run as Ray tasks by default.
    return RayActorPoolExecutor(config={"stateless_as_tasks": False, "show_progress": False})


def _actor_pool_small_queues() -> BaseExecutor:
    from nemo_curator.backends.experimental import RayActorPoolExecutor

    # One actor per stage and tiny queues: exercises backpressure and rebalancing paths.
    return RayActorPoolExecutor(
        config={"pool_size": 1, "queue_max_tasks": 4, "slots_per_actor": 1, "show_progress": False}
    )


def _ray_data() -> BaseExecutor:
    from nemo_curator.backends.experimental import RayDataExecutor

    return RayDataExecutor()


def _xenna_streaming() -> BaseExecutor:
    from nemo_curator.backends.xenna import XennaExecutor

    return XennaExecutor(config={"execution_mode": "streaming", "show_progress": False})


def _xenna_batch() -> BaseExecutor:
    from nemo_curator.backends.xenna import XennaExecutor

    return XennaExecutor(config={"execution_mode": "batch", "show_progress": False})


EXECUTORS: dict[str, Callable[[], BaseExecutor]] = {
    "ray_actor_pool": _actor_pool,
    "ray_data": _ray_data,
    "xenna_streaming": _xenna_streaming,
    "xenna_batch": _xenna_batch,
}
# Variants run on the tests that stress their settings only (each Ray run costs seconds here).
VARIANTS: dict[str, Callable[[], BaseExecutor]] = {
    **EXECUTORS,
    "ray_actor_pool_small_queues": _actor_pool_small_queues,
    "ray_actor_pool_actors": _actor_pool_actors,
}


@pytest.fixture(params=sorted(EXECUTORS), scope="module")
def make_executor(request: pytest.FixtureRequest, ray_session: None) -> Callable[[], BaseExecutor]:
    return EXECUTORS[request.param]


@pytest.fixture(params=sorted(VARIANTS), scope="module")
def make_variant(request: pytest.FixtureRequest, ray_session: None) -> Callable[[], BaseExecutor]:
    return VARIANTS[request.param]


def _data(task: Task[Any]) -> Any:
    data = task.data
    if isinstance(data, pa.Table):
        return ("table", data.to_pylist())
    if isinstance(data, pd.DataFrame):
        return ("frame", data.to_dict("records"))
    return data


def _canon(tasks: list[Task[Any]], *, items: bool) -> list[tuple[Any, ...]]:
    out = []
    for t in tasks:
        perf = [(p.stage_name, p.num_items_processed if items else None) for p in t._stage_perf]
        # Which tasks share a batch (and so which batch is the short last one) follows the order in
        # which concurrent workers finish; `test_batch_sizes` checks the batches themselves.
        meta = {k: v for k, v in t._metadata.items() if not k.endswith(("_batch_ids", "_batch_len"))}
        out.append((type(t).__name__, t.task_id, repr(_data(t)), repr(sorted(meta.items())), perf))
    return sorted(out, key=lambda x: x[1])


def _check_same(
    make: Callable[[], BaseExecutor],
    stages: list[ProcessingStage[Any, Any]],
    tasks: Callable[[], list[Task[Any]] | None],
    *,
    items: bool = True,
) -> list[Task[Any]]:
    expected = InProcessExecutor().execute(stages, tasks())
    got = make().execute(stages, tasks())
    assert _canon(got, items=items) == _canon(expected, items=items)
    return got


def test_linear_ints(make_executor: Callable[[], BaseExecutor]) -> None:
    _check_same(make_executor, [AddConstantStage(value=2), PassthroughStage()], lambda: make_int_tasks(25))


def test_fan_out_then_map(make_variant: Callable[[], BaseExecutor]) -> None:
    got = _check_same(make_variant, [FanOutStage(n=3), AddConstantStage(value=1)], lambda: make_int_tasks(10))
    assert len(got) == 30


@pytest.mark.parametrize("use_empty_list", [False, True])
def test_filtering(make_executor: Callable[[], BaseExecutor], use_empty_list: bool) -> None:
    got = _check_same(
        make_executor,
        [FilterEvenStage(use_empty_list=use_empty_list), AddConstantStage()],
        lambda: make_int_tasks(20),
    )
    assert len(got) == 10


def test_source_stage_from_empty_start(make_executor: Callable[[], BaseExecutor]) -> None:
    got = _check_same(make_executor, [IntSourceStage(n=12), AddConstantStage(value=5)], lambda: None)
    assert len(got) == 12


def test_zero_output_stage_ends_with_no_tasks(make_executor: Callable[[], BaseExecutor]) -> None:
    stages = [AddConstantStage(value=1).with_(name="make_even"), FilterEvenStage(), AddConstantStage()]
    got = make_executor().execute(stages, [t for t in make_int_tasks(10) if t.data % 2 == 1])
    assert got == []


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_batch_sizes(make_variant: Callable[[], BaseExecutor], batch_size: int) -> None:
    stages = [AddConstantStage(), BatchRecorderStage(batch_size=batch_size)]
    got = _check_same(make_variant, stages, lambda: make_int_tasks(40), items=batch_size == 1)
    lens = [t._metadata["batch_recorder_batch_len"] for t in got]
    assert max(lens) <= batch_size
    # Exactly one process_batch per batch: batches partition the tasks.
    batches = {tuple(t._metadata["batch_recorder_batch_ids"]) for t in got}
    assert sum(len(b) for b in batches) == 40
    if batch_size == 3:
        assert sum(1 for b in batches if len(b) < 3) <= 1  # full batches except at most the last
    for t in got:
        perf = t._stage_perf[-1]
        assert perf.stage_name == "batch_recorder"
        assert perf.custom_metrics["batch_tasks"] == t._metadata["batch_recorder_batch_len"]
        assert perf.num_items_processed == perf.custom_metrics["batch_items"]
        assert perf.process_time > 0


def test_document_batches_through_split(make_executor: Callable[[], BaseExecutor]) -> None:
    stages = [AddLengthStage(), SplitIntoRowsStage(), AddLengthStage(output_column="length2")]
    got = _check_same(make_executor, stages, lambda: make_document_batches(6, 5))
    assert len(got) == 30


def test_document_source_stage(make_executor: Callable[[], BaseExecutor]) -> None:
    _check_same(
        make_executor, [DocumentSourceStage(num_batches=5, rows_per_batch=4), AddLengthStage()], lambda: None
    )


def test_composite_through_pipeline(make_executor: Callable[[], BaseExecutor]) -> None:
    expected = Pipeline("p", stages=[AddThenFilterStage(value=1)]).run(
        InProcessExecutor(), make_int_tasks(15)
    )
    got = Pipeline("p", stages=[AddThenFilterStage(value=1)]).run(make_executor(), make_int_tasks(15))
    assert _canon(got or [], items=True) == _canon(expected or [], items=True)


def test_inputs_are_not_mutated(make_executor: Callable[[], BaseExecutor]) -> None:
    tasks = make_int_tasks(5)
    before = [(t.task_id, t.data, len(t._stage_perf), dict(t._metadata)) for t in tasks]
    make_executor().execute([AddConstantStage(), BatchRecorderStage()], tasks)
    assert [(t.task_id, t.data, len(t._stage_perf), dict(t._metadata)) for t in tasks] == before


def test_a_non_task_input_is_a_type_error_naming_it(make_executor: Callable[[], BaseExecutor]) -> None:
    tasks: list[Any] = [*make_int_tasks(2), {"text": "not a task"}]
    with pytest.raises(TypeError, match=r"initial_tasks\[2\] is not a Task: got dict"):
        make_executor().execute([AddConstantStage()], tasks)


@pytest.mark.parametrize(
    ("executor", "key", "value"),
    [
        ("ray_actor_pool", "poll_interval_s", float("nan")),
        ("ray_actor_pool", "reserved_cpus", float("inf")),
        ("ray_actor_pool", "pool_size", 10**30),
        ("ray_actor_pool", "call_timeout_s", float("nan")),
        ("ray_data", "reserved_cpus", float("nan")),
        ("ray_data", "max_retries", 10**30),
        ("xenna", "autoscale_interval_s", float("inf")),
        ("xenna", "logging_interval", float("nan")),
        ("xenna", "queue_max_tasks", 10**30),
    ],
)
def test_nan_infinite_and_huge_config_values_are_errors_naming_the_key(
    executor: str, key: str, value: Any
) -> None:
    from nemo_curator.backends.experimental import RayActorPoolExecutor, RayDataExecutor
    from nemo_curator.backends.xenna import XennaExecutor

    cls = {"ray_actor_pool": RayActorPoolExecutor, "ray_data": RayDataExecutor, "xenna": XennaExecutor}[
        executor
    ]
    with pytest.raises(ValueError, match=key):
        cls(config={key: value})
