"""Curator's heuristic ``DocumentFilter``s against straightforward Python versions of their definitions
(spec: text-stages.md §8-§10), their keep rules at the bounds, and the vectorised column scorers."""

from __future__ import annotations

import inspect
import itertools
import math
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_curator.stages.text import filters as F
from nemo_curator.stages.text.filters.doc_filter import DocumentFilter, vectorised_keeper, vectorised_scorer
from nemo_curator.stages.text.utils import constants, text_utils
from nemo_curator.stages.text.utils._unicode import OTHER_ALPHABETIC_RANGES, is_alphabetic

# ---------------------------------------------------------------------------------------------------------
# Reference definitions, written from the spec's wording

ALNUM = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\n?!,.")
WHITE = set("\t\n\r\b ")
PARENS = set("{}[]()\u27e8\u27e9")
BULLETS = set("\u2022\u2023\u2043\u204c\u204d\u2219\u25cb\u25cf\u25d8\u25e6\u29be\u29bf")
END_MARKS = set(".?!\"'")
ELLIPSES = ["...", "[...]", "\u2026", "(...)", "[\u2026]", "-\u00bb", "read more..", "read more"]
COMMON = {"the", "be", "to", "of", "and", "that", "have", "with"}
POLICY = [
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "privacy overview",
    "use of cookies",
    "use cookies",
    "privacy & cookies policy",
    "privacy and cookies policy",
]
URL_CHARS = set("abcdefghijklmnopqrstuvwxyz!") | {chr(c) for c in range(0x24, 0x60)}


def words(text: str) -> list[str]:
    out: list[str] = []
    current = ""
    for char in text:
        if char.isspace():
            if current:
                out.append(current)
            current = ""
        else:
            current += char
    return [*out, current] if current else out


def lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if any(not c.isspace() for c in line)]


def ratio_or_one(count: int, text: str) -> float:
    return count / len(text) if text else 1.0


def urls(text: str) -> list[str]:
    found, i = [], 0
    while i < len(text):
        for scheme in ("https://", "http://"):
            if text.startswith(scheme, i):
                end = i + len(scheme)
                while end < len(text) and text[end] in URL_CHARS:
                    end += 1
                if end > i + len(scheme):
                    found.append(text[i:end])
                    i = end
                    break
        else:
            i += 1
            continue
    return found


def hash_runs(word: str) -> int:
    return sum(1 for i, c in enumerate(word) if c == "#" and (i == 0 or word[i - 1] != "#"))


def ref_symbols(text: str) -> float:
    ws = words(text)
    symbolic = [w for w in ws if w in ELLIPSES or hash_runs(w) / len(w) > 0.5]
    return len(symbolic) / len(ws)


def ref_boilerplate(text: str) -> float:
    paragraphs = [p.strip().lower() for p in text.split("\n\n")]
    if any("lorem ipsum" in p for p in paragraphs):
        return 1.0
    return sum(1 for p in paragraphs if any(phrase in p for phrase in POLICY)) / len(paragraphs)


def ref_top_ngrams(text: str, n: int) -> float | set[float]:
    ws = words(text)
    if len(ws) < n:
        return 1.0
    grams = [tuple(ws[i : i + n]) for i in range(len(ws) - n + 1)]
    counts = {g: grams.count(g) for g in grams}
    best = max(counts.values())
    scores = {text.count(" ".join(g)) * len(" ".join(g)) / len(text) for g, c in counts.items() if c == best}
    # Equally frequent n-grams may give different scores: any of them is a correct answer.
    return scores.pop() if len(scores) == 1 else scores


def ref_dup_ngrams(text: str, n: int) -> float:
    ws = words(text)
    if len(ws) < n:
        return 1.0
    seen: dict[tuple[str, ...], int] = {}
    total, overlap = 0, 0
    for i in range(len(ws) - n + 1):
        gram = tuple(ws[i : i + n])
        seen[gram] = seen.get(gram, 0) + 1
        if seen[gram] > 1:
            total += sum(len(w) for w in gram[overlap:]) + min(n - overlap, n - 1)
            overlap = n
        overlap = max(overlap - 1, 0)
    return total / len(text) if text else 1.0


def ref_common(text: str, minimum: int) -> int:
    count = 0
    for w in words(text):
        count += w in COMMON
        if count >= minimum:
            return count
    return count


def alpha_char(char: str) -> bool:
    # Curator's definition is the regex package's [[:alpha:]]; without it, the Unicode 14.0 property.
    try:
        import regex
    except ImportError:
        return is_alphabetic(char)
    return bool(regex.match("[[:alpha:]]", char))


def ref_alpha_words(text: str) -> float:
    ws = words(text)
    return sum(1 for w in ws if any(alpha_char(c) for c in w)) / len(ws)


