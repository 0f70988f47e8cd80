# Hand-written stub for the native module `nemo_curator._core`; checked by `python -m mypy.stubtest`.
# Each section belongs to one Rust module of rust/curator-py/src.

import typing as _typing
from typing import final as _final

import pyarrow as pa  # type: ignore[import-untyped]

# --- lib.rs -------------------------------------------------------------------------------------
__version__: str
RELEASE_BUILD: bool

# --- errors.rs ----------------------------------------------------------------------------------
class CuratorCoreError(RuntimeError): ...
class ConfigError(CuratorCoreError): ...
class InfeasibleError(CuratorCoreError): ...
class ProtocolError(CuratorCoreError): ...

# --- scheduler.rs -------------------------------------------------------------------------------
# Commands returned by `Scheduler.poll`, plain tuples tagged by their first item:
#   ("create", actor, stage, node_index)      start an actor of `stage` on `nodes[node_index]`
#   ("submit", actor, [(batch_id, task_ids, attempt), ...])
#                                             one remote call; `process_batch` once per batch
#   ("kill", actor)                           teardown, then kill (stage done, capacity moved, or run over)
#   ("emit", task_ids)                        final outputs, in completion order
#   ("drop", task_ids)                        payloads no longer needed (their batch finished for good)
#   ("failure", failure)                      a batch failed for good and the run goes on (ignore_failures)
#   ("finish",)                               every task is accounted for; always the last command
#   ("abort", reason, failure | None)         the run cannot go on; always the last command
# `failure` is {"stage": int, "stage_name": str, "batch": int, "tasks": list[int], "roots": list[int],
#               "kind": "user" | "infra", "message": str, "attempts": int}; `roots`: the initial tasks
#               (ids `add_tasks` gave) those tasks descend from.

@_typing.final
class StageSpec:
    """One pipeline stage as the scheduler sees it (immutable).

    `pool_size` fixes the pool (capped to what fits, with a warning); else `max_pool_size` bounds an
    automatic pool (None: as many actors as fit; one per node for stages needing no CPU and no GPU).
    """

    def __new__(
        cls,
        name: str,
        *,
        batch_size: int = 1,
        cpus: float = 1.0,
        gpus: float = 0.0,
        pool_size: int | None = None,
        max_pool_size: int | None = None,
        slots_per_actor: int = 2,
        max_batches_per_call: int = 64,
        max_retries: int = 3,
        queue_max_tasks: int = 10000,
        queue_max_bytes: int = 1073741824,
        max_user_retries: int = 0,
        ignore_failures: bool | None = None,
        max_actor_age_s: float | None = None,
        actor_restart_interval_s: float = 60.0,
        replace_actor_on_failure: bool = False,
        max_batches_per_actor: int | None = None,
        min_pool_size: int = 0,
        initial_pool_size: int | None = None,
    ) -> StageSpec: ...
    @property
    def name(self) -> str: ...
    @property
    def batch_size(self) -> int:
        """At most this many tasks per `process_batch` call."""
    @property
    def cpus(self) -> float: ...
    @property
    def gpus(self) -> float:
        """GPUs per actor: a fraction of one device, or a whole number of devices."""
    @property
    def pool_size(self) -> int | None: ...
    @property
    def max_pool_size(self) -> int | None: ...
    @property
    def slots_per_actor(self) -> int:
        """Remote calls in flight per actor."""
    @property
    def max_batches_per_call(self) -> int: ...
    @property
    def max_retries(self) -> int:
        """Retries of a batch after infrastructure failures."""
    @property
    def queue_max_tasks(self) -> int:
        """Bound of this stage's input queue in tasks; upstream waits while it is reached."""
    @property
    def queue_max_bytes(self) -> int:
        """Bound of this stage's input queue in bytes."""
    @property
    def max_user_retries(self) -> int:
        """Retries of a batch whose stage code raised."""
    @property
    def ignore_failures(self) -> bool | None:
        """This stage's `ignore_failures` (None: the run's)."""
    @property
    def max_actor_age_s(self) -> float | None:
        """Ready actors older than this are drained and replaced."""
    @property
    def actor_restart_interval_s(self) -> float:
        """At most one age-based replacement per this many seconds in the pool."""
    @property
    def replace_actor_on_failure(self) -> bool:
        """Drain and replace an actor on which a batch failed in user code."""
    @property
    def max_batches_per_actor(self) -> int | None:
        """An actor given this many batches takes no more: it is drained and replaced."""
    @property
    def min_pool_size(self) -> int:
        """An automatic pool keeps at least this many actors (rebalancing leaves them)."""
    @property
    def initial_pool_size(self) -> int | None:
        """An automatic pool's size at start, when it fits."""

