"""Task codec: a batch of tasks <-> one Arrow block, one row per task.

A block holds many tasks, so Ray Data moves few objects, sees true byte sizes (its backpressure
works), and counts rows as tasks (``batch_size`` means tasks). Columns:

- ``_kind`` (int8): ``ROW_TASK``, or ``ROW_LEDGER`` for a row that only carries accounting;
- ``_task_id``, ``_dataset_name`` (string), ``_task_class`` ("module:qualname", dictionary-encoded);
- ``_format`` (int8): how ``_payload`` holds the task:
  ``FMT_ARROW``: ``data`` is a ``pyarrow.Table``, written as an Arrow IPC stream; reading maps it
  back without copying (its buffers are slices of the block's ``_payload`` buffer);
  ``FMT_PANDAS``: ``data`` is a ``pandas.DataFrame``, converted once to Arrow (pandas metadata keeps
  index and dtypes) and back to pandas when read;
  ``FMT_PICKLE``: any other task, pickled whole;
  ``FMT_STORED``: the task is element ``position`` of the list stored as object ``index`` of a
  list of object refs the reader is given (``<II`` little-endian in ``_payload``): how the initial
  tasks enter, so the driver copies them once (into the object store) instead of twice;
- ``_fields`` (large_binary): for Arrow/pandas rows, the task's other attributes pickled
  (``_metadata``, ``_stage_perf``, ``_uuid`` and subclass fields such as ``reader_config``);
- ``_payload`` (large_binary): IPC stream or pickle. Each value starts at a 64-byte boundary of
  the column's data buffer (values carry trailing zero padding, which both readers ignore);
- ``_ledger`` / ``_failures`` (binary, null but on one row per worker call): the encoded
  ``nemo_curator._core.Ledger`` of what that call and the calls upstream of it did, and the pickled
  failure records of batches skipped under ``ignore_failures``.

Decoding rebuilds each task as an instance of its own class without running ``__init__`` (no
validation warnings, no new ``_uuid``): every attribute comes back as it was.
"""

from __future__ import annotations

import importlib
import pickle
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from nemo_curator.tasks import Task

ROW_TASK = 0
ROW_LEDGER = 1

FMT_ARROW = 0
FMT_PANDAS = 1
FMT_PICKLE = 2
FMT_STORED = 3
_STORED = struct.Struct("<II")

_ALIGN = 64
_PAD = bytes(_ALIGN)
# Attributes stored in their own columns (or as the payload) rather than in `_fields`.
_COLUMN_ATTRS = frozenset({"task_id", "dataset_name", "data"})

BLOCK_SCHEMA = pa.schema(
    [
        pa.field("_kind", pa.int8(), nullable=False),
        pa.field("_task_id", pa.string()),
        pa.field("_dataset_name", pa.string()),
        pa.field("_task_class", pa.dictionary(pa.int32(), pa.string())),
        pa.field("_format", pa.int8()),
        pa.field("_fields", pa.large_binary()),
        pa.field("_payload", pa.large_binary()),
        pa.field("_ledger", pa.binary()),
        pa.field("_failures", pa.binary()),
    ]
)
COLUMNS = tuple(BLOCK_SCHEMA.names)


class CodecError(RuntimeError):
    """A block that this codec did not write, or a task class that cannot be found."""


# ------------------------------------------------------------------------------------------------------------
# Classes by name


def class_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


_CLASS_CACHE: dict[str, type] = {}
_BY_NAME_CACHE: dict[type, bool] = {}


def _resolve(name: str) -> type[Any]:
    cls = _CLASS_CACHE.get(name)
    if cls is None:
        module_name, _, qualname = name.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise CodecError(f"task class {name} cannot be imported here: {exc}") from exc
        cls = obj
        _CLASS_CACHE[name] = cls
    return cls


