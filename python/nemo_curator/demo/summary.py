"""What a user wants to see after a run: per stage, tasks and documents in and out, time, throughput."""

from __future__ import annotations

from typing import Any

from nemo_curator.tasks import Task


def _stage_rows(results: list[Task[Any]]) -> list[dict[str, Any]]:
    # Entries of one batch may be shared objects or copies (after crossing processes): dedupe by value.
    seen: set[tuple[Any, ...]] = set()
    order: list[str] = []
    rows: dict[str, dict[str, Any]] = {}
    for task in results:
        for p in task._stage_perf:
            key = (
                p.stage_name,
                p.process_time,
                p.num_items_processed,
                tuple(sorted(p.custom_metrics.items())),
            )
            if key in seen:
                continue
            seen.add(key)
            if p.stage_name not in rows:
                order.append(p.stage_name)
                rows[p.stage_name] = {
                    "stage": p.stage_name,
                    "batches": 0,
                    "items_in": 0,
                    "busy_s": 0.0,
                    "kept": 0.0,
                }
            row = rows[p.stage_name]
            row["batches"] += 1
            row["items_in"] += p.num_items_processed
            row["busy_s"] += p.process_time
            row["kept"] += p.custom_metrics.get("documents_kept", 0.0)
    out = [rows[name] for name in order]
    for i, row in enumerate(out):
        nxt = out[i + 1]["items_in"] if i + 1 < len(out) else None
        row["items_out"] = int(row["kept"]) if row["kept"] else (nxt if nxt is not None else row["items_in"])
    return out


def format_summary(results: list[Task[Any]], wall_s: float) -> str:
    """A per-stage table rebuilt from the output tasks' perf stats (for executors without a run report)."""
    lines = [f"{'stage':<28}{'batches':>8}{'items in':>10}{'items out':>10}{'busy s':>9}{'items/s':>10}"]
    for row in _stage_rows(results):
        rate = row["items_in"] / row["busy_s"] if row["busy_s"] > 0 else 0.0
        lines.append(
            f"{row['stage']:<28}{row['batches']:>8}{row['items_in']:>10}{row['items_out']:>10}"
            f"{row['busy_s']:>9.2f}{rate:>10.0f}"
        )
    lines.append(f"{len(results)} output tasks in {wall_s:.2f} s wall time")
    return "\n".join(lines)


def format_comparison(walls: dict[str, float], documents: int) -> str:
    """Wall time of `pipeline.run()` per executor, with its speed-up over the in-process run."""
    reference = walls.get("in_process")
    lines = [f"{'executor':<18}{'wall s':>9}{'docs/s':>10}{'vs in_process':>15}"]
    for name, wall in walls.items():
        ratio = f"{reference / wall:.2f}x" if reference else "-"
        rate = f"{documents / wall:,.0f}" if wall > 0 else "-"
        lines.append(f"{name:<18}{wall:>9.2f}{rate:>10}{ratio:>15}")
    return "\n".join(lines)