def by_chars(pieces: list[str]) -> float:
    return sum(map(len, set(pieces))) / sum(map(len, pieces))


# name -> (filter with default settings, reference score)
REFERENCES: dict[str, tuple[Callable[[], DocumentFilter], Callable[[str], Any]]] = {
    "NonAlphaNumericFilter": (
        F.NonAlphaNumericFilter,
        lambda t: ratio_or_one(sum(c not in ALNUM for c in t), t),
    ),
    "SymbolsToWordsFilter": (F.SymbolsToWordsFilter, ref_symbols),
    "NumbersFilter": (F.NumbersFilter, lambda t: ratio_or_one(sum(c in "0123456789" for c in t), t)),
    "UrlsFilter": (F.UrlsFilter, lambda t: ratio_or_one(sum(map(len, urls(t))), t)),
    "BulletsFilter": (
        F.BulletsFilter,
        lambda t: sum(1 for s in lines(t) if s.strip()[0] in BULLETS) / len(lines(t)),
    ),
    "WhiteSpaceFilter": (F.WhiteSpaceFilter, lambda t: ratio_or_one(sum(c in WHITE for c in t), t)),
    "ParenthesesFilter": (F.ParenthesesFilter, lambda t: ratio_or_one(sum(c in PARENS for c in t), t)),
    "LongWordFilter": (F.LongWordFilter, lambda t: max(len(w) for w in words(t))),
    "WordCountFilter": (F.WordCountFilter, lambda t: len(words(t))),
    "BoilerPlateStringFilter": (F.BoilerPlateStringFilter, ref_boilerplate),
    "MeanWordLengthFilter": (F.MeanWordLengthFilter, lambda t: sum(map(len, words(t))) / len(words(t))),
    "RepeatedLinesFilter": (F.RepeatedLinesFilter, lambda t: len(set(lines(t))) / len(lines(t))),
    "RepeatedParagraphsFilter": (
        F.RepeatedParagraphsFilter,
        lambda t: len(set(t.split("\n\n"))) / len(t.split("\n\n")),
    ),
    "RepeatedLinesByCharFilter": (F.RepeatedLinesByCharFilter, lambda t: by_chars(lines(t))),
    "RepeatedParagraphsByCharFilter": (F.RepeatedParagraphsByCharFilter, lambda t: by_chars(t.split("\n\n"))),
    "RepeatingTopNGramsFilter": (F.RepeatingTopNGramsFilter, lambda t: ref_top_ngrams(t, 2)),
    "RepeatingTop3GramsFilter": (lambda: F.RepeatingTopNGramsFilter(n=3), lambda t: ref_top_ngrams(t, 3)),
    "RepeatingDuplicateNGramsFilter": (F.RepeatingDuplicateNGramsFilter, lambda t: ref_dup_ngrams(t, 2)),
    "RepeatingDuplicate3GramsFilter": (
        lambda: F.RepeatingDuplicateNGramsFilter(n=3),
        lambda t: ref_dup_ngrams(t, 3),
    ),
    "PunctuationFilter": (
        F.PunctuationFilter,
        lambda t: sum(1 for s in lines(t) if s.strip()[-1] not in END_MARKS) / len(lines(t)),
    ),
    "EllipsisFilter": (
        F.EllipsisFilter,
        lambda t: (
            sum(1 for s in lines(t) if any(s.strip().lower().endswith(e) for e in ELLIPSES)) / len(lines(t))
        ),
    ),
    "CommonEnglishWordsFilter": (F.CommonEnglishWordsFilter, lambda t: ref_common(t, 2)),
    "CommonEnglishWordsNoStop": (
        lambda: F.CommonEnglishWordsFilter(min_num_common_words=1, stop_at_false=False),
        lambda t: sum(w in COMMON for w in words(t)),
    ),
    "WordsWithoutAlphabetsFilter": (F.WordsWithoutAlphabetsFilter, ref_alpha_words),
    "PornographicUrlsFilter": (F.PornographicUrlsFilter, lambda t: int(any("porn" in u for u in urls(t)))),
    "SubstringPrefix": (lambda: F.SubstringFilter("the", "prefix"), lambda t: int(t[:3] == "the")),
    "SubstringSuffix": (
        lambda: F.SubstringFilter("..", "suffix"),
        lambda t: int(t[-2:] == ".." and len(t) >= 2),
    ),
    "SubstringAny": (
        lambda: F.SubstringFilter("a b", "any"),
        lambda t: int(any(t[i : i + 3] == "a b" for i in range(len(t)))),
    ),
}


