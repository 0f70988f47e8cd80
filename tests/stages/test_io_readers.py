"""JSONL and Parquet readers, stage and composite (spec: stages-io.md §5)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from nemo_curator.backends.experimental.utils import RayStageSpecKeys
from nemo_curator.stages.base import get_stage_class
from nemo_curator.stages.file_partitioning import FilePartitioningStage
from nemo_curator.stages.resources import Resources
from nemo_curator.stages.text.io import reader as reader_package
from nemo_curator.stages.text.io.reader import JsonlReader, ParquetReader
from nemo_curator.stages.text.io.reader.base import BaseReader
from nemo_curator.stages.text.io.reader.jsonl import JsonlReaderStage
from nemo_curator.stages.text.io.reader.parquet import ParquetReaderStage
from nemo_curator.tasks import DocumentBatch, FileGroupTask
from nemo_curator.utils.performance_utils import StagePerfStats


def _jsonl(path: Path, lines: list[str]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path.as_posix()


def _group(paths: list[str], task_id: str = "file_group_3") -> FileGroupTask:
    return FileGroupTask(
        task_id=task_id,
        dataset_name="ds",
        data=paths,
        _metadata={"partition_index": 3, "total_partitions": 4, "source_files": paths},
        _stage_perf=[StagePerfStats(stage_name="file_partitioning")],
    )


@pytest.fixture
def jsonl_files(tmp_path: Path) -> list[str]:
    return [
        _jsonl(
            tmp_path / "b.jsonl",
            ['{"text": "b1", "id": 1, "extra": "x"}', '{"text": "b2", "id": 2, "extra": "y"}'],
        ),
        _jsonl(tmp_path / "a.jsonl", ['{"id": 0, "text": "a1"}']),
    ]


@pytest.fixture
def parquet_files(tmp_path: Path) -> list[str]:
    paths = []
    for name, ids in (("p1", [1, 2]), ("p2", [3])):
        path = tmp_path / f"{name}.parquet"
        pd.DataFrame({"id": ids, "text": [f"t{i}" for i in ids], "score": [0.5] * len(ids)}).to_parquet(path)
        paths.append(path.as_posix())
    return paths


def test_package_exports() -> None:
    assert reader_package.__all__ == ["JsonlReader", "ParquetReader"]
    for name in ("BaseReader", "JsonlReaderStage", "ParquetReaderStage", "JsonlReader", "ParquetReader"):
        assert get_stage_class(name).__name__ == name


def test_base_reader_hooks() -> None:
    reader = BaseReader()
    assert (reader.fields, reader.read_kwargs, reader.name) == (None, {}, "")
    assert reader.resources == Resources(cpus=1.0)
    assert reader.batch_size == 1
    assert reader.inputs() == ([], [])
    assert reader.outputs() == (["data"], [])
    assert reader.ray_stage_spec() == {RayStageSpecKeys.IS_ACTOR_STAGE: False}
    assert reader.xenna_stage_spec() == {}
    with pytest.raises(NotImplementedError):
        reader.read_data(["x"])
    # setup() is a no-op (no Ray lookup) without the ID flags.
    reader.setup()
    assert not hasattr(reader, "id_generator")


def test_id_flags() -> None:
    with pytest.raises(ValueError, match="Cannot generate and assign IDs at the same time"):
        JsonlReaderStage(_generate_ids=True, _assign_ids=True)
    reader = JsonlReaderStage(fields=["text"], _generate_ids=True)
    assert reader.ray_stage_spec() == {"is_actor_stage": True}
    # Repeated calls return a new list and never grow the stage's own fields.
    assert reader.outputs() == (["data"], ["text", "_curator_dedup_id"])
    assert reader.outputs() == (["data"], ["text", "_curator_dedup_id"])
    assert reader.fields == ["text"]
    assert JsonlReaderStage(_assign_ids=True).outputs() == (["data"], ["_curator_dedup_id"])


def test_jsonl_stage_process(jsonl_files: list[str]) -> None:
    task = _group(jsonl_files)
    batch = JsonlReaderStage().process(task)
    assert isinstance(batch, DocumentBatch)
    assert batch.task_id == "file_group_3_processed"
    assert batch.dataset_name == "ds"
    assert batch._metadata is task._metadata
    assert batch._stage_perf == []
    df = batch.data
    assert isinstance(df, pd.DataFrame)
    assert df["text"].tolist() == ["b1", "b2", "a1"]
    assert df["id"].tolist() == [1, 2, 0]
    assert isinstance(df.index, pd.RangeIndex)
    assert df.index.tolist() == [0, 1, 2]
    # The second file has no "extra": concatenation fills it with missing values.
    assert df["extra"].isna().tolist() == [False, False, True]


def test_jsonl_fields_selection(jsonl_files: list[str], tmp_path: Path) -> None:
    df = JsonlReaderStage(fields=["id", "text", "missing"]).process(_group(jsonl_files)).data
    assert list(df.columns) == ["id", "text"]
    # A file with none of the fields contributes nothing; others are still read.
    only_extra = JsonlReaderStage(fields=["extra"]).process(_group(jsonl_files)).data
    assert only_extra["extra"].tolist() == ["x", "y"]
    with pytest.raises(ValueError, match="All objects passed were None"):
        JsonlReaderStage(fields=["nothing"]).process(_group(jsonl_files))


def test_jsonl_read_kwargs(jsonl_files: list[str], tmp_path: Path) -> None:
    df = JsonlReaderStage(read_kwargs={"dtype": {"id": "float64"}}).process(_group(jsonl_files)).data
    assert df["id"].dtype == "float64"
    compressed = tmp_path / "z.data"
    compressed.write_bytes(gzip.compress(b'{"text": "z"}\n'))
    df = JsonlReaderStage(read_kwargs={"compression": "gzip"}).process(_group([compressed.as_posix()])).data
    assert df["text"].tolist() == ["z"]
    with pytest.raises(ValueError, match="lines=False is not supported for JSONL reader"):
        JsonlReaderStage(read_kwargs={"lines": False}).process(_group(jsonl_files))
    # The stage's kwargs are copied per call, never mutated.
    kwargs = {"dtype": {"id": "float64"}}
    JsonlReaderStage(read_kwargs=kwargs).process(_group(jsonl_files))
    assert kwargs == {"dtype": {"id": "float64"}}


def test_jsonl_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"No data read from files in task \[\] with read_kwargs"):
        JsonlReaderStage().read_data([], {})
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="No data read from files in task file_group_3"):
        JsonlReaderStage().process(_group([empty.as_posix()]))


def test_parquet_stage_process(parquet_files: list[str]) -> None:
    task = _group(parquet_files, "file_group_0")
    batch = ParquetReaderStage(fields=["text", "id"]).process(task)
    assert batch.task_id == "file_group_0_processed"
    assert batch._metadata is task._metadata
    df = batch.data
    assert list(df.columns) == ["text", "id"]
    assert df["id"].tolist() == [1, 2, 3]
    assert isinstance(df["id"].dtype, pd.ArrowDtype)
    assert df["id"].dtype.pyarrow_dtype == pa.int64()
    assert df["text"].dtype.pyarrow_dtype in (pa.string(), pa.large_string())
    assert df.index.tolist() == [0, 1, 2]


def test_parquet_read_kwargs_and_errors(parquet_files: list[str]) -> None:
    df = (
        ParquetReaderStage(read_kwargs={"dtype_backend": "numpy_nullable"})
        .process(_group(parquet_files))
        .data
    )
    assert not isinstance(df["id"].dtype, pd.ArrowDtype)
    # fields override a user "columns".
    df = (
        ParquetReaderStage(fields=["score"], read_kwargs={"columns": ["id"]})
        .process(_group(parquet_files))
        .data
    )
    assert list(df.columns) == ["score"]
    with pytest.raises(pa.ArrowInvalid, match="No match for FieldRef"):
        ParquetReaderStage(fields=["nope"]).process(_group(parquet_files))
    with pytest.raises(ValueError, match="No objects to concatenate"):
        ParquetReaderStage().read_data([], {})


def test_jsonl_composite_decompose(tmp_path: Path) -> None:
    kwargs = {"storage_options": {}, "dtype": {"id": "int64"}}
    composite = JsonlReader(tmp_path.as_posix(), 2, None, ["text"], kwargs, _generate_ids=True)
    assert composite.name == "jsonl_reader"
    assert composite.file_extensions == [".jsonl", ".json"]
    assert composite.storage_options == {}
    partitioning, reader = composite.decompose()
    assert isinstance(partitioning, FilePartitioningStage)
    assert (partitioning.file_paths, partitioning.files_per_partition) == (tmp_path.as_posix(), 2)
    assert partitioning.file_extensions == [".jsonl", ".json"]
    assert partitioning.storage_options == {}
    assert partitioning.limit is None
    assert isinstance(reader, JsonlReaderStage)
    assert reader.name == "jsonl_reader"
    assert reader.fields == ["text"]
    assert reader.read_kwargs is kwargs
    assert (reader._generate_ids, reader._assign_ids) == (True, False)
    assert composite.inputs() == ([], [])
    assert composite.outputs() == (["data"], ["text", "_curator_dedup_id"])
    # Two calls give two fresh sets of stages.
    assert composite.decompose()[1] is not reader
    with pytest.raises(RuntimeError, match="should not be executed directly"):
        composite.process(None)


def test_composite_defaults_and_storage_options() -> None:
    jsonl = JsonlReader("p")
    assert not hasattr(jsonl, "storage_options")
    partitioning, reader = jsonl.decompose()
    assert partitioning.storage_options == {}
    assert reader.read_kwargs == {}
    parquet = ParquetReader("p", read_kwargs={"engine": "pyarrow"})
    assert parquet.name == "parquet_reader"
    assert parquet.file_extensions == [".parquet"]
    partitioning, reader = parquet.decompose()
    assert isinstance(reader, ParquetReaderStage)
    assert reader.name == "parquet_reader"
    assert partitioning.file_extensions == [".parquet"]
    assert partitioning.storage_options == {}
    # ParquetReader's positional order puts file_extensions before task_type.
    positional = ParquetReader("p", None, None, None, None, [".pq"], "document")
    assert (positional.file_extensions, positional.task_type) == ([".pq"], "document")
    positional = JsonlReader("p", None, None, None, None, "document", [".j"])
    assert (positional.file_extensions, positional.task_type) == ([".j"], "document")


def test_composite_task_type_and_description() -> None:
    with pytest.raises(
        NotImplementedError, match=r"Converting DocumentBatch to image is not supported yet\."
    ):
        JsonlReader("p", task_type="image").decompose()
    assert JsonlReader("/d", files_per_partition=2, blocksize="1MB", fields=["a"]).get_description() == (
        "Read JSONL files from /d, with 2 files per partition, reading columns: ['a']"
    )
    assert ParquetReader("/d", blocksize="1MB").get_description() == (
        "Read Parquet files from /d, with target blocksize 1MB"
    )
    assert JsonlReader(["/x"]).get_description() == "Read JSONL files from ['/x']"


def test_composite_with_targets_inner_stages() -> None:
    composite = JsonlReader("p").with_(
        {"file_partitioning": {"batch_size": 3}, "jsonl_reader": {"resources": Resources(cpus=2.0)}}
    )
    partitioning, reader = composite.decompose_and_apply_with()
    assert partitioning.batch_size == 3
    assert reader.resources == Resources(cpus=2.0)
