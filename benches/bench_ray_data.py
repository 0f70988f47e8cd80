"""RayDataExecutor against a straightforward Ray Data pipeline of Python task objects.

The reference (`PythonObjectsRayData`) is what one writes first: `ray.data.from_items` of the tasks,
one `map_batches` per stage calling the stage through `BaseStageAdapter` (same perf stats), and
`take_all()`. Tasks travel pickled inside Arrow's Python-object extension column. Curator v1.1.0's
executor is this with one block per task (`--curator-blocks` adds that variant).

Workloads:
- `arrow`: hundreds of DocumentBatch tasks of about 1 MB of text each through three vectorised
  pyarrow stages, the last with `batch_size=8`;
- `tiny`: many one-integer tasks through three cheap stages, the last with `batch_size=8`.

Each executor runs in a fresh Ray session (so the object store's high-water mark is its own), once
to warm up and then `rounds` times; reported: the best time, throughput, and peak memory = object
store pages touched during the measured runs + the largest sum of anonymous (heap) memory of the
driver and all Ray worker processes seen by a 20 ms sampler, above what each held when first seen
(so idle workers, the caller's input tasks and a new worker's interpreter do not count).

`make bench` runs it through pytest-benchmark (`test_*` below, small sizes, ratios in
`extra_info`); `python benches/bench_ray_data.py` prints the full-size comparison table.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pytest

BENCHES = str(Path(__file__).resolve().parent)
if BENCHES not in sys.path:
    sys.path.insert(0, BENCHES)
# Ray workers import the stages below by module name: they inherit this environment.
_paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
if BENCHES not in _paths:
    os.environ["PYTHONPATH"] = os.pathsep.join([BENCHES, *_paths])
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from nemo_curator.backends.base import BaseStageAdapter  # noqa: E402
from nemo_curator.stages.base import ProcessingStage  # noqa: E402
from nemo_curator.tasks import DocumentBatch, Task  # noqa: E402
from nemo_curator.testing.stages import IntTask, make_int_tasks  # noqa: E402

NUM_CPUS = 2
OBJECT_STORE_BYTES = 1536 * 2**20
ROWS_PER_DOC = 1000
CHARS_PER_ROW = 1000

# ------------------------------------------------------------------------------------------------------------
# Workloads


# The stages are light (vectorised Arrow over the offsets and a filter), as annotation and filtering
# stages of a curation pipeline are: the executor's data path, not the stages, is what is measured.


@dataclass
class TextStats(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Adds `n_chars` per document."""

    name: str = "text_stats"

    def process(self, task: DocumentBatch) -> DocumentBatch:
        table = task.to_pyarrow()
        table = table.append_column("n_chars", pc.utf8_length(table.column("text")))
        return DocumentBatch(task.task_id, task.dataset_name, table, task._stage_perf, task._metadata)


