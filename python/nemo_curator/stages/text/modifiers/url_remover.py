"""``UrlRemover``: deletes URLs from a document."""

from __future__ import annotations

import re

from nemo_curator.stages.text.modifiers.doc_modifier import DocumentModifier

URL_REGEX = re.compile(r"https?://\S+|www\.\S+", flags=re.IGNORECASE)


class UrlRemover(DocumentModifier):
    """Deletes every ``http(s)://...`` or ``www....`` run of non-whitespace (case-insensitive).

    Punctuation attached to a URL goes with it; the surrounding spaces stay.
    """

    def __init__(self) -> None:
        super().__init__()

    def modify_document(self, text: str) -> str:
        return URL_REGEX.sub("", text)
