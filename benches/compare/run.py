"""Side-by-side benchmark: this project's executors against NeMo Curator 1.1.0's, measured in one run.

``make bench-compare`` (or ``python benches/compare/run.py``) installs the published ``nemo-curator==1.1.0``
into ``.venv-curator/`` (a separate interpreter: both packages are imported as ``nemo_curator``), then runs
every workload of ``benches/workloads.py`` under every executor that imports on each side, each run in a fresh
process, twice: ``cold`` (the executor starts Ray, as a script would) and ``warm`` (a Ray session with 2 CPUs
and a 1 GiB object store is running already; only ``execute()`` is timed). The in-process executor runs once
per workload, without Ray, as the no-overhead reference.

It prints one table (seconds, items/s, ratio to the best of Curator's executors, driver peak RSS,
correctness) and writes it with the machine's details to ``benches/results/compare[-quick].{json,md}``.
Never run two of these at once: the numbers are only comparable on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCHES = ROOT / "benches"
CHILD = BENCHES / "compare" / "child.py"
REQUIREMENTS = BENCHES / "compare" / "requirements-curator.txt"
RESULTS = BENCHES / "results"
CURATOR_VENV = ROOT / ".venv-curator"
CURATOR_SPEC = "nemo-curator==1.1.0"
README_START, README_END = "<!-- bench-compare:start -->", "<!-- bench-compare:end -->"

sys.path.insert(0, str(BENCHES))
import workloads as wl  # noqa: E402


@dataclass(frozen=True)
class Executor:
    side: str  # "ours" or "curator"
    key: str  # a key of child.EXECUTORS
    label: str


# Each of this project's executors beside Curator's of the same name and mode (table and run order).
EXECUTORS = [
    Executor("ours", "in_process", "ours InProcessExecutor"),
    Executor("ours", "ray_actor_pool", "ours RayActorPoolExecutor"),
    Executor("curator", "ray_actor_pool", "Curator RayActorPoolExecutor"),
    Executor("ours", "ray_data", "ours RayDataExecutor"),
    Executor("curator", "ray_data", "Curator RayDataExecutor"),
    Executor("ours", "xenna", "ours XennaExecutor streaming"),
    Executor("curator", "xenna", "Curator XennaExecutor streaming"),
    Executor("ours", "xenna_batch", "ours XennaExecutor batch"),
    Executor("curator", "xenna_batch", "Curator XennaExecutor batch"),
]
TARGETS_RATIO = {"tiny_b1": 5.0, "tiny_b64": 5.0, "arrow_1mb": 2.0}
TARGET_EFFICIENCY = 0.9
TARGET_SCALE_RSS_MB = 2048.0


# ------------------------------------------------------------------------------------------------------------
# Environment


def ensure_curator_venv(python: Path | None) -> Path:
    """The Curator interpreter: ``python`` if given, else ``.venv-curator`` (created when missing or stale)."""
    if python is not None:
        return python
    venv_python = CURATOR_VENV / "bin" / "python"
    stamp = CURATOR_VENV / ".installed"
    wanted = REQUIREMENTS.read_text() + CURATOR_SPEC
    if venv_python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return venv_python
    print(f"Installing {CURATOR_SPEC} into {CURATOR_VENV} (its executors' CPU dependencies only)", flush=True)
    base = os.environ.get("PYTHON", "python3")
    subprocess.run([base, "-m", "venv", str(CURATOR_VENV)], check=True)
    pip = [str(venv_python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    # --no-deps: Curator's own requirements pull torch, transformers and more that its executors never import.
    subprocess.run([*pip, "--no-deps", CURATOR_SPEC], check=True)
    stamp.write_text(wanted)
    return venv_python


def child_env(python: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # Ray workers inherit this from the local raylet the driver starts: they import `workloads` by name.
    # Our side runs this checkout's package (a worktree's, not whichever one the venv installed).
    ours = python == Path(sys.executable)
    env["PYTHONPATH"] = os.pathsep.join([str(BENCHES)] + ([str(ROOT / "python")] if ours else []))
    # A fresh local Ray per run. Without this, ray.init() joins the last cluster that `ray start` or
    # ray.cluster_utils registered in /tmp/ray/ray_current_cluster, someone else's on a shared machine.
    env["RAY_ADDRESS"] = "local"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["VIRTUAL_ENV"] = str(python.parent.parent)
    env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _kill_family(proc: subprocess.Popen[str]) -> None:
    """End a child and its Ray processes: descendants (some in their own process groups) and its group."""
    import psutil

    try:
        family = [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]
    except psutil.NoSuchProcess:
        family = []
    for member in family:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def _ray_processes() -> set[int]:
    """Pids of Ray's worker processes (titled `ray::...`) and daemons on this machine."""
    import psutil

    daemons = ("raylet", "gcs_server", "dashboard", "log_monitor", "monitor.py", "runtime_env")
    found = set()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if cmd.startswith("ray::") or ("/ray/" in cmd and any(d in cmd for d in daemons)):
            found.add(proc.info["pid"])
    return found


