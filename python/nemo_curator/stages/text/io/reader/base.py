"""``BaseReader``: read a ``FileGroupTask``'s files into one ``DocumentBatch``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from loguru import logger

from nemo_curator.backends.experimental.utils import RayStageSpecKeys
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.tasks import DocumentBatch, FileGroupTask

if TYPE_CHECKING:
    import pyarrow as pa

    from nemo_curator.backends.base import WorkerMetadata

CURATOR_DEDUP_ID_STR = "_curator_dedup_id"
ID_GENERATOR_ACTOR_NAME = "curator_deduplication_id_generator"


@dataclass
class BaseReader(ProcessingStage[FileGroupTask, DocumentBatch]):
    """Read the files of each ``FileGroupTask`` with ``read_data`` and emit a ``DocumentBatch``.

    With ``_generate_ids`` (or ``_assign_ids``) a ``_curator_dedup_id`` column is filled from the Ray actor
    named ``curator_deduplication_id_generator``, which must be running.
    """

    fields: list[str] | None = None
    read_kwargs: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    _generate_ids: bool = False
    _assign_ids: bool = False

    def __post_init__(self) -> None:
        if self._generate_ids and self._assign_ids:
            raise ValueError("Cannot generate and assign IDs at the same time")

    def inputs(self) -> tuple[list[str], list[str]]:
        return [], []

    def outputs(self) -> tuple[list[str], list[str]]:
        # A new list every call: the declared columns never grow with repeated calls.
        columns = list(self.fields or [])
        if self._generate_ids or self._assign_ids:
            columns.append(CURATOR_DEDUP_ID_STR)
        return ["data"], columns

    def ray_stage_spec(self) -> dict[str, Any]:
        # Always present, so the executor does not infer an actor stage from the overridden ``setup``.
        return {RayStageSpecKeys.IS_ACTOR_STAGE: bool(self._generate_ids or self._assign_ids)}

    def setup(self, worker_metadata: WorkerMetadata | None = None) -> None:
        if not (self._generate_ids or self._assign_ids):
            return
        import ray

        try:
            self.id_generator = ray.get_actor(ID_GENERATOR_ACTOR_NAME, namespace=ID_GENERATOR_ACTOR_NAME)
        except ValueError:
            msg = (
                "ID generator is required when self._generate_ids or self._assign_ids is True, and the actor "
                "'id_generator' does not exist. Please start the id_generator actor."
            )
            raise RuntimeError(msg) from None

    def read_data(
        self,
        file_paths: list[str],
        read_kwargs: dict[str, Any] | None = None,
        fields: list[str] | None = None,
    ) -> pd.DataFrame | pa.Table | None:
        """Read ``file_paths`` into one table; implemented by each file format."""
        raise NotImplementedError(f"{type(self).__name__} does not implement read_data")

    def _add_ids(self, task: FileGroupTask, df: pd.DataFrame) -> pd.DataFrame:
        if CURATOR_DEDUP_ID_STR in df.columns:
            logger.warning(f"Column {CURATOR_DEDUP_ID_STR} already exists in task {task.task_id}; keeping it")
            return df
        import ray

        if self._generate_ids:
            start: Any = ray.get(self.id_generator.register_batch.remote(task.data, len(df)))
            min_id = int(start)
            df[CURATOR_DEDUP_ID_STR] = np.arange(min_id, min_id + len(df))
        else:
            batch_range: Any = ray.get(self.id_generator.get_batch_range.remote(task.data, None))
            low, high = int(batch_range[0]), int(batch_range[1])
            df[CURATOR_DEDUP_ID_STR] = np.arange(low, high + 1)
        return df

    def process(self, task: FileGroupTask) -> DocumentBatch:
        result = self.read_data(task.data, dict(self.read_kwargs or {}), self.fields)
        if result is None or getattr(result, "empty", False) or getattr(result, "num_rows", None) == 0:
            raise ValueError(f"No data read from files in task {task.task_id}")
        if isinstance(result, pd.DataFrame) and (self._generate_ids or self._assign_ids):
            result = self._add_ids(task, result)
        return DocumentBatch(
            task_id=f"{task.task_id}_processed",
            dataset_name=task.dataset_name,
            data=result,
            _metadata=task._metadata,
        )


def describe_reader(
    file_format: str,
    file_paths: str | list[str],
    files_per_partition: int | None,
    blocksize: int | str | None,
    fields: list[str] | None,
) -> str:
    """The composite readers' one-line description."""
    parts = [f"Read {file_format} files from {file_paths}"]
    if files_per_partition:
        parts.append(f"with {files_per_partition} files per partition")
    elif blocksize:
        parts.append(f"with target blocksize {blocksize}")
    if fields:
        parts.append(f"reading columns: {fields}")
    return ", ".join(parts)


def partition_then_read(
    reader: Any, reader_stage: type[BaseReader], storage_options: dict[str, Any] | None
) -> list[ProcessingStage]:
    """What the composite readers decompose into: file partitioning, then `reader_stage` on each group."""
    from nemo_curator.stages.file_partitioning import FilePartitioningStage

    if reader.task_type != "document":
        raise NotImplementedError(f"Converting DocumentBatch to {reader.task_type} is not supported yet.")
    return [
        FilePartitioningStage(
            file_paths=reader.file_paths,
            files_per_partition=reader.files_per_partition,
            blocksize=reader.blocksize,
            file_extensions=reader.file_extensions,
            storage_options=storage_options,
            limit=None,
        ),
        reader_stage(
            fields=reader.fields,
            read_kwargs=reader.read_kwargs or {},
            _generate_ids=reader._generate_ids,
            _assign_ids=reader._assign_ids,
        ),
    ]
