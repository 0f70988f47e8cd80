"""`nemo_curator._core.Ledger`: per-stage counts that travel in blocks and must balance at the end."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_curator._core import Ledger


def test_record_merge_and_encode() -> None:
    a = Ledger(2)
    a.record(0, 10, 30)  # a fan-out
    b = Ledger(2)
    b.record(1, 30, 20, failed_tasks=3, batches=30, failed_batches=3)
    a.merge(b.to_bytes())
    a.merge(Ledger(2))
    assert a.stages() == [
        {"batches": 1, "tasks_in": 10, "tasks_out": 30, "failed_tasks": 0, "failed_batches": 0},
        {"batches": 30, "tasks_in": 30, "tasks_out": 20, "failed_tasks": 3, "failed_batches": 3},
    ]
    assert Ledger.from_bytes(a.to_bytes()) == a
    assert a.check(10, 20, 3, ["fan", "filter"]) == []


def test_imbalances_are_named() -> None:
    ledger = Ledger(2)
    ledger.record(0, 5, 5)
    ledger.record(1, 4, 4)
    problems = ledger.check(5, 3, 0, ["first", "second"])
    assert any("stage 'second' received 4 tasks" in p for p in problems)
    assert any("received 3 final tasks" in p for p in problems)
    assert Ledger(1).check(0, 0, 1) == ["0 batches failed but the failure report lists 1"]


def test_bad_input_is_rejected() -> None:
    ledger = Ledger(2)
    with pytest.raises(ValueError, match="out of range"):
        ledger.record(2, 1, 1)
    with pytest.raises(ValueError, match=">= 0"):
        ledger.record(0, -1, 1)
    with pytest.raises(ValueError, match="bad header"):
        ledger.merge(b"garbage")
    with pytest.raises(ValueError, match="3 stages into one of 2"):
        ledger.merge(Ledger(3).to_bytes())
    with pytest.raises(ValueError, match="Ledger or bytes"):
        ledger.merge(12)


def test_merge_column_reads_arrow_in_place() -> None:
    parts = [Ledger(1) for _ in range(3)]
    for i, part in enumerate(parts):
        part.record(0, i + 1, i)
    column = pa.chunked_array(
        [[parts[0].to_bytes(), None], [parts[1].to_bytes(), parts[2].to_bytes()]], pa.binary()
    )
    total = Ledger(1)
    assert total.merge_column(pa.table({"_ledger": column}), "_ledger") == 3
    assert total.stages()[0]["tasks_in"] == 6 and total.stages()[0]["batches"] == 3
    with pytest.raises(ValueError, match="no column"):
        total.merge_column(pa.table({"x": [1]}), "_ledger")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 50), st.integers(0, 50)), max_size=20))
def test_merging_in_any_grouping_gives_the_same_totals(records: list[tuple[int, int, int]]) -> None:
    one = Ledger(3)
    pieces = []
    for stage, n_in, n_out in records:
        one.record(stage, n_in, n_out)
        piece = Ledger(3)
        piece.record(stage, n_in, n_out)
        pieces.append(piece.to_bytes())
    merged = Ledger(3)
    for piece in reversed(pieces):
        merged.merge(piece)
    assert merged == one
