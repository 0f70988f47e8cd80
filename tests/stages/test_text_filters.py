"""The import surface of ``nemo_curator.stages.text.{filters,modifiers,modules}`` and the Arrow counting
kernels (``filters/scores.py``) behind the vectorised filter scores."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_curator.stages.text.filters import scores

HEURISTIC_FILTERS = [
    "BoilerPlateStringFilter",
    "BulletsFilter",
    "CommonEnglishWordsFilter",
    "EllipsisFilter",
    "HistogramFilter",
    "LongWordFilter",
    "MeanWordLengthFilter",
    "NonAlphaNumericFilter",
    "NumbersFilter",
    "ParenthesesFilter",
    "PornographicUrlsFilter",
    "PunctuationFilter",
    "RepeatedLinesByCharFilter",
    "RepeatedLinesFilter",
    "RepeatedParagraphsByCharFilter",
    "RepeatedParagraphsFilter",
    "RepeatingDuplicateNGramsFilter",
    "RepeatingTopNGramsFilter",
    "SubstringFilter",
    "SymbolsToWordsFilter",
    "TokenCountFilter",
    "UrlsFilter",
    "WhiteSpaceFilter",
    "WordCountFilter",
    "WordsWithoutAlphabetsFilter",
]
CODE_FILTERS = [
    "AlphaFilter",
    "GeneralCommentToCodeFilter",
    "HTMLBoilerplateFilter",
    "NumberOfLinesOfCodeFilter",
    "PerExtensionFilter",
    "PythonCommentToCodeFilter",
    "TokenizerFertilityFilter",
    "XMLHeaderFilter",
]
MODIFIERS = [
    "BoilerPlateStringModifier",
    "DocumentModifier",
    "FastTextLabelModifier",
    "LineRemover",
    "MarkdownRemover",
    "NewlineNormalizer",
    "QuotationRemover",
    "Slicer",
    "UnicodeReformatter",
    "UrlRemover",
]
OPTIONAL_PACKAGES = [
    "transformers",
    "huggingface_hub",
    "ftfy",
    "regex",
    "fasttext",
    "bs4",
    "sentencepiece",
    "comment_parser",
    "platformdirs",
    "jieba",
    "MeCab",
]


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_all_lists_match_curator_and_star_import_works() -> None:
    namespace: dict[str, object] = {}
    exec("from nemo_curator.stages.text.filters import *", namespace)
    exec("from nemo_curator.stages.text.modifiers import *", namespace)
    exec("from nemo_curator.stages.text.modules import *", namespace)
    import nemo_curator.stages.text.filters as filters
    import nemo_curator.stages.text.modifiers as modifiers
    import nemo_curator.stages.text.modules as modules

    # Curator's list, less its undefined "import_filter" entry.
    assert filters.__all__ == sorted(
        [*HEURISTIC_FILTERS, *CODE_FILTERS, "DocumentFilter", "FastTextLangId", "FastTextQualityFilter"]
    )
    assert len(filters.__all__) == 36
    assert modifiers.__all__ == MODIFIERS
    assert modules.__all__ == [
        "AddId",
        "DocumentJoiner",
        "DocumentSplitter",
        "Filter",
        "Modify",
        "Score",
        "ScoreFilter",
    ]
    for name in [*filters.__all__, *modifiers.__all__, *modules.__all__]:
        assert isinstance(namespace[name], type), name
    with pytest.raises(AttributeError, match="import_filter"):
        filters.import_filter  # noqa: B018
    assert set(filters.__all__) <= set(dir(filters))


def test_classes_live_in_curators_modules() -> None:
    import nemo_curator.stages.text.filters as filters
    import nemo_curator.stages.text.modifiers as modifiers

    base = "nemo_curator.stages.text"
    for name in HEURISTIC_FILTERS:
        assert getattr(filters, name).__module__ == f"{base}.filters.heuristic_filter"
    for name in CODE_FILTERS:
        assert getattr(filters, name).__module__ == f"{base}.filters.code"
    assert filters.FastTextLangId.__module__ == f"{base}.filters.fasttext_filter"
    assert filters.DocumentFilter.__module__ == f"{base}.filters.doc_filter"
    expected = {
        "BoilerPlateStringModifier": "c4",
        "DocumentModifier": "doc_modifier",
        "FastTextLabelModifier": "fasttext",
        "UnicodeReformatter": "unicode_reformatter",
        "UrlRemover": "url_remover",
        "Slicer": "slicer",
    }
    for name, module in expected.items():
        assert getattr(modifiers, name).__module__ == f"{base}.modifiers.{module}"


def test_importing_the_packages_needs_no_optional_package() -> None:
    loaded = _run(
        "import sys\n"
        "import nemo_curator.stages.text.modules\n"
        "import nemo_curator.stages.text.filters as f, nemo_curator.stages.text.modifiers as m\n"
        "import nemo_curator.stages.text.filters.heuristic_filter, nemo_curator.stages.text.filters.code\n"
        "import nemo_curator.stages.text.filters.fasttext_filter\n"
        "import nemo_curator.stages.text.modifiers.unicode_reformatter\n"
        "import nemo_curator.stages.text.utils.constants, nemo_curator.stages.text.utils.text_utils\n"
        "[getattr(f, n) for n in f.__all__]; [getattr(m, n) for n in m.__all__]\n"
        f"print(sorted(p for p in {OPTIONAL_PACKAGES!r} if p in sys.modules))"
    )
    assert loaded == "[]"


def test_modules_import_loads_no_filter_implementation() -> None:
    # The filters package loads its modules on first use only.
    loaded = _run(
        "import sys, nemo_curator.stages.text.modules\n"
        "print(sorted(m for m in sys.modules if m.startswith('nemo_curator.stages.text.filters.')))"
    )
    assert loaded == "['nemo_curator.stages.text.filters.doc_filter']"


def test_whitespace_matches_str_isspace() -> None:
    table = scores._whitespace_table()
    assert set(np.flatnonzero(table).tolist()) == {cp for cp in range(0x110000) if chr(cp).isspace()}
    # piece_stats relies on Arrow's utf8_is_space agreeing with str.isspace() (blank-line detection).
    chars = [chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    arrow_space = pc.utf8_is_space(pa.array(chars)).to_pylist()
    assert [c for c, space in zip(chars, arrow_space, strict=True) if space != c.isspace()] == []
    # line_edge_counts relies on utf8_trim_whitespace stripping what str.strip() strips.
    padded = [f"{c}a{c}" for c in chars]
    trimmed = pc.utf8_trim_whitespace(pa.array(padded)).to_pylist()
    assert [p for p, t in zip(padded, trimmed, strict=True) if t != p.strip()] == []


_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(" \t\n\n\n\x0b\x1c\x85\u00a0\u3000\u2028ab\u00e9\u65e5!1(\u27e8#\b\r")),
        st.characters(exclude_categories=("Cs",)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(_TEXT, max_size=12), st.integers(min_value=0, max_value=3))
def test_kernels_match_python_reference(docs: list[str], skip: int) -> None:
    # A sliced, multi-chunk input exercises the buffer offsets too.
    array = pa.array(["<skipped>"] * skip + docs, type=pa.string()).slice(skip)
    chunked = pa.chunked_array(
        [array.slice(0, len(docs) // 2), array.slice(len(docs) // 2)], type=pa.string()
    )

    stats = scores.text_stats(chunked)
    assert stats.length.tolist() == [len(text) for text in docs]
    assert stats.words.tolist() == [len(text.split()) for text in docs]
    assert stats.word_chars.tolist() == [sum(map(len, text.split())) for text in docs]
    assert scores.lengths(chunked).tolist() == [len(text) for text in docs]
    chars = "#(\u27e8\n\b\u65e5"
    assert scores.count_chars(chunked, chars).tolist() == [sum(c in chars for c in text) for text in docs]

    lines = [[line for line in text.split("\n") if line.strip()] for text in docs]
    by_line = scores.piece_stats(array.cast(pa.large_string()), "\n", skip_blank=True)
    assert by_line.total.tolist() == [len(doc_lines) for doc_lines in lines]
    assert by_line.distinct.tolist() == [len(set(doc_lines)) for doc_lines in lines]
    assert by_line.total_chars.tolist() == [sum(map(len, doc_lines)) for doc_lines in lines]
    assert by_line.distinct_chars.tolist() == [sum(map(len, set(doc_lines))) for doc_lines in lines]
    bullets, n_lines = scores.line_edge_counts(chunked, "first", "#(")
    assert n_lines.tolist() == [len(doc_lines) for doc_lines in lines]
    assert bullets.tolist() == [sum(line.strip()[0] in "#(" for line in doc_lines) for doc_lines in lines]
    ends, _ = scores.line_edge_counts(chunked, "last", "!\u65e5")
    assert ends.tolist() == [sum(line.strip()[-1] in "!\u65e5" for line in doc_lines) for doc_lines in lines]
    paragraphs = [text.split("\n\n") for text in docs]
    by_paragraph = scores.piece_stats(chunked, "\n\n", skip_blank=False)
    assert by_paragraph.total.tolist() == [len(p) for p in paragraphs]
    assert by_paragraph.distinct.tolist() == [len(set(p)) for p in paragraphs]
    assert by_paragraph.distinct_chars.tolist() == [sum(map(len, set(p))) for p in paragraphs]


def test_text_stats_across_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tiny slices force documents to be classified in many separate pieces.
    monkeypatch.setattr(scores, "_SLICE_BYTES", 7)
    docs = ["one two", "", "日本 語 x", "a" * 30 + " b", "", "é é"]
    stats = scores.text_stats(pa.array(docs))
    assert stats.words.tolist() == [2, 0, 3, 2, 0, 2]
    assert stats.length.tolist() == [len(d) for d in docs]


def test_kernel_input_types() -> None:
    text = pa.array(["x\u00a0yy", "héllo wörld"])
    for variant in (text, text.cast(pa.large_string()), text.cast(pa.string_view())):
        assert scores.text_stats(variant).words.tolist() == [2, 2]
    assert scores.text_stats(pa.array([], pa.string())).words.tolist() == []
    assert scores.piece_stats(pa.array([], pa.string()), "\n", skip_blank=True).total.tolist() == []
    with pytest.raises(TypeError, match="Expected a string column"):
        scores.text_stats(pa.array([1, 2]))
    with pytest.raises(TypeError, match="without nulls"):
        scores.text_stats(pa.array(["a", None]))


def test_ratio_helpers() -> None:
    assert scores.ratio(np.array([1, 0]), np.array([3, 0]), empty=1.0).tolist() == [1 / 3, 1.0]
    with pytest.raises(ZeroDivisionError, match="position 1"):
        scores.checked_ratio(np.array([1, 0]), np.array([3, 0]), "the number of words")
