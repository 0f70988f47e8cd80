"""The native scheduler alone, through its Python binding, with mock workers (no Ray).

1,000,000 tasks through three stages with batch sizes 1, 8 and 64 on one 8-CPU node. Each driver round
polls once, finishes every submitted call at once (one output per input, 10 µs per batch) and reports
the round's batches in one `batches_done` call, then ticks: the Python work a real driver does per round,
without the Ray calls. A task-event is one task finishing one stage (3,000,000 here).

    .venv/bin/python -m pytest benches/bench_scheduler.py --benchmark-only
    .venv/bin/python benches/bench_scheduler.py [n_tasks]
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass
from typing import Any

import psutil

from nemo_curator._core import NodeSpec, Scheduler, StageSpec

N_TASKS = 1_000_000
BATCH_SIZES = (1, 8, 64)
TASK_BYTES = 1000


@dataclass
class Result:
    n_tasks: int
    emitted: int
    task_events: int
    rounds: int
    seconds: float
    heap_bytes: int
    rss_growth_bytes: int

    def extra_info(self) -> dict[str, Any]:
        return {
            "n_tasks": self.n_tasks,
            "rounds": self.rounds,
            "tasks_per_s": round(self.n_tasks / self.seconds),
            "task_events_per_s": round(self.task_events / self.seconds),
            "scheduler_heap_mib": round(self.heap_bytes / 2**20, 1),
            "rss_growth_mib": round(self.rss_growth_bytes / 2**20, 1),
            # Linux reports ru_maxrss in KiB: the process's high-water mark, Python and all.
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }


def drive(n_tasks: int = N_TASKS) -> Result:
    """One full run; returns counts and timings (the scheduler is checked to have emitted every task)."""
    rss_before = psutil.Process().memory_info().rss
    started = time.perf_counter()
    stages = [StageSpec(f"stage{i}", batch_size=b) for i, b in enumerate(BATCH_SIZES)]
    sched = Scheduler(stages, [NodeSpec("node0", 8)])
    sched.add_tasks([TASK_BYTES] * n_tasks, [1] * n_tasks)
    sched.close_input()
    emitted = task_events = rounds = 0
    now = 0.0
    while not sched.finished:
        rounds += 1
        batch_ids: list[int] = []
        sizes: list[int] = []
        ready: list[int] = []
        for cmd in sched.poll():
            tag = cmd[0]
            if tag == "submit":
                for batch_id, tasks, _attempt in cmd[2]:
                    batch_ids.append(batch_id)
                    sizes.append(len(tasks))
            elif tag == "emit":
                emitted += len(cmd[1])
            elif tag == "create":
                ready.append(cmd[1])
            elif tag == "abort":
                raise AssertionError(cmd)
        if ready:
            sched.actors_ready(ready)
        if batch_ids:
            task_events += sum(sizes)
            out_bytes = [TASK_BYTES * k for k in sizes]
            sched.batches_done(batch_ids, sizes, out_bytes, sizes, [1e-5] * len(batch_ids))
        now += 0.001
        sched.tick(now)
    seconds = time.perf_counter() - started
    rss_growth = psutil.Process().memory_info().rss - rss_before
    balance = sched.balance()
    assert emitted == n_tasks and balance["complete"] and balance["emitted"] == n_tasks, balance
    assert task_events == n_tasks * len(BATCH_SIZES)
    return Result(n_tasks, emitted, task_events, rounds, seconds, sched.heap_bytes(), rss_growth)


def test_scheduler_1m_tasks(benchmark: Any) -> None:
    result: Result = benchmark.pedantic(drive, rounds=1, iterations=1)
    benchmark.extra_info.update(result.extra_info())
    assert result.emitted == N_TASKS
    assert result.task_events / result.seconds > 1_000_000, result.extra_info()


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else N_TASKS
    print(drive(n).extra_info())
