"""Task codec: round trips keep every field and the class (hypothesis), Arrow payloads decode without copies."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nemo_curator.backends.experimental.ray_data import codec
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


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(tasks(), max_size=6), st.binary(max_size=16) | st.none(), st.booleans())
def test_round_trip_keeps_every_field_and_class(
    batch: list[Task[Any]], ledger: bytes | None, fail: bool
) -> None:
    failures = [{"stage": "s", "task_ids": ["a"], "error_type": "ValueError"}] if fail else None
    block = codec.encode_tasks(batch, ledger=ledger, failures=failures)
    assert block.schema.equals(codec.BLOCK_SCHEMA)
    # Through pickling, as Ray moves blocks, and split into chunks, as Ray's repartition does.
    moved = pickle.loads(pickle.dumps(block, protocol=5))
    if moved.num_rows > 1:
        moved = pa.concat_tables([moved.slice(0, 1), moved.slice(1)])
    decoded = codec.decode_block(moved)
    assert len(decoded.tasks) == len(batch) == codec.count_tasks(moved)
    for got, want in zip(decoded.tasks, batch, strict=True):
        assert_same_task(got, want)
    expect_carrier = ledger is not None or fail
    assert decoded.ledgers == ([ledger] if ledger is not None else [])
    assert decoded.failures == (failures or [])
    assert block.num_rows == len(batch) + (1 if expect_carrier and not batch else 0)


def test_payload_formats() -> None:
    table = pa.table({"x": [1, 2]})
    frame = pd.DataFrame({"x": [1, 2]})
    objects = pd.DataFrame({"x": [[1], [2]]})
    batch = [
        DocumentBatch("a", "d", table),
        DocumentBatch("b", "d", frame),
        DocumentBatch("c", "d", objects),
        IntTask("i", "d", 3),
        _local_task_class()("l", "d", 4),
    ]
    block = codec.encode_tasks(batch)
    assert block.column("_format").to_pylist() == [
        codec.FMT_ARROW,
        codec.FMT_PANDAS,
        codec.FMT_PICKLE,
        codec.FMT_PICKLE,
        codec.FMT_PICKLE,
    ]
    assert block.column("_task_class").to_pylist()[0] == "nemo_curator.tasks.document:DocumentBatch"
    assert pa.types.is_dictionary(block.schema.field("_task_class").type)
    # Every payload starts on a 64-byte boundary of the column's data buffer.
    offsets = np.frombuffer(block.column("_payload").chunk(0).buffers()[1], dtype=np.int64)
    assert all(o % 64 == 0 for o in offsets)


def test_ledger_only_block_and_empty_block() -> None:
    only = codec.encode_tasks([], ledger=b"L")
    assert only.num_rows == 1 and codec.count_tasks(only) == 0
    assert codec.decode_block(only).ledgers == [b"L"]
    assert codec.encode_tasks([]).num_rows == 0
    assert codec.decode_block(codec.empty_block()).tasks == []


def test_stored_rows_point_into_given_lists() -> None:
    stored = [[IntTask("a", "d", 1), IntTask("b", "d", 2)]]
    block = codec.encode_stored(stored[0], 0)
    assert [t.task_id for t in codec.decode_block(block, stored=stored.__getitem__).tasks] == ["a", "b"]
    with pytest.raises(codec.CodecError, match="stored"):
        codec.decode_block(block)


def test_foreign_block_is_a_clear_error() -> None:
    with pytest.raises(codec.CodecError, match="not a task block"):
        codec.decode_block(pa.table({"item": [1]}))


# --- zero copy -----------------------------------------------------------------------------------------------


def _buffers(table: pa.Table) -> list[pa.Buffer]:
    out = []
    for column in table.columns:
        for chunk in column.chunks:
            stack = [chunk]
            while stack:
                array = stack.pop()
                out.extend(b for b in array.buffers() if b is not None and b.size)
                if pa.types.is_dictionary(array.type):
                    stack.append(array.dictionary)
    return out


def test_arrow_payloads_decode_without_copying() -> None:
    tables = [
        pa.table(
            {"text": [f"doc {i} " * 50 for i in range(200)], "n": np.arange(200), "f": [None, 1.5] * 100}
        )
        for _ in range(5)
    ]
    block = pickle.loads(
        pickle.dumps(codec.encode_tasks([DocumentBatch(f"t{i}", "d", t) for i, t in enumerate(tables)]))
    )
    values = block.column("_payload").chunk(0).buffers()[2]
    lo, hi = values.address, values.address + values.size
    before = pa.total_allocated_bytes()
    decoded = codec.decode_block(block)
    assert pa.total_allocated_bytes() - before < 4096  # nothing the size of the data was allocated
    for got, want in zip(decoded.tasks, tables, strict=True):
        assert got.data.equals(want)
        for buf in _buffers(got.data):
            assert lo <= buf.address and buf.address + buf.size <= hi, "payload buffer was copied"
            assert buf.address % 8 == 0
