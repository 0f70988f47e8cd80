"""Benchmark workloads, importable by this project and by NeMo Curator 1.1.0 alike.

Only NeMo Curator v1.1.0's public API is used here (``nemo_curator.tasks``, ``ProcessingStage``,
``Resources``), so the same module runs under either package: the comparison runner imports it in two
interpreters. Ray workers import the stages by module name (``workloads``), so this folder must be on their
``PYTHONPATH``; the runner and ``benches/conftest.py`` arrange that.

Each workload builds ``(stages, initial_tasks)`` for a size, and checks the executor's output exactly. Light
stages ask for half a CPU and pipelines have at most two stages: Xenna places at least one worker per stage
within ``floor(0.95 * CPUs)`` (1 CPU on a 2-core cluster), so that is what fits under every executor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nemo_curator.stages.base import ProcessingStage
from nemo_curator.stages.resources import Resources
from nemo_curator.tasks import DocumentBatch, Task

LIGHT = 0.5  # CPUs asked by the cheap stages
_MODULUS = 1_000_003  # of the CPU-burn recurrence


# ------------------------------------------------------------------------------------------------------------
# Tasks


@dataclass(repr=False)
class NumTask(Task[int]):
    """A task carrying one integer: one item."""

    data: int = 0

    @property
    def num_items(self) -> int:
        return 1

    def validate(self) -> bool:
        return True


def make_num_tasks(n: int, dataset_name: str = "bench") -> list[NumTask]:
    return [NumTask(task_id=f"t{i}", dataset_name=dataset_name, data=i) for i in range(n)]


# ------------------------------------------------------------------------------------------------------------
# Stages


class _Stage(ProcessingStage):
    """Sets name, batch size and resources per instance (``ProcessingStage`` has no ``__init__``)."""

    def __init__(self, name: str, batch_size: int = 1, cpus: float = LIGHT) -> None:
        self.name = name
        self.batch_size = batch_size
        self.resources = Resources(cpus=cpus)


class AddOne(_Stage):
    """``data += 1`` in place: the cheapest possible stage, so an executor's own cost is all that is left."""

    def process(self, task: NumTask) -> NumTask:
        task.data += 1
        return task


class Explode(_Stage):
    """Fan-out: each input ``k`` becomes ``fanout`` children ``k * fanout + j``."""

    def __init__(self, fanout: int, name: str = "explode", cpus: float = LIGHT) -> None:
        super().__init__(name, 1, cpus)
        self.fanout = fanout

    def process(self, task: NumTask) -> list[NumTask]:
        base = task.data * self.fanout
        return [
            NumTask(task_id=f"{task.task_id}_{j}", dataset_name=task.dataset_name, data=base + j)
            for j in range(self.fanout)
        ]

    def ray_stage_spec(self) -> dict[str, Any]:
        return {"is_fanout_stage": True}


def burn(value: int, iterations: int) -> int:
    """``iterations`` steps of ``acc = (31 * acc + i) mod p`` from ``acc = value``: pure-Python CPU work."""
    acc = value
    for i in range(iterations):
        acc = (acc * 31 + i) % _MODULUS
    return acc


class BurnCpu(_Stage):
    """Replace ``data`` by ``burn(data, iterations)``: a CPU-bound stage holding one whole core."""

    def __init__(self, iterations: int, name: str = "burn_cpu") -> None:
        super().__init__(name, 1, 1.0)
        self.iterations = iterations

    def process(self, task: NumTask) -> NumTask:
        task.data = burn(task.data, self.iterations)
        return task


class SlowSetup(_Stage):
    """``setup()`` costs ``setup_s`` seconds (a model load); ``process`` adds 1 and fails without setup."""

    def __init__(self, name: str, setup_s: float) -> None:
        super().__init__(name, 1, LIGHT)
        self.setup_s = setup_s
        self._ready = False

    def setup(self, worker_metadata: Any = None) -> None:
        time.sleep(self.setup_s)
        self._ready = True

    def process(self, task: NumTask) -> NumTask:
        if not self._ready:
            msg = f"{self.name}: process() before setup()"
            raise RuntimeError(msg)
        task.data += 1
        return task


ROWS_PER_DOC = 8192  # x ~130 bytes of text per row: ~1.1 MB per DocumentBatch
MIN_LENGTH = 64  # FilterShort keeps rows at least this long: about 78% of them


def _doc_lengths(index: int) -> tuple[np.random.Generator, np.ndarray]:
    rng = np.random.default_rng(index)
    return rng, rng.integers(16, 241, size=ROWS_PER_DOC)


