"""Vectorised per-document counts on Arrow string arrays, for the column scorers of the heuristic filters.

Every function takes a null-free string array (``pa.Array`` or ``pa.ChunkedArray`` of ``string``,
``large_string`` or ``string_view``) and returns ``int64`` numpy arrays with one entry per document. Nothing
loops over documents in Python: character counts classify the bytes of the Arrow UTF-8 buffer with numpy
(multi-byte characters are decoded and looked up in code-point tables); line and paragraph counts use Arrow
kernels (split, dictionary encoding). The filters turn the counts into exactly the ratios their
``score_document`` computes (same integer numerator and denominator, one IEEE division).

Definitions (each equal to the Python one the filters use row by row):
- **Length** is in code points (``len(str)``): the number of UTF-8 bytes that are not continuation bytes.
- **Whitespace** is what ``str.isspace()`` accepts (and ``str.split()``/``str.strip()`` use): ``\\t\\n\\v\\f\\r``,
  ``\\x1c-\\x1f``, space, U+0085 and the Unicode space separators.
- **A word** is a maximal run of non-whitespace characters: ``words(s) == len(s.split())``.
"""

from __future__ import annotations

import functools
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


class TextStats(NamedTuple):
    """Per-document counts (``int64`` arrays of one entry per document)."""

    length: np.ndarray  # code points
    words: np.ndarray  # maximal runs of non-whitespace
    word_chars: np.ndarray  # non-whitespace code points


