"""The vectorised content-hash stage (``nemo_curator.stages.text.hashing``), against ``hashlib``."""

from __future__ import annotations

import hashlib

import pandas as pd
import pyarrow as pa
import pytest

from nemo_curator.stages.text.hashing import AddContentHash, content_hash
from nemo_curator.tasks import DocumentBatch
from nemo_curator.utils.performance_utils import StagePerfStats

DOCS = ["The quick brown fox jumps", "a a a\na a a\nb", "!!! ??? ...", "", "héllo wörld 日本"]


def _batch(data: pa.Table | pd.DataFrame) -> DocumentBatch:
    return DocumentBatch(
        task_id="file_group_0_processed",
        dataset_name="ds",
        data=data,
        _metadata={"source_files": ["/x.jsonl"]},
        _stage_perf=[StagePerfStats(stage_name="jsonl_reader")],
    )


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"id": list(range(len(DOCS))), "text": DOCS})


def _chunked_table() -> pa.Table:
    table = pa.Table.from_pandas(_frame(), preserve_index=False)
    return pa.concat_tables([table.slice(0, 2), table.slice(2)])


def test_content_hash_kernel() -> None:
    values = pa.array(["hello", None, "", "héllo"])
    assert content_hash(values).to_pylist() == [
        "5d41402abc4b2a76b9719d911017c592",
        None,
        "d41d8cd98f00b204e9800998ecf8427e",
        hashlib.md5("héllo".encode()).hexdigest(),
    ]
    assert content_hash(values.slice(1)).to_pylist()[0] is None
    assert content_hash(values, "sha256").to_pylist()[0] == hashlib.sha256(b"hello").hexdigest()
    chunked = pa.chunked_array([values.slice(0, 2), values.slice(2)])
    assert content_hash(chunked).to_pylist() == content_hash(values).to_pylist()


@pytest.mark.parametrize("as_pandas", [True, False])
def test_add_content_hash_stage(as_pandas: bool) -> None:
    task = _batch(_frame() if as_pandas else _chunked_table())
    stage = AddContentHash()
    assert (stage.text_field, stage.hash_field, stage.name) == ("text", "content_hash", "add_content_hash")
    result = stage.process(task)
    assert result._metadata is task._metadata
    assert result._stage_perf is task._stage_perf
    assert result.data.column_names == ["id", "text", "content_hash"]
    assert result.data.column("content_hash").to_pylist() == [
        hashlib.md5(doc.encode("utf-8")).hexdigest() for doc in DOCS
    ]
    assert stage._consume_custom_metrics() == {"documents_hashed": 5.0}
    # Rerunning replaces the column instead of adding a second one.
    rerun = AddContentHash(algorithm="sha1").process(result)
    assert rerun.data.column_names == ["id", "text", "content_hash"]
    assert rerun.data.column("content_hash")[0].as_py() == hashlib.sha1(DOCS[0].encode()).hexdigest()
    with pytest.raises(ValueError, match="Unknown hash algorithm"):
        AddContentHash(algorithm="nope")
