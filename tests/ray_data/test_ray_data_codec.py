"""Task codec (`nemo_curator._core`): round trips keep every field and the class (hypothesis), every row
format, ledger and failure rows, sliced blocks, the chunking writer, and Arrow payloads decode without copies."""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nemo_curator import _core
from nemo_curator.tasks import DocumentBatch, EmptyTask, FileGroupTask, Task
from nemo_curator.testing.stages import IntTask
from nemo_curator.utils.performance_utils import StagePerfStats


@dataclass(repr=False)
class RichTask(Task[pa.Table]):
    """A user task type with an extra field and an Arrow payload."""

    data: pa.Table = field(default_factory=pa.table)
    tags: list[str] = field(default_factory=list)

    @property
    def num_items(self) -> int:
        return self.data.num_rows

    def validate(self) -> bool:
        return True


def _local_task_class() -> type:
    @dataclass(repr=False)
    class LocalTask(Task[int]):
        @property
        def num_items(self) -> int:
            return 1

        def validate(self) -> bool:
            return True

    return LocalTask


# --- strategies ----------------------------------------------------------------------------------------------

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)

_COLUMN_TYPES: dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]] = {
    "i64": (pa.int64(), st.integers(-(2**62), 2**62)),
    "f64": (pa.float64(), st.floats(allow_nan=False)),
    "s": (pa.string(), _text),
    "ls": (pa.large_string(), _text),
    "b": (pa.bool_(), st.booleans()),
    "bin": (pa.binary(), st.binary(max_size=10)),
    "li": (pa.list_(pa.int32()), st.lists(st.integers(-100, 100), max_size=4)),
    "st": (
        pa.struct([("a", pa.int16()), ("b", pa.string())]),
        st.fixed_dictionaries({"a": st.integers(0, 9), "b": _text}),
    ),
    "ts": (pa.timestamp("us", tz="UTC"), st.integers(0, 2**40)),
}


@st.composite
def arrow_tables(draw: st.DrawFn) -> pa.Table:
    names = draw(st.lists(st.sampled_from(sorted(_COLUMN_TYPES)), min_size=1, max_size=4, unique=True))
    rows = draw(st.integers(0, 12))
    columns = {}
    for name in names:
        dtype, values = _COLUMN_TYPES[name]
        cells = draw(st.lists(st.none() | values, min_size=rows, max_size=rows))
        columns[name] = pa.array(cells, type=dtype)
    table = pa.table(columns)
    if draw(st.booleans()):
        table = table.replace_schema_metadata({b"origin": draw(st.binary(max_size=8))})
    if rows > 1 and draw(st.booleans()):
        cut = draw(st.integers(1, rows - 1))
        table = pa.concat_tables([table.slice(0, cut), table.slice(cut)])  # two chunks
    if "s" in names and draw(st.booleans()):
        table = table.set_column(table.column_names.index("s"), "s", table.column("s").dictionary_encode())
    return table


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    rows = draw(st.integers(1, 6))
    frame = pd.DataFrame(
        {
            "n": draw(st.lists(st.integers(-1000, 1000), min_size=rows, max_size=rows)),
            "x": draw(st.lists(st.floats(allow_nan=False, width=32), min_size=rows, max_size=rows)),
            "t": pd.array(draw(st.lists(_text, min_size=rows, max_size=rows)), dtype="str"),
        }
    )
    kind = draw(st.sampled_from(["range", "ints", "named", "objects", "int_names"]))
    if kind == "ints":
        frame.index = pd.Index(draw(st.lists(st.integers(0, 99), min_size=rows, max_size=rows)))
    elif kind == "named":
        frame.index = pd.Index([f"r{i}" for i in range(rows)], name="key")
    elif kind == "objects":  # Python objects: not representable in Arrow, pickled instead
        frame["o"] = pd.Series([[i] for i in range(rows)], dtype=object)
    elif kind == "int_names":  # non-string column names: pickled instead
        frame.columns = [0, 1, 2]
    return frame


