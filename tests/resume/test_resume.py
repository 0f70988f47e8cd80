"""Resumable runs: the driver is SIGKILLed mid-run, the rerun with the same checkpoint finishes the job.

Each executor runs `resume_job.py` in a subprocess (in its own process group, so the kill takes the Ray it
started down too). The final files must equal a clean run's, and the rerun may redo only sources that
were not recorded as completed when the driver died (at most what was in flight).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from nemo_curator.backends import checkpoint

JOB = Path(__file__).with_name("resume_job.py")
N_SOURCES = 24
#: Sources a driver may have finished without recording when killed: those in flight (2 CPUs, packed calls
#: and blocks of a few tasks) plus the last group commit.
MAX_IN_FLIGHT = 12


def _env(out: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update({"RESUME_N_SOURCES": str(N_SOURCES), "RESUME_OUT": str(out), **extra})
    if "RAY_ADDRESS" not in extra:
        # A Ray temp dir of its own: `ray.init()` would join a cluster someone else started with `ray start`
        # (it reads `<temp dir>/ray_current_cluster`); the executor must start its own here.
        env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="rs", dir="/tmp")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(checkpoint.__file__).parents[2]), env.get("PYTHONPATH")) if p
    )
    return env


def _run(executor: str, ckpt: Path, out: Path, *args: str, **extra: str) -> str:
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, str(JOB), executor, str(ckpt), str(out), *args],
            env=_env(out, **extra),
            capture_output=True,
            text=True,
            timeout=240,
        )
        # Ray gives its raylet 30 s to register, which a heavily loaded test machine can miss; the job
        # did nothing yet then, so running it again changes nothing the test checks.
        if proc.returncode == 0 or "timed out during startup" not in proc.stderr:
            break
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def _run_and_kill(
    executor: str, ckpt: Path, out: Path, after_outputs: int, **extra: str
) -> tuple[set[int], dict[str, list[int]]]:
    """Run the job and SIGKILL it mid-run; the sources its work stage had started by then, and the
    outputs it had written."""
    for _ in range(2):
        log = out.parent / f"{out.name}.stderr"
        with open(log, "w") as stderr:
            proc = subprocess.Popen(
                [sys.executable, str(JOB), executor, str(ckpt), str(out)],
                env=_env(out, **extra),
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + 180
            # Killed once some outputs are written and a first completion is recorded (its file exists).
            while len(_outputs(out)) < after_outputs or not list(
                (ckpt / checkpoint.METADATA_DIR).glob("*.mdb")
            ):
                if proc.poll() is not None:
                    break
                assert time.monotonic() < deadline, "the job made no progress"
                time.sleep(0.05)
        finally:
            with contextlib.suppress(ProcessLookupError):  # the group is gone when the job ended itself
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            # Read now: on a cluster started elsewhere the job's workers go on for a moment.
            worked, written = set(_worked(out)), _outputs(out)
        if proc.returncode == -signal.SIGKILL:
            return worked, written
        # See `_run`: a Ray start that timed out under load did nothing yet; try once more.
        assert "timed out during startup" in log.read_text(), (
            f"the job ended before it was killed: {log.read_text()[-3000:]}"
        )
    raise AssertionError("Ray did not start twice in a row")


def _outputs(out: Path) -> dict[str, list[int]]:
    found = {}
    for path in out.glob("*.json"):
        try:
            found[path.stem] = json.loads(path.read_text())
        except (json.JSONDecodeError, FileNotFoundError):  # being written
            continue
    return found


def _worked(out: Path, skip: frozenset[Path] = frozenset()) -> list[int]:
    """Sources the work stage started, from the logs of every run but those in `skip`."""
    return [
        int(line) for log in out.glob("work-*.log") if log not in skip for line in log.read_text().split()
    ]


def clean_run(root: Path, **extra: str) -> dict[str, list[int]]:
    _run("in_process", root / "ckpt", root / "out", **extra)
    return _outputs(root / "out")


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[int]]:
    return clean_run(tmp_path_factory.mktemp("clean"))


@pytest.mark.parametrize("executor", ["in_process", "ray_actor_pool", "ray_data", "xenna"])
def test_sigkill_then_resume(executor: str, clean: dict[str, list[int]], tmp_path: Path) -> None:
    kill_and_resume(executor, clean, tmp_path)


def test_sigkill_then_resume_with_random_ids(tmp_path: Path) -> None:
    # An N -> K stage gives its outputs random ids that name no source: completion comes from the lineage,
    # and a source completes only once every row that came from it, in whatever mixed batch, has been
    # written. The Ray executors run this job in `test_resume_cluster.py` (the core's roots on the actor
    # pool, credit on Ray Data).
    clean = clean_run(tmp_path / "clean", RESUME_REGROUP="1")
    assert len(clean) == 3 * (N_SOURCES - 1)  # one file per row; source 3 is filtered
    kill_and_resume("in_process", clean, tmp_path, RESUME_REGROUP="1")


def kill_and_resume(
    executor: str,
    clean: dict[str, list[int]],
    tmp_path: Path,
    max_in_flight: int = MAX_IN_FLIGHT,
    **extra: str,
) -> None:
    """Kill `executor`'s run once it wrote some outputs and recorded a completion, rerun it, and check the
    result against `clean` and the redone work against what was recorded. `max_in_flight`: how many sources
    the first run may have started, or finished without recording yet, when it was killed."""
    ckpt, out1, out2 = tmp_path / "ckpt", tmp_path / "out1", tmp_path / "out2"
    worked_before, written = _run_and_kill(executor, ckpt, out1, after_outputs=6, **extra)
    done = checkpoint.completed_sources(ckpt)
    assert 0 < len(done) < N_SOURCES, f"killed too early or too late: {len(done)} completed"
    # Recording lags completion by at most a commit group and a driver round: few sources were written out
    # in full but not recorded. (Rows are source * 200 + 2k after the work stage.)
    sources_of = {name: {row // 200 for row in rows} for name, rows in clean.items()}
    unfinished = {s for name, srcs in sources_of.items() if name not in written for s in srcs}
    finished = set(range(N_SOURCES)) - unfinished  # a filtered source has no outputs to wait for
    assert {str(s) for s in finished} >= done, "a source recorded before all its outputs were written"
    assert len(finished) - len(done) <= max_in_flight, f"{finished=} but only {done=} recorded"
    # The rerun writes into the same directory as a real job would; its work log goes next to it.
    out2.mkdir()
    for path in out1.glob("*.json"):
        (out2 / path.name).write_text(path.read_text())
    log = _run(executor, ckpt, out2, **extra)

    # Same final files, same rows: nothing lost, nothing written twice under another name.
    final = _outputs(out2)
    assert final == clean, log[-3000:]
    rows = [r for data in final.values() for r in data]
    assert len(rows) == len(set(rows))
    # Only sources not recorded completed were redone, each once; of those, at most the in-flight ones
    # had already been worked on before the kill.
    redone = _worked(out2)
    assert len(redone) == len(set(redone))
    assert set(redone) == {int(s) for s in map(str, range(N_SOURCES)) if s not in done}
    assert len(set(redone) & worked_before) <= max_in_flight
    assert checkpoint.completed_sources(ckpt) == {str(i) for i in range(N_SOURCES)}


def test_rerun_of_a_finished_run_does_nothing(tmp_path: Path) -> None:
    _run("in_process", tmp_path / "ckpt", tmp_path / "out1")
    assert "RESULTS 0" in _run("in_process", tmp_path / "ckpt", tmp_path / "out2")
    assert _worked(tmp_path / "out2") == []


def test_failed_task_manifest_and_retry(clean: dict[str, list[int]], tmp_path: Path) -> None:
    # Ray Data's manifest and retry: `test_retry_of_a_failed_task_with_a_random_id`.
    executor = "in_process"
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    _run(executor, ckpt, out, RESUME_FAIL_SOURCES="7,11")
    failed = checkpoint.read_failed_tasks(ckpt)
    assert sorted(r["source_id"] for r in failed) == ["11", "7"]
    assert {r["task_id"] for r in failed} == {"0_7", "0_11"}
    for record in failed:
        assert record["stage"] == "work"
        assert record["error_type"] == "RuntimeError"
        assert "is broken" in record["message"]
        assert record["attempts"] >= 1
    # Failed tasks end their source: a plain rerun skips it, a retry redoes just those.
    assert checkpoint.completed_sources(ckpt) == {str(i) for i in range(N_SOURCES)}
    first_run = frozenset(out.glob("work-*.log"))
    _run(executor, ckpt, out, "--retry-failed", RESUME_HEAL="1")
    assert sorted(_worked(out, first_run)) == [7, 11]
    assert _outputs(out) == clean
    assert checkpoint.read_failed_tasks(ckpt) == []


@pytest.mark.parametrize("executor", ["in_process", "ray_actor_pool", "ray_data"])
def test_retry_of_a_failed_task_with_a_random_id(executor: str, tmp_path: Path) -> None:
    # The writer fails on a task made by an N -> K stage: its id names no source, the manifest lists the
    # sources of its batch (in process the sources its metadata lists, the core's roots of the failed tasks
    # on the actor pool, the credit they carried on Ray Data), and a retry redoes them.
    clean = clean_run(tmp_path / "clean", RESUME_REGROUP="1")
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    _run(executor, ckpt, out, RESUME_REGROUP="1", RESUME_FAIL_ROWS="1402")  # source 7's second row
    failed = checkpoint.read_failed_tasks(ckpt)
    assert [r["stage"] for r in failed] == ["write"]
    assert failed[0]["error_type"] == "RuntimeError" and failed[0]["attempts"] >= 1
    # Usually a random id (a batch of three tasks); a batch Ray Data made of one task gives `0_7_0_<j>`.
    sources = {failed[0]["source_id"]} - {""} or set(failed[0]["source_ids"])
    assert "7" in sources
    assert "row1402.json" not in {p.name for p in out.glob("*.json")}
    first_run = frozenset(out.glob("work-*.log"))
    _run(executor, ckpt, out, "--retry-failed", RESUME_REGROUP="1", RESUME_HEAL="1")
    assert sorted(_worked(out, first_run)) == sorted(int(s) for s in sources)
    assert _outputs(out) == clean
    assert checkpoint.read_failed_tasks(ckpt) == []


def test_manifest_from_env_without_checkpoint(tmp_path: Path) -> None:
    from nemo_curator.backends.in_process import InProcessExecutor
    from nemo_curator.pipeline import Pipeline

    sys.path.insert(0, str(JOB.parent))
    try:
        import resume_job
    finally:
        sys.path.pop(0)
    os.environ["RESUME_OUT"] = str(tmp_path)
    resume_job.FAIL_SOURCES = {2}
    try:
        os.environ[checkpoint.FAILED_TASKS_DIR_ENV] = str(tmp_path / "manifest")
        Pipeline("p", stages=[resume_job.ListSources(), resume_job.Work()]).run(
            InProcessExecutor({"ignore_failures": True})
        )
    finally:
        del os.environ[checkpoint.FAILED_TASKS_DIR_ENV]
        resume_job.FAIL_SOURCES = set()
    lines = (tmp_path / "manifest" / checkpoint.FAILED_TASKS_FILE).read_text().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["stage"] == "work"


def test_stage_that_cannot_resume_is_rejected(tmp_path: Path) -> None:
    from nemo_curator.backends.in_process import InProcessExecutor
    from nemo_curator.pipeline import Pipeline

    sys.path.insert(0, str(JOB.parent))
    try:
        import resume_job
    finally:
        sys.path.pop(0)

    class Dedup(resume_job.Work):
        name = "dedup"
        is_resumable = False

    with pytest.raises(ValueError, match=r"\['dedup'\] cannot resume"):
        Pipeline("p", stages=[resume_job.ListSources(), Dedup()]).run(
            InProcessExecutor(), checkpoint_path=str(tmp_path / "ckpt")
        )
    assert not (tmp_path / "ckpt").exists()


def _job_module() -> Any:
    sys.path.insert(0, str(JOB.parent))
    try:
        import resume_job
    finally:
        sys.path.pop(0)
    return resume_job


def test_manifest_in_env_dir_and_retry_from_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nemo_curator.backends.base import StageFailedError
    from nemo_curator.backends.in_process import InProcessExecutor
    from nemo_curator.pipeline import Pipeline

    job = _job_module()
    ckpt, out, failed_dir = tmp_path / "ckpt", tmp_path / "out", tmp_path / "failed"
    out.mkdir()
    monkeypatch.setenv("RESUME_OUT", str(out))
    monkeypatch.setenv(checkpoint.FAILED_TASKS_DIR_ENV, str(failed_dir))
    monkeypatch.setattr(job, "FAIL_SOURCES", {7, 11})
    pipeline = Pipeline("p", stages=[job.ListSources(), job.Work(), job.Write()])

    def run(*, retry: bool, ignore: bool = True) -> list[int]:
        log = out / f"work-{os.getpid()}.log"
        before = len(log.read_text().split()) if log.exists() else 0
        try:
            pipeline.run(
                InProcessExecutor({"ignore_failures": ignore}), checkpoint_path=str(ckpt), retry_failed=retry
            )
        finally:
            worked = [int(x) for x in log.read_text().split()[before:]] if log.exists() else []
        return worked

    run(retry=False)
    manifest = failed_dir / checkpoint.FAILED_TASKS_FILE
    assert sorted(json.loads(line)["source_id"] for line in manifest.read_text().splitlines()) == ["11", "7"]
    assert not (ckpt / checkpoint.METADATA_DIR / ".failed_tasks").exists(), "the variable wins"
    assert sorted(r["source_id"] for r in checkpoint.read_failed_tasks(ckpt)) == ["11", "7"]

    # A retry that dies: the list it was retrying is kept (set aside) for the next retry.
    with pytest.raises(StageFailedError):
        run(retry=True, ignore=False)
    assert not manifest.exists()
    assert manifest.with_name(checkpoint.FAILED_TASKS_FILE + checkpoint.RETRYING_SUFFIX).exists()
    assert sorted(r["source_id"] for r in checkpoint.read_failed_tasks(ckpt)) == ["11", "7"]

    # A retry that still fails on one source: the old list is consumed, the new one names just that source.
    monkeypatch.setattr(job, "FAIL_SOURCES", {11})
    assert sorted(run(retry=True)) == [7, 11]
    assert [r["source_id"] for r in checkpoint.read_failed_tasks(ckpt)] == ["11"]
    assert manifest.with_name(checkpoint.FAILED_TASKS_FILE + checkpoint.RETRIED_SUFFIX).exists()

    monkeypatch.setattr(job, "FAIL_SOURCES", set())
    assert run(retry=True) == [11]
    assert checkpoint.read_failed_tasks(ckpt) == []
    assert run(retry=True) == [], "nothing left to retry"
    assert run(retry=False) == []
    assert checkpoint.completed_sources(ckpt) == {str(i) for i in range(N_SOURCES)}