def outcome(fn: Callable[[str], Any], text: str) -> tuple[str, Any]:
    try:
        value = fn(text)
    except (ZeroDivisionError, ValueError) as err:
        return "error", type(err)
    return "value", value


def check_against_reference(name: str, text: str) -> None:
    make, reference = REFERENCES[name]
    got_kind, got = outcome(make().score_document, text)
    want_kind, want = outcome(reference, text)
    if want_kind == "value" and isinstance(want, set):
        assert got_kind == "value" and got in want, (name, text)
        return
    assert (got_kind, got) == (want_kind, want), (name, text)
    if got_kind == "value":
        assert type(got) is type(want), (name, text)


# ---------------------------------------------------------------------------------------------------------
# Documents

TOKENS = [
    "the",
    "and",
    "The",
    "be",
    "with",
    "a",
    "bb",
    "ccc",
    "xxxxxxxxxxxx",
    "#",
    "##",
    "a#",
    "#a#",
    "...",
    "\u2026",
    "read more",
    "Read More..",
    "-\u00bb",
    "[...]",
    "http://x.org/a",
    "https://porn.example/<x>;y",
    "http://",
    "https:// ",
    "porn",
    "1",
    "2024",
    "(",
    ")",
    "\u27e8",
    "[",
    "{",
    "\u2022",
    "\u25e6 item",
    "\n",
    "\n\n",
    "\n\n\n",
    " ",
    "  ",
    "\t",
    "\r",
    "\b",
    "\u3000",
    "\x85",
    "\u00e9",
    "\u0903",
    "\u216b",
    "\u65e5\u672c",
    "\u24b6",
    "\u0301",
    "lorem ipsum",
    "privacy policy",
    "Terms of Use",
    ".",
    "!",
    "?",
    '"',
    "'",
    "a b",
    "\u00a0",
]
DOCS = st.one_of(
    st.lists(st.sampled_from(TOKENS), max_size=30).map("".join),
    st.lists(st.sampled_from(TOKENS), max_size=20).map(" ".join),
    st.text(max_size=30),
)
EDGE_CASES = [
    "",
    " ",
    "   \t ",
    "\n",
    "\n\n",
    "\n\n\n\n",
    " \n \n ",
    "a",
    "#",
    "###",
    "# ## ###",
    "a\na",
    "a \na",
    "\u2022 one\n\u2022 two\nthree",
    "x\n\ny\n\nx",
    "x\n\n\ny",
    "http://example.com/path?q=1 and more text",
    "see https://porn.site/x now",
    "\u0903\u0903 \u216b \u24b6 123 ...",
    "The the THE the and",
    "lorem ipsum dolor\n\nfine",
    "Privacy Policy\n\nreal text\n\nmore",
    "one two one two one two",
    "a b c a b c a b d",
    "\u65e5\u672c\u8a9e \u30c6\u30ad\u30b9\u30c8",
    'end.\nno end\nquestion?\n"quoted"\nwait\u2026',
]


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("text", EDGE_CASES, ids=range(len(EDGE_CASES)))
def test_edge_cases_match_reference(name: str, text: str) -> None:
    check_against_reference(name, text)


@pytest.mark.parametrize("name", sorted(REFERENCES))
@settings(max_examples=120, deadline=None, derandomize=True)
@given(text=DOCS)
def test_random_documents_match_reference(name: str, text: str) -> None:
    check_against_reference(name, text)


def test_worked_values() -> None:
    assert F.WordCountFilter().score_document("  one   two  three  ") == 3
    assert F.NonAlphaNumericFilter().score_document("ab, c") == 1 / 5
    assert F.RepeatedLinesFilter().score_document("a\na\nb\n") == 2 / 3
    assert F.RepeatedLinesFilter().score_document("a\na \nb") == 1.0  # lines are not stripped
    assert F.SymbolsToWordsFilter().score_document("# ## a#b ... x") == 2 / 5  # "##": 1 run / 2 chars
    assert F.RepeatingTopNGramsFilter().score_document("ab ab ab x") == 5 / 10  # "ab ab" removed once
    assert F.RepeatingDuplicateNGramsFilter().score_document("a b a b a b") == 7 / 11
    assert F.CommonEnglishWordsFilter(min_num_common_words=2).score_document("the the the the") == 2
    assert F.WordsWithoutAlphabetsFilter().score_document("\u0903 \u216b 12 \u24b6") == 3 / 4
    assert F.UrlsFilter().score_document("http://a.b<c> x") == 13 / 15  # the 1.1.0 pattern runs into "<>"
    assert F.PornographicUrlsFilter().score_document("http://x.org/PORN") == 0
    assert F.BoilerPlateStringFilter().score_document("") == 0.0
    assert F.RepeatedParagraphsFilter().score_document("") == 1.0
    with pytest.raises(ZeroDivisionError):
        F.RepeatedParagraphsByCharFilter().score_document("\n\n")
    with pytest.raises(ZeroDivisionError):
        F.MeanWordLengthFilter().score_document(" ")
    with pytest.raises(ValueError):
        F.LongWordFilter().score_document("")


