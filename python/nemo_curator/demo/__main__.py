"""`python -m nemo_curator.demo`: generate a corpus (or use yours), curate it on the executors, compare.

python -m nemo_curator.demo                                  # synthetic corpus, every executor
python -m nemo_curator.demo --input my_jsonl/ --output out/ --executor ray_actor_pool
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from loguru import logger

from nemo_curator.demo.corpus import generate_corpus
from nemo_curator.demo.dedup import find_exact_duplicates
from nemo_curator.demo.pipeline import build_pipeline
from nemo_curator.demo.summary import format_comparison, format_summary

# The in-process run first: it is the reference the Ray executors are compared with.
EXECUTORS = ("in_process", "ray_actor_pool", "ray_data")


def _make_executor(name: str) -> Any:
    if name == "ray_actor_pool":
        from nemo_curator.backends.experimental import RayActorPoolExecutor

        return RayActorPoolExecutor()
    if name == "ray_data":
        from nemo_curator.backends.experimental import RayDataExecutor

        return RayDataExecutor()
    from nemo_curator.backends.in_process import InProcessExecutor

    return InProcessExecutor()


def _available(names: list[str]) -> list[str]:
    out = []
    for name in names:
        try:
            _make_executor(name)
        except ImportError as exc:
            print(f"[skip] executor {name}: {exc}")
            continue
        out.append(name)
    return out


def _warm_workers(modules: list[str], n: int) -> int:
    """Have `n` of Ray's worker processes import `modules` (the stages' code, pandas, pyarrow: a second
    or more each), so that every executor finds them ready, as on a cluster that has run a job before,
    and the first one measured does not pay that start-up for the next. Returns how many processes did."""
    import ray

    @ray.remote(num_cpus=1)
    def warm(names: list[str]) -> int:
        import importlib

        for name in names:
            importlib.import_module(name)
        time.sleep(0.2)  # held a moment, so the n calls land on n processes
        return os.getpid()

    return len(set(ray.get([warm.remote(modules) for _ in range(n)])))


def _wait_until_idle(timeout_s: float = 15.0) -> None:
    """Wait (a moment, at most `timeout_s`) until the previous run's actors have given their CPUs back:
    Ray kills actors asynchronously, and each executor plans on the resources free when it starts."""
    import ray

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) >= ray.cluster_resources().get("CPU", 0):
            return
        time.sleep(0.05)


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nemo_curator.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--input", help="folder of .jsonl/.json files with a 'text' field (default: generate one)"
    )
    parser.add_argument("--output", default="demo_output/curated", help="where the Parquet output goes")
    parser.add_argument("--executor", choices=(*EXECUTORS, "all"), default="all")
    parser.add_argument("--num-docs", type=int, default=20_000, help="size of the generated corpus")
    parser.add_argument("--num-files", type=int, default=48, help="JSONL files of the generated corpus")
    parser.add_argument("--files-per-partition", type=int, default=1)
    parser.add_argument(
        "--num-cpus",
        type=int,
        default=os.cpu_count() or 2,
        help="logical CPUs of the local Ray (default: this machine's CPUs; more workers than cores only "
        "share the cores, at a cost: on 2 cores, 8 workers spent ~1.5x the CPU time of 2 for this job)",
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # INFO, not loguru's default DEBUG: no line per file read or written.
    logger.remove()
    logger.add(sys.stderr, level="INFO")
    if args.input:
        input_dir = Path(args.input)
        if not input_dir.exists():
            parser.error(f"--input {input_dir} does not exist")
    else:
        input_dir = Path("demo_output/corpus")
        start = time.perf_counter()
        files = generate_corpus(input_dir, num_docs=args.num_docs, num_files=args.num_files)
        size_mb = sum(f.stat().st_size for f in files) / 1e6
        print(
            f"Corpus: {args.num_docs:,} documents ({size_mb:.1f} MB) in {len(files)} JSONL files "
            f"under {input_dir} ({time.perf_counter() - start:.1f} s; reused when it exists)"
        )

    names = list(EXECUTORS) if args.executor == "all" else [args.executor]
    names = _available(names)
    ray_names = [n for n in names if n != "in_process"]
    if ray_names:
        import ray

        # One local Ray for all runs, so start-up (seconds) is paid once and reported apart.
        start = time.perf_counter()
        # address="local": always a fresh local Ray, never some other cluster found on this machine.
        ray.init(
            address="local",
            num_cpus=args.num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=512 * 1024 * 1024,
        )
        ray_s = time.perf_counter() - start
        start = time.perf_counter()
        # The job's module imports every stage it uses (and pandas / pyarrow through them).
        # ...and Ray Data's own, which its task workers load (a cluster that ran a job before has them).
        warm = [build_pipeline.__module__, *(["ray.data"] if "ray_data" in ray_names else [])]
        workers = _warm_workers(warm, args.num_cpus)
        print(
            f"Started a local Ray ({ray.cluster_resources().get('CPU', 0):.0f} CPUs) in {ray_s:.1f} s, "
            f"and readied {workers} of its worker processes (the pipeline's modules imported) in "
            f"{time.perf_counter() - start:.1f} s"
        )
    walls: dict[str, float] = {}
    docs_in = 0
    for name in names:
        out_dir = Path(args.output) / name
        pipeline = build_pipeline(str(input_dir), str(out_dir), args.files_per_partition)
        executor = _make_executor(name)
        if name in ray_names:
            _wait_until_idle()
        print(f"\n=== {pipeline.name} on {name} ===")
        start = time.perf_counter()
        results = pipeline.run(executor) or []
        wall = time.perf_counter() - start
        walls[name] = wall
        if getattr(executor, "last_run", None) is None:
            # The Ray executors log their own run summary; the in-process one gets a table from perf stats.
            print(format_summary(results, wall))
        else:
            print(f"{len(results)} output tasks in {wall:.2f} s wall time")
            report = executor.last_run
            report.to_json(Path(args.output) / f"{name}-report.json")
            try:
                png = report.plot_timeline(Path(args.output) / f"{name}-timeline.png")
                print(f"Run report: {Path(args.output) / f'{name}-report.json'}; timeline picture: {png}")
            except ImportError as exc:
                print(f"(no timeline picture: {exc})")
        files = sorted(out_dir.glob("*.parquet"))
        print(f"Output: {len(files)} Parquet files in {out_dir.resolve()}")
        start = time.perf_counter()
        dedup = find_exact_duplicates(out_dir)
        print(
            f"Exact dedup: {dedup.duplicates:,} of {dedup.documents:,} kept documents are copies of another "
            f"(listed in {dedup.path}; {time.perf_counter() - start:.2f} s)"
        )
        docs_in = docs_in or sum(_count_lines(f) for f in sorted(input_dir.glob("*.json*")))
    if len(walls) > 1:
        print("\n" + format_comparison(walls, docs_in))
    print(
        "\nRun it on your own data: python -m nemo_curator.demo --input DIR_WITH_JSONL --output OUT_DIR "
        "--executor ray_actor_pool"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