@st.composite
def tasks(draw: st.DrawFn) -> Task[Any]:
    kind = draw(st.sampled_from(["arrow", "pandas", "files", "int", "empty", "rich", "local"]))
    task_id = draw(_text)
    dataset = draw(_text)
    task: Task[Any]
    if kind == "arrow":
        task = DocumentBatch(task_id=task_id, dataset_name=dataset, data=draw(arrow_tables()))
    elif kind == "pandas":
        task = DocumentBatch(task_id=task_id, dataset_name=dataset, data=draw(frames()))
    elif kind == "files":
        paths = draw(st.lists(_text, min_size=1, max_size=3))
        task = FileGroupTask(
            task_id, dataset, paths, reader_config=draw(st.dictionaries(_text, _json, max_size=3))
        )
    elif kind == "int":
        task = IntTask(task_id=task_id, dataset_name=dataset, data=draw(st.integers(-(2**60), 2**60)))
    elif kind == "empty":
        task = EmptyTask()
    elif kind == "rich":
        task = RichTask(task_id, dataset, draw(arrow_tables()), tags=draw(st.lists(_text, max_size=3)))
    else:
        task = _local_task_class()(task_id=task_id, dataset_name=dataset, data=draw(st.integers()))
    task._metadata = draw(st.dictionaries(_text, _json, max_size=4))
    for _ in range(draw(st.integers(0, 2))):
        task.add_stage_perf(
            StagePerfStats(draw(_text), process_time=draw(st.floats(0, 10)), custom_metrics={"m": 1.5})
        )
    return task


# --- comparison ----------------------------------------------------------------------------------------------


def _same_data(a: Any, b: Any) -> None:
    if isinstance(a, pa.Table):
        assert isinstance(b, pa.Table)
        assert b.schema.equals(a.schema, check_metadata=True)
        assert b.equals(a)
    elif isinstance(a, pd.DataFrame):
        assert isinstance(b, pd.DataFrame)
        pd.testing.assert_frame_equal(b, a, check_exact=True)
        assert list(b.columns) == list(a.columns)
    else:
        assert b == a


def assert_same_task(got: Task[Any], want: Task[Any]) -> None:
    assert type(got).__qualname__ == type(want).__qualname__
    if "<locals>" not in type(want).__qualname__:
        assert type(got) is type(want)
    want_attrs = {k: v for k, v in vars(want).items() if k != "data"}
    got_attrs = {k: v for k, v in vars(got).items() if k != "data"}
    assert got_attrs == want_attrs  # task_id, dataset_name, _uuid, _metadata, _stage_perf, extra fields
    _same_data(want.data, got.data)


# --- round trips ---------------------------------------------------------------------------------------------

FMT = _core.BLOCK_FORMATS


def _decode(block: pa.Table, **kwargs: Any) -> tuple[list[Task[Any]], list[bytes], list[dict[str, Any]]]:
    tasks, ledgers, failures = _core.decode_block(block, **kwargs)
    return tasks, ledgers, failures


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(st.lists(tasks(), max_size=6), st.binary(max_size=16) | st.none(), st.booleans())
def test_round_trip_keeps_every_field_and_class(
    batch: list[Task[Any]], ledger: bytes | None, fail: bool
) -> None:
    failures = [{"stage": "s", "task_ids": ["a"], "error_type": "ValueError"}] if fail else None
    block = _core.encode_tasks(batch, ledger=ledger, failures=failures)
    assert block.schema.equals(_core.empty_block().schema)
    # Through pickling, as Ray moves blocks, and split into chunks, as Ray's repartition does.
    moved = pickle.loads(pickle.dumps(block, protocol=5))
    if moved.num_rows > 1:
        moved = pa.concat_tables([moved.slice(0, 1), moved.slice(1)])
    got, ledgers, got_failures = _decode(moved)
    assert len(got) == len(batch) == _core.count_tasks(moved)
    for g, want in zip(got, batch, strict=True):
        assert_same_task(g, want)
    expect_carrier = ledger is not None or fail
    assert ledgers == ([ledger] if ledger is not None else [])
    assert got_failures == (failures or [])
    assert block.num_rows == len(batch) + (1 if expect_carrier and not batch else 0)