# ---------------------------------------------------------------------------------------------------------
# Names, constructor signatures and keep rules (inclusive bounds)

SIGNATURES: dict[str, tuple[str, dict[str, Any]]] = {
    "NonAlphaNumericFilter": ("alpha_numeric", {"max_non_alpha_numeric_to_text_ratio": 0.25}),
    "SymbolsToWordsFilter": ("symbol_to_word", {"max_symbol_to_word_ratio": 0.1, "lang": "en"}),
    "NumbersFilter": ("numbers_ratio", {"max_number_to_text_ratio": 0.15}),
    "UrlsFilter": ("urls_ratio", {"max_url_to_text_ratio": 0.2}),
    "BulletsFilter": ("bullet_ratio", {"max_bullet_lines_ratio": 0.9}),
    "WhiteSpaceFilter": ("white_space", {"max_white_space_ratio": 0.25}),
    "ParenthesesFilter": ("parentheses_ratio", {"max_parentheses_ratio": 0.1}),
    "LongWordFilter": ("max_word_length", {"max_word_length": 1000, "lang": "en"}),
    "WordCountFilter": ("word_count", {"min_words": 50, "max_words": 100000, "lang": "en"}),
    "BoilerPlateStringFilter": (
        "boilerplate_string_ratio",
        {"remove_if_at_top_or_bottom": True, "max_boilerplate_string_ratio": 0.4},
    ),
    "MeanWordLengthFilter": (
        "mean_word_length",
        {"min_mean_word_length": 3, "max_mean_word_length": 10, "lang": "en"},
    ),
    "RepeatedLinesFilter": ("repeated_lines", {"max_repeated_line_fraction": 0.7}),
    "RepeatedParagraphsFilter": ("repeated_paragraphs", {"max_repeated_paragraphs_ratio": 0.7}),
    "RepeatedLinesByCharFilter": ("repeated_lines_char", {"max_repeated_lines_char_ratio": 0.8}),
    "RepeatedParagraphsByCharFilter": (
        "repeated_paragraphs_char",
        {"max_repeated_paragraphs_char_ratio": 0.8},
    ),
    "RepeatingTopNGramsFilter": (
        "repeating_top_2grams",
        {"n": 2, "max_repeating_ngram_ratio": 0.2, "lang": "en"},
    ),
    "RepeatingDuplicateNGramsFilter": (
        "repeating_dup_2gram",
        {"n": 2, "max_repeating_duplicate_ngram_ratio": 0.2, "lang": "en"},
    ),
    "PunctuationFilter": ("punctuation", {"max_num_sentences_without_endmark_ratio": 0.85}),
    "EllipsisFilter": ("ellipsis", {"max_num_lines_ending_with_ellipsis_ratio": 0.3}),
    "CommonEnglishWordsFilter": ("common_english_words", {"min_num_common_words": 2, "stop_at_false": True}),
    "WordsWithoutAlphabetsFilter": (
        "words_without_alphabets",
        {"min_words_with_alphabets": 0.8, "lang": "en"},
    ),
    "PornographicUrlsFilter": ("PornographicUrlsFilter", {}),
}


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_names_and_constructor_defaults(name: str) -> None:
    expected_name, defaults = SIGNATURES[name]
    cls = getattr(F, name)
    params = {
        p.name: p.default for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"
    }
    assert params == defaults
    assert cls().name == expected_name
    assert isinstance(cls(), DocumentFilter)


def test_other_signatures_and_names() -> None:
    assert F.RepeatingTopNGramsFilter(n=3).name == "repeating_top_3grams"
    assert F.RepeatingDuplicateNGramsFilter(n=4).name == "repeating_dup_4gram"
    params = inspect.signature(F.TokenCountFilter.__init__).parameters
    assert [p for p in params if p != "self"] == [
        "tokenizer",
        "hf_model_name",
        "hf_token",
        "min_tokens",
        "max_tokens",
    ]
    assert params["max_tokens"].default == math.inf and params["min_tokens"].default == 0
    params = inspect.signature(F.HistogramFilter.__init__).parameters
    assert {p: params[p].default for p in params if p != "self"} == {
        "lang": "en",
        "threshold": 0.8,
        "cache_dir": "",
        "threshold_char": "]",
    }
    assert F.SubstringFilter("x", "any").name == "SubstringFilter"
    with pytest.raises(ValueError, match=r"Invalid position: middle\. Must be one of: prefix, suffix, any\."):
        F.SubstringFilter("x", "middle")  # type: ignore[arg-type]