@_typing.final
class NodeSpec:
    """Capacity of one node the run may use (reserved resources already taken off)."""

    def __new__(cls, id: str, cpus: float, gpus: float = 0.0) -> NodeSpec: ...
    @property
    def id(self) -> str: ...
    @property
    def cpus(self) -> float: ...
    @property
    def gpus(self) -> float: ...

@_typing.final
class Scheduler:
    """The sans-IO streaming scheduler: feed it events, execute the commands `poll` returns.

    Raises `ConfigError` for an invalid spec or setting (naming the stage) and `InfeasibleError` when
    there are no nodes or a stage's actor fits on no node. Times are the driver's monotonic clock in
    seconds; sizes are bytes. Event methods raise `ProtocolError` for an unknown actor or batch, an
    attempt that was never submitted or an actor reported ready twice (nothing changes then). A report
    of an attempt that is no longer the batch's current one (given up after a timeout or an actor
    loss, or reported already) is ignored and counted in `stale_results`; after the run ended, late
    reports are accepted and ignored.
    """

    def __new__(
        cls,
        stages: list[StageSpec],
        nodes: list[NodeSpec],
        *,
        ignore_failures: bool = False,
        batch_timeout_s: float | None = None,
        call_overhead_s: float = 0.0005,
        rebalance_interval_s: float = 0.5,
        actor_start_s: float = 1.0,
        stage_by_stage: bool = False,
        growth_interval_s: float = 0.0,
    ) -> Scheduler: ...
    def add_tasks(self, bytes: list[int], items: list[int] | None = None) -> list[int]:
        """Add inputs of the first stage (sizes in bytes, item counts); returns their task ids.

        `ProtocolError` after `close_input`.
        """
    def close_input(self) -> None:
        """No more inputs: partial batches may go, and the run can finish."""
    def tick(self, now: float) -> None:
        """Tell the clock (seconds, monotonic); at least once per driver round. Drives batch timeouts
        and rebalancing."""
    def actors_ready(self, actors: list[int]) -> None:
        """These actors finished their constructor (setup included) and can take calls."""
    def actor_failed(self, actor: int, user_error: bool, message: str) -> None:
        """The actor is gone: its setup raised (`user_error`, aborts the run) or it died (its batches
        are retried and it is replaced). Calls still outstanding on it must not be reported."""
    def node_lost(self, node: int) -> None:
        """The node (index into the run's nodes) left the cluster: no actor is placed there again."""
    def batches_done(
        self,
        batch_ids: list[int],
        n_outputs: list[int],
        out_bytes: list[int],
        out_items: list[int],
        busy_s: list[float],
        attempts: list[int] | None = None,
    ) -> list[int]:
        """Report finished batches (parallel lists: output count, total output bytes and items, seconds
        spent in `process_batch`, and the attempt each result is of; None: the current ones). Returns
        the new output task ids, batch after batch, in each batch's output order (none for an ignored
        report); bytes and items are spread evenly over a batch's outputs."""
    def batch_results(
        self,
        batch_ids: list[int],
        attempts: list[int],
        n_outputs: list[int],
        out_bytes: list[int],
        out_items: list[int],
        busy_s: list[float],
    ) -> list[int | None]:
        """`batches_done` with the attempt of each result (from its `submit`). Returns per batch the id
        of its first output (a batch's outputs have consecutive ids), or None when the report was
        ignored (a given-up attempt, a duplicate, or the run has ended): those outputs get no id."""
    def batch_failed(self, batch: int, user_error: bool, message: str, attempt: int | None = None) -> None:
        """The batch raised (`user_error`: recorded with ignore_failures, else the run aborts) or was
        lost to an infrastructure failure (retried first, up to `max_retries`). `attempt`: the one that
        failed (None: the current one); a given-up attempt's failure is ignored."""
    @property
    def stale_results(self) -> int:
        """Reports ignored because their attempt was no longer the batch's current one."""
    def poll(self) -> list[tuple[_typing.Any, ...]]:
        """Every decision since the last poll, as tagged tuples (see above); cheap when nothing changed."""
    @property
    def finished(self) -> bool:
        """True once `finish` or `abort` was decided."""
    @property
    def aborted(self) -> bool: ...
    @property
    def input_closed(self) -> bool: ...
    @property
    def now(self) -> float:
        """The clock at the last `tick` (seconds)."""
    @property
    def stage_names(self) -> list[str]: ...
    def metrics(self) -> dict[str, _typing.Any]:
        """Snapshot: {"stages": [per-stage dict], "now", "tasks_initial", "tasks_emitted",
        "tasks_failed", "tasks_queued", "tasks_in_flight", "actors_live", "calls_in_flight",
        "free_cpus", "free_gpus", "finished", "aborted"}. Per stage: "name", the counts
        (`STAGE_COUNT_FIELDS`, as `Ledger.stages()` has them) and the gauges "queued_tasks",
        "queued_bytes", "in_flight_batches", "in_flight_tasks", "actors_pending", "actors_ready",
        "actors_busy", "actors_idle", "slots_in_use", "mean_batch_s", "pool_target", "output_ratio",
        "backpressured", "finished". `nemo_curator.observability.RunMetrics.from_scheduler` types it."""
    def balance(self) -> dict[str, int | bool]:
        """Where every task is: "initial" + "produced" == "emitted" + "consumed" + "failed" + "queued"
        + "in_flight" ("balanced"); "complete" when also nothing is queued or in flight. "filtered"
        counts inputs of batches that succeeded with no output."""
    def roots(self, task_id: int) -> list[int]:
        """The initial inputs a task descends from (sorted). Known while the task lives (queued, in a
        batch not yet ended, or an output until the poll that emits it): the core forgets what has
        ended, so empty after that and for an unknown id."""
    def completed_roots(self) -> list[int]:
        """Initial inputs whose every descendant has ended (emitted, filtered or failed) since the last
        call, in completion order; each is reported once, after the poll that handed out the commands
        ending its last descendants (what a checkpoint records)."""
    def live_records(self) -> dict[str, int]:
        """Records the core holds: "batches", "calls", "open_roots", "groups"; bounded by the work
        queued and in flight, all 0 after a run that finished."""
    def take_warnings(self) -> list[str]:
        """Warnings to log (e.g. a fixed pool capped to what fits); each is returned once."""
    def heap_bytes(self) -> int:
        """Approximate bytes held by the scheduler's per-task and per-batch records."""

