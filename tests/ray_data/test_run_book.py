"""The Ray Data run's bookkeeping in the core, through the binding (no Ray needed)."""

from __future__ import annotations

import pytest

from nemo_curator import _core


def test_run_book_lends_lists_counts_timeouts_and_names_the_oldest_call() -> None:
    book = _core.RunBook()
    book.put("r", ["ref0", "ref1"])
    assert book.take("r", 1) == "ref1"
    book.release("r", [1])
    assert book.held() == {"r": 1}
    with pytest.raises(_core.ConfigError, match="list 1 was already processed and released"):
        book.take("r", 1)
    book.report("r", 0, "w1", "t4", 100.0, 101.0)
    book.report("r", 0, "w2", "t2", 90.0, 101.0)
    book.report("r", 1, "w3", "t9", 50.0, 60.0)  # not repeated since: forgotten
    assert book.oldest("r", 102.0, 6.0) == {0: ("t2", 90.0)}
    book.report("r", 0, "w2", None, 0.0, 103.0)
    assert book.oldest("r", 103.0, 6.0) == {0: ("t4", 100.0)}
    assert book.begin("r", "call") == (0, {})
    book.timed_out("r", 0, ["t2"], 5.0, "call")
    assert book.begin("r", "call") == (0, {(0, ("t2",)): (1, 5.0)})
    assert book.begin("r", "call")[0] == 1  # the attempt before did not time out: its worker died
    book.drop_run("r")
    assert book.held() == {}


def test_stall_clock_and_starved() -> None:
    clock = _core.StallClock(8.0, 0.0)
    assert clock.quiet([1, 2], 1.0) == "wait"
    assert clock.quiet([1, 2], 3.5) == "warn"
    assert clock.quiet([1, 2], 5.0) == "wait"
    assert clock.quiet([1, 2], 9.5) == "fail"
    clock.busy(10.0)
    assert clock.idle(11.0) == 1.0
    assert _core.starved([(2.0, 0.0)], [(1.0, 0.0)])
    assert not _core.starved([(2.0, 0.0), (0.5, 0.0)], [(1.0, 0.0)])


def test_claims_of_other_runs_come_off_the_free_room() -> None:
    claims = _core.Claims()
    assert not claims
    claims.add("run", {"a": (3.0, 0.0)})
    assert claims
    assert claims.free([("a", 4.0, 0.0, 4.0, 0.0), ("b", 2.0, 1.0, 2.0, 1.0)]) == [(1.0, 0.0), (2.0, 1.0)]
    claims.remove("run")
    assert not claims