def _reap(before: set[int]) -> None:
    """Kill Ray processes a child left behind (orphaned workers that outlive their raylet, e.g. a
    monitoring actor's busy thread), so they cannot slow down the runs after it."""
    import psutil

    for pid in _ray_processes() - before:
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass


def run_child(
    python: Path, args: list[str], timeout: float, log_path: Path
) -> tuple[dict[str, Any] | None, str]:
    """Run child.py in a fresh process (own session); returns its result line, or None and why not."""
    before = _ray_processes()
    try:
        return _run_child(python, args, timeout, log_path)
    finally:
        _reap(before)


def _run_child(
    python: Path, args: list[str], timeout: float, log_path: Path
) -> tuple[dict[str, Any] | None, str]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(python), str(CHILD), *args],
            stdout=subprocess.PIPE,
            stderr=log,
            env=child_env(python),
            cwd=ROOT,
            start_new_session=True,
            text=True,
        )
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_family(proc)
            return None, f"timeout after {timeout:.0f} s"
        except BaseException:
            _kill_family(proc)
            raise
        log.write(out)
    for line in out.splitlines():
        for marker in ("BENCH_RESULT ", "BENCH_PROBE "):
            if line.startswith(marker):
                return json.loads(line[len(marker) :]), ""
    return None, f"no result (exit code {proc.returncode})"


def machine_info(probes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    import psutil

    cpu_model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = "?"
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "commit": commit,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "ours": probes.get("ours", {}).get("versions", {}),
        "curator": probes.get("curator", {}).get("versions", {}),
    }


# ------------------------------------------------------------------------------------------------------------
# Report


def _fmt_seconds(s: float) -> str:
    return f"{s:.2f}" if s < 100 else f"{s:.0f}"


def _fmt_rate(r: float) -> str:
    return f"{r:,.0f}" if r >= 100 else f"{r:.1f}"


def best_curator(records: list[dict[str, Any]], workload: str, mode: str) -> dict[str, Any] | None:
    theirs = [
        r
        for r in records
        if r["workload"] == workload and r["mode"] == mode and r["side"] == "curator" and r.get("correct")
    ]
    return max(theirs, key=lambda r: r["items_per_s"], default=None)


def table(records: list[dict[str, Any]], names: list[str]) -> str:
    head = (
        "| workload | mode | executor | items | seconds | items/s | vs best Curator | driver peak RSS (MB) "
        "| correct | load |\n"
        "|---|---|---|--:|--:|--:|--:|--:|---|--:|\n"
    )
    lines = []
    for workload in names:
        for mode in ("local", "cold", "warm"):
            best = best_curator(records, workload, "warm" if mode == "local" else mode)
            for executor in EXECUTORS:
                rows = [
                    r
                    for r in records
                    if r["workload"] == workload
                    and r["mode"] == mode
                    and r["side"] == executor.side
                    and r["executor"] == executor.key
                ]
                for r in rows:
                    mode_label = "no Ray" if mode == "local" else mode
                    if "seconds" not in r:
                        status = r.get("status", "error")
                        why = "" if status == "n/a" else str(r.get("why", ""))[:80].replace("|", "/")
                        lines.append(
                            f"| {workload} | {mode_label} | {executor.label} | {r['items']:,} | "
                            f"{status} | | | | {why} | {r.get('load_before', '')} |"
                        )
                        continue
                    ratio = f"{r['items_per_s'] / best['items_per_s']:.2f}x" if best else "n/a"
                    lines.append(
                        f"| {workload} | {mode_label} | {executor.label} | {r['items']:,} | "
                        f"{_fmt_seconds(r['seconds'])} | {_fmt_rate(r['items_per_s'])} | {ratio} | "
                        f"{r['peak_rss_mb']:.0f} | {'yes' if r['correct'] else 'NO: ' + r['detail']} | "
                        f"{r.get('load_before', '')} |"
                    )
    return head + "\n".join(lines) + "\n"


