"""``FilePartitioningStage``: list input files and group them into ``FileGroupTask`` partitions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loguru import logger

from nemo_curator.backends.experimental.utils import RayStageSpecKeys
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.stages.resources import Resources
from nemo_curator.tasks import FileGroupTask, _EmptyTask
from nemo_curator.utils.file_utils import (
    _parse_size,
    _split_files_as_per_blocksize,
    get_all_file_paths_and_size_under,
    get_all_file_paths_under,
    infer_dataset_name_from_path,
)

__all__ = ["FilePartitioningStage", "_parse_size"]

_DEFAULT_EXTENSIONS = [".jsonl", ".json", ".parquet"]


@dataclass
class FilePartitioningStage(ProcessingStage[_EmptyTask, FileGroupTask]):
    """Fan out one (empty) input task into one ``FileGroupTask`` per group of input files.

    Args:
        file_paths: a directory, file or glob (listed recursively), or a list of them (each listed
            non-recursively; the joined result is re-sorted).
        files_per_partition: files per group, in name order.
        blocksize: target bytes per group (int or a string such as ``"128MB"``); files are taken smallest
            first and a group closes before the file that would exceed it.
        file_extensions: extensions to keep (case-insensitive); default ``[".jsonl", ".json", ".parquet"]``.
        storage_options: fsspec options for listing remote paths.
        limit: the most partitions to emit.

    With neither ``files_per_partition`` nor ``blocksize``, every file is its own partition.
    """

    file_paths: str | list[str]
    files_per_partition: int | None = None
    blocksize: int | str | None = None
    file_extensions: list[str] | None = None
    storage_options: dict[str, Any] | None = None
    limit: int | None = None
    name: str = "file_partitioning"

    def __post_init__(self) -> None:
        if self.file_extensions is None:
            self.file_extensions = list(_DEFAULT_EXTENSIONS)
        if self.storage_options is None:
            self.storage_options = {}
        # Curator v1.1.0 accepted both and then put (path, size) tuples into the tasks; later versions reject
        # the combination, and so do we, at construction, before any file is listed.
        if self.files_per_partition and self.blocksize:
            msg = "Both 'files_per_partition' and 'blocksize' were specified, but only one is allowed"
            raise ValueError(msg)
        # A negative count silently produced no partitions in v1.1.0; it is always a mistake.
        if self.files_per_partition is not None and self.files_per_partition < 0:
            msg = f"files_per_partition must not be negative, got {self.files_per_partition}"
            raise ValueError(msg)
        if self.blocksize is not None:
            self._blocksize = _parse_size(self.blocksize)
        self.resources = Resources(cpus=0.5)

    def inputs(self) -> tuple[list[str], list[str]]:
        return [], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return [], []

    def ray_stage_spec(self) -> dict[str, Any]:
        return {RayStageSpecKeys.IS_FANOUT_STAGE: True}

    def xenna_stage_spec(self) -> dict[str, Any]:
        return {"num_workers_per_node": 1}

    def _list_files(self, with_sizes: bool) -> list[Any]:
        lister = get_all_file_paths_and_size_under if with_sizes else get_all_file_paths_under
        if isinstance(self.file_paths, str):
            return lister(
                self.file_paths,
                recurse_subdirectories=True,
                keep_extensions=self.file_extensions,
                storage_options=self.storage_options,
            )
        if isinstance(self.file_paths, list):
            found: list[Any] = []
            for root in self.file_paths:
                found.extend(
                    lister(
                        root,
                        recurse_subdirectories=False,
                        keep_extensions=self.file_extensions,
                        storage_options=self.storage_options,
                    )
                )
            return sorted(found, key=lambda record: record[1]) if with_sizes else sorted(found)
        msg = f"Invalid file paths: {self.file_paths}, must be a string or list of strings"
        raise TypeError(msg)

    def process(self, _: _EmptyTask) -> list[FileGroupTask]:
        by_size = bool(self.blocksize)
        # Size mode lists (path, size) records, smallest first; otherwise paths in name order.
        records: list[tuple[str, int]] = self._list_files(with_sizes=True) if by_size else []
        paths: list[str] = [path for path, _ in records] if by_size else self._list_files(with_sizes=False)
        logger.info(f"Found {len(paths)} files")
        if not paths:
            logger.warning(f"No files found under {self.file_paths}")
            return []

        if self.files_per_partition:
            size = self.files_per_partition
            partitions = [paths[start : start + size] for start in range(0, len(paths), size)]
        elif by_size:
            partitions = _split_files_as_per_blocksize(records, self._blocksize)
        else:
            logger.info("Neither files_per_partition nor blocksize given; using one file per partition")
            partitions = [[path] for path in paths]
        dataset_name = infer_dataset_name_from_path(paths[0])

        tasks: list[FileGroupTask] = []
        for index, group in enumerate(partitions):
            if self.limit is not None and len(tasks) >= self.limit:
                logger.info(f"Reached limit of {self.limit} file groups")
                break
            tasks.append(
                FileGroupTask(
                    task_id=f"file_group_{index}",
                    dataset_name=dataset_name,
                    data=group,
                    _metadata={
                        "partition_index": index,
                        "total_partitions": len(partitions),
                        "source_files": group,
                    },
                    reader_config={},
                )
            )
        logger.info(f"Created {len(tasks)} file groups from {len(paths)} files")
        return tasks
