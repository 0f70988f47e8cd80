"""``ImageBatch`` and ``ImageObject``: images and their derived attributes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nemo_curator.tasks.tasks import Task


@dataclass
class ImageObject:
    """One image: where it comes from, and what stages computed about it."""

    image_path: str = ""
    image_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    image_data: Any = None
    embedding: Any = None
    aesthetic_score: float | None = None
    nsfw_score: float | None = None


@dataclass(repr=False)
class ImageBatch(Task[list[ImageObject]]):
    """A list of ``ImageObject``s."""

    data: list[ImageObject] = field(default_factory=list)

    @property
    def num_items(self) -> int:
        return len(self.data)

    def validate(self) -> bool:
        return True
