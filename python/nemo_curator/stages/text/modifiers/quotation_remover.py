"""``QuotationRemover``: removes double quotes wrapping a whole document."""

from __future__ import annotations

from nemo_curator.stages.text.modifiers.doc_modifier import DocumentModifier


class QuotationRemover(DocumentModifier):
    """Drops a leading and trailing ``"`` when both are present and the stripped text is longer than 2.

    A multi-line document keeps its quotes if its first line ends with ``"`` (the quotes then belong to
    that line rather than wrapping the document).
    """

    def __init__(self) -> None:
        super().__init__()

    def modify_document(self, text: str) -> str:
        stripped = text.strip()
        if len(stripped) > 2 and text[0] == '"' and text[-1] == '"':
            if "\n" not in stripped or text.split("\n")[0][-1] != '"':
                return text[1:-1]
        return text
