"""RayDataExecutor faults on a real local Ray: calls past `call_timeout_s`, the oldest running task in the
status output, and Ctrl-C in the middle of a run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from nemo_curator.backends.experimental.ray_data import RayDataExecutor, StageFailedError
from nemo_curator.testing.probes import HangOn, numbered_tasks

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


def _ids(tasks: list[Any]) -> list[str]:
    return sorted(t.task_id for t in tasks)


# Each timeout costs a worker process (and on actors a restart): one mode per test keeps both covered.
@pytest.mark.parametrize("force_actors", [False], ids=["tasks"])
def test_a_call_past_call_timeout_s_ends_as_a_failure_record(force_actors: bool) -> None:
    config = {
        "call_timeout_s": {"hang_on": 3},
        "max_retries": 0,
        "ignore_failures": True,
        "force_actors": force_actors,
        "pool_size": 2,
        "show_progress": False,
    }
    ex = RayDataExecutor(config=config)
    out = ex.execute([HangOn("t2", seconds=600)], numbered_tasks(6))
    assert _ids(out) == ["t0", "t1", "t3", "t4", "t5"]
    [failure] = ex.failures
    assert failure["task_ids"] == ["t2"] and failure["error_type"] == "CallTimeout"
    assert failure["kind"] == "infra" and failure["stage"] == "hang_on"
    assert "timed out after 3 s (call_timeout_s)" in failure["message"] and "t2" in failure["message"]
    assert ex.last_run is not None and ex.last_run.balance["balanced"]


@pytest.mark.parametrize("force_actors", [True], ids=["actors"])
def test_a_call_that_always_times_out_is_retried_then_fails_naming_stage_and_task(force_actors: bool) -> None:
    config = {"call_timeout_s": 2, "max_retries": 1, "force_actors": force_actors, "show_progress": False}
    with pytest.raises(StageFailedError) as info:
        RayDataExecutor(config=config).execute([HangOn("t1", seconds=600)], numbered_tasks(3))
    failure = info.value.failure
    assert failure is not None and failure.task_ids == ("t1",) and failure.stage == "hang_on"
    assert failure.error_type == "CallTimeout" and failure.attempts == 2
    assert "Stage 'hang_on' failed on task(s) ['t1']" in str(info.value)
    assert "call timed out after 2 s (call_timeout_s)" in str(info.value)


def test_a_call_within_its_timeout_is_left_alone() -> None:
    config = {"call_timeout_s": {"default": 60, "hang_on": 30}, "show_progress": False}
    out = RayDataExecutor(config=config).execute([HangOn("t1", seconds=1.5)], numbered_tasks(3))
    assert _ids(out) == ["t0", "t1", "t2"]


def test_call_timeout_s_is_checked_and_must_name_stages_of_the_pipeline() -> None:
    for bad in (-1, 0, float("nan"), "5", {"hang_on": -2}, {3: 1.0}):
        with pytest.raises(ValueError, match=r"RayDataExecutor config 'call_timeout_s' must be"):
            RayDataExecutor(config={"call_timeout_s": bad})
    with pytest.raises(ValueError, match=r"names no stage of this pipeline: \['hang'\]"):
        RayDataExecutor(config={"call_timeout_s": {"hang": 2}}).execute([HangOn("x")], numbered_tasks(1))


def test_status_table_names_the_oldest_running_task() -> None:
    lines: list[str] = []
    sink = logger.add(lines.append, level="INFO", format="{message}")
    try:
        config = {"status_interval_s": 0.3, "show_progress": False, "pool_size": 1}
        RayDataExecutor(config=config).execute([HangOn("t1", seconds=4.0)], numbered_tasks(2))
    finally:
        logger.remove(sink)
    tables = [line for line in lines if line.startswith("status\n")]
    assert any("oldest running" in t and "t1 (" in t for t in tables), tables[-3:]


_CTRL_C_SCRIPT = """
import sys, time
from pathlib import Path
import ray
from nemo_curator.backends.experimental.ray_data import RayDataExecutor
from nemo_curator.testing.probes import HangOn, numbered_tasks

ray.init(num_cpus=2, object_store_memory=100 * 1024 * 1024, include_dashboard=False, log_to_driver=False)
marker = Path(sys.argv[1])
class Marked(HangOn):
    def process(self, task):
        marker.touch()
        return super().process(task)
ex = RayDataExecutor(config={"pool_size": 2, "force_actors": True, "show_progress": False})
try:
    ex.execute([Marked("t0", seconds=600, sleep_s=600)], numbered_tasks(4))
except KeyboardInterrupt:
    interrupted = time.monotonic()
    # The stage actors are killed by the executor, not collected later: their CPUs come back at once.
    while ray.available_resources().get("CPU", 0.0) < 2 and time.monotonic() - interrupted < 20:
        time.sleep(0.05)
    print(f"RELEASED {ray.available_resources().get('CPU', 0.0):g} after {time.monotonic() - interrupted:.1f}s")
    raise
"""


def test_ctrl_c_stops_the_run_promptly_and_releases_its_actors(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(_CTRL_C_SCRIPT))
    marker = tmp_path / "started"
    env = {**os.environ, "RAY_ADDRESS": "", "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), proc.communicate(timeout=30)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in err, err[-3000:]
    assert "RELEASED 2 after" in out, (out, err[-3000:])
