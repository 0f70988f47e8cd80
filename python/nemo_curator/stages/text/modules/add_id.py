"""``AddId``: gives every document of a batch an id unique across batches."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
from loguru import logger

from nemo_curator.stages.base import ProcessingStage
from nemo_curator.tasks import DocumentBatch


@dataclass
class AddId(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Sets ``id_field`` of row ``i`` to ``f"{batch._uuid}_{i}"`` (``f"{id_prefix}_{batch._uuid}_{i}"`` with a
    non-empty ``id_prefix``).

    ``_uuid`` is a random UUID made with each batch object, so ids are unique across batches but differ
    from run to run. An existing ``id_field`` is an error unless ``overwrite=True``.
    """

    id_field: str
    id_prefix: str | None = None
    overwrite: bool = False
    name: str = "add_id"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], [self.id_field]

    def process(self, batch: DocumentBatch) -> DocumentBatch:
        data = batch.data if isinstance(batch.data, pa.Table) else batch.to_pandas()
        columns = data.column_names if isinstance(data, pa.Table) else data.columns
        if self.id_field in columns:
            if not self.overwrite:
                msg = f"Column '{self.id_field}' already exists. Set overwrite=True to replace it."
                raise ValueError(msg)
            logger.warning(f"Column '{self.id_field}' already exists and will be overwritten.")
        prefix = f"{self.id_prefix}_{batch._uuid}" if self.id_prefix else str(batch._uuid)
        ids = [f"{prefix}_{i}" for i in range(len(data))]
        if isinstance(data, pa.Table):
            array = pa.array(ids, type=pa.string())
            if self.id_field in data.column_names:
                data = data.set_column(data.column_names.index(self.id_field), self.id_field, array)
            else:
                data = data.append_column(self.id_field, array)
        else:
            data[self.id_field] = ids
        return DocumentBatch(
            task_id=f"{batch.task_id}_{self.name}",
            dataset_name=batch.dataset_name,
            data=data,
            _metadata=batch._metadata,
            _stage_perf=batch._stage_perf,
        )
