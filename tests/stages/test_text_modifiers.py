"""Curator's ``DocumentModifier``s (spec: text-stages.md §2 and §11)."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_curator.stages.text.modifiers import (
    BoilerPlateStringModifier,
    DocumentModifier,
    FastTextLabelModifier,
    LineRemover,
    MarkdownRemover,
    NewlineNormalizer,
    QuotationRemover,
    Slicer,
    UnicodeReformatter,
    UrlRemover,
)


def test_base_class_and_names() -> None:
    with pytest.raises(TypeError):
        DocumentModifier()  # type: ignore[abstract]
    for modifier in (
        LineRemover(["x"]),
        NewlineNormalizer(),
        UrlRemover(),
        MarkdownRemover(),
        QuotationRemover(),
        Slicer(),
        FastTextLabelModifier("__label__a"),
    ):
        assert modifier.name == type(modifier).__name__
        assert modifier._sentences is None and modifier._paragraphs is None and modifier._ngrams is None
    assert BoilerPlateStringModifier().name == "boilerplate_string_ratio"


def test_line_remover_drops_exact_lines_only() -> None:
    remover = LineRemover(["Advertisement", "Share this"])
    text = "Title\nAdvertisement\nAdvertisement \nbody\nShare this"
    assert remover.modify_document(text) == "Title\nAdvertisement \nbody"
    assert remover.modify_document("") == ""


def test_newline_normalizer() -> None:
    normalizer = NewlineNormalizer()
    assert normalizer.modify_document("a\n\n\n\nb\n\nc\nd") == "a\n\nb\n\nc\nd"
    assert normalizer.modify_document("a\r\n\r\n\r\nb") == "a\r\n\r\nb"
    assert normalizer.modify_document("a\n\n\n") == "a\n\n"


def test_url_remover() -> None:
    remover = UrlRemover()
    assert remover.modify_document("see https://x.org/a?b=1, and WWW.Example.com. ok") == "see  and  ok"
    assert remover.modify_document("HTTP://CAPS.ORG end") == " end"
    assert remover.modify_document("no urls here") == "no urls here"


def test_markdown_remover() -> None:
    remover = MarkdownRemover()
    assert remover.modify_document("**bold** and *it* and _u_") == "bold and it and u"
    assert remover.modify_document("[label](http://x.org)") == "http://x.org"  # the URL stays, the label goes
    assert remover.modify_document("snake_case_name\n*a\nb*") == "snakecasename\n*a\nb*"  # per line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"quoted"', "quoted"),
        ('"ab"', "ab"),
        ('""', '""'),
        ('"a"', "a"),
        ('"line one\nline two"', "line one\nline two"),
        ('"line one"\n"line two"', '"line one"\n"line two"'),
        (' "x" ', ' "x" '),
        ("plain", "plain"),
    ],
)
def test_quotation_remover(text: str, expected: str) -> None:
    assert QuotationRemover().modify_document(text) == expected


def test_slicer() -> None:
    text = "header: START body text END footer"
    assert Slicer().modify_document("  x  ") == "x"
    assert Slicer(left=2, right=5, strip=False).modify_document(text) == text[2:5]
    assert Slicer(left="START", right="END").modify_document(text) == "START body text END"
    assert Slicer(left="START", right="END", include_left=False, include_right=False).modify_document(
        text
    ) == ("body text")
    assert Slicer(left="MISSING").modify_document(text) == ""
    assert Slicer(right="MISSING").modify_document(text) == ""
    assert Slicer(left=None, right=None).modify_document(text) == text
    assert Slicer(left=-6).modify_document(text) == "footer"
    assert Slicer(left="E", right="E", strip=False).modify_document("xEyEz") == "EyE"  # first and last


def test_fasttext_label_modifier() -> None:
    modifier = FastTextLabelModifier("__label__hq")
    assert modifier.modify_document("a\nb __label__x") == "__label__hq a b  x"
    assert modifier.label == "__label__hq"


@pytest.mark.parametrize(
    ("text", "top_or_bottom", "expected"),
    [
        ("Privacy Policy\n\nreal text\n\nmore", True, "real text\n\nmore"),
        ("intro\n\nreal\n\nUses cookies here", True, "intro\n\nreal"),
        ("a\n\nterms of use\n\nb", True, "a\n\nterms of use\n\nb"),  # in the middle: unchanged
        ("terms of use\n\nb\n\ncookie policy", True, "terms of use\n\nb\n\ncookie policy"),  # not contiguous
        (
            "terms of use\n\nprivacy policy",
            True,
            "terms of use\n\nprivacy policy",
        ),  # all paragraphs: unchanged
        ("Privacy Policy\n\nreal text", False, ""),
        ("fine\n\nLorem Ipsum dolor", True, ""),
        ("nothing to see", True, "nothing to see"),
        ("", True, ""),
    ],
)
def test_boilerplate_string_modifier(text: str, top_or_bottom: bool, expected: str) -> None:
    assert (
        BoilerPlateStringModifier(remove_if_at_top_or_bottom=top_or_bottom).modify_document(text) == expected
    )


def test_boilerplate_modifier_uses_a_paragraph_cache_once() -> None:
    modifier = BoilerPlateStringModifier()
    modifier._paragraphs = ["privacy policy", "kept"]
    assert modifier.modify_document("ignored") == "kept"
    assert modifier._paragraphs is None
    assert modifier.modify_document("privacy policy\n\nother") == "other"


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(["a", "\n", "\r\n", " ", "**", "_", "x"]), max_size=30).map("".join))
def test_newline_normalizer_leaves_no_long_runs(text: str) -> None:
    out = NewlineNormalizer().modify_document(text)
    assert "\n\n\n" not in out and "\r\n\r\n\r\n" not in out
    # Only line breaks are removed.
    assert out.replace("\r", "").replace("\n", "") == text.replace("\r", "").replace("\n", "")


def test_unicode_reformatter_needs_ftfy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ftfy", None)
    with pytest.raises(ImportError, match="ftfy"):
        UnicodeReformatter()


def test_unicode_reformatter_builds_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = type(sys)("ftfy")

    class TextFixerConfig(dict):
        def __init__(self, **kwargs: object) -> None:
            super().__init__(kwargs)

    fake.TextFixerConfig = TextFixerConfig  # type: ignore[attr-defined]
    fake.fix_text = lambda text, config: f"{text}|{config['uncurl_quotes']}|{config['unescape_html']}"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ftfy", fake)
    reformatter = UnicodeReformatter(uncurl_quotes=True)
    assert reformatter.name == "UnicodeReformatter"
    assert reformatter.config["normalization"] is None and reformatter.config["max_decode_length"] == 1000000
    assert reformatter.modify_document("x") == "x|True|auto"
    given_config = TextFixerConfig(uncurl_quotes=False, unescape_html=False)
    assert UnicodeReformatter(config=given_config).modify_document("y") == "y|False|False"