def _by_name(cls: type) -> bool:
    """Whether instances of `cls` can be rebuilt from their attributes and the class's name."""
    ok = _BY_NAME_CACHE.get(cls)
    if ok is None:
        ok = (
            "<locals>" not in cls.__qualname__
            and cls.__module__ != "__main__"
            # Empty `__slots__` (ABC, Generic) still leave a `__dict__`; real slots would not be in it.
            and not any(vars(c).get("__slots__") for c in cls.__mro__)
            and getattr(cls, "__reduce_ex__", None) is object.__reduce_ex__
            and getattr(cls, "__getstate__", object.__getstate__) is object.__getstate__
            and not hasattr(cls, "__setstate__")
        )
        if ok:
            try:
                ok = _resolve(class_name(cls)) is cls
            except CodecError:
                ok = False
        _BY_NAME_CACHE[cls] = ok
    return ok


def _dumps(obj: Any) -> bytes:
    try:
        return pickle.dumps(obj, protocol=5)
    except (pickle.PicklingError, AttributeError, TypeError):
        # Classes or functions defined in `__main__` or inside functions: pickled by value.
        from ray import cloudpickle

        return cloudpickle.dumps(obj, protocol=5)


# ------------------------------------------------------------------------------------------------------------
# Encoding


def _frame_fits_arrow(frame: pd.DataFrame) -> bool:
    """Whether Arrow gives this frame back as it is.

    Needs unique string column and index names and no ``object`` columns or index levels (Arrow
    turns Python strings into the string dtype and lists into numpy arrays); those frames are pickled.
    """
    columns = frame.columns
    if isinstance(columns, pd.MultiIndex) or frame.attrs or not columns.is_unique:
        return False
    if any(not isinstance(c, str) for c in columns):
        return False
    if any(n is not None and not isinstance(n, str) for n in frame.index.names):
        return False
    index_levels = frame.index.levels if isinstance(frame.index, pd.MultiIndex) else [frame.index]
    dtypes = [*frame.dtypes, *(level.dtype for level in index_levels)]
    return not any(pd.api.types.is_object_dtype(dtype) for dtype in dtypes)


def _ipc_size(table: pa.Table) -> int:
    # Writing to a mock stream only counts bytes: no data is copied.
    sink = pa.MockOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return int(sink.size())


def _aligned(n: int) -> int:
    return n + (-n % _ALIGN)


