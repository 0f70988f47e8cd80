"""Task types flowing between processing stages."""

from nemo_curator.tasks.audio_batch import AudioBatch
from nemo_curator.tasks.document import DocumentBatch
from nemo_curator.tasks.file_group import FileGroupTask
from nemo_curator.tasks.image import ImageBatch, ImageObject
from nemo_curator.tasks.tasks import EmptyTask, Task, _EmptyTask

__all__ = [
    "AudioBatch",
    "DocumentBatch",
    "EmptyTask",
    "FileGroupTask",
    "ImageBatch",
    "ImageObject",
    "Task",
    "_EmptyTask",
]
