"""Curator 1.1.0's fastText ``DocumentFilter``s: quality classification and language identification.

Both need the ``fasttext`` package (``ImportError`` naming it at construction) and a model file, checked
by ``model_check_or_download`` and loaded by ``load_model`` (so ``ScoreFilter`` runs them as actor stages).
"""

from __future__ import annotations

import ast
import os
from typing import Any

import numpy as np

from nemo_curator.stages.text.filters.doc_filter import DocumentFilter
from nemo_curator.stages.text.filters.heuristic_filter import _import_or_explain


def _require_fasttext(purpose: str) -> Any:
    return _import_or_explain("fasttext", "fasttext", purpose)


class FastTextQualityFilter(DocumentFilter):
    """Probability of ``label`` (1 - p when another label wins); keep at random with a Pareto draw.

    ``keep_document`` keeps when ``numpy.random.pareto(alpha) > 1 - score``; the constructor seeds NumPy's
    global generator with ``seed``, as Curator does.
    """

    def __init__(
        self, model_path: str | None = None, label: str = "__label__hq", alpha: float = 3, seed: int = 42
    ):
        if model_path is None:
            msg = "Must provide a valid path to a FastText model to compute document scores with this filter"
            raise ValueError(msg)
        _require_fasttext("FastTextQualityFilter")
        self._model_path = model_path
        self._label = label
        self._alpha = alpha
        self._seed = np.random.seed(seed)
        self._name = "fasttext_quality_filter"

    def model_check_or_download(self) -> None:
        if not os.path.exists(self._model_path):
            msg = f"Model file {self._model_path} not found"
            raise FileNotFoundError(msg)

    def load_model(self) -> None:
        self._fasttext_quality_filter_model = _require_fasttext("FastTextQualityFilter").load_model(
            self._model_path
        )

    def score_document(self, text: str) -> float:
        text = text.replace("\n", " ").replace("__label__", " ")
        labels, probabilities = self._fasttext_quality_filter_model.predict([text])
        score = float(probabilities[0][0])
        return score if labels[0][0] == self._label else 1 - score

    def keep_document(self, score: float) -> bool:
        return bool(np.random.pareto(self._alpha) > 1 - score)


class FastTextLangId(DocumentFilter):
    """``str([score, "XX"])``: the top language's probability and its code (last two label characters,
    upper case). Keep if the score is at least ``min_langid_score``."""

    def __init__(self, model_path: str | None = None, min_langid_score: float = 0.3):
        if model_path is None:
            msg = "Must provide a valid path to a FastText model to identify languages with this filter"
            raise ValueError(msg)
        _require_fasttext("FastTextLangId")
        self._model_path = model_path
        self._lang_code = None
        self._cutoff = min_langid_score
        self._name = "lang_id"

    def model_check_or_download(self) -> None:
        if not os.path.exists(self._model_path):
            msg = f"Model file {self._model_path} not found"
            raise FileNotFoundError(msg)

    def load_model(self) -> None:
        self._fasttext_langid_model = _require_fasttext("FastTextLangId").load_model(self._model_path)

    def score_document(self, text: str) -> str:
        labels, probabilities = self._fasttext_langid_model.predict([text.strip().replace("\n", " ")], k=1)
        # A string, as in Curator, so the score survives conversions between data frame backends.
        return str([float(probabilities[0][0]), labels[0][0][-2:].upper()])

    def keep_document(self, score: float | str | list[Any]) -> bool:
        if isinstance(score, str):
            score = ast.literal_eval(score)
        return score[0] >= self._cutoff
