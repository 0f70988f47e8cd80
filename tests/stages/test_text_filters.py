"""Arrow-vectorised text filters and the content-hash modifier, against hand-computed values."""

from __future__ import annotations

import hashlib
import unicodedata

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_curator.stages.base import get_stage_class
from nemo_curator.stages.resources import Resources
from nemo_curator.stages.text.filters import (
    MeanWordLengthFilter,
    NonAlphaNumericFilter,
    RepeatedLinesFilter,
    WordCountFilter,
    scores,
)
from nemo_curator.stages.text.modifiers import AddContentHash
from nemo_curator.stages.text.modifiers.content_hash import content_hash
from nemo_curator.tasks import DocumentBatch
from nemo_curator.utils.performance_utils import StagePerfStats

# Hand-computed per document: words, non-whitespace characters, length, alphanumerics, non-blank lines.
DOCS = [
    "The quick brown fox jumps",  # 5 words, 21 chars in words, length 25, 21 alnum, 1 line
    "a a a\na a a\nb",  # 7 words, 7 chars, length 13, 7 alnum, lines [a a a, a a a, b]: 1 repeat of 3
    "!!! ??? ...",  # 3 words, 9 chars, length 11, 0 alnum, 1 line
    "",  # nothing
    "line\n\nline\nline\n  \nother",  # 4 words, 17 chars, length 24, 17 alnum, lines [line x3, other]: 2 of 4
]
WORDS = [5, 7, 3, 0, 4]
MEAN_WORD_LENGTH = [21 / 5, 1.0, 3.0, 0.0, 17 / 4]
NON_ALNUM = [4 / 25, 6 / 13, 1.0, 1.0, 7 / 24]
REPEATED = [0.0, 1 / 3, 0.0, 0.0, 0.5]


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
    # Two record batches, so the text column arrives as a multi-chunk ChunkedArray.
    table = pa.Table.from_pandas(_frame(), preserve_index=False)
    return pa.concat_tables([table.slice(0, 2), table.slice(2)])


def test_scores_match_hand_computed_values() -> None:
    text = _chunked_table().column("text")
    assert text.num_chunks == 2
    assert scores.word_count(text).to_pylist() == WORDS
    assert scores.mean_word_length(text).to_pylist() == pytest.approx(MEAN_WORD_LENGTH)
    assert scores.non_alpha_numeric_ratio(text).to_pylist() == pytest.approx(NON_ALNUM)
    assert scores.repeated_line_fraction(text).to_pylist() == pytest.approx(REPEATED)


def test_scores_unicode_whitespace_nulls_and_types() -> None:
    # NBSP, ideographic space, tab, vertical tab and NEL all separate words; letters of any script count.
    text = pa.array(["x\u00a0yy\u3000z\tw\vq\u0085r", None, "héllo wörld", "日本語 テキスト"])
    assert scores.word_count(text).to_pylist() == [6, 0, 2, 2]
    assert scores.mean_word_length(text).to_pylist() == pytest.approx([7 / 6, 0.0, 5.0, 3.5])
    assert scores.non_alpha_numeric_ratio(text).to_pylist() == pytest.approx([5 / 12, 1.0, 1 / 11, 1 / 8])
    assert scores.word_count(text.cast(pa.large_string())).to_pylist() == [6, 0, 2, 2]
    assert scores.word_count(text.cast(pa.string_view())).to_pylist() == [6, 0, 2, 2]
    assert scores.repeated_line_fraction(pa.array([], pa.string())).to_pylist() == []
    with pytest.raises(TypeError, match="Expected a string column"):
        scores.word_count(pa.array([1, 2]))


@pytest.mark.parametrize("as_pandas", [True, False])
@pytest.mark.parametrize(
    ("stage", "kept_ids"),
    [
        (WordCountFilter(min_words=3, max_words=5), [0, 2, 4]),
        (MeanWordLengthFilter(min_length=3, max_length=4.5), [0, 2, 4]),
        (NonAlphaNumericFilter(max_non_alpha_numeric_ratio=0.3), [0, 4]),
        (RepeatedLinesFilter(max_repeated_line_fraction=0.4), [0, 1, 2, 3]),
    ],
)
def test_filters_keep_expected_documents(stage, kept_ids: list[int], as_pandas: bool) -> None:
    task = _batch(_frame() if as_pandas else _chunked_table())
    result = stage.process(task)
    assert isinstance(result, DocumentBatch)
    assert isinstance(result.data, pa.Table)
    assert result.task_id == task.task_id
    assert result.dataset_name == task.dataset_name
    assert result._metadata is task._metadata
    assert result._stage_perf is task._stage_perf
    assert result.data.column("id").to_pylist() == kept_ids
    assert result.data.column_names == ["id", "text"]
    assert stage._consume_custom_metrics() == {
        "documents_kept": float(len(kept_ids)),
        "documents_removed": float(len(DOCS) - len(kept_ids)),
    }


