"""The timeline picture of a run: tasks done per stage over time, and per-stage throughput."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nemo_curator.observability.report import RunReport


def plot_timeline(report: RunReport, path: str | Path) -> Path:
    """Write `path` (PNG). Needs matplotlib (`pip install nemo-curator-rs[plot]`)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise ImportError(
            "plotting the timeline needs matplotlib: pip install 'nemo-curator-rs[plot]'"
        ) from exc

    samples = report.timeline
    names = [s.name for s in report.stages]
    ts = [s["t"] for s in samples]
    fig, (ax_done, ax_rate, ax_work) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    for i, name in enumerate(names):
        done = [s["done"][i] for s in samples]
        ax_done.plot(ts, done, label=name)
        rate = [0.0][: len(ts)] + [
            (done[k] - done[k - 1]) / (ts[k] - ts[k - 1]) if ts[k] > ts[k - 1] else 0.0
            for k in range(1, len(ts))
        ]
        ax_rate.plot(ts, rate, label=name)
        ax_work.plot(ts, [_pending(s, i) for s in samples], label=name)
    ax_done.set_ylabel("tasks done")
    ax_rate.set_ylabel("tasks / s")
    ax_work.set_ylabel("waiting + running")
    ax_work.set_xlabel("seconds since start")
    ax_done.set_title(
        f"{report.executor}: {report.total_s:.1f} s, {report.balance.get('emitted', 0)} outputs"
    )
    ax_done.legend(loc="upper left", fontsize="small")
    for ax in (ax_done, ax_rate, ax_work):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _pending(sample: dict[str, Any], i: int) -> int:
    """Tasks of stage `i` waiting or running: `pending` (older reports: queued + in flight)."""
    if "pending" in sample:
        return int(sample["pending"][i])
    return int(sample["in_flight"][i] or 0) + int(sample["queued"][i] or 0)