# (filter built around a cutoff, "max" | "min" | "exact")
MAX_RULES = {
    "NonAlphaNumericFilter": F.NonAlphaNumericFilter,
    "SymbolsToWordsFilter": F.SymbolsToWordsFilter,
    "NumbersFilter": F.NumbersFilter,
    "UrlsFilter": F.UrlsFilter,
    "BulletsFilter": F.BulletsFilter,
    "WhiteSpaceFilter": F.WhiteSpaceFilter,
    "ParenthesesFilter": F.ParenthesesFilter,
    "LongWordFilter": F.LongWordFilter,
    "BoilerPlateStringFilter": lambda c: F.BoilerPlateStringFilter(max_boilerplate_string_ratio=c),
    "RepeatingTopNGramsFilter": lambda c: F.RepeatingTopNGramsFilter(max_repeating_ngram_ratio=c),
    "RepeatingDuplicateNGramsFilter": lambda c: F.RepeatingDuplicateNGramsFilter(
        max_repeating_duplicate_ngram_ratio=c
    ),
    "PunctuationFilter": F.PunctuationFilter,
    "EllipsisFilter": F.EllipsisFilter,
}
MIN_RULES = {
    "RepeatedLinesFilter": F.RepeatedLinesFilter,
    "RepeatedParagraphsFilter": F.RepeatedParagraphsFilter,
    "RepeatedLinesByCharFilter": F.RepeatedLinesByCharFilter,
    "RepeatedParagraphsByCharFilter": F.RepeatedParagraphsByCharFilter,
    "CommonEnglishWordsFilter": F.CommonEnglishWordsFilter,
    "WordsWithoutAlphabetsFilter": F.WordsWithoutAlphabetsFilter,
}
RANGE_RULES = {
    "WordCountFilter": lambda lo, hi: F.WordCountFilter(min_words=lo, max_words=hi),
    "MeanWordLengthFilter": lambda lo, hi: F.MeanWordLengthFilter(
        min_mean_word_length=lo, max_mean_word_length=hi
    ),
    "TokenCountFilter": lambda lo, hi: F.TokenCountFilter(tokenizer=_Chars(), min_tokens=lo, max_tokens=hi),
}
CUTOFFS = [0.0, 0.1, 1 / 3, 0.7, 1.0, 5.0]


def _keeps(f: DocumentFilter, values: list[float]) -> list[bool]:
    row = [bool(f.keep_document(v)) for v in values]
    keeper = vectorised_keeper(f)
    if keeper is not None:
        assert keeper(np.array(values)).tolist() == row  # the vectorised rule agrees
    return row


@pytest.mark.parametrize("name", sorted(MAX_RULES))
@pytest.mark.parametrize("cutoff", CUTOFFS)
def test_max_rules_are_inclusive(name: str, cutoff: float) -> None:
    f = MAX_RULES[name](cutoff)
    above, below = np.nextafter(cutoff, math.inf), np.nextafter(cutoff, -math.inf)
    assert _keeps(f, [below, cutoff, above, math.nan]) == [True, True, False, False]


@pytest.mark.parametrize("name", sorted(MIN_RULES))
@pytest.mark.parametrize("cutoff", CUTOFFS)
def test_min_rules_are_inclusive(name: str, cutoff: float) -> None:
    f = MIN_RULES[name](cutoff)
    above, below = np.nextafter(cutoff, math.inf), np.nextafter(cutoff, -math.inf)
    assert _keeps(f, [below, cutoff, above, math.nan]) == [False, True, True, False]


@pytest.mark.parametrize("name", sorted(RANGE_RULES))
def test_range_rules_are_inclusive(name: str) -> None:
    f = RANGE_RULES[name](3, 7)
    assert _keeps(f, [2, 3, 5, 7, 8]) == [False, True, True, True, False]
    assert _keeps(f, [2.999, 7.001, math.nan]) == [False, False, False]


def test_exact_rules() -> None:
    for f in (F.PornographicUrlsFilter(), F.XMLHeaderFilter()):
        assert _keeps(f, [0, 1]) == [True, False]
    assert _keeps(F.SubstringFilter("a", "any"), [0, 1]) == [False, True]


# ---------------------------------------------------------------------------------------------------------
# Vectorised column scorers == row-by-row scores

