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
    counts = ("batches", "tasks_in", "tasks_out", "failed_tasks", "failed_batches")
    assert [{k: s[k] for k in counts} for s in a.stages()] == [
        {"batches": 1, "tasks_in": 10, "tasks_out": 30, "failed_tasks": 0, "failed_batches": 0},
        {"batches": 30, "tasks_in": 30, "tasks_out": 20, "failed_tasks": 3, "failed_batches": 3},
    ]
    assert a.stages()[0]["first_start"] is None and a.stages()[0]["workers"] == 0
    assert Ledger.from_bytes(a.to_bytes()) == a
    assert a.check(10, 20, 3, ["fan", "filter"]) == []


def test_report_fields_merge_as_sums_extremes_and_sets() -> None:
    a = Ledger(1)
    a.record(
        0,
        2,
        1,
        filtered_tasks=1,
        calls=1,
        items_in=20,
        items_out=5,
        bytes_in=300,
        bytes_out=70,
        busy_s=0.25,
        start=1000.5,
        end=1001.0,
        worker=7,
    )
    b = Ledger(1)
    b.record(
        0,
        3,
        3,
        calls=1,
        items_in=3,
        items_out=3,
        bytes_in=30,
        bytes_out=30,
        busy_s=0.5,
        start=999.25,
        end=1000.75,
        worker=9,
    )
    b.record(0, 1, 1, calls=1, busy_s=0.125, start=1000.0, end=1002.5, worker=7)
    a.merge(b.to_bytes())
    (s,) = a.stages()
    assert (s["tasks_in"], s["tasks_out"], s["filtered_tasks"], s["calls"], s["batches"]) == (6, 5, 1, 3, 3)
    assert (s["items_in"], s["items_out"], s["bytes_in"], s["bytes_out"]) == (23, 8, 330, 100)
    assert s["busy_s"] == pytest.approx(0.875)
    assert (s["first_start"], s["last_end"]) == (pytest.approx(999.25), pytest.approx(1002.5))
    assert s["workers"] == 2  # 7 and 9: a set, not a count of calls
    assert Ledger.from_bytes(a.to_bytes()) == a
    with pytest.raises(ValueError, match="busy_s"):
        a.record(0, 1, 1, busy_s=-1.0)
    with pytest.raises(ValueError, match="start"):
        a.record(0, 1, 1, start=float("nan"))


def test_metrics_and_balance_in_the_schedulers_shape() -> None:
    ledger = Ledger(2)
    ledger.record(0, 2, 6, calls=1, start=1000.5, end=1001.0, worker=7)  # a fan-out in an actor
    ledger.record(1, 6, 0, filtered_tasks=6, calls=2, worker=8)  # filters everything, in tasks
    running = ledger.metrics(["fan", "drop"], 2, 0, False, [True, False], 1000.0)
    fan, drop = running["stages"]
    assert (fan["name"], fan["tasks_in"], fan["tasks_out"], fan["actors_created"]) == ("fan", 2, 6, 1)
    assert (fan["first_start"], fan["last_end"]) == (0.5, 1.0)
    assert (drop["tasks_in"], drop["tasks_filtered"], drop["actors_created"]) == (6, 6, 0)
    assert drop["queued_tasks"] is None and not running["finished"]
    assert (running["tasks_initial"], running["tasks_emitted"], running["tasks_failed"]) == (2, 0, 0)
    done = ledger.metrics(["fan", "drop"], 2, 0, True, [True, False], 1000.0)
    assert done["stages"][1]["queued_tasks"] == 0 and done["finished"]
    b = ledger.balance(2, 0, 0, True, ["fan", "drop"])
    assert (b["initial"], b["produced"], b["emitted"], b["consumed"], b["filtered"]) == (2, 6, 0, 8, 6)
    assert b["balanced"] and b["complete"] and b["problems"] == [] and b["queued"] == 0
    short = ledger.balance(3, 0, 0, False, ["fan", "drop"])
    assert not short["balanced"] and "stage 'fan' received 2 tasks" in short["problems"][0]
    with pytest.raises(ValueError, match="expected 2 stage names"):
        ledger.metrics(["fan"], 2, 0, False, [True], 0.0)


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
