"""The checkpoint store (Curator v1.3's LMDB layout), the task-id rules and the Ray Data credit."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import lmdb
import pytest

from nemo_curator.backends import checkpoint
from nemo_curator.tasks import FileGroupTask, Task


@dataclass(repr=False)
class T(Task[int]):
    data: int = 0
    extra: list[int] = field(default_factory=list)

    @property
    def num_items(self) -> int:
        return 1

    def validate(self) -> bool:
        return True


def _t(i: int = 0) -> T:
    return T(task_id=f"t{i}", dataset_name="d", data=i)


def test_store_is_curator_layout_and_reads_the_union(tmp_path: Path) -> None:
    ckpt = checkpoint.Checkpoint(tmp_path)
    ckpt.record(["a", "b"])
    ckpt.close(finished=True)
    # A file another process (or Curator v1.3) wrote in the same directory.
    env = lmdb.open(str(tmp_path / ".nemo_curator_metadata" / "otherhost-1.mdb"), subdir=False, max_dbs=1)
    with env.begin(write=True, db=env.open_db(b"completed_sources")) as txn:
        txn.put(b"c", b"1")
    env.close()
    (tmp_path / ".nemo_curator_metadata" / "torn-2.mdb").write_bytes(b"not lmdb")
    files = sorted(p.name for p in (tmp_path / ".nemo_curator_metadata").glob("*.mdb"))
    assert len(files) == 3
    assert checkpoint.completed_sources(tmp_path) == {"a", "b", "c"}
    ours = next(
        p
        for p in (tmp_path / ".nemo_curator_metadata").glob("*.mdb")
        if p.name not in ("otherhost-1.mdb", "torn-2.mdb")
    )
    env = lmdb.open(str(ours), subdir=False, readonly=True, lock=False, max_dbs=1)
    with env.begin(db=env.open_db(b"completed_sources", create=False)) as txn:
        assert dict(txn.cursor()) == {b"a": b"1", b"b": b"1"}
    env.close()


def test_cloud_path_is_refused() -> None:
    with pytest.raises(ValueError, match="POSIX path"):
        checkpoint.Checkpoint("s3://bucket/ckpt")


def test_source_ids_and_task_id_rules() -> None:
    sources = checkpoint._mark_sources(
        [_t(0), FileGroupTask(task_id="x", dataset_name="d", data=["/a", "/b"]), _t(2)]
    )
    h = FileGroupTask(task_id="y", dataset_name="d", data=["/b", "/a"]).get_deterministic_id()
    assert [s.task_id for s in sources] == ["0_0", f"0_{h}", "0_2"]
    # 1 -> k: parent_<j>
    outs = [_t(), _t()]
    checkpoint.assign_task_ids(sources[:1], outs)
    assert [o.task_id for o in outs] == ["0_0_0", "0_0_1"]
    assert checkpoint.source_of(outs[1].task_id) == "0"
    # N -> N: positional parent_<i>_0
    outs2 = [_t(), _t()]
    checkpoint.assign_task_ids(outs, outs2)
    assert [o.task_id for o in outs2] == ["0_0_0_0", "0_0_1_0"]
    # N -> K: random ids that name no source; the metadata lists every source they come from, through
    # later stages too, so a failed task's sources are known on every executor.
    outs3 = [_t()]
    checkpoint.assign_task_ids([sources[0], sources[2]], outs3)
    assert outs3[0].task_id.startswith("r")
    assert checkpoint.source_of(outs3[0].task_id) == ""
    assert checkpoint.task_sources(outs3) == ["0", "2"]
    outs4 = [_t(), _t()]
    checkpoint.assign_task_ids(outs3, outs4)  # then 1 -> k
    assert [checkpoint.task_sources([o]) for o in outs4] == [["0", "2"]] * 2
    outs5 = [_t()]
    checkpoint.assign_task_ids([outs4[0], outs2[0]], outs5)  # mixed again: the union
    assert checkpoint.task_sources(outs5) == ["0", "2"]
    # N -> K within one source: random ids, one source.
    outs6 = [_t()]
    checkpoint.assign_task_ids(outs, outs6)
    assert outs6[0].task_id.startswith("r") and checkpoint.task_sources(outs6) == ["0"]
    assert checkpoint.SOURCES_KEY not in outs6[0]._metadata
    # Tasks of a plain run keep the ids their stages chose.
    plain = [_t(7)]
    checkpoint.assign_task_ids([_t(1)], plain)
    assert plain[0].task_id == "t7"


def test_duplicate_source_ids_are_refused() -> None:
    same = ["/a"]
    with pytest.raises(ValueError, match="same source id"):
        checkpoint._mark_sources(
            [FileGroupTask(task_id=str(i), dataset_name="d", data=list(same)) for i in range(2)]
        )


def test_credit_completes_a_source_once_all_descendants_ended(tmp_path: Path) -> None:
    ckpt = checkpoint.Checkpoint(tmp_path)
    roots = checkpoint._mark_sources([_t(0), _t(1)])
    ckpt.give_credit(roots)
    kids = [_t(), _t(), _t()]
    assert checkpoint.split_credit(roots[:1], kids) is None  # 1 -> 3
    filtered = checkpoint.split_credit(kids[:1], [])  # one child filtered
    failed = checkpoint.batch_credit(kids[1:2])  # one child failed
    assert filtered == {"0": (1, 3)} and failed == {"0": (1, 3)}
    real = ckpt.take_block(
        [],
        [
            {checkpoint.CREDIT_KEY: filtered},
            {"stage": "s", "task_ids": ["0_0_1"], checkpoint.CREDIT_KEY: failed},
        ],
    )
    assert [f["stage"] for f in real] == ["s"]
    assert ckpt.completed == set()
    ckpt.take_block([kids[2]], [])  # the last child reaches the driver
    assert ckpt.completed == {"0"}
    assert checkpoint.CREDIT_KEY not in kids[2]._metadata
    ckpt.close(finished=True)
    assert checkpoint.completed_sources(tmp_path) == {"0"}
    assert [r["task_id"] for r in checkpoint.read_failed_tasks(tmp_path)] == ["0_0_1"]