@dataclass(repr=False)
class SlottedTask(Task[Any]):
    """Slots: no `__dict__` to rebuild from, so the codec pickles it whole."""

    __slots__ = ("extra",)

    def __init__(self, task_id: str, dataset_name: str, data: Any, extra: int = 0) -> None:
        super().__init__(task_id, dataset_name, data)
        self.extra = extra

    @property
    def num_items(self) -> int:
        return 1

    def validate(self) -> bool:
        return True


def _payload_values(block: pa.Table) -> tuple[np.ndarray, pa.Buffer]:
    payload = block.column("_payload").chunk(0)
    offsets = np.frombuffer(payload.buffers()[1], dtype=np.int64)[
        payload.offset : payload.offset + len(payload) + 1
    ]
    return offsets, payload.buffers()[2]


def test_payload_formats_and_alignment() -> None:
    table = pa.table({"x": [1, 2]})
    frame = pd.DataFrame({"x": [1, 2]})
    objects = pd.DataFrame({"x": [[1], [2]]})
    slotted = SlottedTask("s", "d", table, extra=7)
    batch = [
        IntTask("i", "d", 3),  # a pickle before an Arrow payload: padded so the stream is aligned
        DocumentBatch("a", "d", table),
        DocumentBatch("b", "d", frame),
        DocumentBatch("c", "d", objects),
        _local_task_class()("l", "d", 4),
        slotted,
        DocumentBatch("a2", "d", table),
    ]
    block = _core.encode_tasks(batch)
    assert block.column("_format").to_pylist() == [
        FMT["pickle"],
        FMT["arrow"],
        FMT["pandas"],
        FMT["pickle"],
        FMT["pickle"],
        FMT["pickle"],
        FMT["arrow"],
    ]
    assert block.column("_task_class").to_pylist()[1] == "nemo_curator.tasks.document:DocumentBatch"
    assert block.column("_task_id").to_pylist() == [t.task_id for t in batch]
    assert pa.types.is_dictionary(block.schema.field("_task_class").type)
    # Every payload starts on a 64-byte boundary of the column's data buffer (also after slicing and
    # concatenating blocks into new buffers, as Ray Data does).
    offsets, values = _payload_values(block)
    assert all(int(o) % 64 == 0 for o in offsets) and len(offsets) == len(batch) + 1
    assert values.address % 64 == 0
    combined = pa.concat_tables([block.slice(2, 2), block.slice(0, 2)]).combine_chunks()
    offsets, values = _payload_values(combined)
    assert all(int(o) % 64 == 0 for o in offsets)
    assert [t.task_id for t in _decode(combined)[0]] == ["b", "c", "i", "a"]
    got, _, _ = _decode(block)
    for g, want in zip(got, batch, strict=True):
        assert type(g) is type(want) or type(want).__qualname__ == type(g).__qualname__
        assert g.task_id == want.task_id
    assert isinstance(got[5], SlottedTask) and got[5].extra == 7 and got[5].data.equals(table)


def test_ledger_only_block_and_empty_block() -> None:
    only = _core.encode_tasks([], ledger=b"L")
    assert only.num_rows == 1 and _core.count_tasks(only) == 0
    assert _decode(only) == ([], [b"L"], [])
    failures_only = _core.encode_tasks([], failures=[{"stage": "x"}])
    assert _decode(failures_only) == ([], [], [{"stage": "x"}])
    assert _core.encode_tasks([]).num_rows == 0
    empty = _core.empty_block()
    assert empty.num_rows == 0 and _decode(empty) == ([], [], [])
    assert _core.count_tasks(empty) == 0


def test_tasks_false_reads_only_accounting() -> None:
    block = _core.encode_tasks([IntTask("a", "d", 1)], ledger=b"L", failures=[{"stage": "s"}])
    assert _decode(block, tasks=False) == ([], [b"L"], [{"stage": "s"}])


