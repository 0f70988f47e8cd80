"""Exact deduplication of the curated output by content hash (identification, as Curator's exact dedup).

The pipeline wrote each kept document with its ``content_hash``; documents with equal hashes have equal
text. Grouping the hashes is a columnar job on two small columns, done here with Arrow: every copy after
the first (by ``id``) is listed in ``duplicate_ids.parquet``, the list a removal step filters by.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


@dataclass(frozen=True)
class DedupResult:
    documents: int
    duplicates: int
    path: Path


def find_exact_duplicates(
    output_dir: str | Path, id_field: str = "id", hash_field: str = "content_hash"
) -> DedupResult:
    """List every document whose text repeats an earlier one (by id order) in ``output_dir``'s Parquet files."""
    out = Path(output_dir)
    files = sorted(out.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no Parquet files in {out}")
    table = pa.concat_tables(pq.read_table(f, columns=[id_field, hash_field]) for f in files)
    table = table.sort_by([(hash_field, "ascending"), (id_field, "ascending")])
    hashes = table.column(hash_field).combine_chunks()
    # Sorted by hash, a row is a copy when its hash equals the previous row's.
    repeat = pc.equal(hashes.slice(1), hashes.slice(0, len(hashes) - 1)) if len(hashes) else pa.array([])
    is_copy = pa.concat_arrays([pa.array([False]), repeat.fill_null(False)]) if len(hashes) else repeat
    duplicates = table.filter(is_copy)
    path = out.parent / f"{out.name}-duplicate_ids.parquet"
    pq.write_table(duplicates, path)
    return DedupResult(documents=table.num_rows, duplicates=duplicates.num_rows, path=path)
