"""RayDataExecutor on a real local Ray: plan, batching, lifecycle, failures, zero copy, bad input."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
import ray

from nemo_curator import _core
from nemo_curator.backends.experimental.ray_data import RayDataExecutor, StageFailedError
from nemo_curator.backends.experimental.ray_data.adapter import InputStore, input_store_name
from nemo_curator.backends.in_process import InProcessExecutor
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.stages.resources import Resources
from nemo_curator.tasks import DocumentBatch, EmptyTask, Task
from nemo_curator.testing.probes import (
    CrashAlways,
    CrashOnce,
    FailingSetup,
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

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("local_ray")]


def _ids(tasks: list[Task[Any]]) -> list[str]:
    return sorted(t.task_id for t in tasks)


# --- API and configuration -----------------------------------------------------------------------------------


def test_import_paths_name_one_class() -> None:
    from nemo_curator.backends.experimental import RayDataExecutor as A
    from nemo_curator.backends.experimental.ray_data import RayDataExecutor as B
    from nemo_curator.backends.ray_data import RayDataExecutor as C

    assert A is B is C is RayDataExecutor


def test_config_is_validated_at_construction() -> None:
    with pytest.raises(ValueError, match=r"pool_sise.*valid keys.*pool_size"):
        RayDataExecutor(config={"pool_sise": 2})
    with pytest.raises(ValueError, match="pool_size"):
        RayDataExecutor(config={"pool_size": 0})
    with pytest.raises(ValueError, match="ignore_failures"):
        RayDataExecutor(config={"ignore_failures": "yes"})
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
    assert _canon(got) == _canon(InProcessExecutor().execute(stages, make_int_tasks(14)))
    # 7 odd tasks fan out to 14: three full batches of 4 and one of 2, however the blocks fell.
    lens = sorted(t._metadata["batch_recorder_batch_len"] for t in got)
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


def test_pandas_payloads_match_in_process() -> None:
    stages = [_PandasRows(), BatchRecorderStage(batch_size=3)]
    got = RayDataExecutor(config={"max_tasks_per_block": 2}).execute(stages, numbered_tasks(7))
    assert _canon(got) == _canon(InProcessExecutor().execute(stages, numbered_tasks(7)))
    assert all(isinstance(t.data, pd.DataFrame) for t in got)
    assert max(t._metadata["batch_recorder_batch_len"] for t in got) <= 3


def test_order_inputs_stages_and_caller_session_are_kept() -> None:
    tasks = make_int_tasks(12)
    stage = BatchRecorderStage()
    out = RayDataExecutor(config={"preserve_order": True, "max_tasks_per_block": 1}).execute([stage], tasks)
    assert [t.task_id for t in out] == [f"int_{i}" for i in range(12)]
    assert [(len(t._stage_perf), t._metadata) for t in tasks] == [(0, {})] * 12
    assert not hasattr(stage, "_custom_metrics")
    assert ray.is_initialized()


def test_one_object_passed_three_times_is_three_tasks() -> None:
    tasks = [EmptyTask()] * 3
    out = RayDataExecutor().execute([PassthroughStage()], tasks)
    assert [len(t._stage_perf) for t in out] == [1, 1, 1]
    assert len({id(t) for t in out}) == 3 and tasks[0]._stage_perf == []


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


def test_actor_lifecycle_and_streaming(tmp_path: Any) -> None:
    slow = LifecycleProbe(str(tmp_path), name="slow", sleep_s=0.2)
    nxt = LifecycleProbe(str(tmp_path), name="next")
    out = RayDataExecutor(config={"pool_size": 2, "max_tasks_per_block": 1}).execute(
        [slow, nxt], numbered_tasks(6)
    )
    assert _ids(out) == _ids(numbered_tasks(6))
    on_node = read_records(tmp_path, "setup_on_node")
    setups = read_records(tmp_path, "setup")
    # One node: setup_on_node once per stage, not again in each actor, and before any setup.
    assert sorted(r["stage"] for r in on_node) == ["next", "slow"]
    assert sorted(r["stage"] for r in setups) == ["next", "next", "slow", "slow"]
    assert len({r["pid"] for r in setups}) == 4 and all(r["worker"] for r in setups)
    assert max(r["t"] for r in on_node if r["stage"] == "slow") <= min(
        r["t"] for r in setups if r["stage"] == "slow"
    )
    # Streaming: the second stage ran while the first still had work.
    batches = read_records(tmp_path, "batch")
    assert min(r["start"] for r in batches if r["stage"] == "next") < max(
        r["t"] for r in batches if r["stage"] == "slow"
    )
    # Teardown once per actor when Ray Data retires the pools (asynchronously, after the run).
    deadline = time.monotonic() + 30
    while len(read_records(tmp_path, "teardown")) < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sorted(r["pid"] for r in read_records(tmp_path, "teardown")) == sorted(r["pid"] for r in setups)


# --- failures ----------------------------------------------------------------------------------------------


def test_user_exception_fails_run_with_stage_task_and_traceback() -> None:
    with pytest.raises(StageFailedError) as info:
        RayDataExecutor().execute([RaiseOn("t3", message="broken row")], numbered_tasks(5))
    text = str(info.value)
    assert "raise_on" in text and "t3" in text and "broken row" in text
    assert "Traceback" in text and "ValueError" in text
    assert info.value.failure is not None and info.value.failure["task_ids"] == ["t3"]


def test_ignore_failures_skips_reports_and_balances() -> None:
    ex = RayDataExecutor(config={"ignore_failures": True})
    out = ex.execute([RaiseOn("t3"), RaiseOn("t1", name="second")], numbered_tasks(5))
    assert _ids(out) == ["t0", "t2", "t4"]
    assert sorted((f["stage"], tuple(f["task_ids"])) for f in ex.failures) == [
        ("raise_on", ("t3",)),
        ("second", ("t1",)),
    ]
    f = next(f for f in ex.failures if f["stage"] == "raise_on")
    assert f["error_type"] == "ValueError" and "t3" in f["message"] and "Traceback" in f["traceback"]
    assert [(s["tasks_in"], s["tasks_out"], s["failed_tasks"]) for s in ex.last_run_stats] == [
        (5, 4, 1),
        (4, 3, 1),
    ]


def test_worker_crash_mid_batch_is_retried_without_loss_or_duplicates(tmp_path: Any) -> None:
    ex = RayDataExecutor(config={"max_tasks_per_block": 2})
    out = ex.execute([CrashOnce(str(tmp_path), "t4"), RaiseOn("never", name="after")], numbered_tasks(10))
    assert _ids(out) == _ids(numbered_tasks(10))
    assert (tmp_path / "crashed-t4").exists()
    assert [s["tasks_in"] for s in ex.last_run_stats] == [10, 10]  # the crashed attempt counts nothing


def test_retries_run_out_then_clear_error() -> None:
    with pytest.raises(StageFailedError, match=r"crash_always.*died 2 time"):
        RayDataExecutor(config={"max_retries": 1}).execute([CrashAlways("t1")], numbered_tasks(3))


def test_failing_setup_fails_fast_naming_stage() -> None:
    with pytest.raises(StageFailedError, match=r"failing_setup.*model weights not found"):
        RayDataExecutor().execute([FailingSetup()], numbered_tasks(2))


@dataclass
class _ReturnsString(ProcessingStage[Task[Any], Task[Any]]):
    name: str = "returns_string"

    def process(self, task: Task[Any]) -> Any:
        return "not a task"


def test_non_task_output_is_a_clear_error() -> None:
    with pytest.raises(StageFailedError, match=r"returns_string.*str"):
        RayDataExecutor().execute([_ReturnsString()], numbered_tasks(1))


@dataclass
class _Holds(ProcessingStage[Task[Any], Task[Any]]):
    name: str = "holds_lock"
    batch_size: int = 1

    def __post_init__(self) -> None:
        self.lock = threading.Lock()

    def process(self, task: Task[Any]) -> Task[Any]:
        return task


def test_bad_input_fails_before_running() -> None:
    with pytest.raises(TypeError, match=r"holds_lock.*pickle"):
        RayDataExecutor().execute([_Holds()], numbered_tasks(1))
    with pytest.raises(ValueError, match="bad_batch"):
        RayDataExecutor().execute(
            [_ReturnsString(), RaiseOn("x", name="bad_batch").with_(batch_size=0)], numbered_tasks(1)
        )
    with pytest.raises(TypeError, match="initial_tasks"):
        RayDataExecutor().execute([_ReturnsString()], [object()])  # type: ignore[list-item]

    class _Raft(_ReturnsString):
        def ray_stage_spec(self) -> dict[str, Any]:
            return {"is_raft_actor": True}

    with pytest.raises(NotImplementedError, match="returns_string"):
        RayDataExecutor().execute([_Raft()], numbered_tasks(1))

    class _Typo(_ReturnsString):
        def ray_stage_spec(self) -> dict[str, Any]:
            return {"is_actor_stag": True}

    with pytest.raises(ValueError, match="is_actor_stag"):
        RayDataExecutor().execute([_Typo()], numbered_tasks(1))
    assert RayDataExecutor().execute([], numbered_tasks(1)) == []


def test_resources_no_node_has_fail_at_once() -> None:
    huge = RaiseOn("never").with_(resources=Resources(cpus=64))
    with pytest.raises(_core.InfeasibleError, match=r"raise_on.*cpus=64"):
        RayDataExecutor().execute([huge], numbered_tasks(1))
    gpu = RaiseOn("never").with_(resources=Resources(gpus=1))
    with pytest.raises(_core.InfeasibleError, match=r"raise_on.*gpus=1"):
        RayDataExecutor().execute([gpu], numbered_tasks(1))


def test_ignore_head_node_on_single_node_cluster_fails_at_once() -> None:
    with pytest.raises(RuntimeError, match="ignore_head_node"):
        RayDataExecutor(ignore_head_node=True).execute([RaiseOn("never")], numbered_tasks(1))


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
