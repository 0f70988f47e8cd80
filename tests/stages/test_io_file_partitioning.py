"""FilePartitioningStage (spec: stages-io.md §4)."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest

from nemo_curator.backends.experimental.utils import RayStageSpecKeys
from nemo_curator.stages.base import get_stage_class
from nemo_curator.stages.file_partitioning import FilePartitioningStage
from nemo_curator.stages.resources import Resources
from nemo_curator.tasks import EmptyTask, FileGroupTask


def _write(path: Path, size: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path.as_posix()


@pytest.fixture
def news(tmp_path: Path) -> dict[str, str]:
    root = tmp_path / "News"
    return {
        "root": root.as_posix(),
        "a": _write(root / "a.jsonl", 30),
        "b": _write(root / "b.jsonl", 10),
        "c": _write(root / "c.parquet", 20),
        "d": _write(root / "sub" / "d.json", 5),
        "txt": _write(root / "x.txt", 1),
    }


def test_construction_defaults_and_hooks(news: dict[str, str]) -> None:
    stage = FilePartitioningStage(news["root"])
    assert stage.file_extensions == [".jsonl", ".json", ".parquet"]
    assert stage.storage_options == {}
    assert stage.name == "file_partitioning"
    assert stage.resources == Resources(cpus=0.5)
    assert stage.batch_size == 1
    assert stage.inputs() == ([], [])
    assert stage.outputs() == ([], [])
    assert stage.ray_stage_spec() == {RayStageSpecKeys.IS_FANOUT_STAGE: True}
    assert stage.ray_stage_spec()["is_fanout_stage"] is True
    assert stage.xenna_stage_spec() == {"num_workers_per_node": 1}
    assert get_stage_class("FilePartitioningStage") is FilePartitioningStage
    # Positional order: file_paths, files_per_partition, blocksize, file_extensions, storage_options, limit, name.
    positional = FilePartitioningStage("p", 3, None, [".x"], {"k": 1}, 7, "n")
    assert (positional.files_per_partition, positional.file_extensions, positional.limit) == (3, [".x"], 7)
    assert (positional.storage_options, positional.name) == ({"k": 1}, "n")


def test_groups_by_count_recursively_in_name_order(news: dict[str, str]) -> None:
    tasks = FilePartitioningStage(news["root"], files_per_partition=2).process(EmptyTask)
    assert [t.task_id for t in tasks] == ["file_group_0", "file_group_1"]
    assert all(isinstance(t, FileGroupTask) for t in tasks)
    assert tasks[0].data == [news["a"], news["b"]]
    assert tasks[1].data == [news["c"], news["d"]]
    assert {t.dataset_name for t in tasks} == {"news"}
    assert tasks[1]._metadata == {
        "partition_index": 1,
        "total_partitions": 2,
        "source_files": [news["c"], news["d"]],
    }
    assert tasks[0].reader_config == {}
    assert tasks[0]._stage_perf == []
    assert tasks[0]._stage_perf is not tasks[1]._stage_perf


def test_default_is_one_file_per_partition(news: dict[str, str]) -> None:
    tasks = FilePartitioningStage(news["root"], file_extensions=[".jsonl"]).process(EmptyTask)
    assert [t.data for t in tasks] == [[news["a"]], [news["b"]]]
    # 0 counts as unset.
    tasks = FilePartitioningStage(news["root"], files_per_partition=0, file_extensions=[".jsonl"]).process(
        EmptyTask
    )
    assert len(tasks) == 2


def test_list_input_is_not_recursive_and_resorted(news: dict[str, str], tmp_path: Path) -> None:
    other = _write(tmp_path / "Other" / "0.jsonl", 3)
    stage = FilePartitioningStage([news["root"], (tmp_path / "Other").as_posix()], files_per_partition=10)
    (task,) = stage.process(EmptyTask)
    # sub/d.json is not found (non-recursive); the joined list is re-sorted by name.
    assert task.data == sorted([news["a"], news["b"], news["c"], other])
    assert task.dataset_name == "news"


def test_blocksize_groups_smallest_first(news: dict[str, str]) -> None:
    # Sizes: d=5, b=10, c=20, a=30. Greedy with 32 bytes: [d, b] (15), c would make 35 -> [c], a -> [a].
    tasks = FilePartitioningStage(news["root"], blocksize=32).process(EmptyTask)
    assert [t.data for t in tasks] == [[news["d"], news["b"]], [news["c"]], [news["a"]]]
    # The dataset name comes from the smallest file: its parent is "sub".
    assert tasks[0].dataset_name == "sub"
    assert [t._metadata["total_partitions"] for t in tasks] == [3, 3, 3]
    parsed = FilePartitioningStage(news["root"], blocksize="0.035 kB")
    assert parsed._blocksize == 35
    assert [t.data for t in parsed.process(EmptyTask)] == [[news["d"], news["b"], news["c"]], [news["a"]]]


def test_limit_counts_partitions(news: dict[str, str]) -> None:
    tasks = FilePartitioningStage(news["root"], files_per_partition=1, limit=2).process(EmptyTask)
    assert [t.task_id for t in tasks] == ["file_group_0", "file_group_1"]
    assert tasks[0]._metadata["total_partitions"] == 4
    assert FilePartitioningStage(news["root"], limit=0).process(EmptyTask) == []


def test_extensions_and_empty_results(news: dict[str, str], tmp_path: Path) -> None:
    (task,) = FilePartitioningStage(news["root"], files_per_partition=5, file_extensions=["txt"]).process(
        EmptyTask
    )
    assert task.data == [news["txt"]]
    assert FilePartitioningStage(news["root"], file_extensions=[]).process(EmptyTask) == []
    assert FilePartitioningStage((tmp_path / "missing").as_posix()).process(EmptyTask) == []


def test_glob_and_single_file(news: dict[str, str]) -> None:
    (task,) = FilePartitioningStage(news["root"] + "/*.jsonl", files_per_partition=5).process(EmptyTask)
    assert task.data == [news["a"], news["b"]]
    (task,) = FilePartitioningStage(news["c"]).process(EmptyTask)
    assert task.data == [news["c"]]


def test_relative_paths_become_absolute(
    news: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (task,) = FilePartitioningStage("News", files_per_partition=10, file_extensions=[".jsonl"]).process(
        EmptyTask
    )
    assert task.data == [news["a"], news["b"]]


def test_invalid_arguments(news: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="only one is allowed"):
        FilePartitioningStage(news["root"], files_per_partition=2, blocksize="1MB")
    with pytest.raises(ValueError, match="must not be negative"):
        FilePartitioningStage(news["root"], files_per_partition=-1)
    with pytest.raises(ValueError, match="as a byte unit"):
        FilePartitioningStage(news["root"], blocksize="10 parsecs")
    with pytest.raises(TypeError, match="must be a string or list of strings"):
        FilePartitioningStage((news["root"],)).process(EmptyTask)
    with pytest.raises(TypeError, match="must be a string or list of strings"):
        FilePartitioningStage(Path(news["root"])).process(EmptyTask)


def test_remote_paths_keep_protocol() -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/fp-bucket/Set/x.jsonl", b"{}\n")
    fs.pipe("/fp-bucket/Set/y.jsonl", b"{}\n")
    try:
        (task,) = FilePartitioningStage("memory://fp-bucket/Set", files_per_partition=2).process(EmptyTask)
    finally:
        fs.rm("/fp-bucket", recursive=True)
    assert task.data == ["memory:///fp-bucket/Set/x.jsonl", "memory:///fp-bucket/Set/y.jsonl"]
    assert task.dataset_name == "x.jsonl"
