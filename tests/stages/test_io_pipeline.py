"""End-to-end pipelines through the in-process executor (spec: stages-io.md §8)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import fsspec
import pandas as pd
import pytest

from nemo_curator.backends.in_process import InProcessExecutor
from nemo_curator.pipeline import Pipeline
from nemo_curator.stages.text.filters import RepeatedLinesFilter, WordCountFilter
from nemo_curator.stages.text.hashing import AddContentHash
from nemo_curator.stages.text.io.reader import JsonlReader, ParquetReader
from nemo_curator.stages.text.io.writer import JsonlWriter, ParquetWriter
from nemo_curator.stages.text.modules import ScoreFilter
from nemo_curator.tasks import FileGroupTask


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path.as_posix()


@pytest.fixture
def news(tmp_path: Path) -> dict[str, str]:
    root = tmp_path / "d" / "News"
    paths = {
        "b": _jsonl(root / "b.jsonl", [{"text": "b one", "n": 1}, {"text": "b two", "n": 2}]),
        "a": _jsonl(root / "a.jsonl", [{"text": "a one", "n": 0}]),
        "c": _jsonl(root / "sub" / "c.json", [{"text": "c one", "n": 3}]),
    }
    (root / "x.txt").write_text("not data\n")
    return paths


def _name(sources: list[str], task_id: str) -> str:
    return hashlib.sha256(("|".join(sorted(sources)) + "|" + task_id).encode()).hexdigest()[:12]


def test_spec_example(news: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "o"
    writer = JsonlWriter(out.as_posix())
    assert out.is_dir()  # the writer creates its directory at construction
    pipeline = Pipeline(
        name="spec_example",
        stages=[JsonlReader((tmp_path / "d" / "News").as_posix(), files_per_partition=2), writer],
    )
    results = pipeline.run(InProcessExecutor())

    assert [type(t) for t in results] == [FileGroupTask, FileGroupTask]
    first, second = results
    assert (first.task_id, second.task_id) == ("file_group_0_processed", "file_group_1_processed")
    assert {first.dataset_name, second.dataset_name} == {"news"}
    group0 = [news["a"], news["b"]]
    name0 = _name(group0, "file_group_0_processed")
    assert first.data == [(out / f"{name0}.jsonl").as_posix()]
    assert first._metadata == {
        "partition_index": 0,
        "total_partitions": 2,
        "source_files": group0,
        "format": "jsonl",
    }
    assert second._metadata["source_files"] == [news["c"]]
    assert second.data == [(out / f"{_name([news['c']], 'file_group_1_processed')}.jsonl").as_posix()]
    # a's row, then b's rows, index not written.
    assert Path(first.data[0]).read_text().splitlines() == [
        '{"text":"a one","n":0}',
        '{"text":"b one","n":1}',
        '{"text":"b two","n":2}',
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(t.data[0]).name for t in results)
    # The reader starts a fresh perf history, so the partitioning stage's entry is gone.
    assert [s.stage_name for s in first._stage_perf] == ["jsonl_reader", "jsonl_writer"]
    # Rerunning overwrites the same files.
    rerun = pipeline.run(InProcessExecutor())
    assert [t.data for t in rerun] == [t.data for t in results]
    assert len(list(out.iterdir())) == 2


def test_curation_pipeline_parquet_roundtrip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _jsonl(
        src / "docs.jsonl",
        [
            {"id": 0, "text": "one two three four"},
            {"id": 1, "text": "short"},
            {"id": 2, "text": "same line\nsame line\nsame line\nsame line"},
            {"id": 3, "text": "alpha beta gamma\ndelta"},
        ],
    )
    stages = [
        JsonlReader(src.as_posix()),
        AddContentHash(),
        ScoreFilter(WordCountFilter(min_words=2, max_words=10)),
        ScoreFilter(RepeatedLinesFilter(max_repeated_line_fraction=0.5)),
        ParquetWriter((tmp_path / "pq").as_posix()),
    ]
    (written,) = Pipeline(name="curate", stages=stages).run(InProcessExecutor())
    assert written._metadata["format"] == "parquet"
    perf = {s.stage_name: s.custom_metrics for s in written._stage_perf}
    # Word counts 4, 1, 8, 4: doc 1 goes. Distinct-line shares of the rest 1, 1/4, 1: doc 2 goes.
    assert perf["word_count"] == {"documents_kept": 3.0, "documents_removed": 1.0}
    assert perf["repeated_lines"] == {"documents_kept": 2.0, "documents_removed": 1.0}
    assert perf["add_content_hash"] == {"documents_hashed": 4.0}

    (read_back,) = Pipeline(
        name="read", stages=[ParquetReader((tmp_path / "pq").as_posix(), fields=["id", "content_hash"])]
    ).run(InProcessExecutor())
    df = read_back.data
    assert isinstance(df, pd.DataFrame)
    assert df["id"].tolist() == [0, 3]
    assert df["content_hash"].tolist() == [
        hashlib.md5(b"one two three four").hexdigest(),
        hashlib.md5(b"alpha beta gamma\ndelta").hexdigest(),
    ]


def test_remote_urls_end_to_end() -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/e2e-bucket/in/Part/x.jsonl", b'{"text": "hello remote"}\n{"text": "second"}\n')
    try:
        (result,) = Pipeline(
            name="remote",
            stages=[JsonlReader("memory://e2e-bucket/in"), JsonlWriter("memory://e2e-bucket/out")],
        ).run(InProcessExecutor())
        source = "memory:///e2e-bucket/in/Part/x.jsonl"
        assert result._metadata["source_files"] == [source]
        assert result.dataset_name == "x.jsonl"
        assert result.data == [f"memory:///e2e-bucket/out/{_name([source], 'file_group_0_processed')}.jsonl"]
        assert fs.cat_file(result.data[0]) == b'{"text":"hello remote"}\n{"text":"second"}\n'
    finally:
        fs.rm("/e2e-bucket", recursive=True)


def test_partitioning_logs(news: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stages = [JsonlReader((tmp_path / "d" / "News").as_posix(), files_per_partition=1)]
    Pipeline(name="logs", stages=stages).run(InProcessExecutor())
    assert "Found 3 files" in caplog.text
    assert "Created 3 file groups from 3 files" in caplog.text
    caplog.clear()
    assert (
        Pipeline(name="none", stages=[JsonlReader((tmp_path / "void").as_posix())]).run(InProcessExecutor())
        == []
    )
    assert f"No files found under {(tmp_path / 'void').as_posix()}" in caplog.text
