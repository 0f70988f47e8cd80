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

from typing import Any

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
