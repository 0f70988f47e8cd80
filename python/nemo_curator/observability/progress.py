"""Per-stage progress: tqdm bars that redraw in a terminal, one concise log line per interval otherwise."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from loguru import logger

if TYPE_CHECKING:
    from nemo_curator.observability.metrics import StageMetrics

# A call running at least this long is named in the progress line (seconds).
_SLOW_CALL_S = 30.0


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class ProgressDisplay:
    """Shows, per stage, tasks done (+ failed) of the tasks that reached it, and throughput.

    `mode`: "auto" (bars on a terminal, log lines otherwise), "bars", "log" or "off".
    """

    def __init__(
        self,
        stage_names: list[str],
        *,
        mode: str = "auto",
        interval_s: float = 10.0,
        stream: TextIO | None = None,
    ) -> None:
        if mode not in ("auto", "bars", "log", "off"):
            raise ValueError(f"progress mode must be auto, bars, log or off, got {mode!r}")
        self._stream = stream if stream is not None else sys.stderr
        if mode == "auto":
            mode = "bars" if _is_terminal(self._stream) else "log"
        self.mode = mode
        self.interval_s = interval_s
        self._names = stage_names
        self._bars: list[Any] = []
        self._last_log = float("-inf")
        if mode == "bars":
            from tqdm.auto import tqdm

            width = max(len(n) for n in stage_names) if stage_names else 10
            self._bars = [
                tqdm(
                    total=0,
                    desc=name.ljust(width),
                    position=i,
                    leave=True,
                    unit="task",
                    file=self._stream,
                    mininterval=min(interval_s, 0.5),
                    dynamic_ncols=True,
                )
                for i, name in enumerate(stage_names)
            ]

    def update(self, stages: Sequence[StageMetrics], now: float, *, force: bool = False) -> None:
        """Refresh from the run's per-stage metrics (`now`: seconds since the run started)."""
        if self.mode == "off":
            return
        if self.mode == "bars":
            for bar, m in zip(self._bars, stages, strict=False):
                c = m.counts
                bar.total = c.tasks_in
                bar.n = c.tasks_done + c.tasks_failed
                # Gauges the executor cannot know (None) are left out.
                gauges = {"queued": m.queued_tasks, "running": m.in_flight_tasks, "actors": m.actors_ready}
                shown = {k: v for k, v in gauges.items() if v is not None}
                bar.set_postfix(**shown, failed=c.tasks_failed, refresh=False)
                bar.refresh()
            return
        if force or now - self._last_log >= self.interval_s:
            self._last_log = now
            logger.info(self.line(stages, now))

    @staticmethod
    def line(stages: Sequence[StageMetrics], now: float) -> str:
        parts = []
        for m in stages:
            c = m.counts
            done = c.tasks_done + c.tasks_failed
            rate = done / now if now > 0 else 0.0
            fail = f" {c.tasks_failed} failed" if c.tasks_failed else ""
            # A call running for long (a hung task?) is named with its age.
            slow = (
                f", oldest running {m.oldest_task} {m.oldest_s:.0f} s"
                if m.oldest_s is not None and m.oldest_s >= _SLOW_CALL_S
                else ""
            )
            parts.append(f"{m.name} {done}/{c.tasks_in} ({rate:.1f}/s{fail}{slow})")
        return f"progress {now:6.1f}s | " + " | ".join(parts)

    def close(self) -> None:
        for bar in self._bars:
            bar.close()
        self._bars = []
