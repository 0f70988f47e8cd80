"""Zero-copy Arrow table plumbing, implemented in Rust (``nemo_curator._core``).

Every function takes any Arrow producer of the PyCapsule interface: a ``pyarrow.Table``,
``pyarrow.RecordBatch`` or ``pyarrow.RecordBatchReader`` (consumed), or any other object with
``__arrow_c_stream__`` / ``__arrow_c_array__``. Results are ``pyarrow.Table`` objects whose buffers
are the input's buffers: nothing is copied on the way in or out, splitting slices and coalescing
regroups whole record batches as chunks of one table.

One exception, from arrow-rs: a slice whose first row sits mid-byte in a validity bitmap (row offset
not a multiple of 8) gets a re-aligned copy of that bitmap, ``ceil(rows / 8)`` bytes; values,
offsets and child buffers are never copied. ``split_by_bytes`` cuts on bitmap byte boundaries when
it can, and ``split_by_rows`` does so when ``max_rows`` is a multiple of 8.

Byte sizes are *referenced bytes*: what the rows reference, not what the buffers hold.
See :func:`table_nbytes`. Arguments that are not Arrow data, or invalid bounds, raise ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import pyarrow as pa

from nemo_curator import _core

__all__ = [
    "ArrowArrayExportable",
    "ArrowStreamExportable",
    "ArrowTabular",
    "coalesce",
    "concat_to_single_batch",
    "roundtrip",
    "split_by_bytes",
    "split_by_rows",
    "table_nbytes",
    "table_num_rows",
]


@runtime_checkable
class ArrowStreamExportable(Protocol):
    """An object exporting an Arrow C stream (``pyarrow.Table``, ``RecordBatchReader``...)."""

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...


@runtime_checkable
class ArrowArrayExportable(Protocol):
    """An object exporting one Arrow C struct array (``pyarrow.RecordBatch``...)."""

    def __arrow_c_array__(self, requested_schema: object | None = None) -> tuple[object, object]: ...


ArrowTabular = ArrowStreamExportable | ArrowArrayExportable


def table_nbytes(table: ArrowTabular) -> int:
    """Bytes referenced by the rows of ``table``.

    Counted: validity and boolean bitmaps by the whole bytes the rows touch (bitmaps of arrays
    without nulls are not counted: arrow-rs drops them on import); fixed-width values as
    ``rows * width``; string/binary/list/map offsets as ``rows + 1`` entries plus the value bytes or
    child rows they delimit; struct and fixed-size-list children over the same rows; dictionary keys
    plus the whole dictionary; view types as 16 bytes per view plus all their data buffers. A buffer
    shared by several arrays counts once per array.

    It matches ``pyarrow.Table.nbytes`` except that pyarrow counts ``rows`` (not ``rows + 1``)
    offsets and leaves out the validity bitmap of struct arrays. ``get_total_buffer_size()`` counts
    whole buffers instead, so it is larger for slices and for over-allocated buffers.
    """
    return _core.table_nbytes(table)


def table_num_rows(table: ArrowTabular) -> int:
    """Number of rows of ``table``."""
    return _core.table_num_rows(table)


def roundtrip(table: ArrowTabular) -> pa.Table:
    """Import ``table`` into Rust and export it back: a ``pyarrow.Table`` over the same buffers.

    Each input record batch (chunk) is one chunk of the result.
    """
    return _core.roundtrip(table)


def split_by_rows(table: ArrowTabular, max_rows: int) -> list[pa.Table]:
    """Cut ``table`` into consecutive zero-copy pieces of ``max_rows`` rows (the last may be shorter).

    Pieces may span several input chunks; no piece is empty, an empty table gives ``[]``.
    Raises ``ValueError`` when ``max_rows < 1``.
    """
    return _core.split_by_rows(table, max_rows)


def split_by_bytes(table: ArrowTabular, max_bytes: int) -> list[pa.Table]:
    """Cut ``table`` into consecutive zero-copy pieces of at most ``max_bytes`` referenced bytes.

    Greedy, in row order; a single row larger than ``max_bytes`` is a piece of its own. A cut moves
    back by up to 7 rows (at most half the piece) to a validity-bitmap byte boundary, so that no
    bitmap needs re-aligning. No piece is empty, an empty table gives ``[]``.
    Every piece references all of a dictionary's values and a view column's data buffers, so with
    ``max_bytes`` below those each piece is a single row. Raises ``ValueError`` when ``max_bytes < 1``.
    """
    return _core.split_by_bytes(table, max_bytes)


def coalesce(
    tables: Sequence[ArrowTabular], max_rows: int | None = None, max_bytes: int | None = None
) -> list[pa.Table]:
    """Group consecutive ``tables`` into multi-chunk tables without copying.

    A group grows while its rows stay within ``max_rows`` and its referenced bytes within
    ``max_bytes`` (``None``: no bound); a table that alone exceeds a bound is a group of its own
    (tables are never split: use :func:`split_by_rows` / :func:`split_by_bytes` first). Empty tables
    are dropped. All tables must have the same column names, types and nullability; ``ValueError``
    names the first table and column that differ. Results use the first table's schema.
    """
    return _core.coalesce(list(tables), max_rows, max_bytes)


def concat_to_single_batch(table: ArrowTabular) -> pa.Table:
    """A table with exactly one chunk holding all rows of ``table``.

    Zero-copy when ``table`` has at most one non-empty chunk; otherwise the referenced rows are
    copied into new contiguous buffers (the only copying function here). Useful before handing a
    table of many small or sliced chunks to a serialiser that would copy each slice anyway.
    """
    return _core.concat_to_single_batch(table)