class _BlockWriter:
    """Collects rows, then writes every payload into one exactly sized buffer: the single copy of the data."""

    def __init__(self) -> None:
        self.payloads: list[pa.Table | bytes | None] = []
        self.sizes: list[int] = []
        self.kinds: list[int] = []
        self.ids: list[str | None] = []
        self.datasets: list[str | None] = []
        self.classes: list[str | None] = []
        self.formats: list[int | None] = []
        self.fields: list[bytes | None] = []

    def add_task(self, task: Task[Any]) -> None:
        cls = type(task)
        data = getattr(task, "data", None)
        fmt = FMT_PICKLE
        table: pa.Table | None = None
        if _by_name(cls):
            if isinstance(data, pa.Table):
                fmt, table = FMT_ARROW, data
            elif isinstance(data, pd.DataFrame) and _frame_fits_arrow(data):
                try:
                    table = pa.Table.from_pandas(data)
                    fmt = FMT_PANDAS
                except (pa.ArrowException, TypeError, ValueError):
                    table = None  # Mixed object columns and the like: pickled below.
        if table is not None:
            attrs = {k: v for k, v in vars(task).items() if k not in _COLUMN_ATTRS}
            self.fields.append(_dumps(attrs))
            self.payloads.append(table)
            self.sizes.append(_ipc_size(table))
        else:
            fmt = FMT_PICKLE
            pickled = _dumps(task)
            self.fields.append(None)
            self.payloads.append(pickled)
            self.sizes.append(len(pickled))
        self.kinds.append(ROW_TASK)
        self.ids.append(task.task_id)
        self.datasets.append(task.dataset_name)
        self.classes.append(class_name(cls))
        self.formats.append(fmt)

    def add_ledger_row(self) -> None:
        self.payloads.append(None)
        self.sizes.append(0)
        self.kinds.append(ROW_LEDGER)
        for column in (self.ids, self.datasets, self.classes, self.formats, self.fields):
            column.append(None)

    def _payload_column(self) -> pa.Array:
        n = len(self.payloads)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([_aligned(size) for size in self.sizes], out=offsets[1:])
        values = pa.allocate_buffer(int(offsets[-1]))
        sink = pa.FixedSizeBufferWriter(values)
        for payload, size in zip(self.payloads, self.sizes, strict=True):
            if payload is None:
                continue
            if isinstance(payload, bytes):
                sink.write(payload)
            else:
                with pa.ipc.new_stream(sink, payload.schema) as writer:
                    writer.write_table(payload)
            pad = _aligned(size) - size
            if pad:
                sink.write(_PAD[:pad])
        if sink.tell() != offsets[-1]:
            raise CodecError(f"wrote {sink.tell()} payload bytes, expected {offsets[-1]}")
        return pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets), values])

    def finish(self, ledger: bytes | None, failures: bytes | None) -> pa.Table:
        n = len(self.kinds)
        carrier: list[bytes | None] = [None] * n
        failure_column: list[bytes | None] = [None] * n
        if n:
            carrier[0] = ledger
            failure_column[0] = failures
        return pa.Table.from_arrays(
            [
                pa.array(self.kinds, pa.int8()),
                pa.array(self.ids, pa.string()),
                pa.array(self.datasets, pa.string()),
                pa.array(self.classes, pa.string()).dictionary_encode(),
                pa.array(self.formats, pa.int8()),
                pa.array(self.fields, pa.large_binary()),
                self._payload_column(),
                pa.array(carrier, pa.binary()),
                pa.array(failure_column, pa.binary()),
            ],
            schema=BLOCK_SCHEMA,
        )


def encode_tasks(
    tasks: Sequence[Task[Any]],
    *,
    ledger: bytes | None = None,
    failures: Sequence[dict[str, Any]] | None = None,
) -> pa.Table:
    """One block with a row per task; `ledger` and `failures` ride on its first row.

    With no tasks but something to carry, the block is a single ``ROW_LEDGER`` row; with neither,
    it is empty.
    """
    writer = _BlockWriter()
    for task in tasks:
        writer.add_task(task)
    failure_bytes = pickle.dumps(list(failures), protocol=5) if failures else None
    if not tasks and (ledger is not None or failure_bytes is not None):
        writer.add_ledger_row()
    return writer.finish(ledger, failure_bytes)


def encode_stored(tasks: Sequence[Task[Any]], index: int) -> pa.Table:
    """A block pointing at `tasks`, which the caller stores as object `index` of its stored lists."""
    writer = _BlockWriter()
    for position, task in enumerate(tasks):
        writer.payloads.append(_STORED.pack(index, position))
        writer.sizes.append(_STORED.size)
        writer.fields.append(None)
        writer.kinds.append(ROW_TASK)
        writer.ids.append(task.task_id)
        writer.datasets.append(task.dataset_name)
        writer.classes.append(class_name(type(task)))
        writer.formats.append(FMT_STORED)
    return writer.finish(None, None)


# ------------------------------------------------------------------------------------------------------------
# Decoding


@dataclass
class DecodedBlock:
    """What a block carries: its tasks (in row order), ledgers and failure records."""

    tasks: list[Task[Any]] = field(default_factory=list)
    ledgers: list[bytes] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)


def _column_chunks(block: pa.Table, name: str) -> list[pa.Array]:
    try:
        return block.column(name).chunks
    except KeyError as exc:
        raise CodecError(
            f"not a task block: column '{name}' is missing (columns: {block.column_names})"
        ) from exc


def _rebuild(
    cls: type[Task[Any]], attrs: dict[str, Any], task_id: str, dataset_name: str, data: Any
) -> Task[Any]:
    task = cls.__new__(cls)
    state = task.__dict__
    state["task_id"] = task_id
    state["dataset_name"] = dataset_name
    state["data"] = data
    state.update(attrs)
    return task


