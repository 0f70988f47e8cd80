"""Seeing what a run does: progress display, status lines, the end-of-run report and its timeline picture.

Everything is fed from the Rust scheduler's metrics (`nemo_curator._core.Scheduler.metrics()`), sampled by
the executor's driver loop; nothing here touches Ray.
"""

from nemo_curator.observability.monitor import RunMonitor
from nemo_curator.observability.progress import ProgressDisplay
from nemo_curator.observability.report import RunReport, StageReport

__all__ = ["ProgressDisplay", "RunMonitor", "RunReport", "StageReport"]
