"""Stages that record where, when and how they ran, or fail on purpose: for tests of the Ray executors.

Everything they observe goes to files under a directory given at construction, because Ray runs them
in other processes (and other nodes). Each file name is unique, so no two writers collide.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemo_curator.backends.base import NodeInfo, WorkerMetadata
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.stages.resources import Resources
from nemo_curator.tasks import Task


def _write(directory: str, kind: str, **record: Any) -> None:
    record = {"kind": kind, "pid": os.getpid(), "t": time.time(), **record}
    name = f"{kind}-{os.getpid()}-{uuid.uuid4().hex}.json"
    # Write then rename: a reader polling the directory never sees a half-written record.
    tmp = Path(directory) / f".{name}.tmp"
    tmp.write_text(json.dumps(record))
    tmp.rename(Path(directory) / name)


def read_records(directory: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """All records written by the probes under `directory` (optionally of one kind), oldest first."""
    out = [json.loads(p.read_text()) for p in Path(directory).glob("*.json")]
    if kind is not None:
        out = [r for r in out if r["kind"] == kind]
    return sorted(out, key=lambda r: r["t"])


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"
    except Exception:
        return "local"


@dataclass
class LifecycleProbe(ProcessingStage[Task[Any], Task[Any]]):
    """Passes tasks through; records setup_on_node / setup / teardown / each batch with node and pid."""

    directory: str
    name: str = "lifecycle_probe"
    sleep_s: float = 0.0
    resources: Resources = field(default_factory=lambda: Resources(cpus=1.0))
    batch_size: int = 1
    #: Seconds `setup` takes (a model load).
    setup_s: float = 0.0
    #: What `xenna_stage_spec()` returns.
    xenna_spec: dict[str, Any] = field(default_factory=dict)
    #: `ray_stage_spec()["is_actor_stage"]` when not None.
    actor_stage: bool | None = None

    def xenna_stage_spec(self) -> dict[str, Any]:
        return dict(self.xenna_spec)

    def ray_stage_spec(self) -> dict[str, Any]:
        return {} if self.actor_stage is None else {"is_actor_stage": self.actor_stage}

    def setup_on_node(
        self, node_info: NodeInfo | None = None, worker_metadata: WorkerMetadata | None = None
    ) -> None:
        _write(
            self.directory, "setup_on_node", stage=self.name, node=node_info.node_id if node_info else None
        )

    def setup(self, worker_metadata: WorkerMetadata | None = None) -> None:
        time.sleep(self.setup_s)
        _write(
            self.directory,
            "setup",
            stage=self.name,
            node=_node_id(),
            worker=worker_metadata.worker_id if worker_metadata else None,
            cuda=os.environ.get("CUDA_VISIBLE_DEVICES"),
        )

    def teardown(self) -> None:
        _write(self.directory, "teardown", stage=self.name, node=_node_id())

    def process(self, task: Task[Any]) -> Task[Any]:
        start = time.time()
        if self.sleep_s:
            time.sleep(self.sleep_s)
        _write(self.directory, "batch", stage=self.name, node=_node_id(), task_id=task.task_id, start=start)
        return task


@dataclass
class CrashOnce(ProcessingStage[Task[Any], Task[Any]]):
    """Kills its worker process (`os._exit`) the first time it sees `task_id`; passes tasks through."""

    directory: str
    task_id: str
    name: str = "crash_once"

    def process(self, task: Task[Any]) -> Task[Any]:
        marker = Path(self.directory) / f"crashed-{self.task_id}"
        if task.task_id == self.task_id and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
        return task


@dataclass
class CrashAlways(ProcessingStage[Task[Any], Task[Any]]):
    """Kills its worker process every time it sees `task_id` (retries must run out)."""

    task_id: str
    name: str = "crash_always"

    def process(self, task: Task[Any]) -> Task[Any]:
        if task.task_id == self.task_id:
            os._exit(1)
        return task


@dataclass
class FailingSetup(ProcessingStage[Task[Any], Task[Any]]):
    """`setup` raises: the run must fail with the stage's name, not hang."""

    name: str = "failing_setup"

    def setup(self, worker_metadata: WorkerMetadata | None = None) -> None:
        raise RuntimeError("model weights not found")

    def process(self, task: Task[Any]) -> Task[Any]:
        return task


@dataclass
class GpuProbe(ProcessingStage[Task[Any], Task[Any]]):
    """Records the GPUs Ray gave the actor (`CUDA_VISIBLE_DEVICES`, `ray.get_gpu_ids()`)."""

    directory: str
    gpus: float = 1.0
    name: str = "gpu_probe"
    #: Hold every batch until this many actors have set up (a barrier), so the whole pool comes up.
    wait_for_actors: int = 0

    def __post_init__(self) -> None:
        self.resources = Resources(cpus=0.5, gpus=self.gpus)

    def setup(self, worker_metadata: WorkerMetadata | None = None) -> None:
        import ray

        _write(
            self.directory,
            "gpu",
            stage=self.name,
            cuda=os.environ.get("CUDA_VISIBLE_DEVICES"),
            gpu_ids=[str(g) for g in ray.get_gpu_ids()],
            worker=worker_metadata.worker_id if worker_metadata else None,
        )

    def process(self, task: Task[Any]) -> Task[Any]:
        deadline = time.time() + 120
        while len(read_records(self.directory, "gpu")) < self.wait_for_actors and time.time() < deadline:
            time.sleep(0.05)
        return task


