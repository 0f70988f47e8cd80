"""``DocumentFilter``: the score-then-keep contract of Curator's text filters, with optional column scorers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any


class DocumentFilter(ABC):
    """A document filter: ``score_document`` computes a score for one text, ``keep_document`` decides on it.

    Stages (``ScoreFilter``, ``Score``, ``Filter``) call these once per row. A subclass may also offer
    vectorised versions, which the stages use instead when present:

    - ``score_column(self, texts: pyarrow.Array) -> numpy.ndarray | pyarrow.Array | None``: the scores of a
      whole column. ``texts`` is a null-free ``string``/``large_string`` array (the stages use the row path
      for anything else). The result must equal ``[score_document(t) for t in texts]`` element for element,
      with the same dtype a ``pandas.Series.apply`` of ``score_document`` would give (``int64`` for int
      scores, ``float64`` for float scores), and must raise where ``score_document`` raises for some row
      (e.g. ``ZeroDivisionError`` on an empty document). Returning ``None`` asks for the row path (e.g.
      when a ``sentences`` cache is set, or for a language whose word splitter needs a package).
    - ``keep_column(self, scores: numpy.ndarray) -> numpy.ndarray``: a boolean mask equal to
      ``[keep_document(s) for s in scores]``; it is given numeric scores only.

    A vectorised method is used only if it is defined by the same class as its row-wise counterpart, so a
    subclass that overrides ``score_document`` (or ``keep_document``) never runs an inherited vectorised
    version that no longer matches it. ``vectorised_scorer`` and ``vectorised_keeper`` apply that rule.
    """

    def __init__(self) -> None:
        super().__init__()
        self._name = type(self).__name__
        self._sentences: Any = None
        self._paragraphs: Any = None
        self._ngrams: Any = None

    @abstractmethod
    def score_document(self, text: str) -> float | list[int | float]:
        """The score of one document."""

    @abstractmethod
    def keep_document(self, scores: Any) -> bool:
        """Whether to keep a document given what ``score_document`` returned for it."""

    @property
    def name(self) -> str:
        return self._name

    @property
    def sentences(self) -> Any:
        return self._sentences

    @sentences.setter
    def sentences(self, sentences: Any) -> None:
        self._sentences = sentences

    @property
    def paragraphs(self) -> Any:
        return self._paragraphs

    @paragraphs.setter
    def paragraphs(self, paragraphs: Any) -> None:
        self._paragraphs = paragraphs

    @property
    def ngrams(self) -> Any:
        return self._ngrams

    @ngrams.setter
    def ngrams(self, ngrams: Any) -> None:
        self._ngrams = ngrams


def _defining_class(cls: type, attribute: str) -> type | None:
    return next((klass for klass in cls.__mro__ if attribute in vars(klass)), None)


def _paired_method(obj: object, vectorised: str, row_wise: str) -> Callable[..., Any] | None:
    # An instance attribute replacing either method (monkeypatching) also disables the vectorised one.
    if vectorised in getattr(obj, "__dict__", {}) or row_wise in getattr(obj, "__dict__", {}):
        return None
    owner = _defining_class(type(obj), vectorised)
    if owner is None or owner is not _defining_class(type(obj), row_wise):
        return None
    return getattr(obj, vectorised)


def vectorised_scorer(filter_obj: object) -> Callable[[Any], Any] | None:
    """``filter_obj.score_column`` if it may stand in for ``score_document`` (same defining class)."""
    return _paired_method(filter_obj, "score_column", "score_document")


def vectorised_keeper(filter_obj: object) -> Callable[[Any], Any] | None:
    """``filter_obj.keep_column`` if it may stand in for ``keep_document`` (same defining class)."""
    return _paired_method(filter_obj, "keep_column", "keep_document")
