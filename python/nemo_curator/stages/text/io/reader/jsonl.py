"""JSONL reading: ``JsonlReaderStage`` (files to a batch) and the ``JsonlReader`` composite."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from nemo_curator.stages.base import CompositeStage, ProcessingStage
from nemo_curator.stages.text.io.reader.base import BaseReader, describe_reader, partition_then_read
from nemo_curator.tasks import DocumentBatch, _EmptyTask
from nemo_curator.utils.file_utils import pandas_select_columns


@dataclass
class JsonlReaderStage(BaseReader):
    """Read JSON Lines files with ``pandas.read_json(lines=True)`` and concatenate them in order."""

    name: str = "jsonl_reader"

    def read_data(
        self,
        file_paths: list[str],
        read_kwargs: dict[str, Any] | None = None,
        fields: list[str] | None = None,
    ) -> pd.DataFrame | None:
        kwargs = dict(read_kwargs or {})
        if "lines" in kwargs and not kwargs["lines"]:
            raise ValueError("lines=False is not supported for JSONL reader")
        kwargs["lines"] = True
        if not file_paths:
            raise ValueError(
                f"No data read from files in task {file_paths} with read_kwargs {kwargs} in JSONL reader"
            )
        frames: list[pd.DataFrame | None] = []
        for path in file_paths:
            df = pd.read_json(path, **kwargs)
            if fields is not None:
                df = pandas_select_columns(df, fields, path)
            frames.append(df)
        # ``concat`` drops the files without any requested column and raises if that leaves nothing.
        return pd.concat(frames, ignore_index=True)


@dataclass
class JsonlReader(CompositeStage[_EmptyTask, DocumentBatch]):
    """List and group JSONL files, then read each group into a ``DocumentBatch``.

    Decomposes into ``FilePartitioningStage`` and ``JsonlReaderStage`` (named ``"file_partitioning"`` and
    ``"jsonl_reader"``, the names ``with_()`` addresses).
    """

    file_paths: str | list[str]
    files_per_partition: int | None = None
    blocksize: int | str | None = None
    fields: list[str] | None = None
    read_kwargs: dict[str, Any] | None = None
    task_type: Literal["document", "image", "video", "audio"] = "document"
    file_extensions: list[str] = field(default_factory=lambda: [".jsonl", ".json"])
    _generate_ids: bool = False
    _assign_ids: bool = False
    name: str = "jsonl_reader"

    def __post_init__(self) -> None:
        super().__init__()
        if self.read_kwargs is not None:
            self.storage_options = self.read_kwargs.get("storage_options", {})

    def decompose(self) -> list[ProcessingStage]:
        storage_options = self.read_kwargs.get("storage_options") if self.read_kwargs is not None else None
        return partition_then_read(self, JsonlReaderStage, storage_options)

    def get_description(self) -> str:
        return describe_reader(
            "JSONL", self.file_paths, self.files_per_partition, self.blocksize, self.fields
        )
