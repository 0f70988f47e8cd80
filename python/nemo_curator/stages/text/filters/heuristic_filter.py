"""The heuristic ``DocumentFilter``s of Curator 1.1.0 (Gopher, C4 and NLLB rules), same names and scores.

Each filter computes, keeps and names exactly as Curator's filter of the same name. Only the standard library
is needed at import time. ``TokenCountFilter`` with ``hf_model_name`` needs ``transformers`` and
``huggingface_hub``, ``HistogramFilter`` needs ``requests``/``platformdirs`` to download its histograms, and
``lang="zh"``/``"ja"`` word splitting needs ``jieba``/``mecab-python3``: each raises ``ImportError`` naming
the package when constructed without it.

Many filters also define ``score_column``/``keep_column`` (see ``DocumentFilter``), vectorised over an Arrow
column with the counts of ``scores.py``; they give the same values as ``score_document``/``keep_document``.
"""

from __future__ import annotations

import importlib
import os
import tarfile
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nemo_curator.stages.text.filters import scores
from nemo_curator.stages.text.filters.doc_filter import DocumentFilter
from nemo_curator.stages.text.utils.constants import (
    bullet_list,
    common_english_words,
    ellipsis_marks,
    end_marks,
    policy_substrings,
    regex_alpha,
    regex_alphanum,
    regex_digit,
    regex_hash,
    regex_paren,
    regex_url,
    white_space_list,
)
from nemo_curator.stages.text.utils.text_utils import (
    get_ngrams,
    get_paragraphs,
    get_sentences,
    get_word_splitter,
    split_whitespace,
)

# The characters of ``regex_alphanum``, ``regex_digit``, ``white_space_list`` and ``regex_paren``.
_ALPHANUM_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\n?!,."
_DIGIT_CHARS = "0123456789"
_WHITE_SPACE_CHARS = "".join(white_space_list)
_PAREN_CHARS = "{}\u27e8\u27e9[]()"


