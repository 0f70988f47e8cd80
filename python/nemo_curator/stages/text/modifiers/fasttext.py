"""``FastTextLabelModifier``: formats a document as one fastText training line."""

from __future__ import annotations

from nemo_curator.stages.text.modifiers.doc_modifier import DocumentModifier


class FastTextLabelModifier(DocumentModifier):
    """``f"{label} {text}"`` with newlines and ``__label__`` in the text replaced by spaces."""

    def __init__(self, label: str):
        super().__init__()
        self.label = label

    def modify_document(self, text: str) -> str:
        text = text.replace("\n", " ").replace("__label__", " ")
        return f"{self.label} {text}"