StoredLists = Callable[[int], Sequence[Task[Any]]]


def decode_block(block: pa.Table, *, tasks: bool = True, stored: StoredLists | None = None) -> DecodedBlock:
    """The tasks, ledgers and failure records of a block written by :func:`encode_tasks`.

    Arrow payloads come back without a copy: their buffers are slices of the block's buffer.
    ``stored(index)`` returns the stored task list ``index`` (for ``FMT_STORED`` rows).
    With ``tasks=False`` only ledgers and failures are read.
    """
    out = DecodedBlock()
    for chunk in _column_chunks(block, "_ledger"):
        if chunk.null_count < len(chunk):
            out.ledgers.extend(v for v in chunk.to_pylist() if v is not None)
    for chunk in _column_chunks(block, "_failures"):
        if chunk.null_count < len(chunk):
            for value in chunk.to_pylist():
                if value is not None:
                    out.failures.extend(pickle.loads(value))
    if not tasks:
        return out
    # `to_batches` cuts every column at common row boundaries (zero-copy slices).
    for part in block.to_batches():
        out.tasks.extend(_decode_part(part, stored))
    return out


def _decode_part(batch: pa.RecordBatch, stored: StoredLists | None) -> list[Task[Any]]:
    n = batch.num_rows
    if n == 0:
        return []
    kinds = batch.column("_kind").to_numpy(zero_copy_only=False)
    task_rows = np.flatnonzero(kinds == ROW_TASK)
    if len(task_rows) == 0:
        return []
    formats = batch.column("_format").to_numpy(zero_copy_only=False)
    payload = batch.column("_payload")
    offsets = np.frombuffer(payload.buffers()[1], dtype=np.int64, count=payload.offset + n + 1)[
        payload.offset :
    ]
    values = payload.buffers()[2]
    columns: tuple[list[Any], ...] | None = None
    out: list[Task[Any]] = []
    for row in task_rows.tolist():
        start = int(offsets[row])
        view = values.slice(start, int(offsets[row + 1]) - start)
        fmt = formats[row]
        if fmt == FMT_PICKLE:
            out.append(pickle.loads(view))
            continue
        if fmt == FMT_STORED:
            if stored is None:
                raise CodecError("a block row points at a stored task list but no stored lists were given")
            index, position = _STORED.unpack_from(view)
            out.append(stored(index)[position])
            continue
        if fmt != FMT_ARROW and fmt != FMT_PANDAS:
            raise CodecError(f"unknown payload format {fmt} in row {row}")
        if columns is None:
            columns = _task_columns(batch)
        ids, datasets, classes, fields = columns
        data: Any = pa.ipc.open_stream(view).read_all()
        if fmt == FMT_PANDAS:
            data = data.to_pandas()
        attrs = pickle.loads(fields[row].as_buffer())
        out.append(_rebuild(_resolve(classes[row]), attrs, ids[row], datasets[row], data))
    return out


def _task_columns(batch: pa.RecordBatch) -> tuple[list[Any], ...]:
    """Ids, dataset names, class names (as lists) and the `_fields` array of a batch."""
    classes = batch.column("_task_class")
    names = classes.dictionary.to_pylist()
    class_list = [None if i is None else names[i] for i in classes.indices.to_pylist()]
    return (
        batch.column("_task_id").to_pylist(),
        batch.column("_dataset_name").to_pylist(),
        class_list,
        batch.column("_fields"),  # type: ignore[return-value]
    )


def count_tasks(block: pa.Table) -> int:
    """Number of task rows of a block (its other rows only carry accounting)."""
    kinds = block.column("_kind")
    return block.num_rows - sum(
        int(np.count_nonzero(c.to_numpy(zero_copy_only=False) != ROW_TASK)) for c in kinds.chunks
    )


def empty_block() -> pa.Table:
    return BLOCK_SCHEMA.empty_table()
