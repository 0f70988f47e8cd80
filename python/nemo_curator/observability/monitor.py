"""Samples the scheduler while a run goes on; feeds the progress display, status log and run report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loguru import logger

from nemo_curator.observability.progress import ProgressDisplay
from nemo_curator.observability.report import RunReport, StageReport

# Timeline samples kept at most; older ones are thinned out so a day-long run stays small.
_MAX_SAMPLES = 2000


class RunMonitor:
    """Driver-side observer of one run.

    Call `on_round(scheduler, now)` once per driver round (it samples at most every `sample_s`), then
    `finish(scheduler, now, ...)` for the `RunReport`.
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
        self._last_sample = float("-inf")
        self._last_status = 0.0
        self._prev: list[dict[str, Any]] | None = None

    def on_round(
        self,
        scheduler: Any,
        now: float,
        running: Callable[[], dict[int, tuple[str, float]]] | None = None,
    ) -> None:
        """Sample, log and redraw when due. `running` gives, per stage index, the first task of its
        longest-running call and how long it has run (asked for only when a sample is due)."""
        if now - self._last_sample < self.sample_s:
            return
        self._last_sample = now
        stages = scheduler.metrics()["stages"]
        if running is not None:
            for index, (task_id, seconds) in running().items():
                stages[index]["oldest_task"] = task_id
                stages[index]["oldest_s"] = seconds
        self._sample(stages, now)
        self._log_changes(stages)
        self.progress.update(stages, now)
        if self.status_interval_s is not None and now - self._last_status >= self.status_interval_s:
            self._last_status = now
            logger.info("status\n" + self.status_table(stages))
        self._prev = stages

    def _sample(self, stages: list[dict[str, Any]], now: float) -> None:
        self.timeline.append(
            {
                "t": round(now, 3),
                "done": [int(m["tasks_done"]) for m in stages],
                "in_flight": [int(m["in_flight_tasks"]) for m in stages],
                "queued": [int(m["queued_tasks"]) for m in stages],
                "actors": [int(m["actors_ready"]) for m in stages],
            }
        )
        if len(self.timeline) > _MAX_SAMPLES:
            self.timeline = self.timeline[::2]
            self.sample_s *= 2

    def _log_changes(self, stages: list[dict[str, Any]]) -> None:
        """One log line per state change (actor died, retry, backpressure), never per task."""
        if self._prev is None:
            return
        for old, new in zip(self._prev, stages, strict=True):
            name = new["name"]
            if new["actors_died"] > old["actors_died"]:
                logger.warning(f"stage {name}: {new['actors_died'] - old['actors_died']} actor(s) died")
            if new["retries"] > old["retries"]:
                logger.warning(f"stage {name}: {new['retries'] - old['retries']} batch(es) retried")
            if new["backpressured"] != old["backpressured"]:
                state = "engaged" if new["backpressured"] else "released"
                logger.info(f"stage {name}: backpressure {state} (next stage's input queue is full)")
            if new["finished"] and not old["finished"]:
                logger.debug(f"stage {name}: finished")

    @staticmethod
    def status_table(stages: list[dict[str, Any]]) -> str:
        head = (
            f"{'stage':<26}{'queued':>8}{'MB':>8}{'running':>8}{'done':>8}{'pend':>6}{'busy':>6}"
            f"{'idle':>6}{'slots':>6}  oldest running"
        )
        rows = [head]
        for m in stages:
            oldest = f"  {m['oldest_task']} ({m['oldest_s']:.1f} s)" if "oldest_task" in m else ""
            rows.append(
                f"{m['name'][:25]:<26}{int(m['queued_tasks']):>8}{m['queued_bytes'] / 1e6:>8.1f}"
                f"{int(m['in_flight_tasks']):>8}{int(m['tasks_done']):>8}{int(m['actors_pending']):>6}"
                f"{int(m['actors_busy']):>6}{int(m['actors_idle']):>6}{int(m['slots_in_use']):>6}{oldest}"
            )
        return "\n".join(rows)

    def finish(
        self,
        scheduler: Any,
        now: float,
        *,
        failures: list[dict[str, Any]],
        actor_events: list[dict[str, Any]],
    ) -> RunReport:
        metrics = scheduler.metrics()
        stages = metrics["stages"]
        self._sample(stages, now)
        self.progress.update(stages, now, force=True)
        self.progress.close()
        actor_s = _actor_seconds(actor_events, now)
        reports = []
        for m in stages:
            first, last = m.get("first_start"), m.get("last_end")
            reports.append(
                StageReport(
                    name=m["name"],
                    tasks_in=int(m["tasks_in"]),
                    tasks_out=int(m["tasks_out"]),
                    items_in=int(m["items_in"]),
                    items_out=int(m["items_out"]),
                    bytes_in=int(m["bytes_in"]),
                    bytes_out=int(m["bytes_out"]),
                    tasks_failed=int(m["tasks_failed"]),
                    batches=int(m["batches_done"] + m["batches_failed"]),
                    calls=int(m["calls"]),
                    retries=int(m["retries"]),
                    busy_s=float(m["busy_s"]),
                    wall_s=float(last - first) if first is not None and last is not None else 0.0,
                    actors=int(m["actors_created"]),
                    actors_died=int(m["actors_died"]),
                    actor_s=actor_s.get(m["name"], 0.0),
                )
            )
        balance = dict(scheduler.balance())
        return RunReport(
            executor=self.executor,
            total_s=now,
            stages=reports,
            failures=list(failures),
            balance=balance,
            timeline=self.timeline,
            actor_events=list(actor_events),
        )


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
