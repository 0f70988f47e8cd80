"""The straightforward way to run a pipeline on Ray, as the baseline our executors must beat.

Stage after stage: create actors for the stage, ``ray.util.ActorPool.map_unordered`` over its batches,
``ray.get`` every output back to the driver, kill the actors, go on with the next stage.
"""

from __future__ import annotations

from typing import Any

import ray
from ray.util import ActorPool


@ray.remote
class _StageActor:
    def __init__(self, stage: Any) -> None:
        self.stage = stage
        stage.setup(None)

    def process_batch(self, tasks: list[Any]) -> list[Any]:
        return self.stage.process_batch(tasks)

    def teardown(self) -> None:
        self.stage.teardown()


class ActorPoolBaseline:
    """Runs stages one at a time on a fresh pool of ``cluster CPUs // stage CPUs`` actors (at most one per
    batch). Needs a running Ray session."""

    def execute(self, stages: list[Any], initial_tasks: list[Any]) -> list[Any]:
        tasks = list(initial_tasks)
        total_cpus = ray.cluster_resources().get("CPU", 1.0)
        for stage in stages:
            batch_size = stage.batch_size or 1
            batches = [tasks[i : i + batch_size] for i in range(0, len(tasks), batch_size)]
            cpus = stage.resources.cpus
            fit = int(total_cpus // cpus) if cpus > 0 else len(batches)
            actors = [
                _StageActor.options(num_cpus=cpus).remote(stage)
                for _ in range(max(1, min(fit, len(batches))))
            ]
            outputs: list[Any] = []
            for result in ActorPool(actors).map_unordered(lambda a, b: a.process_batch.remote(b), batches):
                outputs.extend(result)
            ray.get([actor.teardown.remote() for actor in actors])
            for actor in actors:
                ray.kill(actor)
            tasks = outputs
        return tasks
