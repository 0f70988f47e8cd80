"""Text primitives of the heuristic filters: word splitting, lines, paragraphs, n-grams, code comments."""

from __future__ import annotations

import ast
import io
import os
import string
import tokenize
import warnings
from collections.abc import Callable, Iterator
from itertools import groupby, pairwise


def split_whitespace(text: str) -> list[str]:
    """The word splitter of every language but ``zh`` and ``ja``: ``text.split()``."""
    return text.split()


def get_word_splitter(language: str) -> Callable[[str], list[str]]:
    """A function splitting text into words for ``language`` (an ISO 639-1 code, any case).

    ``zh`` uses ``jieba`` and ``ja`` uses MeCab (``mecab-python3``); every other language splits on
    whitespace (``str.split()``). The packages are imported here, so a missing one raises ``ImportError``
    when the splitter is requested, not when this module is imported.
    """
    language = language.lower()
    if language == "zh":
        try:
            import jieba
        except ImportError as err:
            msg = "Splitting Chinese ('zh') text into words needs the 'jieba' package: pip install jieba"
            raise ImportError(msg) from err

        def split_chinese(text: str) -> list[str]:
            return list(jieba.cut(text))

        return split_chinese
    if language == "ja":
        try:
            import MeCab
        except ImportError as err:
            msg = (
                "Splitting Japanese ('ja') text into words needs the 'mecab-python3' package (module MeCab): "
                "pip install mecab-python3"
            )
            raise ImportError(msg) from err

        def split_japanese(text: str) -> list[str]:
            parsed = MeCab.Tagger().parse(text)
            return [line.split("\t")[0] for line in parsed.strip().split("\n") if line and line != "EOS"]

        return split_japanese

    return split_whitespace


def get_paragraphs(document: str) -> list[str]:
    """The paragraphs of ``document``: pieces between ``"\\n\\n"`` (empty pieces kept; at least one)."""
    return document.split("\n\n")


def get_sentences(document: str) -> list[str]:
    """The lines of ``document`` (split on ``"\\n"``) that are not blank; lines are not stripped."""
    return [line for line in document.split("\n") if line.strip()]


def get_ngrams(input_list: list[str], n: int) -> list[tuple[str, ...]]:
    """The ``len(input_list) - n + 1`` tuples of ``n`` consecutive items."""
    return list(zip(*(input_list[i:] for i in range(n)), strict=False))


def is_paragraph_indices_in_top_or_bottom_only(
    boilerplate_paragraph_indices: list[int],
    num_paragraphs: int,
) -> bool:
    """Whether the sorted indices form one contiguous run touching the first or the last paragraph.

    All paragraphs at once does not count: removing them would leave nothing.
    """
    indices = boilerplate_paragraph_indices
    if len(indices) == num_paragraphs:
        return False
    contiguous = all(later == earlier + 1 for earlier, later in pairwise(indices))
    return contiguous and (indices[0] == 0 or indices[-1] == num_paragraphs - 1)


# Syntax-tree nodes whose docstrings count as natural text, with a label used to group them.
NODE_TYPES = {
    ast.ClassDef: "Class",
    ast.FunctionDef: "Function/Method",
    ast.Module: "Module",
}


def get_comments_and_docstring(
    source: str, comments: bool = True, clean_comments: bool = False
) -> tuple[str | None, str | None]:
    """``(docstrings, comments)`` of Python ``source``, each ``None`` (with a warning) when parsing fails.

    With ``comments=False`` the comments are ``""``; with ``clean_comments`` their ``#`` signs are removed.
    """
    try:
        docstrings: str | None = "\n".join(get_docstrings(source))
    except Exception:
        docstrings = None
        warnings.warn(
            "code couldn't be parsed due to compilation failure, no docstring is extracted", stacklevel=2
        )
    found: str | None = ""
    if comments:
        try:
            found = get_comments(source, clean=clean_comments)
        except Exception:
            found = None
            warnings.warn("tokenization error, no comment is extracted", stacklevel=2)
    return docstrings, found


def get_comments(s: str, clean: bool = False) -> str:
    """The comments of Python source ``s`` as rebuilt by ``tokenize.untokenize``."""
    tokens = [
        (kind, value)
        for kind, value, *_ in tokenize.generate_tokens(io.StringIO(s).readline)
        if kind == tokenize.COMMENT
    ]
    result = tokenize.untokenize(tokens)
    return result.replace("#", "") if clean else result


def get_docstrings(source: str, module: str = "<string>") -> list[str]:
    """The non-empty docstrings of Python ``source`` (a string or a readable file): classes first, then
    functions and methods, then the module, each group ordered by name."""
    if hasattr(source, "read"):
        module = os.path.splitext(os.path.basename(getattr(source, "name", module)))[0]
        source = source.read()
    entries = sorted(
        parse_docstrings(source), key=lambda item: (NODE_TYPES.get(type(item[0])), item[1] or "")
    )
    results = []
    for _, group in groupby(entries, key=lambda item: NODE_TYPES.get(type(item[0]))):
        results.extend(docstring for _, _, docstring in group if docstring)
    return results


def parse_docstrings(source: str) -> Iterator[tuple[ast.AST, str | None, str | None]]:
    """``(node, name, docstring)`` for the module and every class and function of Python ``source``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, tuple(NODE_TYPES)):
            yield node, getattr(node, "name", None), ast.get_docstring(node)


def remove_punctuation(str_in: str) -> str:
    """``str_in`` without the ASCII punctuation characters of ``string.punctuation``."""
    return str_in.translate(str.maketrans("", "", string.punctuation))


def get_words(text: str) -> tuple[list[str], list[int]]:
    """Lower-cased, punctuation-free words of ``text`` split on spaces, and where each word starts.

    Positions index the lower-cased text after punctuation removal.
    """
    text = remove_punctuation(text.lower())
    starts = [i for i, char in enumerate(text) if char != " " and (i == 0 or text[i - 1] == " ")]
    if not text:
        return [], starts
    bounds = [*starts[1:], len(text)] if starts and starts[0] == 0 else [*starts, len(text)]
    words, prev = [], 0
    for end in bounds:
        words.append(text[prev:end].strip())
        prev = end
    if words and words[0] == "":
        words = words[1:]
    return words, starts
