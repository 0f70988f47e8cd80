"""Vectorised per-document text scores on Arrow string arrays.

Every function takes a string array (``pa.Array`` or ``pa.ChunkedArray``; nulls count as empty text) and
returns a ``pa.Array`` with one score per document. Nothing loops over rows in Python: character-level
scores classify the bytes of the Arrow UTF-8 buffer with numpy (multi-byte characters are decoded and looked
up in code-point tables); line-level scores use Arrow kernels (split, dictionary encoding). On 100k ASCII
documents (40 MB) the character-level scores measured 2.5x (word count) to 13x (non-alphanumeric ratio)
faster than a Python loop over ``str`` methods; Arrow's regex kernels (``count_substring_regex``) were
slower than that loop, so they are not used. The line-level score is on par with the loop.

Definitions:
- **Whitespace** is what ``str.isspace()`` accepts (and ``str.split()`` splits on): ``\\t\\n\\v\\f\\r``,
  ``\\x1c-\\x1f``, space, U+0085 and the Unicode space separators.
- **A word** is a maximal run of non-whitespace characters: ``word_count(s) == len(s.split())``.
- **Alphanumeric** characters are those of Unicode general category ``L*`` (letters) or ``N*`` (numbers).
- **Lengths** are in code points.
"""

from __future__ import annotations

