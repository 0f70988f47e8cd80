"""Actor pool: results of given-up attempts and events after an abort never reach the output twice or
crash the driver."""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ray import cloudpickle

from nemo_curator import _core
from nemo_curator.backends.experimental.ray_actor_pool import RayActorPoolExecutor
from nemo_curator.backends.experimental.ray_actor_pool.driver import StageFailedError
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.tasks import Task
from nemo_curator.testing.probes import numbered_tasks

pytestmark = pytest.mark.usefixtures("ray_session")
# The stages below live in this test module, which Ray's workers cannot import: send them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@dataclass
class SlowOnceOn(ProcessingStage[Task[Any], Task[Any]]):
    """The first call that sees `task_id` takes `seconds` and then returns it (a late result); later
    calls pass it at once. A marker file makes "first" hold across worker processes."""

    directory: str
    task_id: str
    seconds: float
    name: str = "slow_once_on"

    def process(self, task: Task[Any]) -> Task[Any]:
        marker = Path(self.directory) / f"slow-{task.task_id}"
        if task.task_id == self.task_id and not marker.exists():
            marker.write_text("1")
            time.sleep(self.seconds)
        return task


@dataclass
class Sleepy(ProcessingStage[Task[Any], Task[Any]]):
    """Passes tasks through after `sleep_s`."""

    sleep_s: float
    name: str = "sleepy"

    def process(self, task: Task[Any]) -> Task[Any]:
        time.sleep(self.sleep_s)
        return task


@dataclass
class SetupFailsAfter(ProcessingStage[Task[Any], Task[Any]]):
    """`setup` waits `delay_s`, then raises: it fails while the stage before it finishes calls."""

    delay_s: float
    name: str = "late_setup_failure"

    def setup(self, worker_metadata: Any = None) -> None:
        time.sleep(self.delay_s)
        raise RuntimeError("no GPU on this worker")

    def process(self, task: Task[Any]) -> Task[Any]:
        return task


@pytest.mark.parametrize("as_tasks", [True, False], ids=["tasks", "actors"])
def test_a_timed_out_call_is_retried_and_its_task_is_output_once(tmp_path: Any, as_tasks: bool) -> None:
    # The first call on t1 outlives call_timeout_s (the clock starts when the call reaches an idle
    # worker: leave room for a worker's start-up); it is given up and t1 goes out again. Whatever
    # becomes of the first call, t1 is output exactly once.
    config = {
        "call_timeout_s": {"slow_once_on": 10},
        "stateless_as_tasks": as_tasks,
        "pool_size": 2,
        "show_progress": False,
    }
    ex = RayActorPoolExecutor(config=config)
    out = ex.execute([SlowOnceOn(str(tmp_path), "t1", seconds=25)], numbered_tasks(5))
    counts = Counter(t.task_id for t in out)
    assert counts == Counter(f"t{i}" for i in range(5)), counts
    assert (tmp_path / "slow-t1").exists()
    assert ex.failures == []


def test_a_setup_failing_in_the_round_of_finished_calls_reports_the_users_error() -> None:
    # Stage one's calls finish around the time stage two's setup raises: the driver gets both in one
    # round; the core aborts on the setup, the finished calls are ignored, and the run fails with the
    # user's error (no IndexError from outputs that got no ids).
    config = {"max_retries": 0, "pool_size": 1, "show_progress": False}
    with pytest.raises(StageFailedError, match=r"(?s)late_setup_failure.*no GPU on this worker"):
        RayActorPoolExecutor(config=config).execute(
            [Sleepy(0.3), SetupFailsAfter(delay_s=1.0)], numbered_tasks(12)
        )


def test_the_core_ignores_a_given_up_attempt_and_counts_it() -> None:
    # What the driver relies on, through the binding: the result of attempt 0 arriving after the batch
    # went out again as attempt 1 gets no ids; the retry's result does, once.
    sched = _core.Scheduler([_core.StageSpec("a", slots_per_actor=1)], [_core.NodeSpec("n0", 1)])
    sched.add_tasks([10])
    sched.close_input()
    [(_, actor, _, _)] = [c for c in sched.poll() if c[0] == "create"]
    sched.actors_ready([actor])
    [(batch, _, attempt)] = next(c for c in sched.poll() if c[0] == "submit")[2]
    assert attempt == 0
    sched.actor_failed(actor, False, "call timed out after 4 s (call_timeout_s)")
    sched.actors_ready([c[1] for c in sched.poll() if c[0] == "create"])
    [(again, _, attempt)] = next(c for c in sched.poll() if c[0] == "submit")[2]
    assert (again, attempt) == (batch, 1)
    assert sched.batch_results([batch], [0], [1], [10], [1], [9.0]) == [None]
    assert sched.stale_results == 1
    [first] = sched.batch_results([batch], [1], [1], [10], [1], [0.1])
    assert first is not None
    assert sched.batch_results([batch], [1], [1], [10], [1], [0.1]) == [None], "a duplicate"
    sched.batch_failed(batch, True, "ValueError: late", 0)
    assert sched.stale_results == 3
    emitted = [t for c in sched.poll() if c[0] == "emit" for t in c[1]]
    assert emitted == [first]
    with pytest.raises(_core.ProtocolError, match="unknown batch"):
        sched.batch_results([10**6], [0], [1], [10], [1], [0.1])