def test_stored_rows_point_into_given_lists() -> None:
    stored: list[list[Task[Any]]] = [[IntTask("x", "d", 0)], [IntTask("a", "d", 1), IntTask("b", "d", 2)]]
    calls: list[int] = []

    def lookup(index: int) -> list[Task[Any]]:
        calls.append(index)
        return stored[index]

    block = _core.encode_stored(stored[1], 1)
    assert block.column("_format").to_pylist() == [FMT["stored"]] * 2
    assert block.column("_task_id").to_pylist() == ["a", "b"]
    _, values = _payload_values(block)
    # (list, position) per row, each value padded to 64 bytes
    assert [struct.unpack_from("<II", values, 64 * row) for row in range(2)] == [(1, 0), (1, 1)]
    got, _, _ = _decode(block, stored=lookup)
    assert got == stored[1] and got[0] is stored[1][0]
    assert calls == [1], "each stored list is looked up once per block"
    with pytest.raises(_core.CodecError, match="stored"):
        _decode(block)


def test_sliced_blocks_decode_their_rows_only() -> None:
    tables = [pa.table({"n": list(range(i + 1))}) for i in range(6)]
    batch: list[Task[Any]] = [DocumentBatch(f"t{i}", "d", t) for i, t in enumerate(tables)]
    batch[2] = IntTask("t2", "d", 2)
    block = pickle.loads(pickle.dumps(_core.encode_tasks(batch, ledger=b"L"), protocol=5))
    for start, length in [(0, 1), (1, 3), (3, 3), (5, 1), (2, 0)]:
        piece = block.slice(start, length)
        got, ledgers, _ = _decode(piece)
        assert [t.task_id for t in got] == [t.task_id for t in batch[start : start + length]]
        assert ledgers == ([b"L"] if start == 0 and length else [])
        assert _core.count_tasks(piece) == length
        for g, want in zip(got, batch[start : start + length], strict=True):
            assert_same_task(g, want)


def test_foreign_block_and_bad_tasks_are_clear_errors() -> None:
    with pytest.raises(_core.CodecError, match="not a task block: column '_kind' is missing"):
        _decode(pa.table({"item": [1]}))
    wrong = _core.empty_block().set_column(0, pa.field("_kind", pa.int32()), pa.array([], pa.int32()))
    for call in (_core.decode_block, _core.count_tasks):
        with pytest.raises(_core.CodecError, match="column '_kind' has type Int32 instead of Int8"):
            call(wrong)
    with pytest.raises(ValueError, match="expected an Arrow table"):
        _core.decode_block([1, 2])
    with pytest.raises(_core.CodecError, match="task_id must be a str or None, got int"):
        _core.encode_tasks([IntTask(5, "d", 1)])  # type: ignore[arg-type]
    assert issubclass(_core.CodecError, _core.CuratorCoreError)


def test_unknown_task_class_is_a_clear_error() -> None:
    block = _core.encode_tasks([DocumentBatch("a", "d", pa.table({"x": [1]}))])
    names = (
        pa.array(["no_such_module_xyz:Task"]).dictionary_encode().cast(block.schema.field("_task_class").type)
    )
    renamed = block.set_column(3, block.schema.field("_task_class"), names)
    with pytest.raises(_core.CodecError, match="no_such_module_xyz:Task cannot be imported here"):
        _decode(renamed)


# --- the chunking writer -------------------------------------------------------------------------------------


