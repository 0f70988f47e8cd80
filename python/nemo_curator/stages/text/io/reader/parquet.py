"""Parquet reading: ``ParquetReaderStage`` (files to a batch) and the ``ParquetReader`` composite."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from nemo_curator.stages.base import CompositeStage, ProcessingStage
from nemo_curator.stages.text.io.reader.base import BaseReader, describe_reader, partition_then_read
from nemo_curator.tasks import DocumentBatch, _EmptyTask


@dataclass
class ParquetReaderStage(BaseReader):
    """Read Parquet files with ``pandas.read_parquet`` (pyarrow engine and dtypes) and concatenate them."""

    name: str = "parquet_reader"

    def read_data(
        self,
        file_paths: list[str],
        read_kwargs: dict[str, Any] | None = None,
        fields: list[str] | None = None,
    ) -> pd.DataFrame | None:
        kwargs = dict(read_kwargs or {})
        if fields is not None:
            kwargs["columns"] = fields
        kwargs.setdefault("engine", "pyarrow")
        kwargs.setdefault("dtype_backend", "pyarrow")
        return pd.concat([pd.read_parquet(path, **kwargs) for path in file_paths], ignore_index=True)


@dataclass
class ParquetReader(CompositeStage[_EmptyTask, DocumentBatch]):
    """List and group Parquet files, then read each group into a ``DocumentBatch``.

    Decomposes into ``FilePartitioningStage`` and ``ParquetReaderStage`` (named ``"file_partitioning"`` and
    ``"parquet_reader"``).
    """

    file_paths: str | list[str]
    files_per_partition: int | None = None
    blocksize: int | str | None = None
    fields: list[str] | None = None
    read_kwargs: dict[str, Any] | None = None
    file_extensions: list[str] = field(default_factory=lambda: [".parquet"])
    task_type: Literal["document", "image", "video", "audio"] = "document"
    _generate_ids: bool = False
    _assign_ids: bool = False
    name: str = "parquet_reader"

    def __post_init__(self) -> None:
        super().__init__()
        if self.read_kwargs is not None:
            self.storage_options = self.read_kwargs.get("storage_options", {})

    def decompose(self) -> list[ProcessingStage]:
        storage_options = (
            self.read_kwargs.get("storage_options", {}) if self.read_kwargs is not None else None
        )
        return partition_then_read(self, ParquetReaderStage, storage_options)

    def get_description(self) -> str:
        return describe_reader(
            "Parquet", self.file_paths, self.files_per_partition, self.blocksize, self.fields
        )
