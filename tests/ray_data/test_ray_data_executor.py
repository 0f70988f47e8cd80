"""RayDataExecutor on a real local Ray: plan, batching, lifecycle, failures, zero copy, bad input."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
import ray

from nemo_curator.backends.experimental.ray_data import RayDataExecutor, StageFailedError
from nemo_curator.backends.experimental.ray_data.adapter import InputStore, input_store_name
from nemo_curator.backends.in_process import InProcessExecutor
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.tasks import DocumentBatch, Task
from nemo_curator.testing.probes import (
    CrashAlways,
    InputsHeldProbe,
    LifecycleProbe,
    RaiseOn,
    numbered_tasks,
    read_records,
)
from nemo_curator.testing.stages import (
    AddConstantStage,
    BatchRecorderStage,
    FanOutStage,
    FilterEvenStage,
    PassthroughStage,
    make_int_tasks,
)

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


def _ids(tasks: list[Task[Any]]) -> list[str]:
    return sorted(t.task_id for t in tasks)


# --- API and configuration -----------------------------------------------------------------------------------


def test_import_paths_name_one_class() -> None:
    from nemo_curator.backends.experimental import RayDataExecutor as A
    from nemo_curator.backends.experimental.ray_data import RayDataExecutor as B
    from nemo_curator.backends.ray_data import RayDataExecutor as C

    assert A is B is C is RayDataExecutor


def test_config_is_validated_at_construction() -> None:
    # Unknown keys and a non-bool ignore_failures: tests/executors/test_contract.py, for every executor.
    with pytest.raises(ValueError, match="pool_size"):
        RayDataExecutor(config={"pool_size": 0})
    with pytest.raises(ValueError, match="no_such_setting"):
        RayDataExecutor(config={"data_context": {"no_such_setting": 1}})
    with pytest.raises(ValueError, match="max_errored_blocks"):
        RayDataExecutor(config={"data_context": {"max_errored_blocks": 3}})
    assert (
        RayDataExecutor(config={"data_context": {"target_min_block_size": 1024}}).settings.pool_size is None
    )


# --- results, batching, perf stats -------------------------------------------------------------------------


@dataclass
class _PandasRows(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Turns an Arrow batch into a pandas one and adds a column (exercises the pandas payload)."""

    name: str = "pandas_rows"

    def process(self, task: DocumentBatch) -> DocumentBatch:
        frame = task.to_pandas()
        frame["double"] = frame["x"] * 2
        return DocumentBatch(task.task_id, task.dataset_name, frame, task._stage_perf, task._metadata)


def _canon(tasks: list[Task[Any]]) -> list[tuple[Any, ...]]:
    out = []
    for t in tasks:
        data = t.data.to_dict("list") if isinstance(t.data, pd.DataFrame) else t.data
        data = data.to_pylist() if isinstance(data, pa.Table) else data
        perf = [(p.stage_name, p.num_items_processed, sorted(p.custom_metrics)) for p in t._stage_perf]
        out.append((type(t).__name__, t.task_id, repr(data), repr(sorted(t._metadata.items())), perf))
    return sorted(out, key=lambda x: x[1])


def test_same_results_and_perf_stats_as_in_process_with_exact_batches_after_a_filter() -> None:
    stages = [FilterEvenStage(), FanOutStage(n=2), BatchRecorderStage(batch_size=4), AddConstantStage()]
    ex = RayDataExecutor(config={"exact_batches": True})
    got = ex.execute(stages, make_int_tasks(14))
    lens = sorted(t._metadata["batch_recorder_batch_len"] for t in got)
    want = InProcessExecutor().execute(stages, make_int_tasks(14))
    # Which tasks share a batch (and so which batch is the short one) follows the order blocks arrive
    # in, which Ray Data does not fix: compared apart from that, and the batch sizes below.
    for task in (*got, *want):
        del task._metadata["batch_recorder_batch_ids"], task._metadata["batch_recorder_batch_len"]
        for perf in task._stage_perf:
            if perf.stage_name == "batch_recorder":
                perf.num_items_processed = 0
    assert _canon(got) == _canon(want)
    # 7 odd tasks fan out to 14: three full batches of 4 and one of 2, however the blocks fell.
    assert lens == [2] * 2 + [4] * 12
    assert [s["tasks_in"] for s in ex.last_run_stats] == [14, 7, 14, 14]
    assert ex.last_run_stats[2]["batches"] == 4
    perf = got[0]._stage_perf[-2]
    assert perf.stage_name == "batch_recorder" and perf.custom_metrics["batch_tasks"] in (2, 4)
    assert all(p.process_time > 0 for t in got for p in t._stage_perf)