def test_block_writer_chunks_by_bytes_and_keeps_the_last_task_for_the_ledger() -> None:
    table = pa.table({"text": ["x" * 100] * 100})  # ~10 KB of IPC each
    batch = [DocumentBatch(f"t{i}", "d", table) for i in range(10)]
    writer = _core.BlockWriter(25_000)
    blocks = []
    for task in batch:
        writer.add([task])
        assert writer.pending_bytes < 25_000 + 20_000  # at most one payload past the bound
        chunk = writer.ready()
        if chunk is not None:
            assert writer.pending_rows == 0
            blocks.append(chunk)
    assert len(blocks) >= 2
    assert all(2 <= b.num_rows <= 3 for b in blocks)
    last = writer.finish(b"L", [{"stage": "s"}])
    assert last.num_rows >= 1 and _core.count_tasks(last) == last.num_rows  # no extra ledger row
    got = [t for b in [*blocks, last] for t in _decode(b)[0]]
    assert [t.task_id for t in got] == [t.task_id for t in batch]
    assert _decode(last)[1:] == ([b"L"], [{"stage": "s"}])
    assert all(_decode(b)[1] == [] for b in blocks)
    # A writer that got nothing still carries the accounting, on a ledger row.
    empty = _core.BlockWriter(1).finish(b"L")
    assert empty.num_rows == 1 and _core.count_tasks(empty) == 0
    with pytest.raises(ValueError, match="chunk_bytes must be at least 1"):
        _core.BlockWriter(0)


def test_block_writer_hands_over_nothing_before_a_newer_task_arrives() -> None:
    writer = _core.BlockWriter(1)
    writer.add([IntTask("a", "d", 1)])
    assert writer.ready() is None and writer.pending_rows == 0  # "a" is held back
    writer.add([IntTask("b", "d", 2), IntTask("c", "d", 3)])
    chunk = writer.ready()
    assert chunk is not None and [t.task_id for t in _decode(chunk)[0]] == ["a", "b"]
    assert [t.task_id for t in _decode(writer.finish())[0]] == ["c"]


# --- zero copy -----------------------------------------------------------------------------------------------


def _buffers(table: pa.Table) -> list[pa.Buffer]:
    out: list[pa.Buffer] = []
    for column in table.columns:
        for chunk in column.chunks:
            stack = [chunk]
            while stack:
                array = stack.pop()
                out.extend(b for b in array.buffers() if b is not None and b.size)
                if pa.types.is_dictionary(array.type):
                    stack.append(array.dictionary)
    return out


def _tables() -> list[pa.Table]:
    return [
        pa.table(
            {
                "text": [f"doc {i} " * 50 for i in range(200)],
                "n": np.arange(200),
                "f": [None, 1.5] * 100,
                "d": pa.array(["a", "b"] * 100).dictionary_encode(),
                "l": [[i, None] for i in range(200)],
            }
        )
        for _ in range(5)
    ]


@pytest.mark.parametrize("layout", ["whole", "sliced", "recombined"])
def test_arrow_payloads_decode_without_copying(layout: str) -> None:
    tables = _tables()
    tasks_in: list[Task[Any]] = [DocumentBatch(f"t{i}", "d", t) for i, t in enumerate(tables)]
    tasks_in.insert(2, IntTask("odd", "d", 12345))  # a pickled row of odd length between tables
    block = pickle.loads(pickle.dumps(_core.encode_tasks(tasks_in)))
    if layout == "sliced":  # Ray Data hands slices of blocks
        block, tables = block.slice(1, 4), tables[1:4]
    elif layout == "recombined":  # slices of blocks copied into new buffers
        block = pa.concat_tables([block.slice(3, 3), block.slice(0, 3)]).combine_chunks()
        tables = tables[2:] + tables[:2]
    assert block.column("_payload").num_chunks == 1
    values = block.column("_payload").chunk(0).buffers()[2]
    lo, hi = values.address, values.address + values.size
    before = pa.total_allocated_bytes()
    decoded, _, _ = _decode(block)
    assert pa.total_allocated_bytes() - before < 4096  # nothing the size of the data was allocated
    decoded = [t for t in decoded if isinstance(t, DocumentBatch)]
    assert len(decoded) == len(tables)
    for got, want in zip(decoded, tables, strict=True):
        assert got.data.equals(want)
        buffers = _buffers(got.data)
        assert len(buffers) >= 8
        for buf in buffers:
            assert lo <= buf.address and buf.address + buf.size <= hi, "payload buffer was copied"
            assert buf.address % 8 == 0
