"""Seeing what a run does: progress display, status lines, the end-of-run report and its timeline picture.

Everything is fed from typed metrics (`RunMetrics`: per stage the core's `StageCounts` and the gauges an
executor can see), sampled by the executor's driver loop from the Rust scheduler (actor pool) or the merged
per-block ledger (Ray Data); nothing here touches Ray.
"""

from nemo_curator.observability.metrics import MetricsSource, RunMetrics, StageCounts, StageMetrics
from nemo_curator.observability.monitor import RunMonitor
from nemo_curator.observability.progress import ProgressDisplay
from nemo_curator.observability.report import RunReport, StageReport

__all__ = [
    "MetricsSource",
    "ProgressDisplay",
    "RunMetrics",
    "RunMonitor",
    "RunReport",
    "StageCounts",
    "StageMetrics",
    "StageReport",
]