VECTORISED = {
    "NonAlphaNumericFilter": F.NonAlphaNumericFilter,
    "NumbersFilter": F.NumbersFilter,
    "WhiteSpaceFilter": F.WhiteSpaceFilter,
    "ParenthesesFilter": F.ParenthesesFilter,
    "WordCountFilter": F.WordCountFilter,
    "MeanWordLengthFilter": F.MeanWordLengthFilter,
    "RepeatedLinesFilter": F.RepeatedLinesFilter,
    "RepeatedParagraphsFilter": F.RepeatedParagraphsFilter,
    "RepeatedLinesByCharFilter": F.RepeatedLinesByCharFilter,
    "RepeatedParagraphsByCharFilter": F.RepeatedParagraphsByCharFilter,
    "BulletsFilter": F.BulletsFilter,
    "PunctuationFilter": F.PunctuationFilter,
    "SubstringPrefix": lambda: F.SubstringFilter("the", "prefix"),
    "SubstringSuffix": lambda: F.SubstringFilter(".", "suffix"),
    "SubstringAny": lambda: F.SubstringFilter("a b", "any"),
    "SubstringEmpty": lambda: F.SubstringFilter("", "any"),
}


def check_vectorised(f: DocumentFilter, docs: list[str]) -> None:
    scorer = vectorised_scorer(f)
    assert scorer is not None
    try:
        expected = [f.score_document(doc) for doc in docs]
    except ZeroDivisionError:
        with pytest.raises(ZeroDivisionError):
            scorer(pa.array(docs, type=pa.string()))
        return
    for array in (pa.array(docs, type=pa.string()), pa.array(docs, type=pa.large_string())):
        got = scorer(array)
        assert isinstance(got, np.ndarray)
        assert got.dtype == (np.int64 if all(type(v) is int for v in expected) and expected else got.dtype)
        if expected and all(type(v) is float for v in expected):
            assert got.dtype == np.float64
        assert got.tolist() == expected  # exact: same integers, same IEEE quotients
        assert [type(v) for v in got.tolist()] == [type(v) for v in expected]


@pytest.mark.parametrize("name", sorted(VECTORISED))
@settings(max_examples=80, deadline=None, derandomize=True)
@given(docs=st.lists(DOCS, max_size=8))
def test_vectorised_scores_equal_row_scores(name: str, docs: list[str]) -> None:
    check_vectorised(VECTORISED[name](), docs)


@pytest.mark.parametrize("name", sorted(VECTORISED))
def test_vectorised_scores_on_edge_cases(name: str) -> None:
    f = VECTORISED[name]()
    for doc in EDGE_CASES:
        check_vectorised(f, [doc])
    check_vectorised(f, [doc for doc in EDGE_CASES if _scores_ok(f, doc)])


def _scores_ok(f: DocumentFilter, doc: str) -> bool:
    try:
        f.score_document(doc)
    except (ZeroDivisionError, ValueError):
        return False
    return True


def test_vectorised_scorers_step_aside_for_caches_and_other_splitters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    texts = pa.array(["a\nb", "c"])
    f = F.RepeatedLinesFilter()
    f.sentences = ["x", "x"]
    assert f.score_column(texts) is None  # the row path uses the cache for every document
    f = F.RepeatedParagraphsFilter()
    f.paragraphs = ["x"]
    assert f.score_column(texts) is None
    for cls in (F.BulletsFilter, F.PunctuationFilter, F.RepeatedLinesByCharFilter):
        f = cls()
        f.sentences = ["x"]
        assert f.score_column(texts) is None
    monkeypatch.setitem(sys.modules, "jieba", type(sys)("jieba"))
    sys.modules["jieba"].cut = lambda text: list(text)  # type: ignore[attr-defined]
    assert F.WordCountFilter(lang="ZH").score_column(texts) is None
    assert F.WordCountFilter(lang="ZH").score_document("ab c") == 4  # characters, space included


def test_vectorised_methods_pair_with_their_row_method() -> None:
    class CustomScore(F.WordCountFilter):
        def score_document(self, text: str) -> float:
            return 7

    class CustomKeep(F.WordCountFilter):
        def keep_document(self, score: float) -> bool:
            return True

    assert vectorised_scorer(CustomScore()) is None
    assert vectorised_keeper(CustomScore()) is not None
    assert vectorised_scorer(CustomKeep()) is not None
    assert vectorised_keeper(CustomKeep()) is None
    patched = F.WordCountFilter()
    patched.score_document = lambda text: 0  # type: ignore[method-assign]
    assert vectorised_scorer(patched) is None
    assert vectorised_scorer(F.UrlsFilter()) is None  # no vectorised version


# ---------------------------------------------------------------------------------------------------------
# Unicode Alphabetic, text primitives


