"""``ParquetWriter``: one Parquet file per batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nemo_curator.stages.text.io.writer.base import BaseWriter
from nemo_curator.tasks import DocumentBatch


@dataclass
class ParquetWriter(BaseWriter):
    """Write each batch with ``DataFrame.to_parquet(index=None)`` (pyarrow, snappy); ``write_kwargs`` override."""

    file_extension: str = "parquet"
    write_kwargs: dict[str, Any] = field(default_factory=dict)
    name: str = "parquet_writer"

    def write_data(self, task: DocumentBatch, file_path: str) -> None:
        df = task.to_pandas()
        if self.fields is not None:
            df = df[self.fields]
        df.to_parquet(file_path, **{"index": None, **self.write_kwargs})
