"""Heuristic document filters, vectorised on Arrow.

Each filter scores every document of a batch with one ``pyarrow.compute`` pass (see ``scores.py`` for the
exact definitions of words, whitespace and lines), then either drops the documents that fail
(the default) or, when ``score_field`` is set, keeps every document and stores its score in that column.
Input data may be a ``pa.Table`` or a ``pd.DataFrame``; the output is always a ``pa.Table``.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from nemo_curator.stages.base import ProcessingStage
from nemo_curator.stages.text._arrow import document_table, replace_data
from nemo_curator.stages.text.filters import scores
from nemo_curator.tasks import DocumentBatch


class HeuristicFilter(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Shared ``process`` for the filters below: score, then filter or annotate.

    Subclasses are dataclasses that define ``text_field``, ``score_field`` and ``name`` and implement
    ``score`` and ``keep``.
    """

    text_field: str
    score_field: str | None

    @abstractmethod
    def score(self, text: pa.ChunkedArray) -> pa.Array:
        """One score per document of ``text``."""

    @abstractmethod
    def keep(self, score: pa.Array) -> pa.Array:
        """A boolean mask: True for the documents that pass."""

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], [self.text_field]

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], [self.text_field, self.score_field] if self.score_field else [self.text_field]

    def process(self, task: DocumentBatch) -> DocumentBatch:
        table = document_table(task, self.text_field)
        score = self.score(table.column(self.text_field))
        passing = self.keep(score)
        n_passing = pc.sum(passing).as_py() or 0
        if self.score_field:
            if self.score_field in table.column_names:
                table = table.set_column(table.column_names.index(self.score_field), self.score_field, score)
            else:
                table = table.append_column(self.score_field, score)
            self._log_metrics({"documents_scored": table.num_rows, "documents_passing": n_passing})
        else:
            removed = table.num_rows - n_passing
            table = table.filter(passing)
            self._log_metrics({"documents_kept": n_passing, "documents_removed": removed})
        return replace_data(task, table)


def _between(score: pa.Array, low: float, high: float) -> pa.Array:
    return pc.and_(pc.greater_equal(score, low), pc.less_equal(score, high))


@dataclass
class WordCountFilter(HeuristicFilter):
    """Keep documents with ``min_words <= words <= max_words`` (words are whitespace-separated runs)."""

    min_words: int = 50
    max_words: int = 100000
    text_field: str = "text"
    score_field: str | None = None
    name: str = "word_count_filter"

    def __post_init__(self) -> None:
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) must not exceed max_words ({self.max_words})")

    def score(self, text: pa.ChunkedArray) -> pa.Array:
        return scores.word_count(text)

    def keep(self, score: pa.Array) -> pa.Array:
        return _between(score, self.min_words, self.max_words)


@dataclass
class MeanWordLengthFilter(HeuristicFilter):
    """Keep documents whose mean word length (code points) lies in ``[min_length, max_length]``.

    A document without words has mean length 0.0.
    """

    min_length: float = 3
    max_length: float = 10
    text_field: str = "text"
    score_field: str | None = None
    name: str = "mean_word_length_filter"

    def __post_init__(self) -> None:
        if self.min_length > self.max_length:
            raise ValueError(f"min_length ({self.min_length}) must not exceed max_length ({self.max_length})")

    def score(self, text: pa.ChunkedArray) -> pa.Array:
        return scores.mean_word_length(text)

    def keep(self, score: pa.Array) -> pa.Array:
        return _between(score, self.min_length, self.max_length)


@dataclass
class NonAlphaNumericFilter(HeuristicFilter):
    """Keep documents whose share of non-alphanumeric characters is at most ``max_non_alpha_numeric_ratio``.

    Letters and numbers of any script count as alphanumeric; whitespace and punctuation do not. Empty text
    has ratio 1.0.
    """

    max_non_alpha_numeric_ratio: float = 0.25
    text_field: str = "text"
    score_field: str | None = None
    name: str = "non_alpha_numeric_filter"

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_non_alpha_numeric_ratio <= 1.0:
            raise ValueError("max_non_alpha_numeric_ratio must be within [0, 1]")

    def score(self, text: pa.ChunkedArray) -> pa.Array:
        return scores.non_alpha_numeric_ratio(text)

    def keep(self, score: pa.Array) -> pa.Array:
        return pc.less_equal(score, self.max_non_alpha_numeric_ratio)


@dataclass
class RepeatedLinesFilter(HeuristicFilter):
    """Keep documents where at most ``max_repeated_line_fraction`` of the lines repeat an earlier line.

    Lines are split on ``"\\n"``; blank lines are ignored. ``"a\\na\\nb"`` has fraction 1/3. The default 0.3
    matches the Gopher rule. (Curator's filter of the same name scores the *unique* fraction instead, with
    the opposite comparison: its 0.7 corresponds to 0.3 here.)
    """

    max_repeated_line_fraction: float = 0.3
    text_field: str = "text"
    score_field: str | None = None
    name: str = "repeated_lines_filter"

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_repeated_line_fraction <= 1.0:
            raise ValueError("max_repeated_line_fraction must be within [0, 1]")

    def score(self, text: pa.ChunkedArray) -> pa.Array:
        return scores.repeated_line_fraction(text)

    def keep(self, score: pa.Array) -> pa.Array:
        return pc.less_equal(score, self.max_repeated_line_fraction)