def test_batches_after_a_fan_out_are_cut_across_blocks() -> None:
    # 40 parents (many per CPU: the children stay in the fan-out's blocks), 5 children each; the
    # batching stage gets batches of 8 that Ray Data cuts across blocks, short only at a task's end.
    stages = [FanOutStage(n=5), BatchRecorderStage(batch_size=8)]
    got = RayDataExecutor().execute(stages, make_int_tasks(40))
    assert _ids(got) == _ids(InProcessExecutor().execute(stages, make_int_tasks(40)))
    lens = [t._metadata["batch_recorder_batch_len"] for t in got]
    assert max(lens) == 8
    assert sum(n == 8 for n in lens) >= 0.8 * len(lens)


@pytest.mark.parametrize(("children", "low", "high"), [(4, 2, 4), (3000, 2, 40)])
def test_a_few_parents_fan_out_in_blocks_of_many_children_that_still_spread(
    children: int, low: int, high: int
) -> None:
    # One parent: its children are re-blocked, a block per packed group (a few single children first,
    # then groups twice as large). Few children still give calls to spread; many are not a call each.
    stages = [FanOutStage(n=children), PassthroughStage()]
    ex = RayDataExecutor(config={"show_progress": False})
    got = ex.execute(stages, make_int_tasks(1))
    assert _ids(got) == _ids(InProcessExecutor().execute(stages, make_int_tasks(1)))
    assert ex.last_run is not None and ex.last_run.balanced
    after = ex.last_run.stage("passthrough")
    assert after.tasks_in == children == after.batches
    assert low <= after.calls <= high


def test_pandas_payloads_match_in_process() -> None:
    stages = [_PandasRows(), BatchRecorderStage(batch_size=3)]
    got = RayDataExecutor(config={"max_tasks_per_block": 2}).execute(stages, numbered_tasks(7))
    assert _canon(got) == _canon(InProcessExecutor().execute(stages, numbered_tasks(7)))
    assert all(isinstance(t.data, pd.DataFrame) for t in got)
    assert max(t._metadata["batch_recorder_batch_len"] for t in got) <= 3


def test_preserve_order_keeps_the_input_order() -> None:
    # Inputs, stages and the caller's session stay untouched on every executor: test_contract.py.
    tasks = make_int_tasks(12)
    out = RayDataExecutor(config={"preserve_order": True, "max_tasks_per_block": 1}).execute(
        [BatchRecorderStage()], tasks
    )
    assert [t.task_id for t in out] == [f"int_{i}" for i in range(12)]


def test_results_reference_the_object_store_without_copies() -> None:
    docs = [
        DocumentBatch(f"d{i}", "x", pa.table({"text": ["w" * 4000] * 250})) for i in range(8)
    ]  # 1 MB each
    before = pa.total_allocated_bytes()
    out = RayDataExecutor().execute([RaiseOn("never")], docs)
    assert _ids(out) == _ids(docs)
    # 8 MB of results, none of it allocated in this process: the tables are views of fetched blocks.
    assert pa.total_allocated_bytes() - before < 256 * 1024
    assert all(t.data.equals(d.data) for t, d in zip(sorted(out, key=lambda t: t.task_id), docs, strict=True))


# --- actors and lifecycle ------------------------------------------------------------------------------------