def test_score_field_keeps_all_documents() -> None:
    stage = WordCountFilter(min_words=3, max_words=5, score_field="word_count")
    result = stage.process(_batch(_frame()))
    assert result.data.column("id").to_pylist() == [0, 1, 2, 3, 4]
    assert result.data.column("word_count").to_pylist() == WORDS
    assert stage.outputs() == (["data"], ["text", "word_count"])
    assert stage._consume_custom_metrics() == {"documents_scored": 5.0, "documents_passing": 3.0}
    again = RepeatedLinesFilter(score_field="word_count").process(result)
    assert again.data.column_names == ["id", "text", "word_count"]
    assert again.data.column("word_count").to_pylist() == pytest.approx(REPEATED)


def test_all_documents_removed_gives_empty_batch() -> None:
    result = WordCountFilter(min_words=100, max_words=200).process(_batch(_frame()))
    assert result.data.num_rows == 0
    assert result.data.column_names == ["id", "text"]


def test_filter_configuration() -> None:
    stage = WordCountFilter(1, 2, "body")
    assert (stage.min_words, stage.max_words, stage.text_field) == (1, 2, "body")
    assert stage.name == "word_count_filter"
    assert stage.resources == Resources(cpus=1.0)
    assert stage.batch_size == 1
    assert stage.inputs() == (["data"], ["body"])
    with pytest.raises(KeyError, match="missing column"):
        stage.process(_batch(_frame()))
    with pytest.raises(ValueError, match="failed validation"):
        stage.process_batch([_batch(_frame())])
    with pytest.raises(ValueError):
        WordCountFilter(min_words=5, max_words=1)
    with pytest.raises(ValueError):
        MeanWordLengthFilter(min_length=5, max_length=1)
    with pytest.raises(ValueError):
        NonAlphaNumericFilter(1.5)
    with pytest.raises(ValueError):
        RepeatedLinesFilter(-0.1)
    for name in ("WordCountFilter", "MeanWordLengthFilter", "NonAlphaNumericFilter", "RepeatedLinesFilter"):
        assert get_stage_class(name).__name__ == name
    with pytest.raises(KeyError):
        get_stage_class("HeuristicFilter")


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


def test_whitespace_matches_str_isspace() -> None:
    table = scores._whitespace_table()
    assert set(np.flatnonzero(table).tolist()) == {cp for cp in range(0x110000) if chr(cp).isspace()}


_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(" \t\n\n\x0b\x1c\x85\u00a0\u3000\u2028ab\u00e9\u65e5!1")),
        st.characters(exclude_categories=("Cs",)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.none(), _TEXT), max_size=12), st.integers(min_value=0, max_value=3))
def test_scores_match_python_reference(docs: list[str | None], skip: int) -> None:
    # A sliced, multi-chunk input exercises the buffer offsets too.
    array = pa.array(["<skipped>"] * skip + docs, type=pa.string()).slice(skip)
    chunked = pa.chunked_array(
        [array.slice(0, len(docs) // 2), array.slice(len(docs) // 2)], type=pa.string()
    )
    texts = [doc or "" for doc in docs]

    def alnum(text: str) -> int:
        return sum(unicodedata.category(ch)[0] in "LN" for ch in text)

    def repeated(text: str) -> float:
        lines = [line for line in text.split("\n") if line and not line.isspace()]
        return (len(lines) - len(set(lines))) / len(lines) if lines else 0.0

    stats = scores.text_stats(chunked, with_alnum=True)
    assert stats.length.tolist() == [len(text) for text in texts]
    assert stats.words.tolist() == [len(text.split()) for text in texts]
    assert stats.word_chars.tolist() == [sum(map(len, text.split())) for text in texts]
    assert stats.alnum.tolist() == [alnum(text) for text in texts]
    assert scores.repeated_line_fraction(chunked).to_pylist() == pytest.approx([repeated(t) for t in texts])
    assert scores.word_count(array.cast(pa.large_string())).to_pylist() == [len(t.split()) for t in texts]


def test_text_stats_across_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tiny slices force documents to be classified in many separate pieces.
    monkeypatch.setattr(scores, "_SLICE_BYTES", 7)
    docs = ["one two", "", "日本 語 x", "a" * 30 + " b", "", "é é"]
    stats = scores.text_stats(pa.array(docs), with_alnum=True)
    assert stats.words.tolist() == [2, 0, 3, 2, 0, 2]
    assert stats.length.tolist() == [len(d) for d in docs]
    assert stats.alnum.tolist() == [6, 0, 4, 31, 0, 2]
