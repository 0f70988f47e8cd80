"""A vectorised stage that adds a stable content hash of each document's text (for exact deduplication).

Not part of Curator's API (Curator 1.1.0 has no module at this path); kept under its own name so that it
cannot clash with a Curator module when both are installed.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from nemo_curator.stages.base import ProcessingStage
from nemo_curator.stages.text._arrow import document_table, replace_data
from nemo_curator.tasks import DocumentBatch


def content_hash(values: pa.Array | pa.ChunkedArray, algorithm: str = "md5") -> pa.Array:
    """Hex digest of each value's UTF-8 bytes (``hashlib`` ``algorithm``); null stays null.

    The result equals ``hashlib.new(algorithm, text.encode("utf-8")).hexdigest()``, so it is stable across
    processes, machines and library versions.

    Why per-row ``hashlib``: Arrow has no row-wise hash kernel, and the one vectorised string hash at hand
    (pandas' SipHash, ``pd.util.hash_array``) gives 64 bits only (birthday collisions become likely past
    ~10^9 documents, which breaks exact deduplication); two SipHash passes for 128 bits measured slower than
    this (0.76 s vs 0.55 s for 100k documents of ~1.5 kB). The cost is in the digest itself, which runs in C
    at memory speed; the Python part is one call per row on a ``bytes`` view, and the hex encoding and the
    output array are built in one pass each.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if pa.types.is_string_view(values.type):
        values = values.cast(pa.large_string())
    if algorithm not in hashlib.algorithms_available:
        raise ValueError(f"Unknown hash algorithm {algorithm!r}")
    # The named constructors (hashlib.md5, ...) skip hashlib.new's lookup on every row.
    constructor = getattr(hashlib, algorithm, None) or functools.partial(hashlib.new, algorithm)
    digest_size = constructor().digest_size
    raw = values.cast(pa.large_binary()).to_pylist()
    blank = b"\x00" * digest_size
    digests = b"".join([blank if item is None else constructor(item).digest() for item in raw])
    hexed = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(2 * digest_size), len(values), [None, pa.py_buffer(binascii.hexlify(digests))]
    ).cast(pa.string())
    if values.null_count:
        hexed = pc.if_else(pc.is_valid(values), hexed, pa.scalar(None, pa.string()))
    return hexed


@dataclass
class AddContentHash(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Add a column ``hash_field`` holding the hex digest of ``text_field`` (md5 by default).

    Equal texts get equal hashes in any process, which is what exact deduplication keys on. An existing
    ``hash_field`` column is replaced.
    """

    text_field: str = "text"
    hash_field: str = "content_hash"
    algorithm: str = "md5"
    name: str = "add_content_hash"

    def __post_init__(self) -> None:
        if self.algorithm not in hashlib.algorithms_available:
            raise ValueError(f"Unknown hash algorithm {self.algorithm!r}")

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], [self.text_field]

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], [self.text_field, self.hash_field]

    def process(self, task: DocumentBatch) -> DocumentBatch:
        table = document_table(task, self.text_field)
        hashes = content_hash(table.column(self.text_field), self.algorithm)
        if self.hash_field in table.column_names:
            table = table.set_column(table.column_names.index(self.hash_field), self.hash_field, hashes)
        else:
            table = table.append_column(self.hash_field, hashes)
        self._log_metric("documents_hashed", table.num_rows)
        return replace_data(task, table)
