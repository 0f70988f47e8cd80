"""``ScoreFilter``, ``Score``, ``Filter``, ``Modify``, ``AddId``, ``DocumentSplitter`` and ``DocumentJoiner``
(spec: text-stages.md §3-§7 and the worked example of §12)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_curator.stages.base import get_stage_class
from nemo_curator.stages.resources import Resources
from nemo_curator.stages.text.filters import (
    DocumentFilter,
    MeanWordLengthFilter,
    NonAlphaNumericFilter,
    NumbersFilter,
    RepeatedLinesFilter,
    TokenCountFilter,
    UrlsFilter,
    WordCountFilter,
)
from nemo_curator.stages.text.modifiers import DocumentModifier, UrlRemover
from nemo_curator.stages.text.modules import (
    AddId,
    DocumentJoiner,
    DocumentSplitter,
    Filter,
    Modify,
    Score,
    ScoreFilter,
)
from nemo_curator.tasks import DocumentBatch
from nemo_curator.utils.performance_utils import StagePerfStats

TEXTS = ["Hello world", "The quick brown fox", "  one   two  three  ", "", "a b c d e f"]


def example_frame() -> pd.DataFrame:
    return pd.DataFrame({"id": list("abcde"), "text": TEXTS})


def batch_of(data: pd.DataFrame | pa.Table, task_id: str = "batch_1") -> DocumentBatch:
    return DocumentBatch(
        task_id=task_id,
        dataset_name="demo",
        data=data,
        _metadata={"source_files": ["x.jsonl"]},
        _stage_perf=[StagePerfStats(stage_name="reader")],
    )


# ---------------------------------------------------------------------------------------------------------
# The worked example (§12)


def test_worked_example() -> None:
    df = example_frame()
    batch = batch_of(df)
    stage = ScoreFilter(WordCountFilter(min_words=3), text_field="text", score_field="word_count")
    assert stage.name == "word_count"
    assert stage.inputs() == (["data"], ["text"])
    assert stage.outputs() == (["data"], ["text", "word_count"])
    assert stage.ray_stage_spec() == {"is_actor_stage": False}
    assert (stage.resources, stage.batch_size) == (Resources(cpus=1.0), 1)

    out = stage.process(batch)
    assert (out.task_id, out.dataset_name) == ("batch_1_word_count", "demo")
    assert out._metadata is batch._metadata and out._stage_perf is batch._stage_perf
    assert isinstance(out.data, pd.DataFrame)
    assert out.data.index.tolist() == [1, 2, 4]
    assert out.data.columns.tolist() == ["id", "text", "word_count"]
    assert out.data["id"].tolist() == ["b", "c", "e"]
    assert out.data["word_count"].tolist() == [4, 3, 6]
    assert out.data["word_count"].dtype == np.int64
    # As in Curator, the score column also lands on the input frame.
    assert df["word_count"].tolist() == [2, 4, 3, 0, 6]
    assert stage._consume_custom_metrics() == {"documents_kept": 3.0, "documents_removed": 2.0}

    inverted = ScoreFilter(WordCountFilter(min_words=3), invert=True).process(batch_of(example_frame()))
    assert inverted.data.index.tolist() == [0, 3]

    plain = ScoreFilter(WordCountFilter(min_words=3))
    result = plain.process(batch_of(example_frame()))
    assert result.data.columns.tolist() == ["id", "text"]
    assert plain.outputs() == (["data"], ["text", None])

    empty = batch_of(example_frame().iloc[:0])
    assert stage.process(empty) is empty

    chain = ScoreFilter([WordCountFilter(min_words=3), NumbersFilter()], score_field=["wc", "num"])
    assert chain.name == "score_filter_chain_of_word_count_numbers_ratio"
    chained = chain.process(batch_of(example_frame()))
    assert chained.task_id == "batch_1_score_filter_chain_of_word_count_numbers_ratio"
    assert chained.data.columns.tolist() == ["id", "text", "wc", "num"]
    assert chained.data["num"].tolist() == [0.0, 0.0, 0.0]


def test_worked_example_on_arrow_stays_arrow() -> None:
    table = pa.Table.from_pandas(example_frame(), preserve_index=False)
    table = pa.concat_tables([table.slice(0, 2), table.slice(2)])  # a multi-chunk text column
    out = ScoreFilter(WordCountFilter(min_words=3), score_field="word_count").process(batch_of(table))
    assert isinstance(out.data, pa.Table)
    assert out.data.column_names == ["id", "text", "word_count"]
    assert out.data.column("id").to_pylist() == ["b", "c", "e"]
    assert out.data.column("word_count").type == pa.int64()
    assert out.data.column("word_count").to_pylist() == [4, 3, 6]
    empty = batch_of(table.slice(0, 0))
    assert ScoreFilter(WordCountFilter()).process(empty) is empty


def test_chain_scores_only_surviving_rows() -> None:
    seen: list[str] = []

    class Recording(DocumentFilter):
        def score_document(self, text: str) -> float:
            seen.append(text)
            return 1.0

        def keep_document(self, score: float) -> bool:
            return True

    stage = ScoreFilter([WordCountFilter(min_words=4), Recording()], score_field=["wc", "rec"])
    out = stage.process(batch_of(example_frame()))
    assert seen == ["The quick brown fox", "a b c d e f"]
    assert out.data.index.tolist() == [1, 4]
    assert stage.name == "score_filter_chain_of_word_count_Recording"


def test_all_rows_removed_gives_an_empty_frame() -> None:
    stage = ScoreFilter([WordCountFilter(min_words=100), MeanWordLengthFilter()], score_field=["wc", "mean"])
    out = stage.process(batch_of(example_frame()))
    assert isinstance(out.data, pd.DataFrame) and len(out.data) == 0
    assert {"id", "text", "wc"} <= set(out.data.columns)
    assert out.task_id == "batch_1_score_filter_chain_of_word_count_mean_word_length"
    table_out = ScoreFilter(WordCountFilter(min_words=100)).process(
        batch_of(pa.Table.from_pandas(example_frame(), preserve_index=False))
    )
    assert table_out.data.num_rows == 0 and table_out.data.column_names == ["id", "text"]


def test_row_errors_fail_the_stage_on_both_paths() -> None:
    # Curator's MeanWordLengthFilter divides by zero on a document without words; so do both our paths.
    class RowWise(MeanWordLengthFilter):
        def score_document(self, text: str) -> float:
            return super().score_document(text)

    for filter_obj in (MeanWordLengthFilter(), RowWise()):
        for data in (example_frame(), pa.Table.from_pandas(example_frame(), preserve_index=False)):
            with pytest.raises(ZeroDivisionError):
                ScoreFilter(filter_obj).process(batch_of(data))
    # Once an earlier filter of the chain removed the empty document, nothing fails.
    out = ScoreFilter([WordCountFilter(min_words=1), MeanWordLengthFilter(1, 100)]).process(
        batch_of(example_frame())
    )
    assert out.data.index.tolist() == [0, 1, 2, 4]


# ---------------------------------------------------------------------------------------------------------
# Vectorised path == row-by-row path through the stages


class RowWordCount(WordCountFilter):
    """The same filter with only the row-by-row path (overriding score_document disables score_column)."""

    def score_document(self, text: str) -> float:
        return super().score_document(text)

    def keep_document(self, score: float) -> bool:
        return super().keep_document(score)


class RowRepeatedLines(RepeatedLinesFilter):
    def score_document(self, text: str) -> float:
        return super().score_document(text)

    def keep_document(self, score: float) -> bool:
        return super().keep_document(score)


class RowNonAlnum(NonAlphaNumericFilter):
    def score_document(self, text: str) -> float:
        return super().score_document(text)

    def keep_document(self, score: float) -> bool:
        return super().keep_document(score)


DOC = st.lists(
    st.sampled_from(["a", "bb", "the", " ", "\n", "\n\n", "#", "é", "日本", ".", "\t", "x y"]), max_size=25
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(DOC.map("".join), min_size=1, max_size=12), st.booleans(), st.booleans())
def test_vectorised_stage_equals_row_stage(texts: list[str], as_arrow: bool, invert: bool) -> None:
    texts = [t + "\nend line" for t in texts]  # at least one line, so RepeatedLinesFilter never divides by 0
    frame = pd.DataFrame(
        {"id": range(len(texts)), "text": texts}, index=[10 + 3 * i for i in range(len(texts))]
    )

    def run(filters: list[DocumentFilter]) -> pd.DataFrame | pa.Table:
        data = pa.Table.from_pandas(frame, preserve_index=False) if as_arrow else frame.copy()
        stage = ScoreFilter(filters, score_field=["wc", "rep", "na"], invert=invert)
        return stage.process(batch_of(data)).data

    fast = run([WordCountFilter(2, 12), RepeatedLinesFilter(0.6), NonAlphaNumericFilter(0.5)])
    slow = run([RowWordCount(2, 12), RowRepeatedLines(0.6), RowNonAlnum(0.5)])
    if as_arrow:
        assert fast.equals(slow)
    else:
        pd.testing.assert_frame_equal(fast, slow)
    scored = (
        Score([WordCountFilter(), RowWordCount()], score_field=["a", "b"])
        .process(batch_of(frame.copy()))
        .data
    )
    assert scored["a"].tolist() == scored["b"].tolist()
    assert scored["a"].dtype == scored["b"].dtype == np.int64


def test_non_string_text_uses_the_row_path() -> None:
    frame = pd.DataFrame({"text": ["a b", None, "c"]}, dtype=object)
    with pytest.raises(AttributeError):  # None.strip(), as Curator fails
        ScoreFilter(WordCountFilter(min_words=1)).process(batch_of(frame))
    numbers = pd.DataFrame({"text": [1, 2]})
    with pytest.raises(AttributeError):
        ScoreFilter(WordCountFilter(min_words=1)).process(batch_of(numbers))


# ---------------------------------------------------------------------------------------------------------
# Score and Filter


def test_score_and_filter_stages() -> None:
    score = Score(len, score_field="length")
    assert (score.name, score.inputs(), score.outputs()) == (
        "score_fn",
        (["data"], ["text"]),
        (["data"], ["text", "length"]),
    )
    out = score.process(batch_of(example_frame()))
    assert out.task_id == "batch_1_score_fn"
    assert out.data["length"].tolist() == [len(t) for t in TEXTS]
    assert out.data.index.tolist() == [0, 1, 2, 3, 4]

    scored = Score(WordCountFilter(), score_field="wc").process(batch_of(example_frame()))
    assert scored.task_id == "batch_1_word_count"
    kept = Filter(WordCountFilter(min_words=3, max_words=4), filter_field="wc").process(scored)
    assert kept.task_id == "batch_1_word_count_word_count"
    assert kept.data.index.tolist() == [1, 2]
    inverted = Filter(lambda n: n > 3, filter_field="wc", invert=True)
    assert inverted.name == "filter_fn"
    assert inverted.process(scored).data.index.tolist() == [0, 2, 3]
    assert Filter(lambda n: n > 3, filter_field="wc").outputs() == (["data"], ["wc"])
    assert Filter(WordCountFilter(), "wc").ray_stage_spec() == {}

    chain = Filter(
        [WordCountFilter(min_words=1), NumbersFilter()], filter_field=["wc", "n"], invert=[False, True]
    )
    assert chain.name == "filter_chain_of_word_count_numbers_ratio"
    frame = scored.data.assign(n=[0.0, 0.5, 0.0, 0.0, 0.9])
    assert chain.process(batch_of(frame)).data.index.tolist() == [1, 4]

    score_chain = Score([WordCountFilter(), len], score_field=["wc", "len"])
    assert score_chain.name == "score_chain_of_word_count_len"


def test_filter_keep_results_on_arrow_must_be_booleans() -> None:
    table = pa.table({"n": [1, 2, 3]})
    out = Filter(lambda n: n > 1, filter_field="n").process(batch_of(table))
    assert out.data.column("n").to_pylist() == [2, 3]
    with pytest.raises(TypeError, match="must return booleans"):
        Filter(lambda n: n, filter_field="n").process(batch_of(table))


def test_names_given_to_the_constructor_are_replaced() -> None:
    stage = ScoreFilter(WordCountFilter(), name="custom")
    assert stage.name == "word_count"
    assert stage.with_(name="custom").name == "custom"
    assert Score(len, score_field="x", name="custom").name == "score_fn"
    assert (
        ScoreFilter([WordCountFilter(), UrlsFilter()]).name == "score_filter_chain_of_word_count_urls_ratio"
    )


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: ScoreFilter(WordCountFilter(), text_field=None), ValueError, "text_field cannot be None"),
        (lambda: Filter(len, filter_field=None), ValueError, "filter_field cannot be None"),
        (lambda: Score(len, score_field=None), ValueError, "score_field cannot be None"),
        (lambda: Score(len, score_field="s", text_field=None), ValueError, "text_field cannot be None"),
        (
            lambda: ScoreFilter(WordCountFilter(), text_field=["a", "b"]),
            ValueError,
            "More text fields than functions provided: ['a', 'b']",
        ),
        (
            lambda: ScoreFilter(WordCountFilter(), invert=[True, False]),
            ValueError,
            "More invert fields than functions provided: [True, False]",
        ),
        (
            lambda: Score(len, score_field=["a", "b"]),
            ValueError,
            "More score fields than functions provided: ['a', 'b']",
        ),
        (
            lambda: ScoreFilter(WordCountFilter(), text_field=3),
            TypeError,
            "text field must be a <class 'str'> or list of <class 'str'>: 3",
        ),
        (
            lambda: ScoreFilter(WordCountFilter(), invert="yes"),
            TypeError,
            "invert field must be a <class 'bool'> or list of <class 'bool'>: yes",
        ),
        (
            lambda: Filter([len, len], filter_field="x"),
            ValueError,
            "filter_field must be a list of strings if multiple filters are used: x",
        ),
        (
            lambda: Filter([len, len], filter_field=["x"]),
            ValueError,
            "filter_field must be a list of strings if multiple filters are used: ['x']",
        ),
        (
            lambda: Score([len, len], score_field="s"),
            ValueError,
            "score_field must be a list of strings if multiple filters are used: s",
        ),
        (
            lambda: ScoreFilter([WordCountFilter(), UrlsFilter()], score_field=["s"]),
            ValueError,
            "score_field must be a list of strings if multiple filters are used: ['s']",
        ),
        (
            lambda: ScoreFilter([WordCountFilter(), UrlsFilter()], text_field=["a", "b", "c"]),
            ValueError,
            "Number of text fields must match number of functions: ['a', 'b', 'c']",
        ),
        (
            lambda: ScoreFilter([WordCountFilter(), UrlsFilter()], score_field=["a", "b", "c"]),
            ValueError,
            "Number of score fields must match number of functions: ['a', 'b', 'c']",
        ),
        (
            lambda: Filter([len, len], filter_field=["a", "b"], invert=[True, False, True]),
            ValueError,
            "Number of invert fields must match number of functions: [True, False, True]",
        ),
        (
            lambda: ScoreFilter([WordCountFilter(), len]),
            TypeError,
            "ScoreFilter needs DocumentFilter objects",
        ),
        (lambda: ScoreFilter(len), TypeError, "ScoreFilter needs DocumentFilter objects"),
        (lambda: Score([], score_field=[]), ValueError, "the list of functions is empty"),
        (
            lambda: Score("text", score_field="s"),
            TypeError,
            "expected a DocumentFilter, a callable or a list",
        ),
        (
            lambda: Score([len, 3], score_field=["a", "b"]),
            TypeError,
            "is neither a DocumentFilter nor callable",
        ),
    ],
)
def test_normalisation_errors(build: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        build()


def test_normalisation_of_fields() -> None:
    single = ScoreFilter(WordCountFilter(), text_field=["body"], score_field=["s"], invert=[True])
    assert (single.text_field, single.score_field, single.invert) == (["body"], ["s"], [True])
    chain = ScoreFilter([WordCountFilter(), UrlsFilter()], text_field="body", invert=True)
    assert (chain.text_field, chain.score_field, chain.invert) == (
        ["body", "body"],
        [None, None],
        [True, True],
    )
    assert chain.outputs() == (["data"], ["body", "body", None, None])
    # A one-element list is used for every function (Curator 1.1.0 would nest it in a list).
    listed = ScoreFilter([WordCountFilter(), UrlsFilter()], text_field=["body"], invert=[False])
    assert (listed.text_field, listed.invert) == (["body", "body"], [False, False])
    assert Score(len, score_field="s").score_fn == [len]


class _ModelFilter(DocumentFilter):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def model_check_or_download(self) -> None:
        self.calls.append("download")

    def load_model(self) -> None:
        self.calls.append("load")

    def score_document(self, text: str) -> float:
        return 1.0

    def keep_document(self, score: float) -> bool:
        return True


def test_actor_stage_spec_and_setup_hooks() -> None:
    model = _ModelFilter()
    for stage in (ScoreFilter([WordCountFilter(), model]), Score(model, score_field="s")):
        assert stage.ray_stage_spec() == {"is_actor_stage": True}
        model.calls.clear()
        stage.setup_on_node()
        stage.setup()
        assert model.calls == ["download", "load"]
    tokens = ScoreFilter(TokenCountFilter(tokenizer=_Tokens()))
    assert tokens.ray_stage_spec() == {"is_actor_stage": True}  # it defines load_tokenizer
    tokens.setup_on_node()
    tokens.setup()
    assert Score(len, score_field="s").ray_stage_spec() == {"is_actor_stage": False}


class _Tokens:
    def encode(self, text: str) -> list[str]:
        return text.split()


def test_stages_are_registered_and_validated() -> None:
    for name in ("ScoreFilter", "Score", "Filter", "Modify", "AddId", "DocumentSplitter", "DocumentJoiner"):
        assert get_stage_class(name).__name__ == name
    stage = ScoreFilter(WordCountFilter(), text_field="body")
    with pytest.raises(ValueError, match="failed validation"):
        stage.process_batch([batch_of(example_frame())])
    out = ScoreFilter(WordCountFilter(min_words=3)).process_batch(
        [batch_of(example_frame()), batch_of(example_frame(), "b2")]
    )
    assert [o.task_id for o in out] == ["batch_1_word_count", "b2_word_count"]


# ---------------------------------------------------------------------------------------------------------
# Modify


class _Upper(DocumentModifier):
    def modify_document(self, text: str) -> str:
        return text.upper()


class _Join(DocumentModifier):
    def modify_document(self, id: str, text: str) -> str:
        return f"{id}:{text}"


def test_modify_single_and_chained() -> None:
    stage = Modify(_Upper())
    assert (stage.name, stage.inputs(), stage.outputs()) == (
        "_Upper",
        (["data"], ["text"]),
        (["data"], ["text"]),
    )
    out = stage.process(batch_of(example_frame()))
    assert out.task_id == "batch_1__Upper"
    assert out.data["text"].tolist() == [t.upper() for t in TEXTS]

    chain = Modify([_Upper(), lambda t: t.strip()], output_fields="clean")
    assert chain.name == "modifier_chain_of__Upper_<lambda>"
    out = chain.process(batch_of(example_frame()))
    # Each writes "clean" from its own input; the last write wins.
    assert out.data["clean"].tolist() == [t.strip() for t in TEXTS]
    assert out.data["text"].tolist() == TEXTS

    in_place = Modify([_Upper(), UrlRemover()])
    assert in_place.process(batch_of(pd.DataFrame({"text": ["see http://x.org now"]}))).data[
        "text"
    ].tolist() == ["SEE  NOW"]

    multi = Modify(_Join(), input_fields=[["id", "text"]], output_fields="joined")
    assert multi.inputs() == (["data"], ["id", "text"])
    assert multi.outputs() == (["data"], ["joined"])
    assert multi.process(batch_of(example_frame())).data["joined"].tolist()[:2] == [
        "a:Hello world",
        "b:The quick brown fox",
    ]

    per_column = Modify(
        [_Upper(), lambda s: s + "!"], input_fields=["id", "text"], output_fields=[None, "t2"]
    )
    assert per_column.inputs() == (["data"], ["id", "text"])
    assert per_column.outputs() == (["data"], ["id", "t2"])
    out = per_column.process(batch_of(example_frame()))
    assert out.data["id"].tolist() == list("ABCDE")
    assert out.data["t2"].tolist()[0] == "Hello world!"
    # A pyarrow batch is handled through pandas, as in Curator.
    arrow_out = Modify(_Upper()).process(
        batch_of(pa.Table.from_pandas(example_frame(), preserve_index=False))
    )
    assert arrow_out.data["text"].tolist()[0] == "HELLO WORLD"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"modifier_fn": _Upper(), "input_fields": None}, ValueError, "Input field cannot be None"),
        ({"modifier_fn": []}, ValueError, "modifier_fn list cannot be empty"),
        ({"modifier_fn": [_Upper(), 3]}, TypeError, "Each modifier must be a DocumentModifier or callable"),
        (
            {"modifier_fn": [_Upper(), _Upper()], "input_fields": ["a", "b", "c"]},
            ValueError,
            "Number of input fields (3) must be 1 or equal to number of modifiers (2)",
        ),
        (
            {"modifier_fn": [_Upper(), _Upper()], "input_fields": [["a"], ["b"], ["c"]]},
            ValueError,
            "Number of input field groups (3) must be 1 or equal to number of modifiers (2)",
        ),
        (
            {"modifier_fn": _Upper(), "input_fields": ["a", ["b"]]},
            TypeError,
            "input_fields must be str, list[str]",
        ),
        ({"modifier_fn": _Upper(), "input_fields": 3}, TypeError, "input_fields must be str, list[str]"),
        (
            {"modifier_fn": _Join(), "input_fields": [["id", "text"]]},
            ValueError,
            "output_fields must be provided when any modifier has multiple input fields",
        ),
        (
            {"modifier_fn": _Join(), "input_fields": [["id", "text"]], "output_fields": [None]},
            ValueError,
            "Implicit in-place (None) not allowed",
        ),
        (
            {"modifier_fn": [_Upper(), _Upper()], "output_fields": ["a", "b", "c"]},
            ValueError,
            "Number of output fields (3) must be 1 or equal to number of modifiers (2)",
        ),
        (
            {"modifier_fn": _Upper(), "output_fields": 3},
            TypeError,
            "output_field must be str, list[str | None], or None",
        ),
    ],
)
def test_modify_normalisation_errors(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        Modify(**kwargs)


def test_modify_field_normalisation() -> None:
    stage = Modify([_Upper(), _Upper()], input_fields=["a"], output_fields=["o"])
    assert (stage._input_fields, stage._output_fields) == ([["a"], ["a"]], ["o", "o"])
    stage = Modify([_Upper(), _Join()], input_fields=[["a"], ["id", "text"]], output_fields=[None, "j"])
    assert (stage._input_fields, stage._output_fields) == ([["a"], ["id", "text"]], ["a", "j"])
    assert Modify(_Upper(), name="x").name == "_Upper"


# ---------------------------------------------------------------------------------------------------------
# AddId


@pytest.mark.parametrize("as_arrow", [False, True])
def test_add_id(as_arrow: bool) -> None:
    frame = example_frame().drop(columns="id")
    data = pa.Table.from_pandas(frame, preserve_index=False) if as_arrow else frame
    batch = batch_of(data)
    stage = AddId(id_field="doc_id", id_prefix="web")
    assert (stage.name, stage.inputs(), stage.outputs()) == ("add_id", (["data"], []), (["data"], ["doc_id"]))
    out = stage.process(batch)
    assert out.task_id == "batch_1_add_id"
    ids = out.data.column("doc_id").to_pylist() if as_arrow else out.data["doc_id"].tolist()
    assert ids == [f"web_{batch._uuid}_{i}" for i in range(5)]
    no_prefix = AddId(id_field="doc_id", id_prefix="").process(batch_of(example_frame().drop(columns="id")))
    assert no_prefix.data["doc_id"].tolist()[0].endswith("_0")
    assert not no_prefix.data["doc_id"].tolist()[0].startswith("_")
    with pytest.raises(
        ValueError, match=re.escape("Column 'doc_id' already exists. Set overwrite=True to replace it.")
    ):
        AddId(id_field="doc_id").process(out)
    again = AddId(id_field="doc_id", overwrite=True).process(out)
    again_ids = again.data.column("doc_id").to_pylist() if as_arrow else again.data["doc_id"].tolist()
    assert again_ids == [f"{out._uuid}_{i}" for i in range(5)]


def test_add_id_ids_differ_between_batches() -> None:
    first = AddId(id_field="i").process(batch_of(example_frame()))
    second = AddId(id_field="i").process(batch_of(example_frame()))
    assert not set(first.data["i"]) & set(second.data["i"])


# ---------------------------------------------------------------------------------------------------------
# DocumentSplitter and DocumentJoiner


def test_split_then_join_restores_documents() -> None:
    frame = pd.DataFrame({"id": [7, 3], "text": ["p1\n\np2\n\np3", "solo"], "lang": ["en", "de"]})
    splitter = DocumentSplitter(separator="\n\n")
    assert (splitter.name, splitter.inputs(), splitter.outputs()) == (
        "document_splitter",
        (["data"], ["text"]),
        (["data"], ["text", "segment_id"]),
    )
    split = splitter.process(batch_of(frame))
    assert split.task_id == "batch_1_document_splitter"
    assert split.data.columns.tolist() == ["id", "text", "lang", "segment_id"]
    assert split.data["text"].tolist() == ["p1", "p2", "p3", "solo"]
    assert split.data["segment_id"].tolist() == [0, 1, 2, 0]
    assert split.data.index.tolist() == [0, 1, 2, 3]
    assert frame.columns.tolist() == ["id", "text", "lang"]  # the input frame is left alone

    joiner = DocumentJoiner()
    assert joiner.inputs() == (["data"], ["text", "segment_id", "id"])
    assert joiner.outputs() == (["data"], ["text", "id"])
    shuffled = split.data.iloc[[2, 3, 0, 1]]
    joined = joiner.process(batch_of(shuffled))
    assert joined.task_id == "batch_1_document_joiner"
    assert joined.data.columns.tolist()[0] == "id"
    assert joined.data["id"].tolist() == [3, 7]  # ordered by document id
    assert joined.data["text"].tolist() == ["solo", "p1\n\np2\n\np3"]
    assert joined.data["lang"].tolist() == ["de", "en"]
    assert "segment_id" not in joined.data.columns
    kept = DocumentJoiner(drop_segment_id_field=False)
    assert kept.outputs() == (["data"], ["text", "id", "segment_id"])
    empty = batch_of(split.data.iloc[:0])
    assert joiner.process(empty) is empty


def test_join_with_max_length() -> None:
    frame = pd.DataFrame(
        {"id": [1, 1, 1, 1, 2], "segment_id": [0, 1, 2, 3, 0], "text": ["aa", "bbb", "c", "dddddd", "e"]}
    )
    frame["len"] = frame["text"].str.len()
    joiner = DocumentJoiner(separator="|", max_length=7, length_field="len")
    assert joiner.inputs() == (["data"], ["text", "segment_id", "id", "len"])
    out = joiner.process(batch_of(frame)).data
    # aa|bbb = 6 fits, +|c = 8 does not; c|dddddd = 8 does not; a single segment may exceed nothing here.
    assert out["text"].tolist() == ["aa|bbb", "c", "dddddd", "e"]
    assert out["len"].tolist() == [6, 1, 6, 1]
    assert out["id"].tolist() == [1, 1, 1, 2]
    kept = DocumentJoiner(separator="|", max_length=7, length_field="len", drop_segment_id_field=False)
    assert kept.process(batch_of(frame)).data["segment_id"].tolist() == [0, 1, 2, 0]
    with pytest.raises(ValueError, match="max_length is specified but length_field is not"):
        DocumentJoiner(max_length=5)
    with pytest.raises(ValueError, match="length_field is specified but max_length is not"):
        DocumentJoiner(length_field="len")


def test_stages_survive_pickling_with_their_vectorised_path() -> None:
    import pickle

    from nemo_curator.stages.text.filters.doc_filter import vectorised_scorer

    stage = pickle.loads(
        pickle.dumps(ScoreFilter([WordCountFilter(min_words=3), MeanWordLengthFilter(1, 10)]))
    )
    assert [vectorised_scorer(f) is not None for f in stage.filter_obj] == [True, True]
    out = stage.process(batch_of(example_frame()))
    assert out.data.index.tolist() == [1, 2, 4]