def _find(
    records: list[dict[str, Any]], workload: str, side: str, key: str, mode: str
) -> dict[str, Any] | None:
    for r in records:
        if (r["workload"], r["side"], r["executor"], r["mode"]) == (
            workload,
            side,
            key,
            mode,
        ) and "seconds" in r:
            return r
    return None


def targets(records: list[dict[str, Any]], cores: int) -> tuple[str, list[dict[str, Any]]]:
    """The issue's goals, judged on warm runs of this project's actor-pool executor."""
    rows: list[dict[str, Any]] = []

    def ours(workload: str) -> dict[str, Any] | None:
        return _find(records, workload, "ours", "ray_actor_pool", "warm")

    for workload, goal in TARGETS_RATIO.items():
        mine, best = ours(workload), best_curator(records, workload, "warm")
        if mine and best and mine["correct"]:
            ratio = mine["items_per_s"] / best["items_per_s"]
            met = ratio >= goal
            text = f"{ratio:.2f}x the best of Curator's ({best['executor']})"
            if workload == "arrow_1mb":
                theirs_rss = [
                    r["peak_rss_mb"]
                    for r in records
                    if r["workload"] == workload
                    and r["mode"] == "warm"
                    and r["side"] == "curator"
                    and "seconds" in r
                ]
                lowest = min(theirs_rss)
                met = met and mine["peak_rss_mb"] < lowest
                text += f"; driver peak {mine['peak_rss_mb']:.0f} MB vs Curator's lowest {lowest:.0f} MB"
        else:
            met, text = False, "not measured"
        rows.append(
            {"target": f"{workload}: >= {goal:g}x the best of Curator's (warm)", "measured": text, "met": met}
        )

    local = _find(records, "cpu_bound", "ours", "in_process", "local")
    for executor in EXECUTORS[1:]:
        for mode in ("warm", "cold"):
            run = _find(records, "cpu_bound", executor.side, executor.key, mode)
            if local and run:
                efficiency = local["seconds"] / (cores * run["seconds"])
                goal = executor.side == "ours" and executor.key == "ray_actor_pool" and mode == "warm"
                rows.append(
                    {
                        "target": f"cpu_bound parallel efficiency, {executor.label}, {mode}"
                        + (f" (goal >= {TARGET_EFFICIENCY:.0%})" if goal else ""),
                        "measured": f"{efficiency:.0%} (in-process time / ({cores} x time))",
                        "met": efficiency >= TARGET_EFFICIENCY if goal else None,
                    }
                )
    scale = ours("scale_1m")
    if scale:
        met = scale["correct"] and scale["peak_rss_mb"] < TARGET_SCALE_RSS_MB
        text = (
            f"{scale['items']:,} tasks in {scale['seconds']:.1f} s, driver peak {scale['peak_rss_mb']:.0f} MB"
        )
    else:
        met, text = False, "not measured"
    rows.append(
        {"target": "scale_1m: completes, driver peak RSS < 2 GiB (warm)", "measured": text, "met": met}
    )

    out = "| target | measured | met |\n|---|---|---|\n"
    for row in rows:
        verdict = "" if row["met"] is None else ("yes" if row["met"] else "**no**")
        out += f"| {row['target']} | {row['measured']} | {verdict} |\n"
    return out, rows


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    ours, theirs = m["ours"], m["curator"]
    sizes = report["sizes"]
    lines = [
        "## Executor benchmarks against NeMo Curator 1.1.0",
        "",
        f"Reproduce with `{report['command']}` (one run, one machine; results in `benches/results/`).",
        "",
        f"- Machine: {m['cpu_model']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}; "
        f"load average at start {m['load_average_start']}, at end {m.get('load_average_end')}.",
        f"- This project (commit {m['commit']}): Python {ours.get('python')}, Ray {ours.get('ray')}, "
        f"pyarrow {ours.get('pyarrow')}.",
        f"- NeMo Curator {theirs.get('nemo_curator')} (`pip install --no-deps`, CPU dependencies from "
        f"`benches/compare/requirements-curator.txt`): Python {theirs.get('python')}, Ray {theirs.get('ray')}, "
        f"pyarrow {theirs.get('pyarrow')}, cosmos-xenna 0.1.2.",
        f"- warm: `ray.init(num_cpus={report['num_cpus']}, object_store_memory={report['object_store_mb']} MB)` "
        "and one no-op task per CPU (workers booted) before the timer, only `execute()` timed; cold: no Ray running, the timed `execute()` starts and stops "
        "it. Every run is a fresh process; driver peak RSS is that process's `ru_maxrss`.",
        "- vs best Curator: items/s divided by the best items/s of Curator's executors in the same workload "
        "and mode (the in-process row is compared with warm). load: the machine's 1-minute load average "
        "when the run started (it is shared: compare rows measured at similar load).",
        "",
        *[f"- Note: {note}" for note in report.get("notes", [])],
        "",
        "Workloads (`benches/workloads.py`; each run checks its whole output):",
        "",
    ]
    for name, by_executor in sizes.items():
        workload = wl.WORKLOADS[name]
        size = max(by_executor.values())
        smaller = {k: v for k, v in by_executor.items() if v != size}
        extra = (
            "; at "
            + ", ".join(f"{v:,} for {k.replace(':', ' ')}" for k, v in smaller.items())
            + " (minutes at full size: compare items/s)"
            if smaller
            else ""
        )
        lines.append(f"- `{name}`: {workload.description}; {size:,} {workload.unit}{extra}.")
    lines += ["", "### Goals (warm runs)", "", report["targets_md"], "### All runs", "", report["table_md"]]
    return "\n".join(lines) + "\n"


