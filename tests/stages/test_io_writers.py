"""JSONL, Parquet and Megatron writers (spec: stages-io.md §6)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import struct
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from nemo_curator.stages.base import _STAGE_REGISTRY, get_stage_class
from nemo_curator.stages.resources import Resources
from nemo_curator.stages.text.io import writer as writer_package
from nemo_curator.stages.text.io.writer import JsonlWriter, MegatronTokenizerWriter, ParquetWriter
from nemo_curator.tasks import DocumentBatch, FileGroupTask
from nemo_curator.utils.performance_utils import StagePerfStats

SOURCES = ["/data/b.jsonl", "/data/a.jsonl"]


def _batch(data: pd.DataFrame | pa.Table | None = None, metadata: dict | None = None) -> DocumentBatch:
    if data is None:
        data = pd.DataFrame({"text": ["héllo", "world"], "id": [1, 2]})
    return DocumentBatch(
        task_id="file_group_0_processed",
        dataset_name="news",
        data=data,
        _metadata={"partition_index": 0, "source_files": SOURCES} if metadata is None else metadata,
        _stage_perf=[StagePerfStats(stage_name="jsonl_reader")],
    )


def test_package_exports_and_registry() -> None:
    assert writer_package.__all__ == ["JsonlWriter", "MegatronTokenizerWriter", "ParquetWriter"]
    assert "BaseWriter" not in _STAGE_REGISTRY
    for name in ("JsonlWriter", "ParquetWriter", "MegatronTokenizerWriter"):
        assert get_stage_class(name).__name__ == name


def test_jsonl_writer_defaults(tmp_path: Path) -> None:
    out = tmp_path / "out"
    writer = JsonlWriter(out.as_posix())
    # The default "ignore" mode creates the directory at construction.
    assert out.is_dir()
    assert (writer.file_extension, writer.write_kwargs, writer.fields) == ("jsonl", {}, None)
    assert (writer.name, writer.mode, writer.append_mode_implemented) == ("jsonl_writer", "ignore", False)
    assert writer.resources == Resources(cpus=1.0)
    assert writer.inputs() == (["data"], [])
    assert writer.outputs() == (["data"], [])
    assert writer.ray_stage_spec() == {}
    assert writer.get_file_extension() == "jsonl"
    positional = JsonlWriter(out.as_posix(), "json", {"force_ascii": False}, ["text"], "w", "overwrite")
    assert (positional.file_extension, positional.fields, positional.name) == ("json", ["text"], "w")


def test_jsonl_writer_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    task = _batch()
    result = JsonlWriter(out.as_posix()).process(task)
    expected = (out / "8ea7d255f708.jsonl").as_posix()
    assert isinstance(result, FileGroupTask)
    assert result.data == [expected]
    assert result.task_id == "file_group_0_processed"
    assert result.dataset_name == "news"
    assert result._metadata == {"partition_index": 0, "source_files": SOURCES, "format": "jsonl"}
    assert result._metadata is not task._metadata
    assert "format" not in task._metadata
    assert result._stage_perf is task._stage_perf
    assert result.reader_config == {}
    text = Path(expected).read_text()
    # pandas defaults: one object per line, no index, trailing newline, ASCII escapes.
    assert text == '{"text":"h\\u00e9llo","id":1}\n{"text":"world","id":2}\n'


def test_jsonl_writer_fields_kwargs_and_arrow_input(tmp_path: Path) -> None:
    table = pa.table({"text": ["héllo"], "id": [7], "drop": [0.5]})
    writer = JsonlWriter(
        (tmp_path / "o").as_posix(), fields=["id", "text"], write_kwargs={"force_ascii": False}
    )
    (path,) = writer.process(_batch(table)).data
    assert Path(path).read_text(encoding="utf-8") == '{"id":7,"text":"héllo"}\n'
    with pytest.raises(KeyError):
        JsonlWriter((tmp_path / "o2").as_posix(), fields=["absent"]).process(_batch())


def test_file_name_is_stable_and_extension_verbatim(tmp_path: Path) -> None:
    out = tmp_path / "out"
    writer = JsonlWriter(out.as_posix(), file_extension=".jsonl")
    first = writer.process(_batch()).data
    again = writer.process(_batch(pd.DataFrame({"text": ["other"]}))).data
    assert first == again == [(out / "8ea7d255f708..jsonl").as_posix()]
    # A rerun overwrites the same file: the last write wins.
    assert Path(first[0]).read_text() == '{"text":"other"}\n'


def test_uuid_name_without_source_files(tmp_path: Path) -> None:
    writer = JsonlWriter((tmp_path / "out").as_posix())
    names = {Path(writer.process(_batch(metadata={})).data[0]).name for _ in range(2)}
    assert len(names) == 2
    for name in names:
        stem, ext = name.split(".")
        assert ext == "jsonl"
        assert len(stem) == 32
        int(stem, 16)


def test_output_modes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.jsonl").write_text("{}\n")
    JsonlWriter(out.as_posix())
    assert (out / "old.jsonl").exists()
    with pytest.raises(FileExistsError, match="already exists"):
        JsonlWriter(out.as_posix(), mode="error")
    JsonlWriter(out.as_posix(), mode=" OverWrite ")
    assert out.is_dir()
    assert list(out.iterdir()) == []
    with pytest.raises(NotImplementedError, match="append mode is not implemented yet"):
        JsonlWriter(out.as_posix(), mode="append")
    JsonlWriter(out.as_posix(), mode="append", append_mode_implemented=True)
    with pytest.raises(ValueError, match="Invalid mode: 'replace'"):
        JsonlWriter(out.as_posix(), mode="replace")
    fresh = tmp_path / "fresh"
    JsonlWriter(fresh.as_posix(), mode="error")
    assert fresh.is_dir()


def test_with_copies_without_reapplying_mode(tmp_path: Path) -> None:
    out = tmp_path / "out"
    writer = JsonlWriter(out.as_posix(), mode="overwrite")
    (out / "keep.jsonl").write_text("{}\n")
    copy = writer.with_(name="renamed")
    assert copy.name == "renamed"
    assert (out / "keep.jsonl").exists()


def test_parquet_writer(tmp_path: Path) -> None:
    out = tmp_path / "pq"
    writer = ParquetWriter(out.as_posix())
    assert (writer.file_extension, writer.name) == ("parquet", "parquet_writer")
    result = writer.process(_batch())
    assert result.data == [(out / "8ea7d255f708.parquet").as_posix()]
    assert result._metadata["format"] == "parquet"
    read = pd.read_parquet(result.data[0])
    assert read["text"].tolist() == ["héllo", "world"]
    assert list(read.columns) == ["text", "id"]
    # A non-range index (e.g. after filtering rows) is written as a column, as pandas does with index=None.
    filtered = pd.DataFrame({"text": ["a", "b", "c", "d"]}).iloc[[0, 2, 3]]
    (path,) = ParquetWriter((tmp_path / "pq2").as_posix(), fields=["text"]).process(_batch(filtered)).data
    assert pa.parquet.read_table(path).column_names == ["text", "__index_level_0__"]
    (path,) = (
        ParquetWriter((tmp_path / "pq3").as_posix(), write_kwargs={"index": False})
        .process(_batch(filtered))
        .data
    )
    assert pa.parquet.read_table(path).column_names == ["text"]


def test_remote_output_keeps_protocol() -> None:
    fs = fsspec.filesystem("memory")
    try:
        writer = JsonlWriter("memory://wr-bucket/out/")
        assert fs.isdir("/wr-bucket/out")
        (path,) = writer.process(_batch()).data
        assert path == "memory:///wr-bucket/out/8ea7d255f708.jsonl"
        assert fs.cat_file("/wr-bucket/out/8ea7d255f708.jsonl").count(b"\n") == 2
    finally:
        fs.rm("/wr-bucket", recursive=True)


def test_megatron_writer_construction(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model_identifier is required and must be provided"):
        MegatronTokenizerWriter((tmp_path / "m").as_posix())
    # Validation happens before the output directory is touched.
    assert not (tmp_path / "m").exists()
    writer = MegatronTokenizerWriter((tmp_path / "m").as_posix(), model_identifier="some/model")
    assert writer.file_extension == [".bin", ".idx"]
    assert writer.fields is None
    assert (writer.name, writer.text_field, writer.tokenization_batch_size) == (
        "megatron_tokenizer_writer",
        "text",
        1000,
    )
    with pytest.raises(TypeError):
        MegatronTokenizerWriter((tmp_path / "m").as_posix(), fields=["text"], model_identifier="x")


@pytest.mark.skipif(importlib.util.find_spec("transformers") is not None, reason="transformers is installed")
def test_megatron_writer_needs_transformers_only_to_run(tmp_path: Path) -> None:
    writer = MegatronTokenizerWriter((tmp_path / "m").as_posix(), model_identifier="some/model")
    with pytest.raises(ImportError, match="transformers"):
        writer.setup()


class _CharTokenizer:
    """A stand-in tokenizer: one token per character (its code point), EOS = 0."""

    eos_token_id = 0

    def __len__(self) -> int:
        return 1000

    def __call__(self, texts: list[str]) -> dict[str, list[list[int]]]:
        return {"input_ids": [[ord(ch) for ch in text] for text in texts]}


def test_megatron_writer_files(tmp_path: Path) -> None:
    out = tmp_path / "m"
    writer = MegatronTokenizerWriter(
        out.as_posix(), model_identifier="x", append_eod=True, tokenization_batch_size=2
    )
    writer._tokenizer = _CharTokenizer()
    result = writer.process(_batch(pd.DataFrame({"text": ["ab", "", "xyz"]})))
    prefix = (out / "8ea7d255f708").as_posix()
    assert result.data == [prefix + ".bin", prefix + ".idx"]
    assert result._metadata["format"] == "megatron"
    assert result._metadata["file_prefix"] == prefix
    assert (result._metadata["num_tokens"], result._metadata["token_size"]) == (8, 2)
    assert result._metadata["eod_token_id"] == 0
    tokens = np.fromfile(prefix + ".bin", dtype=np.uint16)
    assert tokens.tolist() == [97, 98, 0, 0, 120, 121, 122, 0]
    index = Path(prefix + ".idx").read_bytes()
    assert index[:9] == b"MMIDIDX\x00\x00"
    version, dtype_code, n_seq, n_doc = struct.unpack("<QBQQ", index[9:34])
    assert (version, dtype_code, n_seq, n_doc) == (1, 8, 3, 4)
    body = index[34:]
    lengths = np.frombuffer(body[:12], dtype=np.int32)
    pointers = np.frombuffer(body[12:36], dtype=np.int64)
    documents = np.frombuffer(body[36:], dtype=np.int64)
    assert lengths.tolist() == [3, 1, 4]
    assert pointers.tolist() == [0, 6, 8]
    assert documents.tolist() == [0, 1, 2, 3]


def test_hash_matches_spec_formula(tmp_path: Path) -> None:
    (path,) = JsonlWriter((tmp_path / "o").as_posix()).process(_batch()).data
    payload = "|".join(sorted(SOURCES)) + "|file_group_0_processed"
    assert Path(path).name == hashlib.sha256(payload.encode()).hexdigest()[:12] + ".jsonl"
    json.loads(Path(path).read_text().splitlines()[0])


def test_missing_source_files_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    JsonlWriter((tmp_path / "o").as_posix()).process(_batch(metadata={}))
    assert "The task does not have source_files in metadata, using UUID for base filename" in caplog.text