@dataclass
class KeepLong(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Keeps documents of at least `min_chars` characters."""

    min_chars: int = 100
    name: str = "keep_long"

    def process(self, task: DocumentBatch) -> DocumentBatch:
        table = task.to_pyarrow()
        table = table.filter(pc.greater_equal(table.column("n_chars"), self.min_chars))
        return DocumentBatch(task.task_id, task.dataset_name, table, task._stage_perf, task._metadata)


@dataclass
class ScoreAgainstBatch(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Scores each document's length against the mean of its batch of 8 tasks."""

    name: str = "score_against_batch"
    batch_size: int = 8

    def process(self, task: DocumentBatch) -> DocumentBatch:
        return self.process_batch([task])[0]

    def process_batch(self, tasks: list[DocumentBatch]) -> list[DocumentBatch]:
        tables = [t.to_pyarrow() for t in tasks]
        total = sum(pc.sum(t.column("n_chars")).as_py() or 0 for t in tables)
        rows = sum(t.num_rows for t in tables) or 1
        mean = total / rows
        out = []
        for task, table in zip(tasks, tables, strict=True):
            score = pc.divide(pc.cast(table.column("n_chars"), pa.float64()), mean)
            out.append(
                DocumentBatch(
                    task.task_id,
                    task.dataset_name,
                    table.append_column("score", score),
                    task._stage_perf,
                    task._metadata,
                )
            )
        return out


def make_documents(n: int) -> list[DocumentBatch]:
    """`n` tasks of ROWS_PER_DOC rows of 0 to 2 * CHARS_PER_ROW characters (about 1 MB each)."""
    rng = np.random.default_rng(0)
    words = np.array(["data", "curation", "arrow", "ray", "stage", "token", "model", "text", "filter"])
    line = " ".join(words[rng.integers(0, len(words), size=2 * CHARS_PER_ROW // 4)])
    out = []
    for i in range(n):
        ends = rng.integers(0, 2 * CHARS_PER_ROW, size=ROWS_PER_DOC)
        table = pa.table({"id": np.arange(ROWS_PER_DOC) + i * ROWS_PER_DOC, "text": [line[:e] for e in ends]})
        out.append(DocumentBatch(task_id=f"doc_{i}", dataset_name="bench", data=table))
    return out


@dataclass
class Increment(ProcessingStage[IntTask, IntTask]):
    """`data += by`, in place (a cheap stage)."""

    by: int = 1
    name: str = "increment"

    def process(self, task: IntTask) -> IntTask:
        task.data += self.by
        return task


@dataclass
class SumOfBatch(ProcessingStage[IntTask, IntTask]):
    """Records the sum of its batch of 8 in each task's metadata."""

    name: str = "sum_of_batch"
    batch_size: int = 8

    def process(self, task: IntTask) -> IntTask:
        return self.process_batch([task])[0]

    def process_batch(self, tasks: list[IntTask]) -> list[IntTask]:
        total = sum(t.data for t in tasks)
        for t in tasks:
            t._metadata["batch_sum"] = total
        return tasks


@dataclass(frozen=True)
class Workload:
    name: str
    stages: Callable[[], list[ProcessingStage[Any, Any]]]
    tasks: Callable[[int], list[Task[Any]]]
    check: Callable[[int, list[Task[Any]]], None]
    unit: str


def _check_arrow(n: int, out: list[Task[Any]]) -> None:
    assert sorted(t.task_id for t in out) == sorted(f"doc_{i}" for i in range(n)), "lost or extra tasks"
    for t in out:
        assert t.data.column_names == ["id", "text", "n_chars", "score"]
        assert [p.stage_name for p in t._stage_perf] == ["text_stats", "keep_long", "score_against_batch"]


def _check_tiny(n: int, out: list[Task[Any]]) -> None:
    assert sorted(t.data for t in out) == list(range(3, n + 3)), "lost, extra or wrong tasks"
    assert all(len(t._stage_perf) == 3 for t in out)


WORKLOADS = {
    "arrow": Workload(
        "arrow",
        lambda: [TextStats(), KeepLong(), ScoreAgainstBatch()],
        make_documents,
        _check_arrow,
        "MB",
    ),
    "tiny": Workload(
        "tiny",
        lambda: [Increment(by=1), Increment(by=2, name="increment_again"), SumOfBatch()],
        lambda n: list(make_int_tasks(n)),
        _check_tiny,
        "tasks",
    ),
}

# ------------------------------------------------------------------------------------------------------------
# The reference: tasks as Python objects through from_items + map_batches


class PythonObjectsRayData:
    """`from_items(tasks)`, one `map_batches` per stage over Python task objects, `take_all()`."""

    def __init__(self, one_block_per_task: bool = False) -> None:
        self.one_block_per_task = one_block_per_task

    def execute(self, stages: list[ProcessingStage[Any, Any]], tasks: list[Task[Any]]) -> list[Task[Any]]:
        import ray

        ctx = ray.data.DataContext.get_current()
        ctx.enable_fallback_to_arrow_object_ext_type = True
        ctx.enable_progress_bars = False
        blocks = {"override_num_blocks": len(tasks)} if self.one_block_per_task else {}
        ds = ray.data.from_items([{"item": t} for t in tasks], **blocks)
        for stage in stages:
            ds = ds.map_batches(_apply_stage, fn_args=(stage,), batch_size=stage.batch_size or 1)
        return [row["item"] for row in ds.take_all()]


def _apply_stage(batch: dict[str, Any], stage: ProcessingStage[Any, Any]) -> dict[str, Any]:
    return {"item": BaseStageAdapter(stage).process_batch(list(batch["item"]))}


def _executor(key: str) -> Any:
    if key == "ray_data":
        from nemo_curator.backends.experimental.ray_data import RayDataExecutor

        return RayDataExecutor()
    if key == "python_objects":
        return PythonObjectsRayData()
    if key == "python_objects_block_per_task":
        return PythonObjectsRayData(one_block_per_task=True)
    raise KeyError(key)


# ------------------------------------------------------------------------------------------------------------
# Measuring


def _plasma_touched_bytes() -> int:
    """Pages of this session's object store file that were ever written (tmpfs frees none)."""
    import ray

    raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid
    fd_dir = Path(f"/proc/{raylet}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if "plasma" in target:
            return os.stat(fd).st_blocks * 512
    return 0


def _anonymous_bytes(pid: int) -> int:
    """Anonymous (heap) memory of a process: its private data, without the object store's shared
    pages (which `_plasma_touched_bytes` counts once, whoever maps them)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Anonymous:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class _MemorySampler:
    """Largest growth of anonymous memory summed over the driver and every process under the raylet
    (20 ms samples). Each process counts from its first sample, so a worker process that Ray starts
    during the run adds what it allocates, not its fixed interpreter and library footprint."""

    def __init__(self) -> None:
        import ray

        self._raylet = psutil.Process(ray._private.worker._global_node.all_processes["raylet"][0].process.pid)
        self._first: dict[int, int] = {}
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _growth(self) -> int:
        try:
            children = self._raylet.children(recursive=True)
        except psutil.Error:
            children = []
        total = 0
        for proc in [psutil.Process(), *children]:
            used = _anonymous_bytes(proc.pid)
            total += max(0, used - self._first.setdefault(proc.pid, used))
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._growth())
            self._stop.wait(0.02)

    def __enter__(self) -> _MemorySampler:
        self._growth()  # first samples: the processes as the run finds them
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Result:
    executor: str
    workload: str
    size: int
    best_s: float
    per_s: float
    peak_mb: float
    plasma_mb: float
    heap_mb: float


def _units(workload: Workload, size: int) -> float:
    if workload.unit == "MB":
        return size * ROWS_PER_DOC * CHARS_PER_ROW / 2**20
    return float(size)


def measure(key: str, workload: Workload, size: int, rounds: int) -> Result:
    """Best of `rounds` runs after a warm-up, in the current Ray session.

    Memory is what the first measured run added: object store pages it touched plus its heap
    growth (the object store's high-water mark only grows, so later runs would add the allocator's
    fragmentation to it).
    """
    _executor(key).execute(workload.stages(), workload.tasks(min(size, 16)))  # warm-up
    gc.collect()
    times = []
    plasma = heap = 0
    for round_index in range(rounds):
        tasks = workload.tasks(size)
        plasma_before = _plasma_touched_bytes()
        with _MemorySampler() as sampler:
            started = time.perf_counter()
            out = _executor(key).execute(workload.stages(), tasks)
            times.append(time.perf_counter() - started)
        if round_index == 0:
            plasma = _plasma_touched_bytes() - plasma_before
            heap = sampler.peak
        workload.check(size, out)
        del out, tasks
        gc.collect()
    best = min(times)
    return Result(
        key,
        workload.name,
        size,
        best,
        _units(workload, size) / best,
        (plasma + heap) / 2**20,
        plasma / 2**20,
        heap / 2**20,
    )


def fresh_session() -> None:
    from nemo_curator.testing import ray_env

    # A new Ray each time (measurements must not inherit the last one's store): stop, then start.
    ray_env.shutdown_local_ray()
    ray_env.ensure_local_ray(num_cpus=NUM_CPUS, object_store_memory=OBJECT_STORE_BYTES)


# ------------------------------------------------------------------------------------------------------------
# pytest-benchmark entry points (make bench)

BENCH_SIZES = {"arrow": 120, "tiny": 4000}
_results: dict[tuple[str, str], Result] = {}


@pytest.fixture(scope="module")
def ray_data_bench_session() -> Iterator[None]:
    import ray

    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.mark.ray
@pytest.mark.parametrize("executor_key", ["python_objects", "ray_data"])
@pytest.mark.parametrize("workload_name", list(WORKLOADS))
def test_ray_data_vs_python_objects(
    benchmark: Any, ray_data_bench_session: None, workload_name: str, executor_key: str
) -> None:
    workload = WORKLOADS[workload_name]
    size = BENCH_SIZES[workload_name]
    fresh_session()
    holder: list[Result] = []
    benchmark.pedantic(lambda: holder.append(measure(executor_key, workload, size, rounds=2)), rounds=1)
    result = holder[0]
    _results[(workload_name, executor_key)] = result
    benchmark.extra_info.update(
        size=size,
        best_seconds=round(result.best_s, 3),
        throughput=f"{result.per_s:.1f} {workload.unit}/s",
        peak_memory_mb=round(result.peak_mb, 1),
    )
    reference = _results.get((workload_name, "python_objects"))
    if executor_key == "ray_data" and reference is not None:
        benchmark.extra_info["throughput_ratio"] = round(result.per_s / reference.per_s, 2)
        benchmark.extra_info["peak_memory_ratio"] = round(result.peak_mb / reference.peak_mb, 2)


# ------------------------------------------------------------------------------------------------------------
# Script mode


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=300, help="DocumentBatch tasks of ~1 MB (arrow workload)")
    parser.add_argument("--tiny", type=int, default=5000, help="tasks of the tiny workload")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workloads", default="arrow,tiny")
    parser.add_argument("--curator-blocks", action="store_true", help="also run one block per task")
    args = parser.parse_args()
    keys = ["python_objects", "ray_data"] + (["python_objects_block_per_task"] if args.curator_blocks else [])
    sizes = {"arrow": args.docs, "tiny": args.tiny}
    rows = []
    for name in args.workloads.split(","):
        workload = WORKLOADS[name]
        by_key = {}
        for key in keys:
            fresh_session()
            by_key[key] = measure(key, workload, sizes[name], args.rounds)
            r = by_key[key]
            print(
                f"{name:6} {key:30} {r.best_s:7.2f} s  {r.per_s:9.1f} {workload.unit}/s  "
                f"peak {r.peak_mb:7.0f} MB (object store {r.plasma_mb:6.0f} + heap {r.heap_mb:6.0f})",
                flush=True,
            )
        ref = by_key["python_objects"]
        ours = by_key["ray_data"]
        rows.append(
            f"{name}: ray_data throughput x{ours.per_s / ref.per_s:.2f}, peak memory x{ours.peak_mb / ref.peak_mb:.2f} "
            "of python_objects"
        )
    import ray

    ray.shutdown()
    print("\n".join(rows))


if __name__ == "__main__":
    main()
