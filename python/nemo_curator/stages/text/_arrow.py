"""Arrow conversions shared by the text curation stages."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from nemo_curator.tasks import DocumentBatch


def document_table(task: DocumentBatch, *required_columns: str) -> pa.Table:
    """The batch's data as one ``pa.Table`` (converted once), checking that ``required_columns`` exist.

    A DataFrame's index carries no document data here, so it is dropped rather than written out as
    ``__index_level_0__`` after row filtering.
    """
    data = task.data
    if isinstance(data, pd.DataFrame):
        table = pa.Table.from_pandas(data, preserve_index=False)
    elif isinstance(data, pa.Table):
        table = data
    else:
        raise TypeError(
            f"Task {task.task_id}: expected a pyarrow Table or pandas DataFrame, got {type(data)}"
        )
    missing = [col for col in required_columns if col not in table.column_names]
    if missing:
        raise KeyError(f"Task {task.task_id}: missing column(s) {missing}; has {table.column_names}")
    return table


def replace_data(task: DocumentBatch, table: pa.Table) -> DocumentBatch:
    """A batch with new data and the same id, dataset name, metadata dict and ``_stage_perf`` list."""
    return DocumentBatch(
        task_id=task.task_id,
        dataset_name=task.dataset_name,
        data=table,
        _metadata=task._metadata,
        _stage_perf=task._stage_perf,
    )