def as_text(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous ``string`` or ``large_string`` array; ``TypeError`` for other types or nulls."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if pa.types.is_string_view(values.type):
        values = values.cast(pa.large_string())
    elif not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        raise TypeError(f"Expected a string column, got {values.type}")
    if values.null_count:
        raise TypeError("Expected a string column without nulls")
    return values


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


def _slices(offsets: np.ndarray) -> list[tuple[int, int]]:
    """``(first, end)`` document ranges of about ``_SLICE_BYTES`` each (at least one document)."""
    n_docs = len(offsets) - 1
    out = []
    start = 0
    while start < n_docs:
        end = int(np.searchsorted(offsets, offsets[start] + _SLICE_BYTES, side="right")) - 1
        end = min(max(end, start + 1), n_docs)
        out.append((start, end))
        start = end
    return out


def _slice_stats(data: np.ndarray, offsets: np.ndarray) -> TextStats:
    """Counts for one slice of documents, computed on the UTF-8 bytes.

    Each byte is classified as its character: ASCII bytes directly, the bytes of a multi-byte character
    through its decoded code point. Characters are counted at their first byte.
    """
    space = _ascii_whitespace(data)
    ascii_only = data.size == 0 or int(data.max()) < 0x80
    lead: np.ndarray | None = None
    if not ascii_only:
        lead = (data & 0xC0) != 0x80
        starts, code_points, lengths = _decode_multibyte(data)
        _spread(space, starts, lengths, _whitespace_table()[code_points])
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
    return TextStats(length=length, words=words, word_chars=word_chars)


def text_stats(values: pa.Array | pa.ChunkedArray) -> TextStats:
    """Code-point, word and word-character counts per document."""
    offsets, data = _buffers(as_text(values))
    parts = []
    for start, end in _slices(offsets):
        local = offsets[start : end + 1]
        parts.append(_slice_stats(data[local[0] : local[-1]], local - local[0]))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return TextStats(empty, empty, empty)
    return TextStats(*(np.concatenate(column) for column in zip(*parts, strict=True)))


def lengths(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Length of each document in code points (``len(str)``)."""
    text = as_text(values)
    return pc.utf8_length(text).to_numpy(zero_copy_only=False).astype(np.int64)


def count_chars(values: pa.Array | pa.ChunkedArray, chars: str) -> np.ndarray:
    """How many characters of each document are in ``chars`` (``sum(c in chars for c in doc)``)."""
    offsets, data = _buffers(as_text(values))
    wanted = {ord(char) for char in chars}
    ascii_lut = np.zeros(256, dtype=bool)
    ascii_lut[[cp for cp in wanted if cp < 0x80]] = True
    wide = np.array(sorted(cp for cp in wanted if cp >= 0x80), dtype=np.int32)
    # ASCII bytes never occur inside a multi-byte sequence, so classifying bytes counts ASCII characters.
    flags = ascii_lut[data]
    if wide.size and data.size and int(data.max()) >= 0x80:
        starts, code_points, _ = _decode_multibyte(data)
        flags[starts] = np.isin(code_points, wide)
    return _per_document(flags, offsets)


class PieceStats(NamedTuple):
    """Per-document counts over pieces (lines or paragraphs), ``int64`` arrays of one entry per document."""

    total: np.ndarray  # pieces
    distinct: np.ndarray  # distinct pieces
    total_chars: np.ndarray  # code points in all pieces
    distinct_chars: np.ndarray  # code points in the distinct pieces


def piece_stats(values: pa.Array | pa.ChunkedArray, separator: str, skip_blank: bool) -> PieceStats:
    """Counts over the pieces of ``doc.split(separator)``; with ``skip_blank``, pieces whose ``strip()``
    is empty are left out (``get_sentences``), otherwise every piece counts (``get_paragraphs``)."""
    text = as_text(values)
    n_docs = len(text)
    lists = pc.split_pattern(text, separator)
    pieces = pc.list_flatten(lists)
    docs = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    piece_lengths = pc.utf8_length(pieces).to_numpy(zero_copy_only=False).astype(np.int64)
    if skip_blank:
        # Arrow's utf8_is_space accepts exactly the characters str.isspace() does (checked for every code
        # point in the tests); it is False for "", which is blank too.
        keep = pc.invert(pc.or_(pc.equal(piece_lengths, 0), pc.utf8_is_space(pieces)))
        pieces = pieces.filter(keep)
        keep_np = keep.to_numpy(zero_copy_only=False)
        docs = docs[keep_np]
        piece_lengths = piece_lengths[keep_np]
    total = np.bincount(docs, minlength=n_docs).astype(np.int64)
    total_chars = np.bincount(docs, weights=piece_lengths, minlength=n_docs).astype(np.int64)
    # Equal pieces get equal dictionary codes; distinct (document, code) pairs are the distinct pieces.
    encoded = pc.dictionary_encode(pieces)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    n_codes = max(len(encoded.dictionary), 1)
    # A hash-based unique (pandas) is several times faster here than numpy's sort-based one.
    pairs = pd.unique(docs * n_codes + codes)
    pair_docs = pairs // n_codes
    distinct = np.bincount(pair_docs, minlength=n_docs).astype(np.int64)
    code_lengths = lengths(encoded.dictionary) if len(encoded.dictionary) else np.zeros(1, np.int64)
    distinct_chars = np.bincount(pair_docs, weights=code_lengths[pairs % n_codes], minlength=n_docs)
    return PieceStats(total, distinct, total_chars, distinct_chars.astype(np.int64))


def line_edge_counts(
    values: pa.Array | pa.ChunkedArray, edge: str, chars: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(lines whose stripped text starts (edge="first") or ends (edge="last") with one of chars, lines)``
    per document, over the non-blank lines of ``doc.split("\n")`` (``get_sentences``)."""
    text = as_text(values)
    n_docs = len(text)
    lists = pc.split_pattern(text, "\n")
    docs = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    # Arrow's utf8_trim_whitespace strips exactly what str.strip() strips (checked in the tests).
    trimmed = pc.utf8_trim_whitespace(pc.list_flatten(lists))
    nonblank = pc.greater(pc.utf8_length(trimmed), 0).to_numpy(zero_copy_only=False)
    edge_char = (
        pc.utf8_slice_codeunits(trimmed, start=0, stop=1)
        if edge == "first"
        else pc.utf8_slice_codeunits(trimmed, start=-1)
    )
    matching = pc.is_in(edge_char, value_set=pa.array(list(chars), type=edge_char.type)).to_numpy(
        zero_copy_only=False
    )
    total = np.bincount(docs[nonblank], minlength=n_docs).astype(np.int64)
    hits = np.bincount(docs[nonblank & matching], minlength=n_docs).astype(np.int64)
    return hits, total


def ratio(numerator: np.ndarray, denominator: np.ndarray, empty: float) -> np.ndarray:
    """``numerator / denominator`` per document, ``empty`` where the denominator is 0 (``float64``).

    Both are integer counts below 2**53, so each quotient equals Python's ``int / int``.
    """
    out = np.full(len(denominator), empty, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def checked_ratio(numerator: np.ndarray, denominator: np.ndarray, what: str) -> np.ndarray:
    """``numerator / denominator`` per document; ``ZeroDivisionError`` if a denominator is 0, as the
    row-by-row ``score_document`` raises for that document."""
    zero = np.flatnonzero(denominator == 0)
    if zero.size:
        msg = f"division by zero: {what} of the document at position {int(zero[0])} is 0"
        raise ZeroDivisionError(msg)
    return ratio(numerator, denominator, 0.0)
