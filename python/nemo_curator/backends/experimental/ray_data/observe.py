"""What a Ray Data run shows: the merged ledger as the same typed metrics the actor pool's scheduler gives.

The `RunMonitor` (progress display, timeline samples, run report) reads a `MetricsSource`: typed
`metrics()` and `balance()`. `LedgerView` is one, over the ledger the driver merges as result blocks
stream in, so both executors report alike. The ledger's counts are the core's `StageCounts`, the
struct behind the scheduler's metrics.

What the driver knows is what came back with the final blocks: a ledger travels with the last
output block of each worker call, so the counts cover the tasks whose results reached the driver
(each stage's numbers for them are complete), not work still inside the pipeline. Per stage:

- `tasks_in` is what reached the stage: the initial tasks for the first stage, the previous stage's
  outputs (as far as known) for the others; `tasks_done` / `tasks_failed` what it ran, successfully
  or not (the rest is `pending`: waiting or running, which of the two is not known);
- items, bytes, batches, calls, busy seconds and the first start / last end as the workers measured
  them (clocks: seconds since the run started);
- `actors_created`: distinct actors that ran batches of an actor stage (0 for stages run in Ray
  tasks); Ray Data's retries of dead workers are not visible (`retries`, `actors_died` stay 0).

Gauges Ray Data does not expose are None: the queues and work in flight while the run goes on (0 once
the dataset is exhausted: nothing is left), actor states, slots, backpressure.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from nemo_curator import _core
from nemo_curator.observability.metrics import RunMetrics, StageCounts, StageMetrics


class LedgerView:
    """The merged ledger of a run as a `MetricsSource` (typed `metrics()`, `balance()` with the
    scheduler's keys)."""

    def __init__(self, names: list[str], num_initial: int, actor_stages: list[bool], epoch0: float) -> None:
        self.names = names
        self.num_initial = num_initial
        self.actor_stages = actor_stages
        self.epoch0 = epoch0  # time.time() when the run started
        self.ledger = _core.Ledger(len(names))
        #: Final tasks and failure records received so far.
        self.emitted = 0
        self.failure_records = 0
        #: Set once the dataset is exhausted: the stages are finished.
        self.finished = False

    def merge(self, encoded: bytes) -> None:
        self.ledger.merge(encoded)

    def problems(self) -> list[str]:
        """Why the counts do not balance (empty when they do)."""
        return list(self.ledger.check(self.num_initial, self.emitted, self.failure_records, self.names))

    def _clock(self, epoch: float | None) -> float | None:
        return None if epoch is None else max(0.0, epoch - self.epoch0)

    def metrics(self) -> RunMetrics:
        stages = []
        reached = self.num_initial
        # Once the dataset is exhausted nothing waits or runs; before, Ray Data does not say.
        empty = 0 if self.finished else None
        for name, values, actor in zip(self.names, self.ledger.stages(), self.actor_stages, strict=True):
            ran = StageCounts.from_mapping(values)
            counts = replace(
                ran,
                tasks_in=max(reached, ran.tasks_in),
                actors_created=int(values["workers"]) if actor else 0,
                first_start=self._clock(ran.first_start),
                last_end=self._clock(ran.last_end),
            )
            stages.append(
                StageMetrics(
                    name=name,
                    counts=counts,
                    queued_tasks=empty,
                    queued_bytes=empty,
                    in_flight_batches=empty,
                    in_flight_tasks=empty,
                    finished=self.finished,
                )
            )
            reached = counts.tasks_out
        return RunMetrics(
            stages=tuple(stages),
            tasks_initial=self.num_initial,
            tasks_emitted=self.emitted,
            tasks_failed=sum(s.counts.tasks_failed for s in stages),
            finished=self.finished,
        )

    def balance(self) -> dict[str, Any]:
        """The same keys as `_core.Scheduler.balance()`, plus `problems` (why it does not balance)."""
        stages = self.ledger.stages()
        produced = sum(int(s["tasks_out"]) for s in stages)
        failed = sum(int(s["tasks_failed"]) for s in stages)
        consumed = sum(int(s["tasks_in"]) for s in stages) - failed
        accounted = self.emitted + consumed + failed
        problems = self.problems()
        return {
            "initial": self.num_initial,
            "produced": produced,
            "emitted": self.emitted,
            "consumed": consumed,
            "filtered": sum(int(s["tasks_filtered"]) for s in stages),
            "failed": failed,
            "queued": max(0, self.num_initial + produced - accounted),
            "in_flight": 0,
            "balanced": not problems,
            "complete": not problems and self.finished,
            "problems": problems,
        }
