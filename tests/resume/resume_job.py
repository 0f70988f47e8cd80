"""A small checkpointed job run as a subprocess by the resume tests (and killed mid-run by them).

`python resume_job.py EXECUTOR CHECKPOINT_DIR OUT_DIR [--retry-failed]`: lists N_SOURCES sources, works on
each (source 3 is filtered, every 5th fans out in two, FAIL_SOURCES fail under ignore_failures) and writes
each final task to `OUT_DIR/<task_id>.json` (with RESUME_REGROUP=1, an N -> K stage first splits batches of
three tasks into one task per row, written to `OUT_DIR/row<row>.json`). Every task the work stage starts is logged to
`OUT_DIR/work-<pid>.log` (what the tests count as redone work).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from nemo_curator.pipeline import Pipeline
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.tasks import Task

N_SOURCES = int(os.environ.get("RESUME_N_SOURCES", "24"))
WORK_S = float(os.environ.get("RESUME_WORK_S", "0.15"))
FAIL_SOURCES = {int(x) for x in os.environ.get("RESUME_FAIL_SOURCES", "").split(",") if x}
#: Rows (after the work stage) whose writing fails.
FAIL_ROWS = {int(x) for x in os.environ.get("RESUME_FAIL_ROWS", "").split(",") if x}
#: Add an N -> K stage (`Regroup`) before the writer.
REGROUP = os.environ.get("RESUME_REGROUP") == "1"


@dataclass(repr=False)
class Rows(Task[list[int]]):
    data: list[int] = field(default_factory=list)

    @property
    def num_items(self) -> int:
        return len(self.data)

    def validate(self) -> bool:
        return True


class ListSources(ProcessingStage[Task[Any], Rows]):
    name = "list_sources"

    def process(self, task: Task[Any]) -> list[Rows]:
        return [
            Rows(task_id=f"s{i}", dataset_name="d", data=[i * 100 + k for k in range(3)])
            for i in range(N_SOURCES)
        ]


class Work(ProcessingStage[Rows, Rows]):
    name = "work"

    def process(self, task: Rows) -> list[Rows] | None:
        source = task.data[0] // 100
        with open(os.path.join(os.environ["RESUME_OUT"], f"work-{os.getpid()}.log"), "a") as fh:
            fh.write(f"{source}\n")
        time.sleep(WORK_S)
        if source in FAIL_SOURCES and os.environ.get("RESUME_HEAL") != "1":
            raise RuntimeError(f"source {source} is broken")
        if source == 3:
            return None
        rows = [r * 2 for r in task.data]
        if source % 5 == 0:
            return [
                Rows(task_id="a", dataset_name="d", data=rows[:1]),
                Rows(task_id="b", dataset_name="d", data=rows[1:]),
            ]
        return [Rows(task_id="x", dataset_name="d", data=rows)]


class Regroup(ProcessingStage[Rows, Rows]):
    """N -> K (K != N): the rows of a batch of tasks, in one task per row. Curator gives such outputs random
    ids (`r<hex>`) and no source: only the executor's lineage knows which sources they come from."""

    name = "regroup"
    batch_size = 3

    def process(self, task: Rows) -> Rows:
        raise NotImplementedError("process_batch only")

    def process_batch(self, tasks: list[Rows]) -> list[Rows]:
        return [Rows(task_id="m", dataset_name="d", data=[row]) for t in tasks for row in t.data]


class Write(ProcessingStage[Rows, Rows]):
    name = "write"

    def process(self, task: Rows) -> Rows:
        # Named after the content when ids are random (REGROUP): a rerun writes the same file again.
        name = f"row{task.data[0]}" if REGROUP else task.task_id
        if set(task.data) & FAIL_ROWS and os.environ.get("RESUME_HEAL") != "1":
            raise RuntimeError(f"rows {task.data} are broken")
        path = os.path.join(os.environ["RESUME_OUT"], f"{name}.json")
        with open(path + ".tmp", "w") as fh:
            json.dump(task.data, fh)
        os.replace(path + ".tmp", path)
        return task


def make_executor(name: str) -> Any:
    config: dict[str, Any] = {"ignore_failures": True}
    if os.environ.get("RAY_ADDRESS"):
        # Workers of a cluster started elsewhere do not inherit this process's environment.
        config["runtime_env"] = {"env_vars": {k: v for k, v in os.environ.items() if k.startswith("RESUME_")}}
    if name == "in_process":
        from nemo_curator.backends.in_process import InProcessExecutor

        return InProcessExecutor(config)
    if name == "ray_actor_pool":
        from nemo_curator.backends.ray_actor_pool import RayActorPoolExecutor

        return RayActorPoolExecutor({**config, "show_progress": False})
    if name == "xenna":
        from nemo_curator.backends.xenna import XennaExecutor

        return XennaExecutor({**config, "execution_mode": "streaming", "show_progress": False})
    from nemo_curator.backends.ray_data import RayDataExecutor

    # Small blocks: a block's tasks come back (and complete) together, so they are what is in flight.
    return RayDataExecutor({**config, "show_progress": False, "max_tasks_per_block": 2})


def main() -> None:
    executor, checkpoint, out = sys.argv[1], sys.argv[2], sys.argv[3]
    os.environ["RESUME_OUT"] = out
    os.makedirs(out, exist_ok=True)
    stages = [ListSources(), Work(), *([Regroup()] if REGROUP else []), Write()]
    pipeline = Pipeline("resume", stages=stages)
    results = pipeline.run(
        make_executor(executor), checkpoint_path=checkpoint, retry_failed="--retry-failed" in sys.argv
    )
    print(f"RESULTS {len(results or [])}", flush=True)


if __name__ == "__main__":
    main()
