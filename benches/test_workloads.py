"""pytest-benchmark runs of the comparison workloads on this project's executors (``make bench``).

Each workload runs under the in-process executor (the no-overhead reference), the stage-by-stage
``ray.util.ActorPool`` baseline (``baselines.py``) and each of our Ray executors that imports, in one warm Ray
session. Every run's output is checked; ``extra_info`` records items/s and, for our executors, the speedup
over both references measured in the same session. NeMo Curator's own executors are compared by
``make bench-compare`` (``compare/run.py``), which needs a second interpreter.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

import pytest

import workloads
from baselines import ActorPoolBaseline

REFERENCES = ("in_process", "actor_pool_baseline")
OURS = {
    "ray_actor_pool": ("nemo_curator.backends.experimental.ray_actor_pool", "RayActorPoolExecutor"),
    "ray_data": ("nemo_curator.backends.experimental.ray_data", "RayDataExecutor"),
}
# Slow or large workloads get one round; the rest take the best of two.
ONE_ROUND = {"scale_1m", "setup_heavy", "cpu_bound"}

_best_seconds: dict[tuple[str, str], float] = {}


def _executor(key: str) -> Any:
    if key == "in_process":
        from nemo_curator.backends.in_process import InProcessExecutor

        return InProcessExecutor()
    if key == "actor_pool_baseline":
        return ActorPoolBaseline()
    module_name, class_name = OURS[key]
    try:
        return getattr(importlib.import_module(module_name), class_name)()
    except ImportError as error:
        pytest.skip(f"{class_name} is not available: {error}")


def _timed_run(workload: workloads.Workload, size: int, executor: Any) -> Callable[[], tuple[float, Any]]:
    def run() -> tuple[float, Any]:
        stages, tasks = workload.build(size)
        started = time.perf_counter()
        out = executor.execute(stages, tasks)
        return time.perf_counter() - started, out

    return run


def _reference_seconds(name: str, key: str) -> float:
    """Best time of a reference executor on workload ``name``: from its own benchmark when that already
    ran in this session, else measured once now."""
    if (name, key) not in _best_seconds:
        workload = workloads.WORKLOADS[name]
        seconds, out = _timed_run(workload, workload.sizes["bench"], _executor(key))()
        ok, detail = workload.check(workload.sizes["bench"], out)
        assert ok, f"{key} on {name}: {detail}"
        _best_seconds[(name, key)] = seconds
    return _best_seconds[(name, key)]


@pytest.mark.ray
@pytest.mark.parametrize("executor_key", [*REFERENCES, *OURS])
@pytest.mark.parametrize("workload_name", list(workloads.WORKLOADS))
def test_workload(benchmark: Any, bench_ray: None, workload_name: str, executor_key: str) -> None:
    workload = workloads.WORKLOADS[workload_name]
    size = workload.sizes["bench"]
    executor = _executor(executor_key)
    run = _timed_run(workload, size, executor)
    times: list[float] = []
    outputs: list[Any] = []

    def measured() -> None:
        seconds, out = run()
        times.append(seconds)
        outputs[:] = [out]

    rounds = 1 if workload_name in ONE_ROUND else 2
    benchmark.pedantic(measured, rounds=rounds, iterations=1)
    ok, detail = workload.check(size, outputs[0])
    assert ok, detail

    best = min(times)
    _best_seconds[(workload_name, executor_key)] = best
    items = workload.items(size)
    benchmark.extra_info.update(items=items, items_per_s=round(items / best, 1), best_seconds=round(best, 4))
    if executor_key in OURS:
        for reference in REFERENCES:
            benchmark.extra_info[f"speedup_vs_{reference}"] = round(
                _reference_seconds(workload_name, reference) / best, 3
            )
