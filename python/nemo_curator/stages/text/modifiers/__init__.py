"""Curator's document modifiers: ``DocumentModifier`` and the text clean-up modifiers.

Names load on first access (module ``__getattr__``): ``UnicodeReformatter`` needs ``ftfy``, and importing
this package (which every ``nemo_curator.stages.text.modules`` import does) must not.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULE_OF: dict[str, str] = {
    "BoilerPlateStringModifier": "c4",
    "DocumentModifier": "doc_modifier",
    "FastTextLabelModifier": "fasttext",
    "LineRemover": "line_remover",
    "MarkdownRemover": "markdown_remover",
    "NewlineNormalizer": "newline_normalizer",
    "QuotationRemover": "quotation_remover",
    "Slicer": "slicer",
    "UnicodeReformatter": "unicode_reformatter",
    "UrlRemover": "url_remover",
}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
