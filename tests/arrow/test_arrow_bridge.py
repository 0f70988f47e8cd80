"""Arrow bridge: zero copy (buffer addresses), referenced byte sizes, split/coalesce invariants."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nemo_curator import arrow_bridge as ab

# --- helpers --------------------------------------------------------------------------------------


def _labelled(arr_type: pa.DataType) -> Iterator[str]:
    """Kinds ('validity' or 'data') of the buffers of an array of ``arr_type``, in the order of
    ``pa.Array.buffers()`` (an array's own buffers, then its children's, depth first)."""
    if pa.types.is_struct(arr_type):
        yield "validity"
        for i in range(arr_type.num_fields):
            yield from _labelled(arr_type.field(i).type)
    elif pa.types.is_map(arr_type):
        yield from ("validity", "data")
        yield from _labelled(pa.struct([arr_type.key_field, arr_type.item_field]))
    elif pa.types.is_list(arr_type) or pa.types.is_large_list(arr_type):
        yield from ("validity", "data")
        yield from _labelled(arr_type.value_type)
    elif pa.types.is_fixed_size_list(arr_type):
        yield "validity"
        yield from _labelled(arr_type.value_type)
    elif (
        pa.types.is_string(arr_type)
        or pa.types.is_large_string(arr_type)
        or pa.types.is_binary(arr_type)
        or pa.types.is_large_binary(arr_type)
    ):
        yield from ("validity", "data", "data")
    else:
        yield from ("validity", "data")


def _buffers(table: pa.Table) -> Iterator[tuple[str, int, pa.Buffer | None]]:
    """(kind, rows of the chunk, buffer) for every buffer of every chunk of ``table``."""
    for column in table.columns:
        for chunk in column.chunks:
            bufs = chunk.buffers()
            kinds = list(_labelled(chunk.type))
            assert len(kinds) == len(bufs), (chunk.type, len(bufs))
            for kind, buf in zip(kinds, bufs, strict=True):
                yield kind, len(chunk), buf


def _ranges(*tables: pa.Table) -> list[tuple[int, int]]:
    return [(b.address, b.address + b.size) for t in tables for _, _, b in _buffers(t) if b is not None]


def _inside(buf: pa.Buffer, ranges: list[tuple[int, int]]) -> bool:
    return any(lo <= buf.address and buf.address + buf.size <= hi for lo, hi in ranges)


def assert_zero_copy(
    out: pa.Table | list[pa.Table], *sources: pa.Table, bitmaps_aligned: bool = True
) -> None:
    """Every buffer of ``out`` lies inside a buffer of one of ``sources``.

    With ``bitmaps_aligned=False`` a validity bitmap may be a fresh re-aligned copy (arrow-rs does
    that for slices starting mid-byte), but of at most ``ceil(rows / 8)`` bytes.
    """
    tables = out if isinstance(out, list) else [out]
    ranges = _ranges(*sources)
    for table in tables:
        for kind, rows, buf in _buffers(table):
            if buf is None or buf.size == 0:
                continue
            if _inside(buf, ranges):
                continue
            assert kind == "validity" and not bitmaps_aligned, f"copied {kind} buffer of {buf.size} bytes"
            assert buf.size <= (rows + 7) // 8


def _covering(offset: int, length: int) -> int:
    return 0 if length == 0 else (offset + length + 7) // 8 - offset // 8


def _nbytes_adjustment(arr: pa.Array) -> int:
    """``table_nbytes - nbytes`` for one array, from the documented differences."""
    t, n = arr.type, len(arr)
    adjust = 0
    has_bitmap = arr.buffers()[0] is not None
    if pa.types.is_struct(t):
        if arr.null_count > 0:  # pyarrow leaves out a struct's own bitmap
            adjust += _covering(arr.offset, n)
        return adjust + sum(_nbytes_adjustment(arr.field(i)) for i in range(t.num_fields))
    if has_bitmap and arr.null_count == 0 and not pa.types.is_null(t):  # dropped by arrow-rs
        adjust -= _covering(arr.offset, n)
    var_width = {pa.string(): 4, pa.binary(): 4, pa.large_string(): 8, pa.large_binary(): 8}
    if t in var_width and n > 0:  # pyarrow counts n offsets, we count n + 1
        adjust += var_width[t]
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_map(t):
        if n > 0:
            adjust += 8 if pa.types.is_large_list(t) else 4
            start, end = arr.offsets[0].as_py(), arr.offsets[-1].as_py()
            adjust += _nbytes_adjustment(arr.values.slice(start, end - start))
    if pa.types.is_dictionary(t):  # keys over the rows plus the whole dictionary
        adjust += _nbytes_adjustment(arr.dictionary)
    if pa.types.is_fixed_size_list(t):
        size = t.list_size
        adjust += _nbytes_adjustment(arr.values.slice(arr.offset * size, n * size))
    return adjust


def expected_nbytes(table: pa.Table) -> int:
    return table.nbytes + sum(_nbytes_adjustment(c) for col in table.columns for c in col.chunks)


def mixed_table(n: int = 100) -> pa.Table:
    """int, string, large_string, list and struct columns, all with nulls."""
    return pa.table(
        {
            "i": pa.array([None if k % 5 == 0 else k for k in range(n)], pa.int64()),
            "s": pa.array([None if k % 7 == 0 else "x" * (k % 13) for k in range(n)], pa.string()),
            "ls": pa.array([None if k % 3 == 0 else f"doc-{k}" for k in range(n)], pa.large_string()),
            "l": pa.array(
                [None if k % 4 == 0 else list(range(k % 5)) for k in range(n)], pa.list_(pa.int32())
            ),
            "st": pa.array(
                [None if k % 6 == 0 else {"a": k, "b": None if k % 4 else f"b{k}"} for k in range(n)],
                pa.struct([("a", pa.int64()), ("b", pa.string())]),
            ),
        }
    )


def chunked(table: pa.Table, sizes: list[int]) -> pa.Table:
    batches, pos = [], 0
    for size in sizes:
        if size == 0:  # slicing gives no batch at all for zero rows
            empty = [pa.array([], f.type) for f in table.schema]
            batches.append(pa.RecordBatch.from_arrays(empty, schema=table.schema))
        else:
            batches.extend(table.slice(pos, size).to_batches())
        pos += size
    return pa.Table.from_batches(batches, table.schema)


# --- zero copy ------------------------------------------------------------------------------------


def test_roundtrip_keeps_every_buffer_address() -> None:
    table = mixed_table()
    out = ab.roundtrip(table)
    assert isinstance(out, pa.Table)
    assert out.equals(table) and out.schema == table.schema
    before = [(k, b.address) for k, _, b in _buffers(table) if b is not None and b.size > 0]
    after = [(k, b.address) for k, _, b in _buffers(out) if b is not None and b.size > 0]
    assert after == before  # all arrays here have nulls: not even a bitmap is dropped


def test_roundtrip_of_record_batch_and_reader() -> None:
    table = mixed_table(40)
    batch = table.to_batches()[0]
    assert_zero_copy(ab.roundtrip(batch), table)
    reader = pa.RecordBatchReader.from_batches(table.schema, chunked(table, [16, 24]).to_batches())
    out = ab.roundtrip(reader)
    assert out.equals(table) and [len(c) for c in out.column(0).chunks] == [16, 24]
    assert_zero_copy(out, table)


def test_roundtrip_keeps_chunks_and_metadata() -> None:
    table = chunked(mixed_table(), [32, 0, 48, 20]).replace_schema_metadata({"origin": "test"})
    out = ab.roundtrip(table)
    assert out.schema.metadata == {b"origin": b"test"}
    assert [len(c) for c in out.column("s").chunks] == [32, 0, 48, 20]
    assert_zero_copy(out, table)


@pytest.mark.parametrize("offset", [8, 16, 3, 13])
def test_roundtrip_of_sliced_input(offset: int) -> None:
    source = mixed_table()
    table = source.slice(offset, 60)
    out = ab.roundtrip(table)
    assert out.equals(table)
    # A slice starting mid-byte gets its validity bitmaps re-aligned by arrow-rs' export, nothing else.
    assert_zero_copy(out, source, bitmaps_aligned=offset % 8 == 0)


def test_unaligned_slice_copies_only_bitmaps() -> None:
    source = mixed_table()
    out = ab.roundtrip(source.slice(3, 60))
    ranges = _ranges(source)
    copied = [
        (kind, b.size) for kind, _, b in _buffers(out) if b is not None and b.size and not _inside(b, ranges)
    ]
    assert copied and all(kind == "validity" and size <= 8 for kind, size in copied)


@pytest.mark.parametrize("max_rows", [8, 16, 64, 1000])
def test_split_by_rows_is_zero_copy(max_rows: int) -> None:
    table = chunked(mixed_table(), [24, 40, 36])
    pieces = ab.split_by_rows(table, max_rows)
    assert pa.concat_tables(pieces).equals(table)
    assert_zero_copy(pieces, table)


def test_split_by_rows_not_multiple_of_8_copies_only_bitmaps() -> None:
    table = mixed_table()
    pieces = ab.split_by_rows(table, 7)
    assert [p.num_rows for p in pieces] == [7] * 14 + [2]
    assert_zero_copy(pieces, table, bitmaps_aligned=False)


@pytest.mark.parametrize("max_bytes", [200, 1500, 5000])
def test_split_by_bytes_is_zero_copy(max_bytes: int) -> None:
    table = chunked(mixed_table(), [24, 40, 36])
    pieces = ab.split_by_bytes(table, max_bytes)
    assert pa.concat_tables(pieces).equals(table)
    # Pieces of 16 rows or more are cut on bitmap byte boundaries, so nothing at all is copied.
    big = min(p.num_rows for p in pieces[:-1]) >= 16
    assert big == (max_bytes > 200)
    assert_zero_copy(pieces, table, bitmaps_aligned=big)


def test_coalesce_is_zero_copy_and_keeps_chunks() -> None:
    source = mixed_table()
    parts = [source.slice(k, 10) for k in range(0, 100, 10)]
    groups = ab.coalesce(parts, max_rows=35)
    assert [g.num_rows for g in groups] == [30, 30, 30, 10]
    assert all(g.column(0).num_chunks == g.num_rows // 10 for g in groups)
    assert pa.concat_tables(groups).equals(source)
    # The inputs start at multiples of 10 rows, so some bitmaps are re-aligned; values are not copied.
    assert_zero_copy(groups, source, bitmaps_aligned=False)
    aligned = [source.slice(k, 16) for k in range(0, 96, 16)]
    assert_zero_copy(ab.coalesce(aligned, max_rows=40), source)


def test_concat_to_single_batch() -> None:
    table = chunked(mixed_table(), [30, 70])
    single = ab.concat_to_single_batch(table)
    assert single.equals(table) and single.column(0).num_chunks == 1
    one = pa.Table.from_batches(mixed_table().to_batches())
    same = ab.concat_to_single_batch(one)
    assert_zero_copy(same, one)  # already one chunk: returned without copying
    empty = ab.concat_to_single_batch(mixed_table().slice(0, 0))
    assert empty.num_rows == 0 and empty.column(0).num_chunks == 1


# --- byte sizes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "array",
    [
        pa.array([1, None, 3] * 100, pa.int64()),
        pa.array([1.5, 2.5] * 50, pa.float32()),
        pa.array([True, None, False] * 30),
        pa.array(["ab", None, "cde"] * 10),
        pa.array(["ab", None, "cde"] * 10, pa.large_string()),
        pa.array([b"ab", None, b"cde"] * 10, pa.binary()),
        pa.array([[1, 2], None, [3]] * 10, pa.list_(pa.int64())),
        pa.array([["a", "bb"], None, ["c"]] * 10, pa.large_list(pa.large_string())),
        pa.array([[1, 2], None, [3, 4]] * 10, pa.list_(pa.int64(), 2)),
        pa.array([{"x": 1, "y": "a"}, None] * 10),
        pa.array([[("a", 1)], None, [("b", 2), ("c", 3)]] * 10, pa.map_(pa.string(), pa.int64())),
        pa.array(["a", "b", "a"] * 10).dictionary_encode(),
        pa.array(["abcdefghijklmnopqrstuvwxyz", None, "x"] * 10, pa.string_view()),
        pa.nulls(10),
    ],
    ids=lambda a: str(a.type),
)
@pytest.mark.parametrize("window", [None, (0, 10), (3, 10), (7, 2), (8, 8), (5, 0)])
def test_table_nbytes_matches_pyarrow_up_to_documented_differences(
    array: pa.Array, window: tuple[int, int] | None
) -> None:
    if window is not None:
        array = array.slice(*window)
    table = pa.table({"c": array})
    # Zero rows reference nothing (pyarrow may count a bitmap byte or a whole dictionary).
    assert ab.table_nbytes(table) == (expected_nbytes(table) if len(array) else 0)
    if window is None:
        assert ab.table_nbytes(table) <= table.get_total_buffer_size()


def test_table_nbytes_of_mixed_chunked_and_sliced_tables() -> None:
    table = mixed_table()
    for t in [table, chunked(table, [17, 33, 50]), table.slice(3, 71), table.slice(16, 40)]:
        assert ab.table_nbytes(t) == expected_nbytes(t)
        assert ab.table_num_rows(t) == t.num_rows
    assert ab.table_nbytes(table) <= table.get_total_buffer_size()
    # A slice references fewer bytes than its buffers hold.
    assert ab.table_nbytes(table.slice(0, 10)) < table.slice(0, 10).get_total_buffer_size()


def test_table_nbytes_ignores_all_valid_bitmaps() -> None:
    with_nulls = pa.array([1, None, 3, 4], pa.int64())
    no_nulls = with_nulls.fill_null(0)
    assert no_nulls.buffers()[0] is None or no_nulls.null_count == 0
    sliced = with_nulls.slice(2, 2)  # keeps a bitmap but has no nulls
    assert sliced.buffers()[0] is not None and sliced.null_count == 0
    assert ab.table_nbytes(pa.table({"c": sliced})) == 16
    assert pa.table({"c": sliced}).nbytes == 17


# --- arguments and errors -------------------------------------------------------------------------


def test_invalid_arguments() -> None:
    table = mixed_table(10)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="max_rows"):
            ab.split_by_rows(table, bad)
        with pytest.raises(ValueError, match="max_bytes"):
            ab.split_by_bytes(table, bad)
        with pytest.raises(ValueError, match="max_rows"):
            ab.coalesce([table], max_rows=bad)
        with pytest.raises(ValueError, match="max_bytes"):
            ab.coalesce([table], max_bytes=bad)
    with pytest.raises(ValueError, match="__arrow_c_stream__"):
        ab.table_nbytes([1, 2, 3])  # type: ignore[arg-type]


def test_coalesce_schema_mismatch_names_table_and_column() -> None:
    a = pa.table({"x": [1, 2], "y": ["a", "b"]})
    b = pa.table({"x": [1.0], "y": ["c"]})
    with pytest.raises(ValueError, match=r"table 1 .*'x'.*Float64.*Int64"):
        ab.coalesce([a, b])
    with pytest.raises(ValueError, match=r"table 2 .*columns"):
        ab.coalesce([a, a, pa.table({"x": [1], "z": ["c"]})])
    # Nested field names are not part of the match; nested nullability is.
    item = pa.table({"l": pa.array([[1], [2]], pa.list_(pa.field("item", pa.int64())))})
    element = pa.table({"l": pa.array([[3]], pa.list_(pa.field("element", pa.int64())))})
    (merged,) = ab.coalesce([item, element])
    assert merged.schema == item.schema and merged.column("l").to_pylist() == [[1], [2], [3]]
    strict = pa.table({"l": pa.array([[3]], pa.list_(pa.field("item", pa.int64(), nullable=False)))})
    with pytest.raises(ValueError, match=r"table 1 .*'l'.*non-null"):
        ab.coalesce([item, strict])
    # Only schema metadata differs: accepted, the first table's schema wins.
    out = ab.coalesce([a.replace_schema_metadata({"k": "v"}), a])
    assert len(out) == 1 and out[0].schema.metadata == {b"k": b"v"} and out[0].num_rows == 4


def test_empty_inputs() -> None:
    empty = mixed_table().slice(0, 0)
    assert ab.split_by_rows(empty, 5) == []
    assert ab.split_by_bytes(empty, 5) == []
    assert ab.coalesce([]) == []
    assert ab.coalesce([empty, empty]) == []
    assert ab.table_nbytes(empty) == 0 and ab.table_num_rows(empty) == 0


def test_single_row_larger_than_max_bytes_is_its_own_piece() -> None:
    table = pa.table({"s": ["a", "b" * 1000, "c", "d"]})
    pieces = ab.split_by_bytes(table, 100)
    assert [p.column("s").to_pylist() for p in pieces] == [["a"], ["b" * 1000], ["c", "d"]]


def test_large_splits() -> None:
    # Enough work to run without the GIL: the results must be the same as for small inputs.
    table = pa.table({"i": pa.array(range(200_000), pa.int64())})
    pieces = ab.split_by_rows(table, 100)
    assert len(pieces) == 2000 and pa.concat_tables(pieces).equals(table)
    by_bytes = ab.split_by_bytes(table, 8000)
    assert len(by_bytes) == 200 and all(p.num_rows == 1000 for p in by_bytes)
    assert_zero_copy(pieces + by_bytes, table)


# --- invariants (hypothesis) ----------------------------------------------------------------------

_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(0, 60))
    ints = draw(st.lists(st.none() | st.integers(-(2**40), 2**40), min_size=n, max_size=n))
    texts = draw(st.lists(st.none() | st.text(max_size=12), min_size=n, max_size=n))
    lists = draw(st.lists(st.none() | st.lists(st.integers(0, 9), max_size=4), min_size=n, max_size=n))
    table = pa.table(
        {
            "i": pa.array(ints, pa.int64()),
            "s": pa.array(texts, pa.large_string()),
            "l": pa.array(lists, pa.list_(pa.int16())),
        }
    )
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=4)))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
    table = chunked(table, sizes)
    offset = draw(st.integers(0, n))
    return table.slice(offset, draw(st.integers(0, n - offset)))


@_SETTINGS
@given(table=tables(), max_rows=st.integers(1, 70))
def test_split_by_rows_invariants(table: pa.Table, max_rows: int) -> None:
    pieces = ab.split_by_rows(table, max_rows)
    rows = [p.num_rows for p in pieces]
    assert all(r > 0 for r in rows)
    assert all(r == max_rows for r in rows[:-1]) and (not rows or rows[-1] <= max_rows)
    assert sum(rows) == table.num_rows
    if pieces:
        assert pa.concat_tables(pieces).equals(table)
    assert_zero_copy(pieces, table, bitmaps_aligned=False)


@_SETTINGS
@given(table=tables(), max_bytes=st.integers(1, 3000))
def test_split_by_bytes_invariants(table: pa.Table, max_bytes: int) -> None:
    pieces = ab.split_by_bytes(table, max_bytes)
    assert all(p.num_rows > 0 for p in pieces)
    assert sum(p.num_rows for p in pieces) == table.num_rows
    for p in pieces:
        assert p.num_rows == 1 or ab.table_nbytes(p) <= max_bytes
    if pieces:
        assert pa.concat_tables(pieces).equals(table)
    assert_zero_copy(pieces, table, bitmaps_aligned=False)


@_SETTINGS
@given(
    parts=st.lists(tables(), max_size=6),
    max_rows=st.none() | st.integers(1, 80),
    max_bytes=st.none() | st.integers(1, 4000),
)
def test_coalesce_invariants(parts: list[pa.Table], max_rows: int | None, max_bytes: int | None) -> None:
    groups = ab.coalesce(parts, max_rows=max_rows, max_bytes=max_bytes)
    inputs = [p for p in parts if p.num_rows > 0]
    assert all(g.num_rows > 0 for g in groups)
    # Groups are runs of whole consecutive inputs, in order.
    runs: list[list[pa.Table]] = []
    remaining = iter(inputs)
    for g in groups:
        run: list[pa.Table] = []
        while sum(t.num_rows for t in run) < g.num_rows:
            run.append(next(remaining))
        assert sum(t.num_rows for t in run) == g.num_rows
        assert g.equals(pa.concat_tables(run))
        runs.append(run)
    assert next(remaining, None) is None

    row_cap = max_rows if max_rows is not None else float("inf")
    byte_cap = max_bytes if max_bytes is not None else float("inf")
    for i, (g, run) in enumerate(zip(groups, runs, strict=True)):
        if len(run) > 1:
            assert g.num_rows <= row_cap and ab.table_nbytes(g) <= byte_cap
        if i + 1 < len(groups):  # greedy: the next input did not fit
            nxt = runs[i + 1][0]
            assert g.num_rows + nxt.num_rows > row_cap or ab.table_nbytes(g) + ab.table_nbytes(nxt) > byte_cap
    assert_zero_copy(groups, *parts, bitmaps_aligned=False)
