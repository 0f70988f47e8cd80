"""Cost of `checkpoint_path`: the same run with and without it, reported as a ratio (target <= 1.05).

Two workloads, each given as initial tasks (the sources) so that both runs do the same work:
- tiny: 2,000 one-row tasks through two trivial stages (the per-source bookkeeping dominates);
- arrow: 48 tasks of ~1 MB Arrow tables through two stages that touch every row.
Rounds alternate plain and checkpointed runs on a warm Ray (fresh checkpoint directory per run); the ratio
of the medians and the ratio of the minima (steadier on a shared machine, where other work only adds time).

`pytest benches/bench_checkpoint.py` (pytest-benchmark) or `python benches/bench_checkpoint.py [EXECUTOR ...]
[--kind tiny|arrow] [--rounds N]` (a quick table; rounds alternate which run goes first).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from nemo_curator.stages.base import ProcessingStage
from nemo_curator.tasks import DocumentBatch

TARGET_RATIO = 1.05
TINY_TASKS = 2_000
ARROW_TASKS = 48
ARROW_ROWS = 64_000  # int64 + float64 columns: ~1 MB per table
ROUNDS = 3
EXECUTORS = ("in_process", "ray_actor_pool", "ray_data")


class Scale(ProcessingStage[DocumentBatch, DocumentBatch]):
    name = "scale"
    batch_size = 1

    def process(self, task: DocumentBatch) -> DocumentBatch:
        table = task.to_pyarrow()
        out = table.set_column(1, "v", pc.multiply(table["v"], 2.0))
        return DocumentBatch(task_id=task.task_id, dataset_name=task.dataset_name, data=out)


class Keep(ProcessingStage[DocumentBatch, DocumentBatch]):
    name = "keep"
    batch_size = 1

    def process(self, task: DocumentBatch) -> DocumentBatch:
        table = task.to_pyarrow()
        return DocumentBatch(
            task_id=task.task_id,
            dataset_name=task.dataset_name,
            data=table.filter(pc.greater(table["k"], -1)),
        )


def _tasks(kind: str) -> list[DocumentBatch]:
    if kind == "tiny":
        return [
            DocumentBatch(task_id=f"t{i}", dataset_name="b", data=pa.table({"k": [i], "v": [1.0]}))
            for i in range(TINY_TASKS)
        ]
    table = pa.table({"k": pa.array(range(ARROW_ROWS), pa.int64()), "v": pa.array([0.5] * ARROW_ROWS)})
    return [DocumentBatch(task_id=f"a{i}", dataset_name="b", data=table) for i in range(ARROW_TASKS)]


def _executor(name: str) -> Any:
    if name == "in_process":
        from nemo_curator.backends.in_process import InProcessExecutor

        return InProcessExecutor()
    if name == "ray_actor_pool":
        from nemo_curator.backends.ray_actor_pool import RayActorPoolExecutor

        return RayActorPoolExecutor({"show_progress": False})
    from nemo_curator.backends.ray_data import RayDataExecutor

    return RayDataExecutor({"show_progress": False})


def run_once(name: str, kind: str, checkpoint: bool) -> float:
    from nemo_curator.pipeline import Pipeline

    tasks = _tasks(kind)
    pipeline = Pipeline("bench_checkpoint", stages=[Scale(), Keep()])
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        results = pipeline.run(_executor(name), tasks, checkpoint_path=tmp if checkpoint else None)
        seconds = time.perf_counter() - started
    assert results is not None and len(results) == len(tasks)
    return seconds


def measure(name: str, kind: str, rounds: int = ROUNDS) -> tuple[float, float, float, float]:
    """Medians and minima of the plain and the checkpointed runs' times. On a shared machine other work only
    ever adds time, so the ratio of the minima (each run at its least disturbed) is the steadier one."""
    run_once(name, kind, False)  # warm-up: worker processes, imports
    times: dict[bool, list[float]] = {False: [], True: []}
    for i in range(rounds):
        # Alternate which goes first: on a shared machine the load drifts within a round.
        for checkpoint in (False, True) if i % 2 == 0 else (True, False):
            times[checkpoint].append(run_once(name, kind, checkpoint))
    return (
        statistics.median(times[False]),
        statistics.median(times[True]),
        min(times[False]),
        min(times[True]),
    )


@pytest.mark.parametrize("kind", ["tiny", "arrow"])
@pytest.mark.parametrize("name", EXECUTORS)
def test_checkpoint_overhead(benchmark: Any, bench_ray: None, name: str, kind: str) -> None:
    plain, ckpt, plain_min, ckpt_min = measure(name, kind)
    benchmark.extra_info.update(
        {
            "plain_s": plain,
            "checkpoint_s": ckpt,
            "ratio": ckpt / plain,
            "ratio_of_minima": ckpt_min / plain_min,
        }
    )
    benchmark.pedantic(run_once, args=(name, kind, True), rounds=1, iterations=1)


def main() -> None:
    benches = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (benches, os.environ.get("PYTHONPATH")) if p)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # A Ray of its own: `ray.init()` would join a cluster another job started with `ray start`.
    os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="rb", dir="/tmp"))
    from nemo_curator.testing import ray_env

    # `python benches/bench_checkpoint.py [EXECUTOR ...] [--kind tiny|arrow] [--rounds N]`
    args = sys.argv[1:]
    kinds, rounds = ["tiny", "arrow"], ROUNDS
    if "--kind" in args:
        at = args.index("--kind")
        kinds = [args[at + 1]]
        del args[at : at + 2]
    if "--rounds" in args:
        at = args.index("--rounds")
        rounds = int(args[at + 1])
        del args[at : at + 2]
    names = args or list(EXECUTORS)
    if any(n != "in_process" for n in names):
        ray_env.ensure_local_ray(num_cpus=2, object_store_memory=512 * 2**20)
    print(
        f"{'executor':16} {'workload':8} {'plain s':>8} {'ckpt s':>8} {'ratio':>6} {'min s':>7} {'min s':>7} {'ratio':>6}"
    )
    for name in names:
        for kind in kinds:
            plain, ckpt, plain_min, ckpt_min = measure(name, kind, rounds)
            print(
                f"{name:16} {kind:8} {plain:8.3f} {ckpt:8.3f} {ckpt / plain:6.3f} "
                f"{plain_min:7.3f} {ckpt_min:7.3f} {ckpt_min / plain_min:6.3f}",
                flush=True,
            )
    ray_env.shutdown_local_ray()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_checkpoint

    bench_checkpoint.main()  # through the module name, so Ray workers can import the stages
