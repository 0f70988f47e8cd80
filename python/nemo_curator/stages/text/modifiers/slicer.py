"""``Slicer``: keeps the part of a document between two positions or markers."""

from __future__ import annotations

from nemo_curator.stages.text.modifiers.doc_modifier import DocumentModifier


class Slicer(DocumentModifier):
    """``text[start:end]``, optionally stripped.

    ``left``: an int is the start index; a str starts at its first occurrence (after it unless
    ``include_left``), and a document without it becomes ``""``; anything else starts at 0.
    ``right``: an int is the end index (exclusive); a str ends at its last occurrence (after it if
    ``include_right``), and a document without it becomes ``""``; anything else ends at the end.
    """

    def __init__(
        self,
        left: int | str | None = 0,
        right: int | str | None = None,
        include_left: bool = True,
        include_right: bool = True,
        strip: bool = True,
    ):
        super().__init__()
        self._left = left
        self._right = right
        self._include_left = include_left
        self._include_right = include_right
        self._strip = strip

    def modify_document(self, text: str) -> str:
        if isinstance(self._left, int):
            start = self._left
        elif isinstance(self._left, str):
            found = text.find(self._left)
            if found == -1:
                return ""
            start = found if self._include_left else found + len(self._left)
        else:
            start = 0
        if isinstance(self._right, int):
            end = self._right
        elif isinstance(self._right, str):
            found = text.rfind(self._right)
            if found == -1:
                return ""
            end = found + len(self._right) if self._include_right else found
        else:
            end = len(text)
        result = text[start:end]
        return result.strip() if self._strip else result
