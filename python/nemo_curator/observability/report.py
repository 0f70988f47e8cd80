"""The run report: what `execute()` did, readable after it returns (`executor.last_run`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nemo_curator.backends.failures import FailureRecord

if TYPE_CHECKING:
    from nemo_curator.observability.metrics import StageCounts


@dataclass
class StageReport:
    """One stage over the whole run. Times in seconds, sizes in bytes."""

    name: str
    tasks_in: int = 0
    tasks_out: int = 0
    items_in: int = 0
    items_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    tasks_failed: int = 0
    #: Inputs of batches that succeeded with no output.
    tasks_filtered: int = 0
    batches: int = 0
    calls: int = 0
    retries: int = 0
    busy_s: float = 0.0
    #: From the stage's first batch start to its last batch end.
    wall_s: float = 0.0
    actors: int = 0
    actors_died: int = 0
    #: Seconds actors of this stage were alive and ready (summed over actors).
    actor_s: float = 0.0

    @classmethod
    def from_counts(cls, name: str, counts: StageCounts, *, actor_s: float = 0.0) -> StageReport:
        return cls(
            name=name,
            tasks_in=counts.tasks_in,
            tasks_out=counts.tasks_out,
            items_in=counts.items_in,
            items_out=counts.items_out,
            bytes_in=counts.bytes_in,
            bytes_out=counts.bytes_out,
            tasks_failed=counts.tasks_failed,
            tasks_filtered=counts.tasks_filtered,
            batches=counts.batches,
            calls=counts.calls,
            retries=counts.retries,
            busy_s=counts.busy_s,
            wall_s=counts.wall_s,
            actors=counts.actors_created,
            actors_died=counts.actors_died,
            actor_s=actor_s,
        )

    @property
    def throughput(self) -> float:
        """Input tasks per second of the stage's active wall time."""
        return self.tasks_in / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def utilisation(self) -> float:
        """Share of the actors' ready time spent inside `process_batch`."""
        return min(1.0, self.busy_s / self.actor_s) if self.actor_s > 0 else 0.0


@dataclass
class RunReport:
    """Metrics, failures and count balance of one `execute()`; `to_dict()`/`to_json()` export it."""

    executor: str
    total_s: float = 0.0
    #: Seconds from `execute()` starting to the first stage call starting (Ray start, actor and worker
    #: start-up, `setup_on_node` and `setup` until then); None when no stage call ran.
    startup_s: float | None = None
    stages: list[StageReport] = field(default_factory=list)
    #: One record per failed batch: stage, task_ids, error_type, message, traceback, attempts, kind.
    failures: list[FailureRecord] = field(default_factory=list)
    #: The scheduler's proof that every input is output, filtered or failed.
    balance: dict[str, Any] = field(default_factory=dict)
    #: Samples (t, per-stage tasks done / pending / in flight / queued / ready actors; None where the
    #: executor cannot know) for the timeline picture.
    timeline: list[dict[str, Any]] = field(default_factory=list)
    #: Actor life events (ready, died) with their node.
    actor_events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return bool(self.balance.get("balanced", False))

    @property
    def num_failed_tasks(self) -> int:
        return sum(len(f.task_ids) for f in self.failures)

    def stage(self, name: str) -> StageReport:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage named {name!r} in this run (stages: {[s.name for s in self.stages]})")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["failures"] = [FailureRecord.from_dict(f).to_dict() for f in self.failures]
        for s, d in zip(self.stages, out["stages"], strict=True):
            d["throughput"] = s.throughput
            d["utilisation"] = s.utilisation
        out["balanced"] = self.balanced
        return out

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, default=str)
        if path is not None:
            Path(path).write_text(text)
        return text

    def format_summary(self) -> str:
        """A table: per stage tasks and items in/out, busy and wall time, throughput, actors, retries."""
        head = (
            f"{'stage':<26}{'tasks in':>9}{'out':>8}{'items in':>10}{'out':>9}{'wall s':>8}{'busy s':>8}"
            f"{'tasks/s':>9}{'actors':>7}{'util':>6}{'retry':>6}{'fail':>6}"
        )
        lines = [head, "-" * len(head)]
        for s in self.stages:
            lines.append(
                f"{s.name[:25]:<26}{s.tasks_in:>9}{s.tasks_out:>8}{s.items_in:>10}{s.items_out:>9}"
                f"{s.wall_s:>8.2f}{s.busy_s:>8.2f}{s.throughput:>9.1f}{s.actors:>7}"
                f"{s.utilisation * 100:>5.0f}%{s.retries:>6}{s.tasks_failed:>6}"
            )
        b = self.balance
        startup = "" if self.startup_s is None else f" ({self.startup_s:.2f} s start-up)"
        lines.append("-" * len(head))
        lines.append(
            f"{self.executor}: {self.total_s:.2f} s total{startup}; inputs {b.get('initial', 0)}, "
            f"final outputs {b.get('emitted', 0)}, filtered {b.get('filtered', 0)}, failed {b.get('failed', 0)}; "
            f"count balance {'OK' if self.balanced else 'BROKEN'}"
        )
        if self.failures:
            lines.append(f"{len(self.failures)} failed batch(es), {self.num_failed_tasks} task(s):")
            for f in self.failures[:10]:
                lines.append(
                    f"  {f.stage}: {list(f.task_ids[:5])} {f.error_type}: {f.message[:120]} (attempts {f.attempts})"
                )
        return "\n".join(lines)

    def plot_timeline(self, path: str | Path) -> Path:
        """Write a PNG: tasks done over time per stage, and throughput (needs matplotlib)."""
        from nemo_curator.observability.timeline import plot_timeline

        return plot_timeline(self, path)