@dataclass
class RaiseOn(ProcessingStage[Task[Any], Task[Any]]):
    """Raises `ValueError(message)` on `task_id`; passes the other tasks through."""

    task_id: str
    message: str = "bad document"
    name: str = "raise_on"
    xenna_spec: dict[str, Any] = field(default_factory=dict)

    def xenna_stage_spec(self) -> dict[str, Any]:
        return dict(self.xenna_spec)

    def process(self, task: Task[Any]) -> Task[Any]:
        if task.task_id == self.task_id:
            raise ValueError(f"{self.message} ({task.task_id})")
        return task


def numbered_tasks(n: int, prefix: str = "t") -> list[Task[Any]]:
    """`n` one-row DocumentBatch tasks with ids `{prefix}0..`, a column `x` holding the index."""
    import pyarrow as pa

    from nemo_curator.tasks import DocumentBatch

    return [
        DocumentBatch(task_id=f"{prefix}{i}", dataset_name="probe", data=pa.table({"x": [i]}))
        for i in range(n)
    ]


@dataclass
class InputsHeldProbe(ProcessingStage[Task[Any], Task[Any]]):
    """RayDataExecutor only: records in ``_metadata["inputs_held"]`` how many initial task lists the
    run's input store still holds when this stage runs (polling up to ``wait_s`` for it to reach 0)."""

    name: str = "inputs_held_probe"
    batch_size: int = 1
    wait_s: float = 10.0

    def process(self, task: Task[Any]) -> Task[Any]:
        return self.process_batch([task])[0]

    def process_batch(self, tasks: list[Task[Any]]) -> list[Task[Any]]:
        import ray

        from nemo_curator.backends.experimental.ray_data.adapter import input_store_name

        store = ray.get_actor(input_store_name())
        deadline = time.time() + self.wait_s
        held = sum(ray.get(store.held.remote()).values())
        while held and time.time() < deadline:
            time.sleep(0.05)
            held = sum(ray.get(store.held.remote()).values())
        for task in tasks:
            task._metadata["inputs_held"] = held
        return tasks


@dataclass
class RaiseOnceEach(ProcessingStage[Task[Any], Task[Any]]):
    """Raises `ValueError` the first time it sees each task (a marker file per task id), then passes it."""

    directory: str
    name: str = "raise_once_each"
    xenna_spec: dict[str, Any] = field(default_factory=dict)

    def xenna_stage_spec(self) -> dict[str, Any]:
        return dict(self.xenna_spec)

    def process(self, task: Task[Any]) -> Task[Any]:
        marker = Path(self.directory) / f"raised-{task.task_id}"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            raise ValueError(f"transient error on {task.task_id}")
        return task


@dataclass
class SetupFailsFirst(ProcessingStage[Task[Any], Task[Any]]):
    """`setup` raises on its first call in each actor and succeeds on the next (a transient error)."""

    directory: str
    name: str = "setup_fails_first"
    xenna_spec: dict[str, Any] = field(default_factory=dict)

    def xenna_stage_spec(self) -> dict[str, Any]:
        return dict(self.xenna_spec)

    def setup(self, worker_metadata: WorkerMetadata | None = None) -> None:
        tries = getattr(self, "_tries", 0) + 1
        self._tries = tries
        _write(self.directory, "setup_try", stage=self.name, attempt=tries)
        if tries == 1:
            raise ConnectionError("model server not reachable yet")

    def process(self, task: Task[Any]) -> Task[Any]:
        return task


@dataclass
class SetupFailsOnce(ProcessingStage[Task[Any], Task[Any]]):
    """`setup` raises the first time in the whole run (a marker file), then succeeds in later actors."""

    directory: str
    name: str = "setup_fails_once"

    def setup(self, worker_metadata: WorkerMetadata | None = None) -> None:
        marker = Path(self.directory) / "setup-failed"
        _write(self.directory, "setup_try", stage=self.name, pid=os.getpid())
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            raise ConnectionError("model server not reachable yet")

    def process(self, task: Task[Any]) -> Task[Any]:
        return task


@dataclass
class ExitOn(ProcessingStage[Task[Any], Task[Any]]):
    """Calls `sys.exit(3)` on `task_id` (user code that exits is its error, not a dead worker)."""

    task_id: str
    name: str = "exit_on"

    def process(self, task: Task[Any]) -> Task[Any]:
        if task.task_id == self.task_id:
            sys.exit(3)
        return task


