"""``MarkdownRemover``: strips bold, italic and underline markers and link labels, line by line."""

from __future__ import annotations

import re

from nemo_curator.stages.text.modifiers.doc_modifier import DocumentModifier

MARKDOWN_BOLD_REGEX = r"\*\*(.*?)\*\*"
MARKDOWN_ITALIC_REGEX = r"\*(.*?)\*"
MARKDOWN_UNDERLINE_REGEX = r"_(.*?)_"
MARKDOWN_LINK_REGEX = r"\[.*?\]\((.*?)\)"

_PATTERNS = tuple(
    re.compile(pattern)
    for pattern in (MARKDOWN_BOLD_REGEX, MARKDOWN_ITALIC_REGEX, MARKDOWN_UNDERLINE_REGEX, MARKDOWN_LINK_REGEX)
)


class MarkdownRemover(DocumentModifier):
    """Per line: ``**x**`` -> ``x``, ``*x*`` -> ``x``, ``_x_`` -> ``x``, then ``[label](url)`` -> ``url``.

    As in Curator, a link keeps its URL (not its label) and ``snake_case`` words lose underscores.
    """

    def __init__(self) -> None:
        super().__init__()

    def modify_document(self, text: str) -> str:
        lines = []
        for line in text.split("\n"):
            for pattern in _PATTERNS:
                line = pattern.sub(r"\1", line)
            lines.append(line)
        return "\n".join(lines)