import functools
import unicodedata
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_N_CODE_POINTS = 0x110000
_WHITESPACE = [*range(0x09, 0x0E), *range(0x1C, 0x21), 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B)]
_WHITESPACE += [0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
# Documents are classified in slices of about this many bytes, bounding the temporary arrays (~10x).
_SLICE_BYTES = 1 << 22


@functools.cache
def _whitespace_table() -> np.ndarray:
    table = np.zeros(_N_CODE_POINTS, dtype=bool)
    table[_WHITESPACE] = True
    return table


@functools.cache
def _alnum_table() -> np.ndarray:
    # Built once per process (~0.3 s); only needed when a batch holds non-ASCII text.
    return np.fromiter(
        (unicodedata.category(chr(cp))[0] in "LN" for cp in range(_N_CODE_POINTS)),
        dtype=bool,
        count=_N_CODE_POINTS,
    )


class TextStats(NamedTuple):
    """Per-document counts (``int64`` arrays of one entry per document)."""

    length: np.ndarray  # code points
    words: np.ndarray  # maximal runs of non-whitespace
    word_chars: np.ndarray  # non-whitespace code points
    alnum: np.ndarray  # letters and numbers (zeros unless requested)


def _as_text(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous, null-free ``string`` or ``large_string`` array."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if pa.types.is_string_view(values.type):
        values = values.cast(pa.large_string())
    elif not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        raise TypeError(f"Expected a string column, got {values.type}")
    return pc.fill_null(values, "") if values.null_count else values


def _buffers(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets relative to the first document, UTF-8 bytes)`` of a null-free string array."""
    offset_type = np.int64 if pa.types.is_large_string(text.type) else np.int32
    _, offsets_buf, data_buf = text.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=offset_type)[text.offset : text.offset + len(text) + 1]
    offsets = offsets.astype(np.int64)
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    data = data[offsets[0] : offsets[-1]]
    return offsets - offsets[0], data


def _per_document(flags: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Count the set ``flags`` of each document (``offsets`` index into ``flags``)."""
    counts = np.zeros(len(offsets) - 1, dtype=np.int64)
    starts = offsets[:-1]
    nonempty = starts < offsets[1:]
    if nonempty.any():
        # Non-empty documents start at strictly increasing positions, as ``reduceat`` needs.
        counts[nonempty] = np.add.reduceat(flags, starts[nonempty], dtype=np.int64)
    return counts


def _ascii_whitespace(data: np.ndarray) -> np.ndarray:
    return (data == 0x20) | ((data >= 0x09) & (data <= 0x0D)) | ((data >= 0x1C) & (data <= 0x1F))


def _ascii_alnum(data: np.ndarray) -> np.ndarray:
    lower = data | 0x20
    return ((data >= 0x30) & (data <= 0x39)) | ((lower >= 0x61) & (lower <= 0x7A))


def _decode_multibyte(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lead byte positions, code points, byte lengths)`` of the multi-byte UTF-8 sequences in ``data``."""
    starts = np.flatnonzero(data >= 0xC0)
    padded = np.concatenate([data, np.zeros(3, dtype=np.uint8)])
    b0 = data[starts].astype(np.int32)
    b1 = padded[starts + 1].astype(np.int32) & 0x3F
    b2 = padded[starts + 2].astype(np.int32) & 0x3F
    b3 = padded[starts + 3].astype(np.int32) & 0x3F
    two = ((b0 & 0x1F) << 6) | b1
    three = ((b0 & 0x0F) << 12) | (b1 << 6) | b2
    four = ((b0 & 0x07) << 18) | (b1 << 12) | (b2 << 6) | b3
    code_points = np.where(b0 < 0xE0, two, np.where(b0 < 0xF0, three, four))
    np.minimum(code_points, _N_CODE_POINTS - 1, out=code_points)
    lengths = 2 + (b0 >= 0xE0).astype(np.int64) + (b0 >= 0xF0).astype(np.int64)
    return starts, code_points, lengths


def _spread(flags: np.ndarray, starts: np.ndarray, lengths: np.ndarray, values: np.ndarray) -> None:
    """Give every byte of each multi-byte character the value computed for its lead byte."""
    flags[starts] = values
    for extra in (1, 2, 3):
        longer = lengths > extra
        flags[np.minimum(starts[longer] + extra, flags.size - 1)] = values[longer]


def _slice_stats(data: np.ndarray, offsets: np.ndarray, with_alnum: bool) -> TextStats:
    """Counts for one slice of documents, computed on the UTF-8 bytes.

    Each byte is classified as its character: ASCII bytes directly, the bytes of a multi-byte character
    through its decoded code point. Characters are counted at their first byte.
    """
    n_docs = len(offsets) - 1
    space = _ascii_whitespace(data)
    alnum_bytes = _ascii_alnum(data) if with_alnum else None
    ascii_only = data.size == 0 or int(data.max()) < 0x80
    lead: np.ndarray | None = None
    if not ascii_only:
        lead = (data & 0xC0) != 0x80
        starts, code_points, lengths = _decode_multibyte(data)
        _spread(space, starts, lengths, _whitespace_table()[code_points])
        if alnum_bytes is not None:
            alnum_bytes[starts] = _alnum_table()[code_points]
    word_byte = ~space
    # A word starts at a non-space character whose previous character is a space or that opens a document.
    after_space = np.empty_like(space)
    if space.size:
        after_space[0] = True
        after_space[1:] = space[:-1]
        doc_starts = offsets[:-1]
        after_space[doc_starts[doc_starts < space.size]] = True
    words = _per_document(word_byte & after_space, offsets)
    if lead is None:
        length = np.diff(offsets)
        word_chars = _per_document(word_byte, offsets)
    else:
        length = _per_document(lead, offsets)
        word_chars = _per_document(word_byte & lead, offsets)
    alnum = _per_document(alnum_bytes, offsets) if alnum_bytes is not None else np.zeros(n_docs, np.int64)
    return TextStats(length=length, words=words, word_chars=word_chars, alnum=alnum)


def text_stats(values: pa.Array | pa.ChunkedArray, with_alnum: bool = False) -> TextStats:
    """Code-point, word, word-character and (optionally) alphanumeric counts per document."""
    offsets, data = _buffers(_as_text(values))
    n_docs = len(offsets) - 1
    parts: list[TextStats] = []
    start = 0
    while start < n_docs:
        # The largest run of documents within the slice budget, and at least one document.
        end = int(np.searchsorted(offsets, offsets[start] + _SLICE_BYTES, side="right")) - 1
        end = min(max(end, start + 1), n_docs)
        local = offsets[start : end + 1]
        parts.append(_slice_stats(data[local[0] : local[-1]], local - local[0], with_alnum))
        start = end
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return TextStats(empty, empty, empty, empty)
    return TextStats(*(np.concatenate(column) for column in zip(*parts, strict=True)))


def word_count(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Number of words per document (``int64``)."""
    return pa.array(text_stats(values).words, type=pa.int64())


def mean_word_length(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Mean word length per document in code points (``float64``); 0.0 for a document with no words."""
    stats = text_stats(values)
    mean = np.divide(
        stats.word_chars, stats.words, out=np.zeros(len(stats.words), dtype=np.float64), where=stats.words > 0
    )
    return pa.array(mean, type=pa.float64())


def non_alpha_numeric_ratio(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Share of characters that are neither letters nor numbers (``float64``); 1.0 for empty text."""
    stats = text_stats(values, with_alnum=True)
    total = stats.length
    ratio = np.divide(total - stats.alnum, total, out=np.ones(len(total), dtype=np.float64), where=total > 0)
    return pa.array(ratio, type=pa.float64())


def repeated_line_fraction(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Share of a document's lines that repeat an earlier line of the same document (``float64``).

    Lines are split on ``"\\n"`` and compared exactly; blank (empty or whitespace-only) lines are ignored, so
    a document without a non-blank line scores 0.0. ``"a\\na\\nb"`` scores 1/3: the second ``a`` repeats
    the first.
    """
    text = _as_text(values)
    n_docs = len(text)
    lists = pc.split_pattern(text, "\n")
    lines = pc.list_flatten(lists)
    doc_ids = pc.list_parent_indices(lists)
    keep = pc.invert(pc.or_(pc.equal(pc.binary_length(lines), 0), pc.utf8_is_space(lines)))
    lines = lines.filter(keep)
    docs = doc_ids.filter(keep).to_numpy().astype(np.int64)
    total = np.bincount(docs, minlength=n_docs)
    # Equal lines get equal dictionary codes; distinct (document, code) pairs are the distinct lines.
    encoded = pc.dictionary_encode(lines)
    n_codes = max(len(encoded.dictionary), 1)
    # A hash-based unique (pandas) is several times faster here than numpy's sort-based one.
    pairs = pd.unique(docs * n_codes + encoded.indices.to_numpy().astype(np.int64))
    distinct = np.bincount(pairs // n_codes, minlength=n_docs)
    fraction = np.divide(total - distinct, total, out=np.zeros(n_docs, dtype=np.float64), where=total > 0)
    return pa.array(fraction, type=pa.float64())
