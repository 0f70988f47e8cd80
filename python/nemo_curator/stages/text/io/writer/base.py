"""``BaseWriter``: write each ``DocumentBatch`` to one file in an output directory."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

from fsspec.core import url_to_fs
from loguru import logger

from nemo_curator.stages.base import ProcessingStage
from nemo_curator.stages.text.io.writer.utils import get_deterministic_hash
from nemo_curator.tasks import DocumentBatch, FileGroupTask
from nemo_curator.utils.client_utils import is_remote_url
from nemo_curator.utils.file_utils import check_output_mode


@dataclass
class BaseWriter(ProcessingStage[DocumentBatch, FileGroupTask], ABC):
    """Write each batch to ``<path>/<name>.<file_extension>`` and return a ``FileGroupTask`` naming the file.

    ``<name>`` is a hash of the batch's ``source_files`` metadata and task id, so reruns overwrite the same
    files; batches without ``source_files`` get a random name. ``mode`` (``ignore``, ``overwrite``, ``error``,
    ``append``) is applied to the output directory at construction.
    """

    path: str
    file_extension: str
    write_kwargs: dict[str, Any] = field(default_factory=dict)
    fields: list[str] | None = None
    name: str = "BaseWriter"
    mode: Literal["ignore", "overwrite", "append", "error"] = "ignore"
    append_mode_implemented: bool = False

    def __post_init__(self) -> None:
        self.storage_options = (self.write_kwargs or {}).get("storage_options", {})
        self.fs, self._fs_path = url_to_fs(self.path, **self.storage_options)
        self._is_remote = is_remote_url(self.path)
        check_output_mode(self.mode, self.fs, self._fs_path, self.append_mode_implemented)

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def get_file_extension(self) -> str:
        return self.file_extension

    @abstractmethod
    def write_data(self, task: DocumentBatch, file_path: str) -> None:
        """Write ``task``'s documents to ``file_path``."""

    def _base_filename(self, task: DocumentBatch) -> str:
        source_files = task._metadata.get("source_files")
        if source_files:
            return get_deterministic_hash(source_files, task.task_id)
        logger.warning("The task does not have source_files in metadata, using UUID for base filename")
        return uuid.uuid4().hex

    def process(self, task: DocumentBatch) -> FileGroupTask:
        extension = self.get_file_extension()
        fs_file_path = self.fs.sep.join([self._fs_path, f"{self._base_filename(task)}.{extension}"])
        file_path = self.fs.unstrip_protocol(fs_file_path) if self._is_remote else fs_file_path
        if self.fs.exists(fs_file_path):
            logger.debug(f"File {file_path} already exists, overwriting it")
        self.write_data(task, file_path)
        logger.debug(f"Written {task.num_items} records to {file_path}")
        return FileGroupTask(
            task_id=task.task_id,
            dataset_name=task.dataset_name,
            data=[file_path],
            _metadata={**task._metadata, "format": extension},
            _stage_perf=task._stage_perf,
            reader_config={},
        )