# --- codec.rs -----------------------------------------------------------------------------------
# The Ray Data executor's task codec: tasks <-> one Arrow block, one row per task (see codec.rs for
# the block's columns). Arrow payloads decode without a copy (slices of the block's buffer).
class CodecError(CuratorCoreError): ...

BLOCK_FORMATS: dict[str, int]
"""Values of the `_format` column: "arrow", "pandas", "pickle", "stored"."""

def encode_tasks(
    tasks: _typing.Iterable[object],
    *,
    ledger: bytes | None = None,
    failures: _typing.Sequence[_typing.Any] | None = None,
) -> pa.Table:
    """One block with a row per task; `ledger` and `failures` ride on its first row (a ledger-only row
    when there are no tasks; an empty block when there is nothing at all)."""

def encode_stored(tasks: _typing.Iterable[object], index: int) -> pa.Table:
    """A block pointing at `tasks`, which the caller stores as object `index` of its stored lists."""

def decode_block(
    block: object,
    *,
    stored: _typing.Callable[[int], _typing.Sequence[object]] | None = None,
    tasks: bool = True,
) -> tuple[list[_typing.Any], list[bytes], list[dict[str, _typing.Any]]]:
    """(tasks, ledgers, failure records) of a block; `stored(index)` serves stored rows."""

