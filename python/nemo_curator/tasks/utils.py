"""Aggregation of the per-stage performance statistics carried by tasks."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from nemo_curator.tasks.tasks import Task


class TaskPerfUtils:
    """Helpers over ``Task._stage_perf``."""

    @staticmethod
    def collect_stage_metrics(tasks: Iterable[Task]) -> dict[str, dict[str, np.ndarray]]:
        """Every metric value of every stage entry, as float arrays: ``{stage: {metric: values}}``."""
        collected: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for task in tasks:
            for perf in task._stage_perf:
                per_stage = collected[perf.stage_name]
                for metric, value in perf.items():
                    per_stage[metric].append(float(value))
        return {
            stage: {metric: np.asarray(values, dtype=float) for metric, values in metrics.items()}
            for stage, metrics in collected.items()
        }

    @staticmethod
    def aggregate_task_metrics(tasks: Iterable[Task], prefix: str | None = None) -> dict[str, float]:
        """``{"[prefix_]<stage>_<metric>_<sum|mean|std>": value}``; an empty series gives 0.0."""
        lead = f"{prefix}_" if prefix else ""
        out: dict[str, float] = {}
        for stage, metrics in TaskPerfUtils.collect_stage_metrics(tasks).items():
            for metric, values in metrics.items():
                key = f"{lead}{stage}_{metric}"
                empty = values.size == 0
                out[f"{key}_sum"] = 0.0 if empty else float(np.sum(values))
                out[f"{key}_mean"] = 0.0 if empty else float(np.mean(values))
                out[f"{key}_std"] = 0.0 if empty else float(np.std(values))
        return out
