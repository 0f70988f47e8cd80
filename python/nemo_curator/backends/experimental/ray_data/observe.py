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

import time
from typing import Any

import ray

from nemo_curator import _core
from nemo_curator.observability.metrics import RunMetrics


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

    def metrics(self) -> RunMetrics:
        return RunMetrics.from_scheduler(
            self.ledger.metrics(
                self.names, self.num_initial, self.emitted, self.finished, self.actor_stages, self.epoch0
            )
        )

    def balance(self) -> dict[str, Any]:
        """The same keys as `_core.Scheduler.balance()`, plus `problems` (why it does not balance)."""
        return dict(
            self.ledger.balance(
                self.num_initial, self.emitted, self.failure_records, self.finished, self.names
            )
        )


class RunningCalls:
    """Per stage, the first task of its oldest running batch and how long it has run, as the workers
    report batches that run long to the job's `InputStore` (asked at most every `every_s`; the answer
    is read when it is there, so the driver never waits for it)."""

    def __init__(self, store: Any, run_id: str, fresh_s: float, every_s: float = 0.5) -> None:
        self._store, self._run_id, self._fresh_s, self._every_s = store, run_id, fresh_s, every_s
        self._ref: Any = None
        self._asked = float("-inf")
        self._latest: dict[int, tuple[str, float]] = {}

    def __call__(self) -> dict[int, tuple[str, float]]:
        if self._ref is not None and ray.wait([self._ref], timeout=0)[0]:
            try:
                self._latest = ray.get(self._ref)
            except ray.exceptions.RayError:  # the store went away: keep the last answer
                pass
            self._ref = None
        if self._ref is None and time.monotonic() - self._asked >= self._every_s:
            self._asked = time.monotonic()
            self._ref = self._store.oldest.remote(self._run_id, self._fresh_s)
        now = time.time()
        return {
            stage: (task_id, max(0.0, now - started)) for stage, (task_id, started) in self._latest.items()
        }

    def describe(self, names: list[str]) -> str:
        """ "; oldest running: <stage> <task> (<age> s), ..." or "" when nothing runs long."""
        oldest = self()
        parts = [f"{names[i]} {task} ({age:.0f} s)" for i, (task, age) in sorted(oldest.items())]
        return "; oldest running: " + ", ".join(parts) if parts else ""