def update_readme(md: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        print(f"README.md has no {README_START} ... {README_END} section; not updated")
        return
    start = text.index(README_START) + len(README_START)
    end = text.index(README_END)
    readme.write_text(text[:start] + "\n" + md + text[end:])
    print("README.md benchmark section updated")


# ------------------------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes, warm only, ~3 minutes")
    parser.add_argument("--workloads", help=f"comma-separated subset of {','.join(wl.WORKLOADS)}")
    parser.add_argument("--executors", help="comma-separated subset of side:key, e.g. ours:ray_actor_pool")
    parser.add_argument("--modes", help="comma-separated subset of cold,warm (default both; --quick: warm)")
    parser.add_argument("--size", action="append", default=[], help="WORKLOAD=N (all executors), repeatable")
    parser.add_argument("--timeout", type=float, help="seconds per run (default 240; --quick 90)")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the warm Ray session")
    parser.add_argument("--object-store-mb", type=int, default=1024, help="object store of the warm session")
    parser.add_argument("--curator-python", type=Path, help="use this interpreter for Curator instead")
    parser.add_argument(
        "--out", type=Path, help="results file stem (default benches/results/compare[-quick])"
    )
    parser.add_argument("--update-readme", action="store_true", help="rewrite README.md's benchmark section")
    parser.add_argument("--report-only", type=Path, help="only re-render the markdown of this results JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A terminated runner still ends its current child and that child's Ray processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.report_only:
        return render(json.loads(args.report_only.read_text()), args.report_only, args.update_readme)
    names = args.workloads.split(",") if args.workloads else list(wl.WORKLOADS)
    unknown = [n for n in names if n not in wl.WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown workloads {unknown}; choose from {list(wl.WORKLOADS)}")
    modes = args.modes.split(",") if args.modes else (["warm"] if args.quick else ["cold", "warm"])
    timeout = args.timeout or (90.0 if args.quick else 240.0)
    tier = "quick" if args.quick else "full"
    overrides: dict[str, int] = {}
    for spec in args.size:
        name, _, value = spec.partition("=")
        overrides[name] = int(value)

    def size_of(name: str, executor: Executor) -> int:
        return overrides.get(name) or wl.WORKLOADS[name].size(tier, executor.side, executor.key)

    if args.executors:
        wanted: set[str] | None = set(args.executors.split(","))
    elif args.quick:
        # The smoke run compares with Curator's fastest executor only, to stay near three minutes.
        wanted = {"ours:in_process", "ours:ray_actor_pool", "ours:ray_data", "curator:ray_actor_pool"}
    else:
        wanted = None

    pythons = {"ours": Path(sys.executable), "curator": ensure_curator_venv(args.curator_python)}
    probes: dict[str, dict[str, Any]] = {}
    for side, python in pythons.items():
        probe, why = run_child(python, ["--probe"], 120, RESULTS / "logs" / f"probe-{side}.log")
        probes[side] = probe or {"executors": {}, "versions": {}, "error": why}
        print(f"{side}: {python} -> {json.dumps(probes[side]['executors'])}", flush=True)

    stem = args.out or RESULTS / ("compare-quick" if args.quick else "compare")
    given = sys.argv[1:] if argv is None else argv
    command = "make bench-compare" + (f" ARGS={shlex.quote(shlex.join(given))}" if given else "")
    report: dict[str, Any] = {
        "command": command,
        "argv": given,
        "machine": machine_info(probes),
        "num_cpus": args.num_cpus,
        "object_store_mb": args.object_store_mb,
        "sizes": {
            n: {
                f"{e.side}:{e.key}": size_of(n, e)
                for e in EXECUTORS
                if wanted is None or f"{e.side}:{e.key}" in wanted
            }
            for n in names
        },
        "probes": probes,
        "records": [],
    }
    records: list[dict[str, Any]] = report["records"]
    started = time.monotonic()
    for name in names:
        for executor in EXECUTORS:
            if wanted is not None and f"{executor.side}:{executor.key}" not in wanted:
                continue
            available = probes[executor.side]["executors"].get(executor.key, "n/a")
            size = size_of(name, executor)
            run_modes = ["local"] if executor.key == "in_process" else modes
            for mode in run_modes:
                base = {
                    "workload": name,
                    "side": executor.side,
                    "executor": executor.key,
                    "mode": mode,
                    "size": size,
                    "items": wl.WORKLOADS[name].items(size),
                }
                if available != "ok":
                    records.append({**base, "status": "n/a", "why": available})
                    continue
                child_args = [
                    f"--num-cpus={args.num_cpus}",
                    f"--object-store-mb={args.object_store_mb}",
                    name,
                    executor.key,
                    mode,
                    str(size),
                ]
                log = RESULTS / "logs" / f"{name}-{executor.side}-{executor.key}-{mode}.log"
                load = os.getloadavg()[0]
                t0 = time.monotonic()
                result, why = run_child(pythons[executor.side], child_args, timeout, log)
                wall = time.monotonic() - t0
                if result is None:
                    record = {**base, "status": why.split(" ")[0], "why": why}
                elif "error" in result:
                    record = {**base, "status": "error", "why": result["error"]}
                else:
                    record = {**base, **result}
                record.update(side=executor.side, process_wall_s=round(wall, 1), load_before=round(load, 2))
                records.append(record)
                summary = (
                    f"{record['seconds']:.2f} s, {record['items_per_s']:,.0f} items/s, "
                    f"peak {record['peak_rss_mb']:.0f} MB, correct={record['correct']}"
                    if "seconds" in record
                    else f"{record['status']}: {record.get('why', '')[:200]}"
                )
                print(
                    f"[{time.monotonic() - started:6.0f}s] {name:12s} {mode:5s} {executor.label:30s} {summary}",
                    flush=True,
                )
                stem.parent.mkdir(parents=True, exist_ok=True)
                stem.with_suffix(".json").write_text(json.dumps(report, indent=1))

    report["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report["total_seconds"] = round(time.monotonic() - started, 1)
    return render(report, stem.with_suffix(".json"), args.update_readme)


def render(report: dict[str, Any], json_path: Path, readme: bool) -> int:
    """Write the report's JSON and markdown (beside the JSON) and print the markdown; 1 if a run was wrong."""
    records = report["records"]
    names = list(report["sizes"])
    report["table_md"] = table(records, names)
    report["targets_md"], report["targets"] = targets(records, report["num_cpus"])
    md = markdown(report)
    json_path.write_text(json.dumps(report, indent=1))
    json_path.with_suffix(".md").write_text(md)
    print()
    print(md)
    print(
        f"Total {report.get('total_seconds', 0):.0f} s. Results: {json_path}, {json_path.with_suffix('.md')}"
    )
    if readme:
        update_readme(md)
    failed = [r for r in records if "seconds" in r and not r["correct"]]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