def _import_or_explain(module: str, package: str, purpose: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        msg = f"{purpose} needs the '{package}' package, which is not installed: pip install {package}"
        raise ImportError(msg) from err


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _at_most(values: np.ndarray, cutoff: float) -> np.ndarray:
    return np.asarray(values <= cutoff, dtype=bool)


def _at_least(values: np.ndarray, cutoff: float) -> np.ndarray:
    return np.asarray(values >= cutoff, dtype=bool)


def _between(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.asarray((low <= values) & (values <= high), dtype=bool)


class NonAlphaNumericFilter(DocumentFilter):
    """Share of characters outside ``[a-zA-Z0-9\\n?!,.]``; keep if at most the cutoff (Gopher).

    Score: ``(len(text) - matches) / len(text)``, 1.0 for empty text.
    """

    def __init__(self, max_non_alpha_numeric_to_text_ratio: float = 0.25):
        super().__init__()
        self._cutoff = max_non_alpha_numeric_to_text_ratio
        self._name = "alpha_numeric"

    def score_document(self, text: str) -> float:
        nchar = len(text)
        return (nchar - len(regex_alphanum.findall(text))) / nchar if nchar > 0 else 1.0

    def keep_document(self, score: float) -> bool:
        return score <= self._cutoff

    def score_column(self, texts: pa.Array) -> np.ndarray:
        nchar = scores.lengths(texts)
        return scores.ratio(nchar - scores.count_chars(texts, _ALPHANUM_CHARS), nchar, empty=1.0)

    def keep_column(self, values: np.ndarray) -> np.ndarray:
        return _at_most(values, self._cutoff)


class SymbolsToWordsFilter(DocumentFilter):
    """Share of words that are an ellipsis mark or mostly ``#`` runs; keep if at most the cutoff (Gopher).

    ``ZeroDivisionError`` for a document without words, as in Curator.
    """

    def __init__(self, max_symbol_to_word_ratio: float = 0.1, lang: str = "en"):
        super().__init__()
        self._cutoff = max_symbol_to_word_ratio
        self._word_splitter = get_word_splitter(lang)
        self._name = "symbol_to_word"

    def score_document(self, text: str) -> float:
        words = self._word_splitter(text.strip())
        symbol_words = 0
        for raw in words:
            word = raw.strip()
            if word in ellipsis_marks or len(regex_hash.findall(word)) / len(word) > 0.5:
                symbol_words += 1
        return symbol_words / len(words)

    def keep_document(self, score: float) -> bool:
        return score <= self._cutoff


class NumbersFilter(DocumentFilter):
    """Share of ASCII digits; keep if at most the cutoff. 1.0 for empty text."""

    def __init__(self, max_number_to_text_ratio: float = 0.15):
        super().__init__()
        self._cutoff = max_number_to_text_ratio
        self._name = "numbers_ratio"

    def score_document(self, text: str) -> float:
        nchar = len(text)
        return len(regex_digit.findall(text)) / nchar if nchar > 0 else 1.0

    def keep_document(self, score: float) -> bool:
        return score <= self._cutoff

    def score_column(self, texts: pa.Array) -> np.ndarray:
        return scores.ratio(scores.count_chars(texts, _DIGIT_CHARS), scores.lengths(texts), empty=1.0)

    def keep_column(self, values: np.ndarray) -> np.ndarray:
        return _at_most(values, self._cutoff)


class UrlsFilter(DocumentFilter):
    """Share of characters inside ``regex_url`` matches; keep if at most the cutoff. 1.0 for empty text."""

    def __init__(self, max_url_to_text_ratio: float = 0.2):
        super().__init__()
        self._cutoff = max_url_to_text_ratio
        self._name = "urls_ratio"

    def score_document(self, text: str) -> float:
        url_chars = sum(len(url) for url in regex_url.findall(text))
        nchar = len(text)
        return url_chars / nchar if nchar > 0 else 1.0

    def keep_document(self, score: float) -> bool:
        return score <= self._cutoff


class BulletsFilter(DocumentFilter):
    """Share of lines starting (after strip) with a bullet; keep if at most the cutoff (Gopher).

    ``ZeroDivisionError`` for a document without non-blank lines.
    """

    def __init__(self, max_bullet_lines_ratio: float = 0.9):
        super().__init__()
        self._cutoff = max_bullet_lines_ratio
        self._sentences = None
        self._name = "bullet_ratio"

    def score_document(self, text: str) -> float:
        sentences = self._sentences if self._sentences is not None else get_sentences(text)
        bullet_lines = sum(1 for line in sentences if line.strip()[:1] in bullet_list)
        return bullet_lines / len(sentences)

    def keep_document(self, score: float) -> bool:
        return score <= self._cutoff

    def score_column(self, texts: pa.Array) -> np.ndarray | None:
        if self._sentences is not None:
            return None
        bullets, lines = scores.line_edge_counts(texts, "first", "".join(bullet_list))
        return scores.checked_ratio(bullets, lines, "the number of non-blank lines")

    def keep_column(self, values: np.ndarray) -> np.ndarray:
        return _at_most(values, self._cutoff)


class WhiteSpaceFilter(DocumentFilter):
    """Share of ``\\t \\n \\r \\b`` and space characters (text not stripped); keep if at most the cutoff."""

    def __init__(self, max_white_space_ratio: float = 0.25):
        super().__init__()
        self._cutoff = max_white_space_ratio
        self._name = "white_space"

    def score_document(self, text: str) -> float:
        nchar = len(text)
        return sum(1 for char in text if char in white_space_list) / nchar if nchar > 0 else 1.0

    def keep_document(self, score: float) -> bool:
        return score <= self._cutoff

    def score_column(self, texts: pa.Array) -> np.ndarray:
        return scores.ratio(scores.count_chars(texts, _WHITE_SPACE_CHARS), scores.lengths(texts), empty=1.0)

    def keep_column(self, values: np.ndarray) -> np.ndarray:
        return _at_most(values, self._cutoff)


class ParenthesesFilter(DocumentFilter):
    """Share of ``{}⟨⟩[]()`` characters; keep if at most the cutoff. 1.0 for empty text."""

    def __init__(self, max_parentheses_ratio: float = 0.1):
        super().__init__()
        self._max_parentheses_ratio = max_parentheses_ratio
        self._name = "parentheses_ratio"

    def score_document(self, text: str) -> float:
        nchar = len(text)
        return len(regex_paren.findall(text)) / nchar if nchar > 0 else 1.0

    def keep_document(self, score: float) -> bool:
        return score <= self._max_parentheses_ratio

    def score_column(self, texts: pa.Array) -> np.ndarray:
        return scores.ratio(scores.count_chars(texts, _PAREN_CHARS), scores.lengths(texts), empty=1.0)

    def keep_column(self, values: np.ndarray) -> np.ndarray:
        return _at_most(values, self._max_parentheses_ratio)


class LongWordFilter(DocumentFilter):
    """Length of the longest word; keep if at most ``max_word_length`` (C4).

    ``ValueError`` (max of nothing) for a document without words, as in Curator.
    """

    def __init__(self, max_word_length: int = 1000, lang: str = "en"):
        super().__init__()
        self._max_word_length = max_word_length
        self._word_splitter = get_word_splitter(lang)
        self._name = "max_word_length"

    def score_document(self, text: str) -> float:
        return max(len(word) for word in self._word_splitter(text.strip()))

    def keep_document(self, score: float) -> bool:
        return score <= self._max_word_length


class WordCountFilter(DocumentFilter):
    """Number of words; keep if ``min_words <= count <= max_words``. 0 for empty text."""

    def __init__(self, min_words: int = 50, max_words: int = 100000, lang: str = "en"):
        super().__init__()
        self._min_words = min_words
        self._max_words = max_words
        self._word_splitter = get_word_splitter(lang)
        self._name = "word_count"

    def score_document(self, text: str) -> float:
        return len(self._word_splitter(text.strip()))

    def keep_document(self, score: float) -> bool:
        return self._min_words <= score <= self._max_words

    def score_column(self, texts: pa.Array) -> np.ndarray | None:
        if self._word_splitter is not split_whitespace:
            return None
        return scores.text_stats(texts).words

    def keep_column(self, values: np.ndarray) -> np.ndarray:
        return _between(values, self._min_words, self._max_words)


class BoilerPlateStringFilter(DocumentFilter):
    """Share of paragraphs containing a policy phrase, or 1.0 if any contains ``lorem ipsum`` (C4).

    Keep if at most the cutoff. ``remove_if_at_top_or_bottom`` is stored but unused, as in Curator.
    """

    def __init__(self, remove_if_at_top_or_bottom: bool = True, max_boilerplate_string_ratio: float = 0.4):
        super().__init__()
        self._remove_if_at_top_or_bottom = remove_if_at_top_or_bottom
        self._max_boilerplate_string_ratio = max_boilerplate_string_ratio
        self._boilerplate_paragraph_indices: list[int] = []
        self._max_ratio = 1.0
        self._name = "boilerplate_string_ratio"

    def score_document(self, text: str) -> float:
        paragraphs = get_paragraphs(text)
        boilerplate = 0
        for raw in paragraphs:
            paragraph = raw.strip().lower()
            if "lorem ipsum" in paragraph:
                return self._max_ratio
            if any(phrase in paragraph for phrase in policy_substrings):
                boilerplate += 1
        return boilerplate / len(paragraphs)

    def keep_document(self, score: float) -> bool:
        return score <= self._max_boilerplate_string_ratio


class MeanWordLengthFilter(DocumentFilter):
    """Mean word length in characters; keep if ``min <= mean <= max``.

    ``ZeroDivisionError`` for a document without words, as in Curator.
    """

    def __init__(self, min_mean_word_length: int = 3, max_mean_word_length: int = 10, lang: str = "en"):
        super().__init__()
        self._min_cutoff = min_mean_word_length
        self._max_cutoff = max_mean_word_length
        self._word_splitter = get_word_splitter(lang)
        self._name = "mean_word_length"

    def score_document(self, text: str) -> float:
        word_lengths = [len(word) for word in self._word_splitter(text.strip()) if word]
        return sum(word_lengths) / len(word_lengths)

    def keep_document(self, score: float) -> bool:
        return self._min_cutoff <= score <= self._max_cutoff

    def score_column(self, texts: pa.Array) -> np.ndarray | None:
        if self._word_splitter is not split_whitespace:
            return None
        stats = scores.text_stats(texts)
        return scores.checked_ratio(stats.word_chars, stats.words, "the number of words")

    def keep_column(self, values: np.ndarray) -> np.ndarray:
        return _between(values, self._min_cutoff, self._max_cutoff)


class RepeatedLinesFilter(DocumentFilter):
    """Distinct lines / lines (raw non-blank lines); keep if **at least** the value (Gopher).

    Despite the parameter's name, ``max_repeated_line_fraction`` is a minimum uniqueness ratio (as in
    Curator). ``ZeroDivisionError`` for a document without non-blank lines.
    """

    def __init__(self, max_repeated_line_fraction: float = 0.7):
        super().__init__()
        self._cutoff = max_repeated_line_fraction
        self._name = "repeated_lines"

    def score_document(self, text: str) -> float:
        sentences = self._sentences if self._sentences is not None else get_sentences(text)
        return len(set(sentences)) / len(sentences)

    def keep_document(self, score: float) -> bool:
        return score >= self._cutoff

    def score_column(self, texts: pa.Array) -> np.ndarray | None:
        if self._sentences is not None:
            return None
        stats = scores.piece_stats(texts, "\n", skip_blank=True)
        return scores.checked_ratio(stats.distinct, stats.total, "the number of non-blank lines")

    def keep_column(self, values: np.ndarray) -> np.ndarray:
        return _at_least(values, self._cutoff)


class RepeatedParagraphsFilter(DocumentFilter):
    """Distinct paragraphs / paragraphs; keep if at least the value (Gopher)."""

    def __init__(self, max_repeated_paragraphs_ratio: float = 0.7):
        super().__init__()
        self._max_repeated_paragraphs_ratio = max_repeated_paragraphs_ratio
        self._name = "repeated_paragraphs"

    def score_document(self, text: str) -> float:
        paragraphs = self._paragraphs if self._paragraphs is not None else get_paragraphs(text)
        return len(set(paragraphs)) / len(paragraphs)

    def keep_document(self, score: float) -> bool:
        return score >= self._max_repeated_paragraphs_ratio

    def score_column(self, texts: pa.Array) -> np.ndarray | None:
        if self._paragraphs is not None:
            return None
        stats = scores.piece_stats(texts, "\n\n", skip_blank=False)
        return scores.checked_ratio(stats.distinct, stats.total, "the number of paragraphs")

    def keep_column(self, values: np.ndarray) -> np.ndarray:
        return _at_least(values, self._max_repeated_paragraphs_ratio)


class RepeatedLinesByCharFilter(DocumentFilter):
    """Characters in distinct lines / characters in all lines; keep if at least the value (Gopher).

    ``ZeroDivisionError`` for a document without non-blank lines.
    """

    def __init__(self, max_repeated_lines_char_ratio: float = 0.8):
        super().__init__()
        self._cutoff = max_repeated_lines_char_ratio
        self._name = "repeated_lines_char"

    def score_document(self, text: str) -> float:
        sentences = self._sentences if self._sentences is not None else get_sentences(text)
        return len("".join(set(sentences))) / len("".join(sentences))

    def keep_document(self, score: float) -> bool:
        return score >= self._cutoff

    def score_column(self, texts: pa.Array) -> np.ndarray | None:
        if self._sentences is not None:
            return None
        stats = scores.piece_stats(texts, "\n", skip_blank=True)
        return scores.checked_ratio(stats.distinct_chars, stats.total_chars, "the length of the lines")

    def keep_column(self, values: np.ndarray) -> np.ndarray:
        return _at_least(values, self._cutoff)


class RepeatedParagraphsByCharFilter(DocumentFilter):
    """Characters in distinct paragraphs / characters in all paragraphs; keep if at least the value.

    ``ZeroDivisionError`` when the paragraphs hold no characters (``""``, ``"\\n\\n"``).
    """

    def __init__(self, max_repeated_paragraphs_char_ratio: float = 0.8):
        super().__init__()
        self._cutoff = max_repeated_paragraphs_char_ratio
        self._name = "repeated_paragraphs_char"

    def score_document(self, text: str) -> float:
        paragraphs = self._paragraphs if self._paragraphs is not None else get_paragraphs(text)
        return len("".join(set(paragraphs))) / len("".join(paragraphs))

    def keep_document(self, score: float) -> bool:
        return score >= self._cutoff

    def score_column(self, texts: pa.Array) -> np.ndarray | None:
        if self._paragraphs is not None:
            return None
        stats = scores.piece_stats(texts, "\n\n", skip_blank=False)
        return scores.checked_ratio(stats.distinct_chars, stats.total_chars, "the length of the paragraphs")

    def keep_column(self, values: np.ndarray) -> np.ndarray:
        return _at_least(values, self._cutoff)


class RepeatingTopNGramsFilter(DocumentFilter):
    """Share of characters removed by deleting every occurrence of the most frequent word n-gram (Gopher).

    The n-gram's words joined by one space are removed as a raw substring. 1.0 with fewer than ``n`` words.
    Ties between equally frequent n-grams are broken by first occurrence here; Curator breaks them by set
    order, which varies between processes.
    """

    def __init__(self, n: int = 2, max_repeating_ngram_ratio: float = 0.2, lang: str = "en"):
        super().__init__()
        self._n = n
        self._cutoff = max_repeating_ngram_ratio
        self._max_ratio = 1.0
        self._word_splitter = get_word_splitter(lang)
        self._name = f"repeating_top_{n}grams"

    def score_document(self, text: str) -> float:
        ngrams = self._ngrams
        if ngrams is None:
            words = self._word_splitter(text.strip())
            if len(words) < self._n:
                return self._max_ratio
            ngrams = get_ngrams(words, self._n)
        counts: dict[tuple[str, ...], int] = {}
        for ngram in ngrams:
            counts[ngram] = counts.get(ngram, 0) + 1
        top = " ".join(max(counts, key=counts.__getitem__))
        nchar = len(text)
        return (nchar - len(text.replace(top, ""))) / nchar if nchar > 0 else 1.0

    def keep_document(self, score: float) -> bool:
        return score <= self._cutoff


class RepeatingDuplicateNGramsFilter(DocumentFilter):
    """Share of characters covered by n-grams seen earlier in the document (Gopher).

    Overlapping duplicates are counted once; one space is counted between adjacent words. 1.0 with fewer
    than ``n`` words.
    """

    def __init__(self, n: int = 2, max_repeating_duplicate_ngram_ratio: float = 0.2, lang: str = "en"):
        super().__init__()
        self._n = n
        self._cutoff = max_repeating_duplicate_ngram_ratio
        self._max_ratio = 1.0
        self._word_splitter = get_word_splitter(lang)
        self._name = f"repeating_dup_{n}gram"

    def score_document(self, text: str) -> float:
        ngrams = self._ngrams
        if ngrams is None:
            words = self._word_splitter(text.strip())
            if len(words) < self._n:
                return self._max_ratio
            ngrams = get_ngrams(words, self._n)
        seen: dict[tuple[str, ...], int] = {}
        duplicated_chars = 0
        # How many leading words of the current n-gram were already counted with the previous duplicate.
        overlap = 0
        for ngram in ngrams:
            seen[ngram] = seen.get(ngram, 0) + 1
            if seen[ngram] > 1:
                duplicated_chars += sum(len(word) for word in ngram[overlap:]) + min(
                    self._n - overlap, self._n - 1
                )
                overlap = self._n
            overlap = max(overlap - 1, 0)
        nchar = len(text)
        return duplicated_chars / nchar if nchar > 0 else 1.0

    def keep_document(self, score: float) -> bool:
        return score <= self._cutoff


class PunctuationFilter(DocumentFilter):
    """Share of lines not ending (after strip) with ``. ? ! " '``; keep if at most the cutoff (C4).

    ``ZeroDivisionError`` for a document without non-blank lines.
    """

    def __init__(self, max_num_sentences_without_endmark_ratio: float = 0.85):
        super().__init__()
        self._cutoff = max_num_sentences_without_endmark_ratio
        self._name = "punctuation"

    def score_document(self, text: str) -> float:
        sentences = self._sentences if self._sentences is not None else get_sentences(text)
        without_end_mark = sum(1 for line in sentences if not line.strip().endswith(end_marks))
        return without_end_mark / len(sentences)

    def keep_document(self, score: float) -> bool:
        return score <= self._cutoff

    def score_column(self, texts: pa.Array) -> np.ndarray | None:
        if self._sentences is not None:
            return None
        with_end_mark, lines = scores.line_edge_counts(texts, "last", "".join(end_marks))
        return scores.checked_ratio(lines - with_end_mark, lines, "the number of non-blank lines")

    def keep_column(self, values: np.ndarray) -> np.ndarray:
        return _at_most(values, self._cutoff)


class EllipsisFilter(DocumentFilter):
    """Share of lines ending (after strip and lower-casing) with an ellipsis mark; keep if at most the cutoff.

    ``ZeroDivisionError`` for a document without non-blank lines.
    """

    def __init__(self, max_num_lines_ending_with_ellipsis_ratio: float = 0.3):
        super().__init__()
        self._cutoff = max_num_lines_ending_with_ellipsis_ratio
        self._name = "ellipsis"

    def score_document(self, text: str) -> float:
        sentences = self._sentences if self._sentences is not None else get_sentences(text)
        marks = tuple(ellipsis_marks)
        ending = sum(1 for line in sentences if line.strip().lower().endswith(marks))
        return ending / len(sentences)

    def keep_document(self, score: float) -> bool:
        return score <= self._cutoff


class CommonEnglishWordsFilter(DocumentFilter):
    """Number of words that are exactly one of ``the be to of and that have with``; keep if at least ``min``.

    With ``stop_at_false`` counting stops once ``min`` is reached, so the score is at most ``min``.
    Words are always split on whitespace, and the match is case-sensitive (over-capitalised text fails).
    """

    def __init__(self, min_num_common_words: int = 2, stop_at_false: bool = True):
        super().__init__()
        self._cutoff = min_num_common_words
        self._stop_at_false = stop_at_false
        self._word_splitter = get_word_splitter("en")
        self._name = "common_english_words"

    def score_document(self, text: str) -> int:
        count = 0
        for word in self._word_splitter(text.strip()):
            if word in common_english_words:
                count += 1
            if self._stop_at_false and count >= self._cutoff:
                return count
        return count

    def keep_document(self, score: int) -> bool:
        return score >= self._cutoff


class WordsWithoutAlphabetsFilter(DocumentFilter):
    """Share of words with at least one Unicode Alphabetic character; keep if at least the minimum (Gopher).

    ``ZeroDivisionError`` for a document without words.
    """

    def __init__(self, min_words_with_alphabets: float = 0.8, lang: str = "en"):
        super().__init__()
        self._cutoff = min_words_with_alphabets
        self._word_splitter = get_word_splitter(lang)
        self._name = "words_without_alphabets"

    def score_document(self, text: str) -> float:
        words = self._word_splitter(text.strip())
        with_alpha = sum(1 for word in words if regex_alpha.search(word))
        return with_alpha / len(words)

    def keep_document(self, score: float) -> bool:
        return score >= self._cutoff


class PornographicUrlsFilter(DocumentFilter):
    """1 if a ``regex_url`` match contains ``porn`` (case-sensitive), else 0; keep unless 1."""

    def __init__(self) -> None:
        super().__init__()

    def score_document(self, text: str) -> int:
        return int(any("porn" in url for url in regex_url.findall(text)))

    def keep_document(self, score: int) -> bool:
        return score != 1


class TokenCountFilter(DocumentFilter):
    """Number of tokens (``len(tokenizer.encode(text))``); keep if ``min_tokens <= count <= max_tokens``.

    Give either a ``tokenizer`` (any object with ``encode``) or ``hf_model_name``; the latter needs
    ``transformers`` and ``huggingface_hub`` (checked here), downloads the model in
    ``model_check_or_download`` and loads it in ``load_tokenizer``.
    """

    def __init__(
        self,
        tokenizer: Any = None,
        hf_model_name: str | None = None,
        hf_token: str | None = None,
        min_tokens: int = 0,
        max_tokens: int = float("inf"),  # type: ignore[assignment]
    ):
        super().__init__()
        if tokenizer is None and hf_model_name is None:
            msg = "Either tokenizer or hf_model_name must be provided"
            raise ValueError(msg)
        if tokenizer is not None and hf_model_name is not None:
            msg = "Either tokenizer or hf_model_name must be provided, not both"
            raise ValueError(msg)
        if hf_model_name is not None:
            missing = [package for package in ("transformers", "huggingface_hub") if not _importable(package)]
            if missing:
                msg = (
                    f"TokenCountFilter(hf_model_name={hf_model_name!r}) needs the package(s) {missing}, which are "
                    f"not installed: pip install {' '.join(missing)} (or pass a loaded tokenizer object)"
                )
                raise ImportError(msg)
        self._token_count_filter_tokenizer = tokenizer
        self._hf_model_name = hf_model_name
        self._hf_token = hf_token
        self._min_tokens = min_tokens
        self._max_tokens = max_tokens
        self._name = "token_count"

    def model_check_or_download(self) -> None:
        if self._hf_model_name is not None:
            hub = _import_or_explain("huggingface_hub", "huggingface_hub", "TokenCountFilter")
            hub.snapshot_download(repo_id=self._hf_model_name, token=self._hf_token, local_files_only=False)

    def load_tokenizer(self) -> None:
        if self._hf_model_name is not None:
            transformers = _import_or_explain("transformers", "transformers", "TokenCountFilter")
            self._token_count_filter_tokenizer = transformers.AutoTokenizer.from_pretrained(
                self._hf_model_name, local_files_only=True
            )

    def score_document(self, text: str) -> int:
        if self._token_count_filter_tokenizer is None:
            msg = f"TokenCountFilter: the tokenizer of {self._hf_model_name!r} is not loaded; call load_tokenizer()"
            raise RuntimeError(msg)
        return len(self._token_count_filter_tokenizer.encode(text))

    def keep_document(self, score: int) -> bool:
        return self._min_tokens <= score <= self._max_tokens


class SubstringFilter(DocumentFilter):
    """1 if ``substring`` is at ``position`` (``prefix``, ``suffix`` or ``any``), else 0; keep if 1."""

    _POSITIONS = ("prefix", "suffix", "any")

    def __init__(self, substring: str, position: Literal["prefix", "suffix", "any"]):
        super().__init__()
        self._substring = substring
        if position not in self._POSITIONS:
            msg = f"Invalid position: {position}. Must be one of: prefix, suffix, any."
            raise ValueError(msg)
        self._position = position

    def score_document(self, text: str) -> int:
        if self._position == "prefix":
            return int(text.startswith(self._substring))
        if self._position == "suffix":
            return int(text.endswith(self._substring))
        return int(self._substring in text)

    def keep_document(self, score: int) -> bool:
        return score == 1

    def score_column(self, texts: pa.Array) -> np.ndarray:
        text = scores.as_text(texts)
        if self._position == "prefix":
            found = pc.starts_with(text, pattern=self._substring)
        elif self._position == "suffix":
            found = pc.ends_with(text, pattern=self._substring)
        else:
            found = pc.match_substring(text, pattern=self._substring)
        return found.to_numpy(zero_copy_only=False).astype(np.int64)

    def keep_column(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values == 1, dtype=bool)


class HistogramFilter(DocumentFilter):
    """1 if the share of characters in the language's character histogram exceeds ``threshold``, else 0
    (NLLB); keep if 1.

    The histograms are read from ``<cache_dir>/histograms`` (``cache_dir`` defaults to
    ``platformdirs.user_cache_dir()``), downloaded there with ``requests`` when missing. Each package is
    needed only for its step; without it the constructor raises ``ImportError`` naming it.
    ``ZeroDivisionError`` for empty text.
    """

    _URL = "https://dl.fbaipublicfiles.com/m2m_100/histograms.tar.gz"

    def __init__(
        self,
        lang: str | None = "en",
        threshold: float | None = 0.8,
        cache_dir: str | None = "",
        threshold_char: str | None = "]",
    ):
        super().__init__()
        self._lang = lang
        self._threshold = threshold
        if cache_dir:
            self._cache_dir = cache_dir
        else:
            platformdirs = _import_or_explain(
                "platformdirs", "platformdirs", "HistogramFilter without cache_dir"
            )
            self._cache_dir = platformdirs.user_cache_dir()
        self._threshold_char = threshold_char
        self._name = "histogram"
        if not os.path.isdir(os.path.join(self._cache_dir, "histograms")):
            self._download_histograms()
        self._read_hist()

    def _download_histograms(self) -> None:
        requests = _import_or_explain("requests", "requests", "Downloading the HistogramFilter histograms")
        response = requests.get(self._URL, timeout=600)
        if response.status_code != 200:
            msg = f"Failed to download histogram file. Status code: {response.status_code}"
            raise requests.exceptions.RequestException(msg)
        os.makedirs(self._cache_dir, exist_ok=True)
        archive = os.path.join(self._cache_dir, "histograms.tar.gz")
        with open(archive, "wb") as file:
            file.write(response.content)
        with tarfile.open(archive, "r:gz") as tar:
            # The "data" filter refuses absolute paths and links out of the target (Python >= 3.11.4).
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(path=os.path.join(self._cache_dir, "histograms"), **safe)

    def _read_hist(self) -> None:
        path = os.path.join(
            self._cache_dir,
            "histograms",
            "checkpoint",
            "edunov",
            "cc60_multilingual",
            "clean_hists",
            str(self._lang),
        )
        chars = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line[0] == self._threshold_char:
                    break
                chars.append(line[0])
        self._histogram = set(chars)

    def score_document(self, text: str) -> float:
        in_histogram = sum(1 for char in text.strip() if char in self._histogram)
        return 1 if in_histogram / len(text) > self._threshold else 0

    def keep_document(self, score: float) -> bool:
        return score == 1
