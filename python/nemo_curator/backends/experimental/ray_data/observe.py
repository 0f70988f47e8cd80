"""What a Ray Data run shows: the merged ledger seen through the scheduler's metrics interface.

The actor-pool executor's `RunMonitor` (progress display, timeline samples, run report) reads a
scheduler's `metrics()` and `balance()`. `LedgerView` gives it the same from the ledger the driver
merges as result blocks stream in, so both executors report alike.

What the driver knows is what came back with the final blocks: a ledger travels with the last
output block of each worker call, so the counts cover the tasks whose results reached the driver
(each stage's numbers for them are complete), not work still inside the pipeline. Per stage:

- `tasks_in` is what reached the stage: the initial tasks for the first stage, the previous stage's
  outputs (as far as known) for the others; `tasks_done` / `tasks_failed` what it ran, successfully
  or not; `queued_tasks` the difference (for the first stage: initial tasks not yet accounted for
  anywhere, whether waiting or running);
- items, bytes, batches, calls, busy seconds and the first start / last end as the workers measured
  them (clocks: seconds since the run started);
- `actors_created` / `actors_ready`: distinct actors that ran batches of an actor stage (0 for
  stages run in Ray tasks); Ray Data's retries of dead workers are not visible (`retries`,
  `actors_died` stay 0).
"""

from __future__ import annotations

from typing import Any

from nemo_curator import _core


class LedgerView:
    """The merged ledger of a run, with `metrics()` and `balance()` shaped like `_core.Scheduler`'s."""

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

    def metrics(self) -> dict[str, Any]:
        stages = []
        reached = self.num_initial
        for name, counts, actor in zip(self.names, self.ledger.stages(), self.actor_stages, strict=True):
            ran = int(counts["tasks_in"])
            failed = int(counts["failed_tasks"])
            batches_failed = int(counts["failed_batches"])
            actors = int(counts["workers"]) if actor else 0
            stages.append(
                {
                    "name": name,
                    "tasks_in": max(reached, ran),
                    "bytes_in": int(counts["bytes_in"]),
                    "items_in": int(counts["items_in"]),
                    "tasks_done": ran - failed,
                    "tasks_out": int(counts["tasks_out"]),
                    "bytes_out": int(counts["bytes_out"]),
                    "items_out": int(counts["items_out"]),
                    "tasks_failed": failed,
                    "tasks_filtered": int(counts["filtered_tasks"]),
                    "batches_done": int(counts["batches"]) - batches_failed,
                    "batches_failed": batches_failed,
                    "retries": 0,
                    "calls": int(counts["calls"]),
                    "busy_s": float(counts["busy_s"]),
                    "queued_tasks": max(0, reached - ran),
                    "queued_bytes": 0,
                    "in_flight_batches": 0,
                    "in_flight_tasks": 0,
                    "actors_pending": 0,
                    "actors_ready": actors,
                    "actors_busy": 0,
                    "actors_idle": 0,
                    "actors_created": actors,
                    "actors_died": 0,
                    "slots_in_use": 0,
                    "first_start": self._clock(counts["first_start"]),
                    "last_end": self._clock(counts["last_end"]),
                    "backpressured": False,
                    "finished": self.finished,
                }
            )
            reached = int(counts["tasks_out"])
        return {"stages": stages}

    def balance(self) -> dict[str, Any]:
        """The same keys as `_core.Scheduler.balance()`, plus `problems` (why it does not balance)."""
        stages = self.ledger.stages()
        produced = sum(int(s["tasks_out"]) for s in stages)
        failed = sum(int(s["failed_tasks"]) for s in stages)
        consumed = sum(int(s["tasks_in"]) for s in stages) - failed
        accounted = self.emitted + consumed + failed
        problems = self.problems()
        return {
            "initial": self.num_initial,
            "produced": produced,
            "emitted": self.emitted,
            "consumed": consumed,
            "filtered": sum(int(s["filtered_tasks"]) for s in stages),
            "failed": failed,
            "queued": max(0, self.num_initial + produced - accounted),
            "in_flight": 0,
            "balanced": not problems,
            "complete": not problems and self.finished,
            "problems": problems,
        }
