"""``BoilerPlateStringModifier``: removes policy/cookie boilerplate paragraphs at the top or bottom (C4)."""

from __future__ import annotations

from nemo_curator.stages.text.modifiers.doc_modifier import DocumentModifier
from nemo_curator.stages.text.utils.constants import policy_substrings
from nemo_curator.stages.text.utils.text_utils import (
    get_paragraphs,
    is_paragraph_indices_in_top_or_bottom_only,
)


class BoilerPlateStringModifier(DocumentModifier):
    """Drops boilerplate paragraphs (containing a policy phrase) when they sit only at the top or bottom.

    A paragraph containing ``lorem ipsum`` empties the document; so does any policy paragraph when
    ``remove_if_at_top_or_bottom`` is False. Otherwise the policy paragraphs are removed if they form one
    contiguous run touching the first or last paragraph and are not all of them; in any other case the
    document is returned unchanged. Paragraphs are compared stripped and lower-cased.
    """

    def __init__(self, remove_if_at_top_or_bottom: bool = True):
        super().__init__()
        self._remove_if_at_top_or_bottom = remove_if_at_top_or_bottom
        self._top_or_bottom_only = False
        self._boilerplate_paragraph_indices: list[int] = []
        self._name = "boilerplate_string_ratio"

    def modify_document(self, text: str) -> str:
        self._boilerplate_paragraph_indices = []
        paragraphs = self._paragraphs if self._paragraphs is not None else get_paragraphs(text)
        for index, raw in enumerate(paragraphs):
            paragraph = raw.strip().lower()
            if "lorem ipsum" in paragraph:
                return ""
            if any(phrase in paragraph for phrase in policy_substrings):
                if not self._remove_if_at_top_or_bottom:
                    return ""
                self._boilerplate_paragraph_indices.append(index)
        if not self._boilerplate_paragraph_indices:
            return text
        self._top_or_bottom_only = is_paragraph_indices_in_top_or_bottom_only(
            self._boilerplate_paragraph_indices, len(paragraphs)
        )
        if self._top_or_bottom_only:
            drop = set(self._boilerplate_paragraph_indices)
            modified = "\n\n".join(p for index, p in enumerate(paragraphs) if index not in drop)
        else:
            modified = text
        # A cache set by the caller serves one document only.
        self._paragraphs = None
        return modified