def count_tasks(block: object) -> int:
    """Task rows of a block (ledger rows only carry accounting)."""

def empty_block() -> pa.Table: ...

@_final
class BlockWriter:
    """Encodes tasks as they come into blocks of about `chunk_bytes` payload bytes; the last task is
    held back so the final block has a task row for the ledger and failure records."""

    def __new__(cls, chunk_bytes: int) -> BlockWriter: ...
    def add(self, tasks: _typing.Iterable[object]) -> None: ...
    def ready(self) -> pa.Table | None:
        """A block of the encoded tasks once they reach `chunk_bytes` of payload, else None."""
    def finish(
        self, ledger: bytes | None = None, failures: _typing.Sequence[_typing.Any] | None = None
    ) -> pa.Table: ...
    @property
    def pending_rows(self) -> int: ...
    @property
    def pending_bytes(self) -> int: ...

# --- ledger.rs ----------------------------------------------------------------------------------

#: The keys of one stage's counts (the core's `StageCounts`), in the scheduler's metrics and the ledger
#: alike: "tasks_in", "bytes_in", "items_in", "tasks_done", "tasks_out", "bytes_out", "items_out",
#: "tasks_failed", "tasks_filtered", "batches_done", "batches_failed", "retries", "calls",
#: "actors_created", "actors_died", "busy_s", "first_start", "last_end".
STAGE_COUNT_FIELDS: tuple[str, ...]

@_final
class Ledger:
    """Per-stage counts of a run (the core's `StageCounts`, as the scheduler's metrics have them) and
    the distinct worker processes of each stage; merges in any order to the same totals."""

    def __new__(cls, num_stages: int) -> Ledger: ...
    def record(
        self,
        stage: int,
        tasks_in: int,
        tasks_out: int,
        failed_tasks: int = 0,
        batches: int = 1,
        failed_batches: int = 0,
        *,
        filtered_tasks: int = 0,
        calls: int = 0,
        items_in: int = 0,
        items_out: int = 0,
        bytes_in: int = 0,
        bytes_out: int = 0,
        busy_s: float = 0.0,
        start: float | None = None,
        end: float | None = None,
        worker: int | None = None,
    ) -> None: ...
    def merge(self, other: Ledger | bytes) -> None: ...
    def merge_column(self, table: object, column: str) -> int: ...
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes) -> Ledger: ...
    @property
    def num_stages(self) -> int: ...
    def stages(self) -> list[dict[str, _typing.Any]]:
        """Per stage: the `STAGE_COUNT_FIELDS` (clocks in epoch seconds or None), "workers" (distinct
        worker processes) and, under their older names, "batches" (done + failed), "failed_tasks",
        "failed_batches", "filtered_tasks"."""
    def check(
        self,
        initial_tasks: int,
        final_tasks: int,
        failure_records: int,
        stage_names: list[str] | None = None,
    ) -> list[str]: ...
    def metrics(
        self,
        stage_names: list[str],
        initial_tasks: int,
        final_tasks: int,
        finished: bool,
        actor_stages: list[bool],
        epoch0: float,
    ) -> dict[str, _typing.Any]:
        """The run's metrics in the shape of `Scheduler.metrics()` (clocks in seconds since `epoch0`)."""
    def balance(
        self,
        initial_tasks: int,
        final_tasks: int,
        failure_records: int,
        finished: bool,
        stage_names: list[str] | None = None,
    ) -> dict[str, _typing.Any]:
        """The count balance with `Scheduler.balance()`'s keys, plus `problems`."""
    def __eq__(self, value: object, /) -> bool: ...