def test_initial_tasks_leave_the_object_store_once_the_first_segment_read_them() -> None:
    # Six initial blocks of one task; the probe (batch of 6 with exact batches: a segment of its own)
    # sees how many initial task lists the run still holds while the run is going.
    executor = RayDataExecutor(config={"max_tasks_per_block": 1, "exact_batches": True})
    out = executor.execute([PassthroughStage(), InputsHeldProbe(batch_size=6)], make_int_tasks(6))
    assert _ids(out) == _ids(make_int_tasks(6))
    assert {t._metadata["inputs_held"] for t in out} == {0}
    # Nothing of the run is left behind in the store.
    assert ray.get(ray.get_actor(input_store_name()).held.remote()) == {}


def test_input_store_lends_each_list_until_released() -> None:
    store = InputStore.remote()  # type: ignore[attr-defined]
    refs = [ray.put([1, 2]), ray.put([3])]
    ray.get(store.put.remote("run", refs))
    (ref,) = ray.get(store.take.remote("run", 1))
    assert ray.get(ref) == [3]
    ray.get(store.release.remote("run", [1]))
    assert ray.get(store.held.remote()) == {"run": 1}
    with pytest.raises(ray.exceptions.RayTaskError, match="list 1 was already processed and released"):
        ray.get(store.take.remote("run", 1))
    ray.get(store.drop.remote("run"))
    assert ray.get(store.held.remote()) == {}
    ray.kill(store)


def test_pool_size_actors_per_stage_and_streaming(tmp_path: Any) -> None:
    # The order of setup_on_node / setup / teardown on every executor: tests/executors/test_contract.py.
    # Long enough that the second pool's actors are up before the first stage ends on a loaded machine.
    slow = LifecycleProbe(str(tmp_path), name="slow", sleep_s=0.3)
    nxt = LifecycleProbe(str(tmp_path), name="next")
    out = RayDataExecutor(config={"pool_size": 2, "max_tasks_per_block": 1}).execute(
        [slow, nxt], numbered_tasks(12)
    )
    assert _ids(out) == _ids(numbered_tasks(12))
    setups = read_records(tmp_path, "setup")
    # A fixed pool of 2 actors per stage, each in a process of its own.
    assert sorted(r["stage"] for r in setups) == ["next", "next", "slow", "slow"]
    assert len({r["pid"] for r in setups}) == 4
    # Streaming: the second stage ran while the first still had work.
    batches = read_records(tmp_path, "batch")
    assert min(r["start"] for r in batches if r["stage"] == "next") < max(
        r["t"] for r in batches if r["stage"] == "slow"
    )


# --- failures ----------------------------------------------------------------------------------------------


def test_retries_run_out_then_the_error_counts_the_deaths() -> None:
    # That the run fails naming the stage, on every executor: tests/executors/test_contract.py.
    with pytest.raises(StageFailedError, match=r"crash_always.*died 2 time"):
        RayDataExecutor(config={"max_retries": 1}).execute([CrashAlways("t1")], numbered_tasks(3))


@ray.remote(num_cpus=2)
class _HoldsTwoCpus:
    def ready(self) -> bool:
        return True


def test_plan_uses_the_free_cpus_less_the_reserved(tmp_path: Any) -> None:
    holder = _HoldsTwoCpus.remote()  # type: ignore[attr-defined]
    try:
        ray.get(holder.ready.remote())
        deadline = time.monotonic() + 10  # Ray's view of free resources lags the actor's start
        while ray.available_resources().get("CPU", 0.0) > 2.0 and time.monotonic() < deadline:
            time.sleep(0.05)
        # 2 of 4 CPUs held, 1 reserved: one CPU for a task stage and an actor stage, which the plan
        # runs in one actor pool rather than wait for CPUs that may never come back.
        executor = RayDataExecutor(config={"reserved_cpus": 1.0, "stall_timeout_s": 60.0})
        probe = LifecycleProbe(directory=str(tmp_path), name="probe", actor_stage=True)
        out = executor.execute([AddConstantStage(value=1), probe], make_int_tasks(4))
        assert sorted(t.data for t in out) == [1, 2, 3, 4]
    finally:
        ray.kill(holder)
