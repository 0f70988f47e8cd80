"""``UnicodeReformatter``: fixes mojibake and other Unicode damage with ``ftfy``."""

from __future__ import annotations

from typing import Any, Literal

from nemo_curator.stages.text.modifiers.doc_modifier import DocumentModifier


def _require_ftfy() -> Any:
    try:
        import ftfy
    except ImportError as err:
        msg = "UnicodeReformatter needs the 'ftfy' package, which is not installed: pip install ftfy"
        raise ImportError(msg) from err
    return ftfy


class UnicodeReformatter(DocumentModifier):
    """``ftfy.fix_text(text, config=...)``.

    ``config`` (an ``ftfy.TextFixerConfig``) is used as given; without it one is built from the other
    arguments, which are ``TextFixerConfig``'s fields (see ftfy's documentation). Needs ``ftfy``:
    ``ImportError`` naming it at construction otherwise.
    """

    def __init__(
        self,
        config: Any = None,
        unescape_html: str | bool = "auto",
        remove_terminal_escapes: bool = True,
        fix_encoding: bool = True,
        restore_byte_a0: bool = True,
        replace_lossy_sequences: bool = True,
        decode_inconsistent_utf8: bool = True,
        fix_c1_controls: bool = True,
        fix_latin_ligatures: bool = False,
        fix_character_width: bool = False,
        uncurl_quotes: bool = False,
        fix_line_breaks: bool = False,
        fix_surrogates: bool = True,
        remove_control_chars: bool = True,
        normalization: Literal["NFC", "NFD", "NFKC", "NFKD"] | None = None,
        max_decode_length: int = 1000000,
        explain: bool = True,
    ):
        super().__init__()
        ftfy = _require_ftfy()
        if config is None:
            config = ftfy.TextFixerConfig(
                unescape_html=unescape_html,
                remove_terminal_escapes=remove_terminal_escapes,
                fix_encoding=fix_encoding,
                restore_byte_a0=restore_byte_a0,
                replace_lossy_sequences=replace_lossy_sequences,
                decode_inconsistent_utf8=decode_inconsistent_utf8,
                fix_c1_controls=fix_c1_controls,
                fix_latin_ligatures=fix_latin_ligatures,
                fix_character_width=fix_character_width,
                uncurl_quotes=uncurl_quotes,
                fix_line_breaks=fix_line_breaks,
                fix_surrogates=fix_surrogates,
                remove_control_chars=remove_control_chars,
                normalization=normalization,
                max_decode_length=max_decode_length,
                explain=explain,
            )
        self.config = config

    def modify_document(self, text: str) -> str:
        return _require_ftfy().fix_text(text, config=self.config)