# --- planning.rs --------------------------------------------------------------------------------
def plan_ray_data(
    stages: list[dict[str, _typing.Any]],
    nodes: list[tuple[str, float, float, float, float]],
    task_sizes: list[int],
    *,
    pool_size: int | None = None,
    exact_batches: bool = False,
    fanout_tasks_per_block: int | None = None,
    max_tasks_per_block: int = 1024,
    target_block_bytes: int = 16777216,
) -> dict[str, _typing.Any]:
    """The Ray Data executor's plan. `stages`: dicts with `name`, `batch_size`, `cpus`, `gpus`,
    `actor`, `fanout`, `num_workers`, `min_workers`, `max_workers`, `initial_workers`, `alone`; `nodes`:
    `(id, cpus, gpus, free_cpus, free_gpus)`; `task_sizes`: bytes of each initial task. Returns
    `segments` (dicts: `stages`, `actor`, `cpus`, `gpus`, `pool` as `(min, max, initial)` or None,
    `batch_size`, `repartition`), `blocks` (`(start, end)`), `claims` (`(cpus, gpus)` per node),
    `fits`, `fused`, `warnings`. Raises `InfeasibleError` naming a stage no node can hold and
    `ConfigError` for invalid worker counts."""

def pack_rows(pack: tuple[int, int, int, int], packed: int, arriving: int) -> int:
    """Children in a fan-out call's next packed row: `pack` as a plan segment gives it, `packed` rows out
    before it, `arriving` children the call gave at once (many at once: cut evenly, four rows per CPU)."""

# --- watch.rs -----------------------------------------------------------------------------------
@_final
class RunBook:
    """Per run of a Ray job: its initial task lists (object refs) and what its workers report."""

    def __new__(cls) -> RunBook: ...
    def put(self, run_id: str, refs: list[_typing.Any]) -> None: ...
    def take(self, run_id: str, index: int) -> _typing.Any:
        """The ref of list `index`; `ConfigError` when it was released already."""
    def release(self, run_id: str, indices: list[int]) -> None: ...
    def drop_run(self, run_id: str) -> None: ...
    def held(self) -> dict[str, int]: ...
    def report(
        self, run_id: str, stage: int, worker: str, task_id: str | None, started: float, now: float
    ) -> None: ...
    def oldest(self, run_id: str, now: float, fresh: float) -> dict[int, tuple[str, float]]: ...
    def timed_out(self, run_id: str, stage: int, task_ids: list[str], limit: float, call: str) -> None: ...
    def begin(
        self, run_id: str, call: str
    ) -> tuple[int, dict[tuple[int, tuple[str, ...]], tuple[int, float]]]:
        """(earlier attempts of `call` whose worker died, the run's timed-out batches)."""

@_final
class StallClock:
    """Whether a run still makes progress (`curator_core::StallClock`)."""

    def __new__(cls, timeout: float, now: float) -> StallClock: ...
    def progress(self, state: list[int], now: float) -> None: ...
    def quiet(self, state: list[int], now: float) -> _typing.Literal["wait", "warn", "fail"]: ...
    def busy(self, now: float) -> None: ...
    def idle(self, now: float) -> float: ...

def starved(waiting: list[tuple[float, float]], free: list[tuple[float, float]]) -> bool:
    """True when none of the `waiting` (cpus, gpus) requests fits any node's `free` (cpus, gpus)."""

@_final
class Claims:
    """What the runs of this process reserved per node (`curator_core::Claims`)."""

    def __new__(cls) -> Claims: ...
    def add(self, token: str, per_node: dict[str, tuple[float, float]]) -> None: ...
    def remove(self, token: str) -> None: ...
    def __bool__(self) -> bool: ...
    def free(self, nodes: list[tuple[str, float, float, float, float]]) -> list[tuple[float, float]]: ...
