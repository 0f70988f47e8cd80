"""Character sets, word lists and patterns shared by the heuristic filters and modifiers.

``regex_alpha`` and ``regex_digit`` stand for the POSIX classes ``[[:alpha:]]`` and ``[[:digit:]]`` of the
third-party ``regex`` package, which Curator uses. ``[[:digit:]]`` is ASCII ``0-9`` only, so ``re`` does it.
``[[:alpha:]]`` is the Unicode ``Alphabetic`` property, which ``str.isalpha`` misses for letter numbers and
combining vowel signs: ``regex_alpha`` uses the ``regex`` package when it is installed (so it matches what
Curator computes with the same ``regex`` version), and otherwise the standard-library definition of
``_unicode.py``, exact for Unicode 14.0. Newer Unicode versions (``regex`` 2026 uses Unicode 17) added a few
dozen code points to the property (e.g. the combining Latin letters U+0363..U+036F); only those differ.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from nemo_curator.stages.text.utils._unicode import is_alphabetic

end_marks = (".", "?", "!", '"', "'")
ellipsis_marks = {"...", "[...]", "…", "(...)", "[…]", "-»", "read more..", "read more"}
# Matched against stripped, lower-cased paragraphs, hence the lower-cased long sentences.
policy_substrings = [
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "privacy overview",
    "use of cookies",
    "use cookies",
    "privacy & cookies policy",
    "privacy and cookies policy",
    (
        "This website uses cookies to improve your experience while you "
        "navigate through the website. Out of these cookies, the cookies "
        "that are categorized as necessary are stored on your browser as they "
        "are essential for the working of basic functionalities of the website. "
        "We also use third-party cookies that help us analyze and understand how "
        "you use this website. These cookies will be stored in your browser only "
        "with your consent. You also have the option to opt-out of these "
        "cookies. But opting out of some of these cookies may have an effect "
        "on your browsing experience."
    ).lower(),
    (
        "Necessary cookies are absolutely essential for the website to "
        "function properly. This category only includes cookies that "
        "ensures basic functionalities and security features of the website. "
        "These cookies do not store any personal information."
    ).lower(),
    (
        "Any cookies that may not be particularly necessary for the website "
        "to function and is used specifically to collect user personal data "
        "via analytics, ads, other embedded contents are termed as non-necessary "
        "cookies. It is mandatory to procure user consent prior to running these "
        "cookies on your website."
    ).lower(),
    (
        "This site uses cookies, including for analytics, personalization, and "
        "advertising purposes. For more information or to change your "
        "cookie settings, click here."
    ).lower(),
    (
        "If you continue to browse this site without changing your cookie "
        "settings, you agree to this use. AcceptRead More"
    ).lower(),
]
white_space_list = ["\t", "\n", "\r", "\b", " "]
common_english_words = {"the", "be", "to", "of", "and", "that", "have", "with"}
bullet_list = {
    "\u2022",  # •
    "\u2023",  # ‣
    "\u2043",  # hyphen bullet
    "\u204c",  # ⁌
    "\u204d",  # ⁍
    "\u2219",  # ∙
    "\u25cb",  # ○
    "\u25cf",  # ●
    "\u25d8",  # ◘
    "\u25e6",  # ◦
    "\u29be",  # ⦾
    "\u29bf",  # ⦿
}


class _AlphabeticClass:
    """A one-character pattern for Unicode ``Alphabetic`` characters with the methods filters use.

    With the ``regex`` package installed the methods are those of ``regex.compile("[[:alpha:]]")`` (loaded
    on first use, so importing this module never imports it). Without it, ``search``/``match``/
    ``fullmatch`` return the matching character (truthy) or ``None`` and ``findall`` returns every
    Alphabetic character; ``re`` cannot express the property.
    """

    pattern = "[[:alpha:]]"

    def __init__(self) -> None:
        self._compiled: Any = None
        self._resolved = False

    def _regex(self) -> Any:
        if not self._resolved:
            try:
                import regex
            except ImportError:
                self._compiled = None
            else:
                self._compiled = regex.compile(self.pattern)
            self._resolved = True
        return self._compiled

    def finditer_chars(self, string: str) -> Iterator[str]:
        return (char for char in string if is_alphabetic(char))

    def search(self, string: str) -> Any:
        compiled = self._regex()
        return compiled.search(string) if compiled is not None else next(self.finditer_chars(string), None)

    def match(self, string: str) -> Any:
        compiled = self._regex()
        if compiled is not None:
            return compiled.match(string)
        return string[0] if string and is_alphabetic(string[0]) else None

    def fullmatch(self, string: str) -> Any:
        compiled = self._regex()
        if compiled is not None:
            return compiled.fullmatch(string)
        return string if len(string) == 1 and is_alphabetic(string) else None

    def findall(self, string: str) -> list[str]:
        compiled = self._regex()
        return compiled.findall(string) if compiled is not None else list(self.finditer_chars(string))

    def __repr__(self) -> str:
        return f"AlphabeticClass({self.pattern!r})"


regex_alpha = _AlphabeticClass()
regex_digit = re.compile("[0-9]")
regex_alphanum = re.compile("[a-zA-Z0-9\n?!,.]")
# As in Curator 1.1.0, "$-_" is a range (U+0024..U+005F), so URLs also run into "<", ">", ";" and the like.
regex_url = re.compile("http[s]?://(?:[a-zA-Z]|[0-9]|[$-_@.&+]|[!*\\(\\),]|(?:%[0-9a-fA-F][0-9a-fA-F]))+")
regex_paren = re.compile(r"{|}|⟨|⟩|\[|\]|\(|\)")
regex_hash = re.compile("#+")