def test_alphabetic_property() -> None:
    assert all(is_alphabetic(c) for c in "aZ\u00e9\u65e5\u216b\u0903\u24b6\u0345\u3007")
    assert not any(is_alphabetic(c) for c in "1 #_\u0301\u00b2\u2460")
    ranges = [range(first, last + 1) for first, last in OTHER_ALPHABETIC_RANGES]
    assert all(a.stop <= b.start for a, b in itertools.pairwise(ranges))
    for code_point in range(0x110000):
        char = chr(code_point)
        if char.isalpha() or unicodedata.category(char) == "Nl":
            assert is_alphabetic(char), hex(code_point)
    # Every listed code point is a non-letter the property adds (mostly combining vowel signs).
    assert all(not chr(cp).isalpha() and is_alphabetic(chr(cp)) for r in ranges for cp in r)
    assert constants.regex_alpha.search("12\u0903")
    assert constants.regex_alpha.findall("a1\u216b") == ["a", "\u216b"]
    assert constants.regex_alpha.search("123") is None
    assert constants.regex_alpha.match("\u24b6b") and not constants.regex_alpha.match("1b")


def test_regex_alpha_uses_the_regex_package_when_installed() -> None:
    regex = pytest.importorskip("regex")
    pattern = regex.compile("[[:alpha:]]")
    chars = [chr(cp) for cp in range(0x110000) if unicodedata.category(chr(cp)) != "Cs"]
    assert [c for c in chars if bool(pattern.match(c)) != bool(constants.regex_alpha.match(c))] == []
    # The standard-library definition is exact for Python's Unicode version; later versions add a few.
    differing = [
        c for c in chars if unicodedata.category(c) != "Cn" and bool(pattern.match(c)) != is_alphabetic(c)
    ]
    assert len(differing) < 100


def test_text_utils() -> None:
    assert text_utils.get_sentences("a \n\n  \nb") == ["a ", "b"]
    assert text_utils.get_paragraphs("a\n\n\nb") == ["a", "\nb"]
    assert text_utils.get_paragraphs("") == [""]
    assert text_utils.get_ngrams(["a", "b", "c"], 2) == [("a", "b"), ("b", "c")]
    assert text_utils.get_ngrams(["a"], 2) == []
    assert text_utils.get_word_splitter("EN")(" a  b\u3000c ") == ["a", "b", "c"]
    assert text_utils.is_paragraph_indices_in_top_or_bottom_only([0, 1], 5)
    assert text_utils.is_paragraph_indices_in_top_or_bottom_only([3, 4], 5)
    assert not text_utils.is_paragraph_indices_in_top_or_bottom_only([0, 2], 5)
    assert not text_utils.is_paragraph_indices_in_top_or_bottom_only([1, 2], 5)
    assert not text_utils.is_paragraph_indices_in_top_or_bottom_only([0, 1], 2)
    assert text_utils.get_words(" Hello, world  again") == (["hello", "world", "again"], [1, 7, 14])
    assert text_utils.get_words("") == ([], [])
    assert text_utils.remove_punctuation("a.b,c!") == "abc"
    source = '"""Module doc."""\n# a comment\ndef f():\n    """F doc."""\n    return 1  # trailing\n'
    docstrings, comments = text_utils.get_comments_and_docstring(source)
    assert docstrings == "F doc.\nModule doc."
    assert "# a comment" in comments and "# trailing" in comments
    with (
        pytest.warns(UserWarning, match="compilation failure"),
        pytest.warns(UserWarning, match="tokenization"),
    ):
        assert text_utils.get_comments_and_docstring("def (:\n") == (None, None)


def test_constants() -> None:
    assert constants.end_marks == (".", "?", "!", '"', "'")
    assert constants.ellipsis_marks == set(ELLIPSES)
    assert constants.white_space_list == ["\t", "\n", "\r", "\b", " "]
    assert constants.bullet_list == BULLETS
    assert constants.common_english_words == COMMON
    assert constants.policy_substrings[:9] == POLICY and len(constants.policy_substrings) == 14
    assert all(s == s.lower() for s in constants.policy_substrings)
    assert constants.regex_digit.findall("1\u0661२3") == ["1", "3"]  # ASCII digits only


# ---------------------------------------------------------------------------------------------------------
# Filters needing packages or files


class _Chars:
    def encode(self, text: str) -> list[str]:
        return list(text)


def test_token_count_filter() -> None:
    f = F.TokenCountFilter(tokenizer=_Chars(), min_tokens=2, max_tokens=3)
    assert (f.name, f.score_document("abcd"), f.keep_document(3), f.keep_document(4)) == (
        "token_count",
        4,
        True,
        False,
    )
    f.load_tokenizer()  # nothing to load with a tokenizer object
    f.model_check_or_download()
    assert f.score_document("ab") == 2
    with pytest.raises(ValueError, match=r"^Either tokenizer or hf_model_name must be provided$"):
        F.TokenCountFilter()
    with pytest.raises(ValueError, match="not both"):
        F.TokenCountFilter(tokenizer=_Chars(), hf_model_name="x")


