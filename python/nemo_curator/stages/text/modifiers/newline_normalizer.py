"""``NewlineNormalizer``: collapses runs of blank lines."""

from __future__ import annotations

import re

from nemo_curator.stages.text.modifiers.doc_modifier import DocumentModifier

THREE_OR_MORE_NEWLINES_REGEX = re.compile(r"(\n){3,}")
THREE_OR_MORE_WINDOWS_NEWLINES_REGEX = re.compile(r"(\r\n){3,}")


class NewlineNormalizer(DocumentModifier):
    """Runs of three or more ``\\n`` become ``\\n\\n``; then runs of three or more ``\\r\\n`` become two."""

    def __init__(self) -> None:
        super().__init__()

    def modify_document(self, text: str) -> str:
        text = THREE_OR_MORE_NEWLINES_REGEX.sub("\n\n", text)
        return THREE_OR_MORE_WINDOWS_NEWLINES_REGEX.sub("\r\n\r\n", text)
