"""What a Ray Data run shows: the merged ledger as the typed metrics the actor pool's scheduler gives.

The driver knows what came back with the final blocks (a ledger travels with the last output block
of each worker call), so the counts cover tasks whose results reached the driver, not work still in
the pipeline. Per stage: `tasks_in` is what reached it, `tasks_done` / `tasks_failed` what it ran
(the rest is `pending`); items, bytes, batches, calls, busy seconds and first start / last end as the
workers measured them; `actors_created` counts distinct actors of an actor stage. Ray Data's retries
are not visible (`retries`, `actors_died` stay 0); gauges it does not expose (queues, in flight, actor
states, backpressure) are None. The oldest running batch per stage comes from the workers' reports
(`RunningCalls`).
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
