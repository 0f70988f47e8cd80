"""``LineRemover``: drops lines equal to given patterns."""

from __future__ import annotations

from nemo_curator.stages.text.modifiers.doc_modifier import DocumentModifier


class LineRemover(DocumentModifier):
    """Removes every line (of ``text.split("\\n")``) exactly equal to one of ``patterns`` (not stripped)."""

    def __init__(self, patterns: list[str]):
        super().__init__()
        self._patterns = patterns

    def modify_document(self, text: str) -> str:
        return "\n".join(line for line in text.split("\n") if line not in self._patterns)
