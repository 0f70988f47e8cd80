"""Samples a run's typed metrics while it goes on; feeds the progress display, status log and run report.

Every executor hands the monitor the same `RunMetrics` (`metrics.py`): the actor pool's scheduler and the
Ray Data executor's ledger view alike. Gauges an executor cannot know are None and are shown as "-".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loguru import logger

from nemo_curator.backends.failures import FailureRecord
from nemo_curator.observability.metrics import StageMetrics, as_metrics_source
from nemo_curator.observability.progress import ProgressDisplay
from nemo_curator.observability.report import RunReport, StageReport

# Timeline samples kept at most; older ones are thinned out so a day-long run stays small.
_MAX_SAMPLES = 2000


class RunMonitor:
    """Driver-side observer of one run.

    Call `on_round(source, now)` once per driver round (it samples at most every `sample_s`), then
    `finish(source, now, ...)` for the `RunReport`. `source` is a `MetricsSource` (typed `metrics()` and
    `balance()`) or a `nemo_curator._core.Scheduler`.
    """

    def __init__(
        self,
        executor: str,
        stage_names: list[str],
        *,
        progress: str = "auto",
        progress_interval_s: float = 10.0,
        status_interval_s: float | None = None,
        sample_s: float = 0.25,
    ) -> None:
        self.executor = executor
        self.stage_names = stage_names
        self.progress = ProgressDisplay(stage_names, mode=progress, interval_s=progress_interval_s)
        self.status_interval_s = status_interval_s
        self.sample_s = sample_s
        self.timeline: list[dict[str, Any]] = []
        #: Seconds from `execute()` starting to the zero of the run's clock (the report's `startup_s`
        #: is this plus the first stage call's start on that clock).
        self.clock_offset_s = 0.0
        self._last_sample = float("-inf")
        self._last_status = 0.0
        self._prev: tuple[StageMetrics, ...] | None = None

    def on_round(
        self,
        source: Any,
        now: float,
        running: Callable[[], dict[int, tuple[str, float]]] | None = None,
    ) -> None:
        """Sample, log and redraw when due. `running` gives, per stage index, the first task of its
        longest-running call and how long it has run (asked for only when a sample is due)."""
        if now - self._last_sample < self.sample_s:
            return
        self._last_sample = now
        stages = as_metrics_source(source).metrics().stages
        if running is not None:
            oldest = running()
            stages = tuple(m.with_oldest(*oldest[i]) if i in oldest else m for i, m in enumerate(stages))
        self._sample(stages, now)
        self._log_changes(stages)
        self.progress.update(stages, now)
        if self.status_interval_s is not None and now - self._last_status >= self.status_interval_s:
            self._last_status = now
            logger.info("status\n" + self.status_table(stages))
        self._prev = stages

    def _sample(self, stages: tuple[StageMetrics, ...], now: float) -> None:
        # `queued` / `in_flight` / `actors` are None where the executor cannot see them; `pending`
        # (reached the stage, not done or failed yet) is known everywhere.
        self.timeline.append(
            {
                "t": round(now, 3),
                "done": [m.counts.tasks_done for m in stages],
                "pending": [m.counts.pending for m in stages],
                "in_flight": [m.in_flight_tasks for m in stages],
                "queued": [m.queued_tasks for m in stages],
                "actors": [m.actors_ready for m in stages],
            }
        )
        if len(self.timeline) > _MAX_SAMPLES:
            self.timeline = self.timeline[::2]
            self.sample_s *= 2

    def _log_changes(self, stages: tuple[StageMetrics, ...]) -> None:
        """One log line per state change (actor died, retry, backpressure), never per task."""
        if self._prev is None:
            return
        for old, new in zip(self._prev, stages, strict=True):
            name = new.name
            died = new.counts.actors_died - old.counts.actors_died
            if died > 0:
                logger.warning(f"stage {name}: {died} actor(s) died")
            retried = new.counts.retries - old.counts.retries
            if retried > 0:
                logger.warning(f"stage {name}: {retried} batch(es) retried")
            if new.backpressured is not None and old.backpressured is not None:
                if new.backpressured != old.backpressured:
                    state = "engaged" if new.backpressured else "released"
                    logger.info(f"stage {name}: backpressure {state} (next stage's input queue is full)")
            if new.finished and not old.finished:
                logger.debug(f"stage {name}: finished")

    @staticmethod
    def status_table(stages: tuple[StageMetrics, ...] | list[StageMetrics]) -> str:
        """One row per stage; "-" for what the executor cannot know."""
        head = (
            f"{'stage':<26}{'queued':>8}{'MB':>8}{'running':>8}{'done':>8}{'pend':>6}{'busy':>6}"
            f"{'idle':>6}{'slots':>6}  oldest running"
        )
        rows = [head]
        for m in stages:
            oldest = f"  {m.oldest_task} ({m.oldest_s:.1f} s)" if m.oldest_task is not None else ""
            mb = "-" if m.queued_bytes is None else f"{m.queued_bytes / 1e6:.1f}"
            rows.append(
                f"{m.name[:25]:<26}{_show(m.queued_tasks):>8}{mb:>8}{_show(m.in_flight_tasks):>8}"
                f"{m.counts.tasks_done:>8}{_show(m.actors_pending):>6}{_show(m.actors_busy):>6}"
                f"{_show(m.actors_idle):>6}{_show(m.slots_in_use):>6}{oldest}"
            )
        return "\n".join(rows)

    def finish(
        self,
        source: Any,
        now: float,
        *,
        failures: list[FailureRecord],
        actor_events: list[dict[str, Any]],
    ) -> RunReport:
        source = as_metrics_source(source)
        stages = source.metrics().stages
        self._sample(stages, now)
        self.progress.update(stages, now, force=True)
        self.progress.close()
        actor_s = _actor_seconds(actor_events, now)
        reports = [
            StageReport.from_counts(m.name, m.counts, actor_s=actor_s.get(m.name, 0.0)) for m in stages
        ]
        starts = [m.counts.first_start for m in stages if m.counts.first_start is not None]
        return RunReport(
            executor=self.executor,
            total_s=now,
            startup_s=self.clock_offset_s + min(starts) if starts else None,
            stages=reports,
            failures=list(failures),
            balance=source.balance(),
            timeline=self.timeline,
            actor_events=list(actor_events),
        )


def _show(value: int | None) -> str:
    return "-" if value is None else str(value)


def _actor_seconds(events: list[dict[str, Any]], now: float) -> dict[str, float]:
    """Ready-to-gone seconds per stage from the driver's actor events."""
    start: dict[int, tuple[str, float]] = {}
    out: dict[str, float] = {}
    for e in events:
        if e["event"] == "ready":
            start[e["actor"]] = (e["stage"], e["t"])
        elif e["event"] in ("died", "stopped") and e["actor"] in start:
            stage, t0 = start.pop(e["actor"])
            out[stage] = out.get(stage, 0.0) + e["t"] - t0
    for stage, t0 in start.values():
        out[stage] = out.get(stage, 0.0) + now - t0
    return out