@dataclass
class HangOn(ProcessingStage[Task[Any], Task[Any]]):
    """Sleeps `seconds` on `task_id` (a hung call); passes the other tasks through after `sleep_s`."""

    task_id: str
    seconds: float = 600.0
    sleep_s: float = 0.0
    name: str = "hang_on"

    def process(self, task: Task[Any]) -> Task[Any]:
        time.sleep(self.seconds if task.task_id == self.task_id else self.sleep_s)
        return task


@dataclass
class UnpicklableOn(ProcessingStage[Task[Any], Task[Any]]):
    """On `task_id`, returns a task holding a lock (it cannot be pickled); passes the others through.
    With `big`, the output also carries `big` bytes, so it travels as its own object."""

    task_id: str
    big: int = 0
    name: str = "unpicklable_on"

    def process(self, task: Task[Any]) -> Task[Any]:
        if task.task_id == self.task_id:
            import threading

            task._metadata["lock"] = threading.Lock()
            if self.big:
                task._metadata["payload"] = b"x" * self.big
        return task


@dataclass
class WorkerProbe(ProcessingStage[Task[Any], Task[Any]]):
    """Passes tasks through; records per task the worker's pid, the environment variables `env_vars`
    and the thread it ran on. `spec` is what `ray_stage_spec()` returns; `env` the stage's
    `runtime_env`. With `rendezvous` > 1, each call waits (at most `rendezvous_timeout_s`) until that
    many calls of its worker run at once, and raises when they do not: proof of a worker's concurrency.
    """

    directory: str
    name: str = "worker_probe"
    spec: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] | None = None
    env_vars: tuple[str, ...] = ("CURATOR_PROBE_VAR",)
    workers: int | None = None
    rendezvous: int = 0
    rendezvous_timeout_s: float = 60.0
    batch_size: int = 1

    def __post_init__(self) -> None:
        self.runtime_env = self.env

    def ray_stage_spec(self) -> dict[str, Any]:
        return dict(self.spec)

    def num_workers(self) -> int | None:
        return self.workers

    def process(self, task: Task[Any]) -> Task[Any]:
        if self.rendezvous > 1:
            # One barrier per worker process, made on first use (a stage copy is shared by its threads).
            barrier = _BARRIERS.setdefault(self.name, threading.Barrier(self.rendezvous))
            barrier.wait(timeout=self.rendezvous_timeout_s)
        _write(
            self.directory,
            "call",
            stage=self.name,
            task_id=task.task_id,
            env={name: os.environ.get(name) for name in self.env_vars},
            thread=threading.get_ident(),
            memory=_assigned(),
            cpus=_assigned("CPU"),
            node=_node_id(),
        )
        return task


_BARRIERS: dict[str, Any] = {}


def _assigned(resource: str = "memory") -> float | None:
    """The `resource` Ray granted the current worker (None outside Ray or when none was asked)."""
    try:
        import ray

        return (
            ray.get_runtime_context().get_assigned_resources().get(resource) if ray.is_initialized() else None
        )
    except Exception:
        return None


@dataclass
class WorkerProbeWithSetup(WorkerProbe):
    """A `WorkerProbe` that also records each `setup()` (so it runs in actors on every executor).

    With `await_setups` > 0, each call first waits (at most `rendezvous_timeout_s`) until that many
    setups have been recorded, and raises when they are not: proof that so many workers exist at once.
    """

    await_setups: int = 0

    def setup(self, worker_metadata: WorkerMetadata | None = None) -> None:
        _write(self.directory, "setup", stage=self.name)

    def process(self, task: Task[Any]) -> Task[Any]:
        deadline = time.monotonic() + self.rendezvous_timeout_s
        while len(list(Path(self.directory).glob("setup-*.json"))) < self.await_setups:
            if time.monotonic() > deadline:
                msg = f"fewer than {self.await_setups} workers of stage '{self.name}' were set up"
                raise TimeoutError(msg)
            time.sleep(0.05)  # other processes write the records: nothing here to wait on
        return super().process(task)


# Tasks this worker process has handed on, kept alive so that their ids cannot be reused.
_HANDED_ON: list[Any] = []


@dataclass
class SameObjectProbe(ProcessingStage[Task[Any], Task[Any]]):
    """Records in `_metadata[name]` whether its input is the very object a probe in this process
    returned (it came through a fused call, not through pickling), then hands it on."""

    name: str = "same_object"
    resources: Resources = field(default_factory=lambda: Resources(cpus=1.0))

    def ray_stage_spec(self) -> dict[str, Any]:
        return {"is_actor_stage": False}

    def process(self, task: Task[Any]) -> Task[Any]:
        task._metadata[self.name] = any(t is task for t in _HANDED_ON)
        _HANDED_ON.append(task)
        return task
