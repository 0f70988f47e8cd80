"""``FileGroupTask``: a group of file paths to be read together."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from nemo_curator.tasks.tasks import Task


@dataclass(repr=False)
class FileGroupTask(Task[list[str]]):
    """A list of file paths plus the options to read them with."""

    data: list[str] = field(default_factory=list)
    reader_config: dict[str, Any] = field(default_factory=dict)

    @property
    def num_items(self) -> int:
        return len(self.data)

    def validate(self) -> bool:
        if len(self.data) == 0:
            logger.warning(f"FileGroupTask {self.task_id} has no files")
            return False
        if not isinstance(self.data, list):
            raise TypeError(f"Invalid data type in task {self.task_id}")
        return True

    def get_deterministic_id(self) -> str:
        """A short id derived only from the set of paths (stable across runs and orderings)."""
        digest = hashlib.sha256(("|".join(sorted(self.data)) + "|").encode()).hexdigest()
        return digest[:12]
