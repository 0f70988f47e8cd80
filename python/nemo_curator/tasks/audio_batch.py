"""``AudioBatch``: a list of audio-file records."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from nemo_curator.tasks.tasks import Task


@dataclass(repr=False)
class AudioBatch(Task[list[dict[str, Any]]]):
    """A list of records (dicts); ``filepath_key`` names the field holding each record's audio path."""

    data: list[dict[str, Any]] = field(default_factory=list)
    filepath_key: str | None = None

    def __post_init__(self) -> None:
        # A single record or None is accepted for convenience and normalised to a list.
        raw: Any = self.data
        if raw is None:
            self.data = []
        elif isinstance(raw, dict):
            self.data = [raw]
        super().__post_init__()

    @property
    def num_items(self) -> int:
        return len(self.data)

    def validate_item(self, item: dict[str, Any]) -> bool:
        if self.filepath_key is None:
            return True
        path = item.get(self.filepath_key)
        if path is None:
            logger.warning(f"AudioBatch {self.task_id}: record has no '{self.filepath_key}'")
            return False
        if not os.path.exists(path):
            logger.warning(f"AudioBatch {self.task_id}: file {path} does not exist")
            return False
        return True

    def validate(self) -> bool:
        return all(self.validate_item(item) for item in self.data)
