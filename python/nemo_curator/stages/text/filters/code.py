"""Curator 1.1.0's code-quality ``DocumentFilter``s (StarCoder-style rules), same names and scores.

``TokenizerFertilityFilter`` needs ``sentencepiece``, ``HTMLBoilerplateFilter`` needs ``beautifulsoup4`` and
``GeneralCommentToCodeFilter`` needs ``comment_parser``; each raises ``ImportError`` naming the package when
constructed without it. The other filters need only the standard library.
"""

from __future__ import annotations

import csv
import warnings
from typing import Any

from nemo_curator.stages.text.filters.doc_filter import DocumentFilter
from nemo_curator.stages.text.filters.heuristic_filter import _import_or_explain
from nemo_curator.stages.text.utils.constants import regex_alpha, regex_alphanum
from nemo_curator.stages.text.utils.text_utils import get_comments_and_docstring


class PythonCommentToCodeFilter(DocumentFilter):
    """(Length of comments + docstrings) / length of the Python source, 0 if it does not parse.

    Keep if ``min <= ratio <= max``.
    """

    def __init__(self, min_comment_to_code_ratio: float = 0.01, max_comment_to_code_ratio: float = 0.85):
        self._min_threshold = min_comment_to_code_ratio
        self._max_threshold = max_comment_to_code_ratio
        self._name = "python_comment_ratio"

    def score_document(self, source: str) -> float:
        docstrings, comments = get_comments_and_docstring(source)
        if docstrings is None or comments is None:
            return 0
        return (len(comments) + len(docstrings)) / len(source)

    def keep_document(self, score: float) -> bool:
        return self._min_threshold <= score <= self._max_threshold


class GeneralCommentToCodeFilter(DocumentFilter):
    """Length of the comments ``comment_parser`` finds / length of the source (9999 if it fails).

    ``language`` is the source's MIME type (e.g. ``"text/x-c"``). Keep if ``min <= ratio <= max``.
    """

    def __init__(
        self, language: str, min_comment_to_code_ratio: float = 0.01, max_comment_to_code_ratio: float = 0.85
    ):
        # Checked here so a missing package fails at construction; imported again where used, since a
        # module object would not survive pickling the filter to a worker.
        _import_or_explain("comment_parser.comment_parser", "comment_parser", "GeneralCommentToCodeFilter")
        self._lang = language
        self._min_threshold = min_comment_to_code_ratio
        self._max_threshold = max_comment_to_code_ratio
        self._name = "comment_ratio"

    def score_document(self, source: str) -> float:
        try:
            from comment_parser import comment_parser

            found = comment_parser.extract_comments_from_str(source, mime=self._lang)
            comments = " ".join(comment.text() for comment in found)
        except Exception:
            warnings.warn("tokenization error, no comment is extracted", stacklevel=2)
            return 9999
        return len(comments) / len(source)

    def keep_document(self, score: float) -> bool:
        return self._min_threshold <= score <= self._max_threshold


class NumberOfLinesOfCodeFilter(DocumentFilter):
    """Number of lines (``source.count("\\n") + 1``); keep if ``min_lines <= lines <= max_lines``."""

    def __init__(self, min_lines: int = 10, max_lines: int = 20000):
        self._min_lines = min_lines
        self._max_lines = max_lines
        self._name = "num_lines"

    def score_document(self, source: str) -> int:
        return source.count("\n") + 1

    def keep_document(self, score: int) -> bool:
        return self._min_lines <= score <= self._max_lines


class TokenizerFertilityFilter(DocumentFilter):
    """Characters per SentencePiece piece (-1 without pieces); keep if at least the minimum."""

    def __init__(self, path_to_tokenizer: str | None = None, min_char_to_token_ratio: float = 2.5):
        if path_to_tokenizer is None:
            msg = "Must provide a valid path to a SentencePiece tokenizer"
            raise ValueError(msg)
        sentencepiece = _import_or_explain("sentencepiece", "sentencepiece", "TokenizerFertilityFilter")
        self._tokenizer = sentencepiece.SentencePieceProcessor()
        self._tokenizer.Load(path_to_tokenizer)
        self._threshold = min_char_to_token_ratio
        self._name = "tokenizer_fertility"

    def score_document(self, source: str) -> float:
        pieces = self._tokenizer.encode_as_pieces(source)
        if not pieces:
            return -1
        return len(source) / len(pieces)

    def keep_document(self, score: float) -> bool:
        return score >= self._threshold


class XMLHeaderFilter(DocumentFilter):
    """1 if ``<?xml version=`` occurs in the first ``char_prefix_search_length`` characters; keep unless 1."""

    def __init__(self, char_prefix_search_length: int = 100):
        self._char_prefix_search_length = char_prefix_search_length
        self._name = "xml_header"

    def score_document(self, source: str) -> float:
        return 1 if "<?xml version=" in source[: self._char_prefix_search_length] else 0

    def keep_document(self, score: float) -> bool:
        return score != 1