class MakeDocs(_Stage):
    """Read a document batch: ``NumTask(k)`` becomes a ~1 MB ``DocumentBatch`` with columns ``id``, ``text``."""

    def process(self, task: NumTask) -> DocumentBatch:
        rng, lengths = _doc_lengths(task.data)
        chars = rng.integers(97, 123, size=int(lengths.sum()), dtype=np.uint8)
        offsets = np.zeros(ROWS_PER_DOC + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        text = pa.StringArray.from_buffers(ROWS_PER_DOC, pa.py_buffer(offsets), pa.py_buffer(chars))
        ids = pa.array(np.arange(ROWS_PER_DOC, dtype=np.int64) + task.data * ROWS_PER_DOC)
        table = pa.table({"id": ids, "text": text})
        return DocumentBatch(task_id=f"doc{task.data}", dataset_name=task.dataset_name, data=table)


class LengthFilterWrite(_Stage):
    """Compute each row's text length, keep rows with ``length >= MIN_LENGTH`` and write them out, returning
    only a one-row summary (rows kept, sum of lengths, sum of ids), the way a writer returns what it wrote."""

    def process(self, task: DocumentBatch) -> DocumentBatch:
        table = task.to_pyarrow()
        table = table.append_column("length", pc.utf8_length(table.column("text")))
        kept = table.filter(pc.greater_equal(table.column("length"), MIN_LENGTH))
        summary = pa.table(
            {
                "doc": [task.task_id],
                "rows": [kept.num_rows],
                "length_sum": [pc.sum(kept.column("length")).as_py() or 0],
                "id_sum": [pc.sum(kept.column("id")).as_py() or 0],
                "text_bytes": [kept.column("text").nbytes],
            }
        )
        return DocumentBatch(task_id=task.task_id, dataset_name=task.dataset_name, data=summary)


# ------------------------------------------------------------------------------------------------------------
# Workloads


Check = tuple[bool, str]


@dataclass(frozen=True)
class Workload:
    """A pipeline at a size ``n``: ``build(n)`` gives (stages, initial tasks), ``check(n, out)`` judges the
    output, ``items(n)`` is what items/s counts."""

    name: str
    description: str
    build: Callable[[int], tuple[list[ProcessingStage], list[Task]]]
    check: Callable[[int, Sequence[Task]], Check]
    items: Callable[[int], int]
    # Sizes by tier: "full" and "quick" (compare/run.py), "bench" (pytest). "<tier>:curator" and
    # "<tier>:curator:<executor>" override a tier for NeMo Curator's executors, where they would take minutes.
    sizes: dict[str, int]
    unit: str = "tasks"

    def size(self, tier: str, side: str = "ours", executor: str = "") -> int:
        if side == "curator":
            for key in (f"{tier}:curator:{executor}", f"{tier}:curator"):
                if key in self.sizes:
                    return self.sizes[key]
        return self.sizes[tier]


def _check_values(values: list[int], expected: range) -> Check:
    if len(values) != len(expected):
        return False, f"{len(values)} outputs, expected {len(expected)}"
    if min(values) != expected.start or max(values) != expected.stop - 1:
        return (
            False,
            f"values span {min(values)}..{max(values)}, expected {expected.start}..{expected.stop - 1}",
        )
    seen = bytearray(len(expected))
    for value in values:
        seen[value - expected.start] = 1
    if not all(seen):
        return False, "duplicate or missing values"
    return True, "ok"


def _num_values(out: Sequence[Task]) -> list[int]:
    return [task.data for task in out]


def _tiny(batch_size: int) -> Callable[[int], tuple[list[ProcessingStage], list[Task]]]:
    def build(n: int) -> tuple[list[ProcessingStage], list[Task]]:
        return [AddOne("add_one_a", batch_size), AddOne("add_one_b", batch_size)], make_num_tasks(n)

    return build


def _check_plus(k: int) -> Callable[[int, Sequence[Task]], Check]:
    def check(n: int, out: Sequence[Task]) -> Check:
        return _check_values(_num_values(out), range(k, n + k))

    return check


CPU_ITERATIONS = 300_000  # 25-50 ms of one core per task


def _build_cpu(n: int) -> tuple[list[ProcessingStage], list[Task]]:
    return [BurnCpu(CPU_ITERATIONS)], make_num_tasks(n)


def _check_cpu(n: int, out: Sequence[Task]) -> Check:
    # The recurrence is affine in the start value: burn(v) = 31^iters * v + burn(0) (mod p).
    scale, offset = pow(31, CPU_ITERATIONS, _MODULUS), burn(0, CPU_ITERATIONS)
    want = sorted((scale * v + offset) % _MODULUS for v in range(n))
    got = sorted(_num_values(out))
    return (got == want, "ok" if got == want else f"{len(got)} outputs, checksums differ")


FANOUT = 100


def _build_fan_out(n: int) -> tuple[list[ProcessingStage], list[Task]]:
    # n is the number of outputs; it is rounded up to whole parents.
    parents = -(-n // FANOUT)
    return [Explode(FANOUT), AddOne("add_one")], make_num_tasks(parents)


def _fan_out_items(n: int) -> int:
    return -(-n // FANOUT) * FANOUT


def _check_fan_out(n: int, out: Sequence[Task]) -> Check:
    return _check_values(_num_values(out), range(1, _fan_out_items(n) + 1))


SCALE_FANOUT = 1000
SCALE_BATCH = 64


def _build_scale(n: int) -> tuple[list[ProcessingStage], list[Task]]:
    parents = -(-n // SCALE_FANOUT)
    return [Explode(SCALE_FANOUT), AddOne("add_one", SCALE_BATCH)], make_num_tasks(parents)


def _scale_items(n: int) -> int:
    return -(-n // SCALE_FANOUT) * SCALE_FANOUT


def _check_scale(n: int, out: Sequence[Task]) -> Check:
    return _check_values(_num_values(out), range(1, _scale_items(n) + 1))


def _build_wide(n: int) -> tuple[list[ProcessingStage], list[Task]]:
    # One parent with n children: how an executor blocks a huge fan-out.
    return [Explode(n), AddOne("add_one")], make_num_tasks(1)


def _check_wide(n: int, out: Sequence[Task]) -> Check:
    return _check_values(_num_values(out), range(1, n + 1))


SETUP_S = 1.0


def _build_setup(n: int) -> tuple[list[ProcessingStage], list[Task]]:
    stages: list[ProcessingStage] = [SlowSetup(f"model_{c}", SETUP_S) for c in "ab"]
    return stages, make_num_tasks(n)


def _build_arrow(n: int) -> tuple[list[ProcessingStage], list[Task]]:
    return [MakeDocs("read_docs"), LengthFilterWrite("length_filter_write")], make_num_tasks(n)


def expected_doc_summary(index: int) -> tuple[int, int, int]:
    """(rows kept, sum of their lengths, sum of their ids) of document batch ``index``."""
    _, lengths = _doc_lengths(index)
    mask = lengths >= MIN_LENGTH
    ids = np.arange(ROWS_PER_DOC, dtype=np.int64) + index * ROWS_PER_DOC
    return int(mask.sum()), int(lengths[mask].sum()), int(ids[mask].sum())


def _check_arrow(n: int, out: Sequence[Task]) -> Check:
    if len(out) != n:
        return False, f"{len(out)} outputs, expected {n}"
    got: dict[str, tuple[int, int, int]] = {}
    for task in out:
        row = task.to_pyarrow().to_pylist()[0]  # type: ignore[attr-defined]
        got[row["doc"]] = (row["rows"], row["length_sum"], row["id_sum"])
    for index in range(n):
        if got.get(f"doc{index}") != expected_doc_summary(index):
            return False, f"doc{index}: got {got.get(f'doc{index}')}, expected {expected_doc_summary(index)}"
    return True, "ok"


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        Workload(
            "tiny_b1",
            "2 trivial stages, batch_size 1: scheduling overhead per task",
            _tiny(1),
            _check_plus(2),
            lambda n: n,
            {"full": 500, "quick": 200, "bench": 1_000},
        ),
        Workload(
            "tiny_b64",
            "2 trivial stages, batch_size 64: scheduling overhead per batch",
            _tiny(64),
            _check_plus(2),
            lambda n: n,
            {"full": 3_200, "quick": 2_000, "bench": 10_000},
        ),
        Workload(
            "arrow_1mb",
            "read ~1.1 MB DocumentBatches, then add a column, filter and write them: data movement",
            _build_arrow,
            _check_arrow,
            lambda n: n,
            {"full": 64, "quick": 16, "bench": 32},
            unit="batches",
        ),
        Workload(
            "cpu_bound",
            "one pure-Python CPU stage (1 CPU per task): parallel efficiency",
            _build_cpu,
            _check_cpu,
            lambda n: n,
            {"full": 400, "quick": 40, "bench": 60},
        ),
        Workload(
            "fan_out",
            f"each task fans out to {FANOUT}, then a trivial stage",
            _build_fan_out,
            _check_fan_out,
            _fan_out_items,
            {"full": 1_000, "quick": 500, "bench": 5_000},
        ),
        Workload(
            "fanout_200k",
            "one task fans out to n children, then a trivial stage (batch_size 1): blocks of a huge fan-out",
            _build_wide,
            _check_wide,
            lambda n: n,
            {"full": 200_000, "quick": 20_000, "bench": 50_000},
        ),
        Workload(
            "setup_heavy",
            f"2 stages whose setup() takes {SETUP_S:g} s: actor reuse",
            _build_setup,
            _check_plus(2),
            lambda n: n,
            {"full": 64, "quick": 20, "bench": 50},
        ),
        Workload(
            "scale_1m",
            f"fan-out x{SCALE_FANOUT} to tiny tasks, then a trivial stage (batch_size {SCALE_BATCH}): "
            "time and driver memory at scale",
            _build_scale,
            _check_scale,
            _scale_items,
            {
                "full": 1_000_000,
                "quick": 100_000,
                "bench": 100_000,
                "full:curator": 20_000,
                "full:curator:ray_data": 2_000,
                "quick:curator": 10_000,
            },
        ),
    ]
}
