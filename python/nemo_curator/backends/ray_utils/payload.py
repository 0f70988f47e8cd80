"""Cheap size estimates of task payloads, for backpressure and for choosing how outputs travel."""

from __future__ import annotations

import pickle
from typing import Any

import pyarrow as pa

from nemo_curator.tasks import DocumentBatch, FileGroupTask, Task
from nemo_curator.tasks.document import is_pandas_frame


def payload_nbytes(task: Task[Any]) -> int:
    """Approximate bytes a task occupies once serialised (its data dominates; fields are small)."""
    data = task.data
    if isinstance(data, pa.Table | pa.RecordBatch):
        return int(data.nbytes)
    if is_pandas_frame(data):
        return int(data.memory_usage(index=True, deep=False).sum())
    if isinstance(task, FileGroupTask) and isinstance(data, list):
        return 64 + sum(len(p) for p in data)
    if isinstance(task, DocumentBatch) or data is None:
        return 64
    try:
        return len(pickle.dumps(data, protocol=5))
    except Exception:
        # Unpicklable by the stdlib (lambdas, locals): Ray's cloudpickle will still handle it.
        return 1024
