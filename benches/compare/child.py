"""One benchmark run in a fresh process: ``child.py WORKLOAD EXECUTOR MODE SIZE``, under either interpreter.

Prints one line ``BENCH_RESULT {json}`` with seconds, items, items/s, driver RSS (peak and before the run) and
whether the output was correct. ``child.py --probe`` prints ``BENCH_PROBE {json}``: which executors import here
and the versions that matter.

Modes: ``warm`` starts Ray first (fixed CPUs and object store) and times ``execute()`` alone; ``cold`` times
``execute()`` with no Ray running, so the executor starts (and stops) Ray as a script would; ``local`` is for
the in-process executor, which needs no Ray.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import platform
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

BENCHES = Path(__file__).resolve().parents[1]
if str(BENCHES) not in sys.path:
    sys.path.insert(0, str(BENCHES))

# Import path, class and config of every executor the runner knows, by key. Curator 1.1.0 and this project share
# the import paths (Curator has no in-process executor); XennaExecutor runs in each of its two modes.
EXECUTORS: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "in_process": ("nemo_curator.backends.in_process", "InProcessExecutor", None),
    "ray_actor_pool": ("nemo_curator.backends.experimental.ray_actor_pool", "RayActorPoolExecutor", None),
    "ray_data": ("nemo_curator.backends.experimental.ray_data", "RayDataExecutor", None),
    "xenna": ("nemo_curator.backends.xenna", "XennaExecutor", {"execution_mode": "streaming"}),
    "xenna_batch": ("nemo_curator.backends.xenna", "XennaExecutor", {"execution_mode": "batch"}),
}


def _is_curator() -> bool:
    """True under NeMo Curator itself (only this project has the native core)."""
    try:
        importlib.import_module("nemo_curator._core")
    except ImportError:
        return True
    return False


def load_executor(key: str) -> type:
    module_name, class_name, _ = EXECUTORS[key]
    return getattr(importlib.import_module(module_name), class_name)


def make_executor(key: str) -> Any:
    config = EXECUTORS[key][2]
    executor_cls = load_executor(key)
    return executor_cls() if config is None else executor_cls(config=dict(config))


def probe() -> dict[str, Any]:
    available: dict[str, str] = {}
    for key in EXECUTORS:
        try:
            load_executor(key)
            available[key] = "ok"
        except Exception as error:
            available[key] = f"n/a: {type(error).__name__}: {error}"[:300]
    versions: dict[str, str] = {"python": platform.python_version()}
    for package in ("nemo_curator", "ray", "pyarrow", "pandas", "numpy", "cosmos_xenna"):
        try:
            module = importlib.import_module(package)
            versions[package] = str(getattr(module, "__version__", "?"))
        except ImportError:
            pass
    return {"side": "curator" if _is_curator() else "ours", "executors": available, "versions": versions}


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _pin_ray_address_after_init() -> None:
    """Once Ray is up in this process, point ``RAY_ADDRESS`` at it.

    The runner starts children with ``RAY_ADDRESS=local`` so that ``ray.init()`` never joins another
    cluster on a shared machine. Ray's state API (used by Xenna's monitor) resolves "local" by looking for
    running GCS processes and fails when it finds several; the real address of this process's own session
    avoids both. Address discovery only: nothing an executor does is changed.
    """
    import ray

    real_init = ray.init

    @functools.wraps(real_init)
    def init(*args: Any, **kwargs: Any) -> Any:
        context = real_init(*args, **kwargs)
        os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
        return context

    ray.init = init


def _noop() -> None:
    return None


def run(
    workload_name: str, executor_key: str, mode: str, size: int, num_cpus: int, store_mb: int
) -> dict[str, Any]:
    import workloads

    workload = workloads.WORKLOADS[workload_name]
    load_executor(executor_key)  # fail before building the workload if it does not import
    stages, tasks = workload.build(size)
    if mode != "local":
        _pin_ray_address_after_init()
    if mode == "warm":
        import ray

        ray.init(num_cpus=num_cpus, object_store_memory=store_mb * 2**20)
        # Settled, as a long-lived session would be: its pre-started workers have booted.
        ray.get([ray.remote(_noop).options(num_cpus=1).remote() for _ in range(num_cpus)])
        # ...and the cluster's resource view shows those tasks' CPUs free again (it lags ray.get).
        deadline = time.monotonic() + 30
        while ray.available_resources().get("CPU", 0) < num_cpus and time.monotonic() < deadline:
            time.sleep(0.05)
    executor = make_executor(executor_key)
    rss_before = _rss_mb()
    started = time.perf_counter()
    out = executor.execute(stages, tasks)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    del tasks
    correct, detail = workload.check(size, out)
    items = workload.items(size)
    return {
        "workload": workload_name,
        "executor": executor_key,
        "mode": mode,
        "size": size,
        "items": items,
        "seconds": seconds,
        "items_per_s": items / seconds,
        "peak_rss_mb": peak_mb,
        "rss_before_mb": rss_before,
        "outputs": len(out),
        "correct": correct,
        "detail": detail,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--probe", action="store_true")
    parser.add_argument("--profile", help="write a cProfile of the driver to this file")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--object-store-mb", type=int, default=1024)
    parser.add_argument("args", nargs="*", help="WORKLOAD EXECUTOR MODE SIZE")
    ns = parser.parse_args()
    if ns.probe:
        print("BENCH_PROBE " + json.dumps(probe()), flush=True)
        return
    workload, executor, mode, size = ns.args
    try:
        if ns.profile:
            import cProfile

            profiler = cProfile.Profile()
            result = profiler.runcall(
                run, workload, executor, mode, int(size), ns.num_cpus, ns.object_store_mb
            )
            profiler.dump_stats(ns.profile)
        else:
            result = run(workload, executor, mode, int(size), ns.num_cpus, ns.object_store_mb)
    except Exception as error:
        traceback.print_exc()
        result = {
            "workload": workload,
            "executor": executor,
            "mode": mode,
            "size": int(size),
            "error": f"{type(error).__name__}: {error}"[:500],
        }
    print("BENCH_RESULT " + json.dumps(result), flush=True)
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


if __name__ == "__main__":
    main()
