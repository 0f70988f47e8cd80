"""``DocumentBatch``: a table of documents (pyarrow or pandas)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from loguru import logger

from nemo_curator.tasks.tasks import Task

if TYPE_CHECKING:
    import pandas as pd


def is_pandas_frame(obj: Any) -> bool:
    """`isinstance(obj, pd.DataFrame)` without importing pandas (~0.5 s, paid by every Ray worker
    process): a frame exists only once something imported pandas."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(obj, pandas.DataFrame)


def _empty_table() -> pa.Table:
    return pa.table({})


@dataclass(repr=False)
class DocumentBatch(Task["pa.Table | pd.DataFrame"]):
    """A batch of documents stored as a ``pa.Table`` or a ``pd.DataFrame``."""

    data: pa.Table | pd.DataFrame = field(default_factory=_empty_table)

    def to_pyarrow(self) -> pa.Table:
        if isinstance(self.data, pa.Table):
            return self.data
        if is_pandas_frame(self.data):
            return pa.Table.from_pandas(self.data)
        msg = f"Cannot convert {type(self.data).__name__} to a pyarrow Table"
        raise TypeError(msg)

    def to_pandas(self) -> pd.DataFrame:
        if is_pandas_frame(self.data):
            return self.data
        if isinstance(self.data, pa.Table):
            return self.data.to_pandas()
        msg = f"Cannot convert {type(self.data).__name__} to a pandas DataFrame"
        raise TypeError(msg)

    @property
    def num_items(self) -> int:
        return len(self.data)

    def get_columns(self) -> list[str]:
        if is_pandas_frame(self.data):
            return list(self.data.columns)
        if isinstance(self.data, pa.Table):
            return self.data.column_names
        msg = f"Unsupported data type {type(self.data).__name__}"
        raise TypeError(msg)

    def validate(self) -> bool:
        """False (with a warning) for an empty or column-less batch; never raises."""
        try:
            num_items = self.num_items
            columns = self.get_columns()
        except TypeError as err:
            logger.warning(f"DocumentBatch {self.task_id} has unsupported data: {err}")
            return False
        if num_items <= 0:
            logger.warning(f"DocumentBatch {self.task_id} has no documents")
            return False
        if not columns:
            logger.warning(f"DocumentBatch {self.task_id} has no columns")
            return False
        return True