@pytest.mark.parametrize(
    ("package", "build"),
    [
        ("transformers", lambda: F.TokenCountFilter(hf_model_name="gpt2")),
        ("huggingface_hub", lambda: F.TokenCountFilter(hf_model_name="gpt2")),
        ("jieba", lambda: F.WordCountFilter(lang="zh")),
        ("MeCab", lambda: F.SymbolsToWordsFilter(lang="ja")),
        ("platformdirs", lambda: F.HistogramFilter()),
        ("sentencepiece", lambda: F.TokenizerFertilityFilter(path_to_tokenizer="tok.model")),
        ("bs4", lambda: F.HTMLBoilerplateFilter()),
        ("comment_parser", lambda: F.GeneralCommentToCodeFilter("text/x-c")),
        ("fasttext", lambda: F.FastTextLangId(model_path="lid.bin")),
        ("fasttext", lambda: F.FastTextQualityFilter(model_path="q.bin")),
    ],
)
def test_missing_packages_raise_clear_import_errors(
    monkeypatch: pytest.MonkeyPatch, package: str, build: Callable[[], Any]
) -> None:
    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(ImportError, match=package.replace("bs4", "beautifulsoup4").replace("MeCab", "mecab")):
        build()


def test_histogram_filter_with_prepared_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hist = tmp_path / "histograms" / "checkpoint" / "edunov" / "cc60_multilingual" / "clean_hists"
    hist.mkdir(parents=True)
    (hist / "en").write_text("a 100\nb 50\n] 0\nz 1\n", encoding="utf-8")
    # Neither requests nor platformdirs is needed once the histograms are there.
    monkeypatch.setitem(sys.modules, "requests", None)
    f = F.HistogramFilter(cache_dir=str(tmp_path))
    assert (f.name, f.score_document("aab"), f.score_document("aabz"), f.score_document(" ab ")) == (
        "histogram",
        1,
        0,
        0,
    )
    assert f.keep_document(1) and not f.keep_document(0)
    with pytest.raises(ZeroDivisionError):
        f.score_document("")
    with pytest.raises(ImportError, match="requests"):
        F.HistogramFilter(cache_dir=str(tmp_path / "empty"))


def test_code_filters_without_packages(tmp_path: Path) -> None:
    assert F.NumberOfLinesOfCodeFilter().score_document("a\nb\n") == 3
    assert F.NumberOfLinesOfCodeFilter(min_lines=1, max_lines=3).keep_document(3)
    assert F.XMLHeaderFilter().score_document('<?xml version="1.0"?>') == 1
    assert F.XMLHeaderFilter(char_prefix_search_length=5).score_document('<?xml version="1.0"?>') == 0
    assert F.AlphaFilter().score_document("ab12") == 0.5
    source = '"""Doc."""\nx = 1  # c\n'
    assert F.PythonCommentToCodeFilter().score_document(source) == (len("# c") + len("Doc.")) / len(source)
    with pytest.warns(UserWarning):
        assert F.PythonCommentToCodeFilter().score_document("def (:") == 0
    meta = tmp_path / "code_meta.csv"
    meta.write_text(
        "language,extension,Include,Long_line_threshold,Alphanum_threshold,Alpha filter\n"
        "python,py,1,10,0.5,\npython,txt,0,,,\n",
        encoding="utf-8",
    )
    f = F.PerExtensionFilter("python", "py", metadata_file=str(meta))
    assert f.name == "per_extension_filter"
    assert (f.score_document("abc\ndef"), f.score_document("a" * 11), f.score_document("@@@@")) == (1, 0, 0)
    assert F.PerExtensionFilter("python", "txt", metadata_file=str(meta)).score_document("abc") == 0
    assert not f.keep_document(None) and not f.keep_document(0) and f.keep_document(1)
    with pytest.raises(ValueError, match="Did not find filtering params"):
        F.PerExtensionFilter("rust", "rs", metadata_file=str(meta))
    with pytest.raises(ValueError, match="SentencePiece"):
        F.TokenizerFertilityFilter()
    with pytest.raises(ValueError, match="FastText model"):
        F.FastTextLangId()


def test_fasttext_langid_keep_parses_string_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fasttext", type(sys)("fasttext"))
    f = F.FastTextLangId(model_path="missing.bin", min_langid_score=0.5)
    assert f.name == "lang_id"
    assert f.keep_document("[0.5, 'EN']") and not f.keep_document("[0.49, 'EN']")
    assert f.keep_document([0.9, "DE"])
    with pytest.raises(FileNotFoundError, match=r"missing\.bin"):
        f.model_check_or_download()
