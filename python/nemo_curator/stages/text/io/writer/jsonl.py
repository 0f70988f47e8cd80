"""``JsonlWriter``: one JSON Lines file per batch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nemo_curator.stages.text.io.writer.base import BaseWriter
from nemo_curator.tasks import DocumentBatch


@dataclass
class JsonlWriter(BaseWriter):
    """Write each batch with ``DataFrame.to_json(lines=True, orient="records")``; ``write_kwargs`` override."""

    file_extension: str = "jsonl"
    write_kwargs: dict[str, Any] = field(default_factory=dict)
    name: str = "jsonl_writer"

    def write_data(self, task: DocumentBatch, file_path: str) -> None:
        df = task.to_pandas()
        if self.fields is not None:
            df = df[self.fields]
        df.to_json(file_path, **{"lines": True, "orient": "records", **self.write_kwargs})
