"""``DocumentModifier``: the contract of Curator's text modifiers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class DocumentModifier(ABC):
    """Transforms one value (``modify_document(value)``) or, for multi-column input, keyword arguments
    named after the columns (``modify_document(col_a=..., col_b=...)``); ``Modify`` applies it per row."""

    def __init__(self) -> None:
        super().__init__()
        self._name = type(self).__name__
        self._sentences: Any = None
        self._paragraphs: Any = None
        self._ngrams: Any = None

    @abstractmethod
    def modify_document(self, *args: object, **kwargs: object) -> object:
        """The modified value."""

    @property
    def name(self) -> str:
        return self._name