class AlphaFilter(DocumentFilter):
    """Share of Unicode Alphabetic characters; keep if at least the minimum. ``ZeroDivisionError`` if empty."""

    def __init__(self, min_alpha_ratio: float = 0.25):
        self._min_alpha_ratio = min_alpha_ratio
        self._name = "alpha_filter"

    def score_document(self, source: str) -> float:
        return len(regex_alpha.findall(source)) / len(source)

    def keep_document(self, score: float) -> bool:
        return score >= self._min_alpha_ratio


class HTMLBoilerplateFilter(DocumentFilter):
    """Share of visible text (BeautifulSoup, without scripts and styles); 0 if under the character minimum.

    Keep if at least ``min_lang_content_ratio``.
    """

    def __init__(self, min_lang_content_ratio: float = 0.2, min_lang_content_num_chars: int = 100):
        self._soup = _import_or_explain("bs4", "beautifulsoup4", "HTMLBoilerplateFilter").BeautifulSoup
        self._min_lang_content_ratio = min_lang_content_ratio
        self._min_lang_content_num_chars = min_lang_content_num_chars
        self._name = "html_boilerplate"

    def score_document(self, source: str) -> float | None:
        try:
            soup = self._soup(source, features="html.parser")
        except (TypeError, UnboundLocalError):
            return None
        for element in soup(["script", "style"]):
            element.extract()
        text = soup.get_text()
        if len(text) < self._min_lang_content_num_chars:
            return 0
        return len(text) / len(source)

    def keep_document(self, score: float) -> bool:
        return score >= self._min_lang_content_ratio


class PerExtensionFilter(DocumentFilter):
    """Line-length and character-share limits per (language, extension), read from a CSV file.

    The CSV has columns ``language``, ``extension``, ``Include``, ``Long_line_threshold``,
    ``Alphanum_threshold`` and ``Alpha filter``. Score 1 if the source passes every limit, else 0; keep
    unless the score is 0 or ``None``.
    """

    def __init__(self, lang: str, extension: str, metadata_file: str = "code_meta.csv"):
        self._metadata_file = metadata_file
        self._lang = lang
        self._extension = extension
        self._ext_to_filter = self._load_filter_csv(metadata_file, lang)
        self._name = "per_extension_filter"

    def _load_filter_csv(self, path: str, language: str | None = None) -> dict[tuple[str, str], Any]:
        ext_to_filter = {}
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if language is None or row["language"] == language:
                    ext_to_filter[(row["language"], row["extension"])] = self._get_filter_params(row)
        if not ext_to_filter:
            msg = f"Did not find filtering params corresponding to language: `{language}` in: {path}"
            raise ValueError(msg)
        return ext_to_filter

    def _get_filter_params(
        self, row: dict[str, str]
    ) -> tuple[bool, int | None, float | None, float | None, float | None]:
        def number(kind: type, value: str) -> Any:
            try:
                return kind(value)
            except ValueError:
                return None

        line_max = number(int, row["Long_line_threshold"])
        line_mean = 100 if line_max else None
        return (
            row["Include"] == "1",
            line_max,
            line_mean,
            number(float, row["Alphanum_threshold"]),
            number(float, row["Alpha filter"]),
        )

    def _language_format_from_dataset(self, lang: str) -> str:
        if lang == "C#":
            return "c-sharp"
        if lang == "F#":
            return "f-sharp"
        return lang.lower().replace(" ", "-")

    def _line_statistics(self, source: str) -> tuple[int, float]:
        line_lengths = [len(line) for line in source.split("\n")]
        return max(line_lengths), (len(source) + 1) / len(line_lengths) - 1

    def _alphanum_fraction(self, source: str) -> float:
        return len(regex_alphanum.findall(source)) / len(source)

    def score_document(self, source: str) -> float:
        key = (
            self._language_format_from_dataset(self._lang),
            self._extension if self._extension is not None else "",
        )
        if key not in self._ext_to_filter:
            return 0
        include, line_max, line_mean, alphanum_frac, alphabetic_frac = self._ext_to_filter[key]
        if not include:
            return 0
        max_length, mean_length = self._line_statistics(source)
        if (
            (line_max and max_length > line_max)
            or (line_mean and mean_length > line_mean)
            or (alphanum_frac and self._alphanum_fraction(source) < alphanum_frac)
            or (alphabetic_frac and sum(map(str.isalpha, source)) < alphabetic_frac * len(source))
        ):
            return 0
        return 1

    def keep_document(self, score: float | None) -> bool:
        return not (score is None or score == 0)
