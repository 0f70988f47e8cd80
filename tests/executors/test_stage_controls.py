"""Per-stage worker controls (Curator v1.3) on every Ray executor, on real Ray: `runtime_env`,
`max_calls_per_worker`, `ray_remote_args`, `min_workers` / `max_workers` / `initial_workers`, exact
`num_workers()`. Each test proves the effect inside the workers (pids, environment, concurrency,
setups), or a clear error naming the stage and the key where an executor cannot honour a control.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nemo_curator.backends.base import BaseExecutor
from nemo_curator.backends.stage_controls import merge_runtime_env
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.testing.probes import WorkerProbe, WorkerProbeWithSetup, numbered_tasks, read_records


def _actor_pool(**config: Any) -> BaseExecutor:
    from nemo_curator.backends.experimental import RayActorPoolExecutor

    return RayActorPoolExecutor(config={"show_progress": False, **config})


def _ray_data(**config: Any) -> BaseExecutor:
    from nemo_curator.backends.experimental import RayDataExecutor

    # One task per block: a Ray Data call then processes exactly one task.
    return RayDataExecutor(config={"show_progress": False, "max_tasks_per_block": 1, **config})


def _xenna(**config: Any) -> BaseExecutor:
    from nemo_curator.backends.xenna import XennaExecutor

    return XennaExecutor(config={"execution_mode": "streaming", "show_progress": False, **config})


EXECUTORS: dict[str, Callable[..., BaseExecutor]] = {
    "ray_actor_pool": _actor_pool,
    "ray_data": _ray_data,
    "xenna": _xenna,
}


@pytest.fixture(params=sorted(EXECUTORS), scope="module")
def make(request: pytest.FixtureRequest, ray_session: None) -> Callable[..., BaseExecutor]:
    return EXECUTORS[request.param]


def _run(executor: BaseExecutor, stages: list[ProcessingStage[Any, Any]], n: int) -> list[Any]:
    out = executor.execute(stages, numbered_tasks(n))
    assert sorted(t.task_id for t in out) == sorted(t.task_id for t in numbered_tasks(n))
    return out


def _calls(directory: Path, stage: str) -> list[dict[str, Any]]:
    return [r for r in read_records(directory, "call") if r["stage"] == stage]


# ------------------------------------------------------------------------------------------ runtime_env
def test_runtime_env_merges_over_the_executors() -> None:
    base = {"env_vars": {"A": "exec", "B": "exec"}, "pip": ["x"]}
    merged = merge_runtime_env(base, {"env_vars": {"B": "stage"}, "pip": ["y"], "conda": "env"})
    assert merged == {"env_vars": {"A": "exec", "B": "stage"}, "pip": ["y"], "conda": "env"}
    assert base["env_vars"] == {"A": "exec", "B": "exec"}, "the executor's dict is not changed"


@pytest.mark.parametrize("actor", [False, True], ids=["tasks", "actors"])
def test_stage_runtime_env_reaches_its_workers_only(
    make: Callable[..., BaseExecutor], tmp_path: Path, actor: bool
) -> None:
    names = ("CURATOR_PROBE_VAR", "CURATOR_PROBE_BASE")
    with_env = WorkerProbe(
        str(tmp_path),
        name="with_env",
        env={"env_vars": {"CURATOR_PROBE_VAR": "stage"}},
        spec={"is_actor_stage": actor},
        env_vars=names,
    )
    without = WorkerProbe(str(tmp_path), name="without_env", spec={"is_actor_stage": actor}, env_vars=names)
    executor = make(runtime_env={"env_vars": {"CURATOR_PROBE_VAR": "executor", "CURATOR_PROBE_BASE": "base"}})
    _run(executor, [with_env, without], 4)
    # The stage's value wins, the executor's other variables stay; the next stage keeps the executor's.
    assert {tuple(sorted(r["env"].items())) for r in _calls(tmp_path, "with_env")} == {
        (("CURATOR_PROBE_BASE", "base"), ("CURATOR_PROBE_VAR", "stage"))
    }
    assert {tuple(sorted(r["env"].items())) for r in _calls(tmp_path, "without_env")} == {
        (("CURATOR_PROBE_BASE", "base"), ("CURATOR_PROBE_VAR", "executor"))
    }


def test_with_sets_runtime_env_spec_and_num_workers(tmp_path: Path) -> None:
    probe = WorkerProbe(str(tmp_path), spec={"is_actor_stage": False})
    copy = probe.with_(
        runtime_env={"env_vars": {"X": "1"}}, ray_stage_spec={"max_calls_per_worker": 3}, num_workers=2
    )
    assert copy.runtime_env == {"env_vars": {"X": "1"}}
    assert copy.ray_stage_spec() == {"is_actor_stage": False, "max_calls_per_worker": 3}
    assert copy.num_workers() == 2
    assert probe.runtime_env is None and probe.num_workers() is None, "the original is unchanged"
    assert copy.with_(num_workers=None).num_workers() is None
    with pytest.raises(ValueError, match="num_workers"):
        probe.with_(xenna_stage_spec={"num_workers": 2})


# --------------------------------------------------------------------------------- max_calls_per_worker
def test_max_calls_per_worker_replaces_workers(make: Callable[..., BaseExecutor], tmp_path: Path) -> None:
    probe = WorkerProbe(str(tmp_path), spec={"max_calls_per_worker": 2, "is_actor_stage": False})
    _run(make(), [probe], 8)
    per_pid = Counter(r["pid"] for r in _calls(tmp_path, probe.name))
    assert sum(per_pid.values()) == 8
    assert max(per_pid.values()) <= 2, per_pid
    assert len(per_pid) >= 4, per_pid


def test_without_max_calls_a_worker_takes_many_calls(tmp_path: Path, ray_session: None) -> None:
    # The control of the test above: one actor, nothing recycles it.
    probe = WorkerProbe(str(tmp_path), spec={"is_actor_stage": True}, workers=1)
    _run(_actor_pool(), [probe], 8)
    assert len({r["pid"] for r in _calls(tmp_path, probe.name)}) == 1


def test_max_calls_per_worker_on_a_ray_data_actor_stage_is_an_error(tmp_path: Path) -> None:
    from nemo_curator.backends.experimental import RayDataExecutor

    probe = WorkerProbe(str(tmp_path), name="leaky", spec={"max_calls_per_worker": 2, "is_actor_stage": True})
    with pytest.raises(ValueError, match=r"Stage 'leaky'.*max_calls_per_worker"):
        RayDataExecutor(config={"show_progress": False}).execute([probe], numbered_tasks(2))


# ------------------------------------------------------------------------------------- ray_remote_args
_MEMORY = 64 * 2**20


@pytest.mark.parametrize("actor", [False, True], ids=["tasks", "actors"])
def test_ray_remote_args_reach_the_workers(
    make: Callable[..., BaseExecutor], tmp_path: Path, actor: bool
) -> None:
    probe = WorkerProbe(str(tmp_path), spec={"is_actor_stage": actor, "ray_remote_args": {"memory": _MEMORY}})
    _run(make(), [probe], 3)
    assert {r["memory"] for r in _calls(tmp_path, probe.name)} == {_MEMORY}


@pytest.mark.parametrize("make_pool", [_actor_pool, _xenna], ids=["ray_actor_pool", "xenna"])
def test_max_concurrency_lets_one_actor_run_calls_at_once(
    make_pool: Callable[..., BaseExecutor], tmp_path: Path, ray_session: None
) -> None:
    # Two calls on ONE actor meet inside `process` only if the actor runs two calls at once.
    probe = WorkerProbe(
        str(tmp_path),
        spec={"is_actor_stage": True, "ray_remote_args": {"max_concurrency": 2}},
        workers=1,
        rendezvous=2,
    )
    _run(make_pool(), [probe], 2)
    calls = _calls(tmp_path, probe.name)
    assert len({r["pid"] for r in calls}) == 1
    assert len({r["thread"] for r in calls}) == 2


def test_without_max_concurrency_calls_do_not_overlap(tmp_path: Path, ray_session: None) -> None:
    # The control of the test above: the rendezvous cannot happen, and the stage's error fails the run.
    from nemo_curator.backends.base import StageFailedError

    probe = WorkerProbe(
        str(tmp_path), spec={"is_actor_stage": True}, workers=1, rendezvous=2, rendezvous_timeout_s=1.0
    )
    with pytest.raises(StageFailedError, match="BrokenBarrierError"):
        _run(_actor_pool(), [probe], 2)


@pytest.mark.parametrize(
    "key", ["num_cpus", "num_gpus", "resources", "max_restarts", "runtime_env", "max_calls"]
)
def test_managed_ray_remote_args_are_rejected(
    make: Callable[..., BaseExecutor], tmp_path: Path, key: str
) -> None:
    probe = WorkerProbe(str(tmp_path), name="greedy", spec={"ray_remote_args": {key: 1}})
    with pytest.raises(ValueError, match=f"Stage 'greedy'.*ray_remote_args.*{key}"):
        make().execute([probe], numbered_tasks(1))
    assert not read_records(tmp_path), "rejected before any work"


def test_ray_data_workers_take_one_call_at_a_time(tmp_path: Path, ray_session: None) -> None:
    probe = WorkerProbe(str(tmp_path), name="threads", spec={"ray_remote_args": {"max_concurrency": 2}})
    with pytest.raises(ValueError, match=r"Stage 'threads'.*max_concurrency"):
        _ray_data().execute([probe], numbered_tasks(1))


def test_actor_pool_keeps_node_placement(tmp_path: Path, ray_session: None) -> None:
    probe = WorkerProbe(
        str(tmp_path), name="placed", spec={"ray_remote_args": {"scheduling_strategy": "SPREAD"}}
    )
    with pytest.raises(ValueError, match=r"Stage 'placed'.*scheduling_strategy"):
        _actor_pool().execute([probe], numbered_tasks(1))


# ---------------------------------------------------------------------------------------- pool sizing
# Each call waits until the expected number of workers has run `setup()`: a pool that is too small
# fails the run, so these prove the pool's size inside the workers.
def _setups(directory: Path) -> int:
    return len(read_records(directory, "setup"))


@pytest.mark.parametrize("make_pool", [_actor_pool, _xenna], ids=["ray_actor_pool", "xenna"])
def test_initial_workers_start_the_pool(
    make_pool: Callable[..., BaseExecutor], tmp_path: Path, ray_session: None
) -> None:
    # Tiny tasks: an automatic pool would start (and stay) at one actor.
    probe = WorkerProbeWithSetup(str(tmp_path), spec={"initial_workers": 3}, await_setups=3)
    _run(make_pool(), [probe], 6)
    assert _setups(tmp_path) == 3


def test_min_workers_is_a_floor(tmp_path: Path, ray_session: None) -> None:
    probe = WorkerProbeWithSetup(str(tmp_path), spec={"min_workers": 2}, await_setups=2)
    _run(_actor_pool(), [probe], 6)
    assert _setups(tmp_path) == 2


def test_max_workers_caps_the_pool(tmp_path: Path, ray_session: None) -> None:
    # Every pool starts whole (actor_start_s=0): without the cap this one would take all 4 CPUs.
    probe = WorkerProbeWithSetup(str(tmp_path), spec={"max_workers": 2}, await_setups=2)
    executor = _actor_pool(actor_start_s=0.0)
    _run(executor, [probe], 6)
    assert executor.last_run is not None
    assert executor.last_run.stage(probe.name).actors == 2


def test_without_max_workers_the_pool_takes_the_cluster(tmp_path: Path, ray_session: None) -> None:
    # The control of the test above.
    probe = WorkerProbeWithSetup(str(tmp_path))
    executor = _actor_pool(actor_start_s=0.0)
    _run(executor, [probe], 6)
    assert executor.last_run is not None
    assert executor.last_run.stage(probe.name).actors == 4


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"min_workers": 3, "max_workers": 2}, "min_workers"),
        ({"initial_workers": 5, "max_workers": 2}, "initial_workers"),
        ({"max_calls_per_worker": 0}, "max_calls_per_worker"),
        ({"min_workers": 1.5}, "min_workers"),
    ],
)
def test_bad_sizing_is_an_error_naming_stage_and_key(
    make: Callable[..., BaseExecutor], tmp_path: Path, spec: dict[str, Any], match: str
) -> None:
    probe = WorkerProbeWithSetup(str(tmp_path), name="sized", spec=spec)
    with pytest.raises(ValueError, match=f"Stage 'sized'.*{match}"):
        make().execute([probe], numbered_tasks(1))


def _wait_until_cpus_free(timeout_s: float = 60.0) -> None:
    """The previous test's workers give their CPUs back a moment after its run: a plan made before that
    sizes pools to what is free (and says so), which is not what a test of exact sizes checks."""
    import time

    import ray

    deadline = time.monotonic() + timeout_s
    total = ray.cluster_resources().get("CPU", 0)
    while ray.available_resources().get("CPU", 0) < total and time.monotonic() < deadline:
        time.sleep(0.1)


def test_num_workers_is_exact(make: Callable[..., BaseExecutor], tmp_path: Path) -> None:
    # Exact, even above the number of batches (Curator v1.3).
    probe = WorkerProbeWithSetup(str(tmp_path), workers=3, await_setups=3)
    _wait_until_cpus_free()
    _run(make(), [probe], 2)
    assert _setups(tmp_path) == 3


# ------------------------------------------------------------------------------------- ray_num_cpus
@pytest.mark.parametrize("actor", [False, True], ids=["tasks", "actors"])
def test_ray_num_cpus_is_what_ray_data_reserves(tmp_path: Path, ray_session: None, actor: bool) -> None:
    from nemo_curator.stages.resources import Resources

    probe = WorkerProbe(str(tmp_path), spec={"is_actor_stage": actor, "ray_num_cpus": 0.25}).with_(
        resources=Resources(cpus=1.0)
    )
    _run(_ray_data(), [probe], 3)
    assert {r["cpus"] for r in _calls(tmp_path, probe.name)} == {0.25}


@pytest.mark.parametrize("make_pool", [_actor_pool, _xenna], ids=["ray_actor_pool", "xenna"])
def test_ray_num_cpus_is_for_ray_data_only(
    make_pool: Callable[..., BaseExecutor], tmp_path: Path, ray_session: None
) -> None:
    # As in Curator: the actor pool sizes and places its actors from `resources`.
    from nemo_curator.stages.resources import Resources

    probe = WorkerProbe(str(tmp_path), spec={"is_actor_stage": True, "ray_num_cpus": 0.25}).with_(
        resources=Resources(cpus=1.0)
    )
    _run(make_pool(), [probe], 2)
    assert {r["cpus"] for r in _calls(tmp_path, probe.name)} == {1.0}


@pytest.mark.parametrize("value", [0, -1.0, "1", True])
def test_bad_ray_num_cpus_is_rejected(make: Callable[..., BaseExecutor], tmp_path: Path, value: Any) -> None:
    probe = WorkerProbe(str(tmp_path), name="cpus", spec={"ray_num_cpus": value})
    with pytest.raises(ValueError, match=r"Stage 'cpus'.*ray_num_cpus.*> 0"):
        make().execute([probe], numbered_tasks(1))
    assert not read_records(tmp_path), "rejected before any work"
