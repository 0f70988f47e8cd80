"""File listing, grouping and output-directory helpers shared by the I/O stages.

Paths go through fsspec, so local paths and any fsspec URL (``s3://``, ``gs://``, ``memory://`` ...) work.
Local results are absolute POSIX paths; remote results keep their protocol prefix.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import fsspec
from fsspec.core import split_protocol, url_to_fs
from loguru import logger

from nemo_curator.utils.client_utils import is_remote_url

if TYPE_CHECKING:
    import pandas as pd
    from fsspec import AbstractFileSystem

FILETYPE_TO_DEFAULT_EXTENSIONS: dict[str, list[str]] = {
    "parquet": [".parquet"],
    "jsonl": [".jsonl", ".json"],
    "megatron": [".bin", ".idx"],
}

_ALLOWED_OUTPUT_MODES = ("append", "error", "ignore", "overwrite")

# Byte units understood by ``_parse_size`` (decimal and binary prefixes, case-insensitive).
_BYTE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "p": 10**15,
    "pb": 10**15,
    "ki": 2**10,
    "kib": 2**10,
    "mi": 2**20,
    "mib": 2**20,
    "gi": 2**30,
    "gib": 2**30,
    "ti": 2**40,
    "tib": 2**40,
    "pi": 2**50,
    "pib": 2**50,
}


def _parse_size(s: int | float | str) -> int:
    """Parse a byte size such as ``"100 MB"``, ``"1kiB"`` or ``512`` into an integer number of bytes."""
    if isinstance(s, (int, float)):
        return int(s)
    text = s.replace(" ", "")
    if not any(ch.isdigit() for ch in text):
        text = "1" + text
    split = len(text)
    while split > 0 and text[split - 1].isalpha():
        split -= 1
    prefix, suffix = text[:split], text[split:]
    try:
        number = float(prefix)
    except ValueError:
        raise ValueError(f"Could not interpret '{prefix}' as a number") from None
    try:
        multiplier = _BYTE_UNITS[suffix.lower()]
    except KeyError:
        raise ValueError(f"Could not interpret '{suffix}' as a byte unit") from None
    return int(number * multiplier)


def _gather_extention(path: str) -> str:
    """The last suffix of the basename, without its dot and casefolded (``""`` when there is none)."""
    return pathlib.PurePosixPath(path.rstrip("/")).suffix.lstrip(".").casefold()


def _normalise_extensions(keep_extensions: str | Iterable[str] | None) -> set[str] | None:
    if keep_extensions is None:
        return None
    if isinstance(keep_extensions, str):
        keep_extensions = [keep_extensions]
    return {ext.casefold().lstrip(".") for ext in keep_extensions}


def _gather_file_records(
    path: str,
    recurse_subdirectories: bool,
    keep_extensions: str | list[str] | None,
    storage_options: dict[str, Any] | None,
    fs: AbstractFileSystem | None,
    include_size: bool,
) -> list[tuple[str, int]]:
    """List the files under ``path`` (a directory, a file or a glob) as ``(path, size)`` records.

    Sizes are ``-1`` unless ``include_size`` is set. A path that does not exist yields no records.
    """
    if fs is None:
        fs = url_to_fs(path, **(storage_options or {}))[0]
    allowed = _normalise_extensions(keep_extensions)
    remote = is_remote_url(path)

    records: list[tuple[str, int]] = []
    try:
        roots = fs.expand_path(path, recursive=False)
    except FileNotFoundError:
        roots = []
    for root in roots:
        if fs.isdir(root):
            found = fs.find(
                root,
                maxdepth=None if recurse_subdirectories else 1,
                withdirs=False,
                detail=include_size,
            )
            if include_size:
                entries = [(name, info.get("size")) for name, info in sorted(found.items())]
            else:
                entries = [(name, None) for name in sorted(found)]
        elif fs.exists(root):
            entries = [(root, fs.info(root).get("size") if include_size else None)]
        else:
            continue
        for name, size in entries:
            if allowed is not None and _gather_extention(name) not in allowed:
                continue
            full = fs.unstrip_protocol(name) if remote else name
            records.append((full, -1 if size is None else int(size)))
    return records


def get_all_file_paths_under(
    path: str,
    recurse_subdirectories: bool = False,
    keep_extensions: str | list[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    fs: AbstractFileSystem | None = None,
) -> list[str]:
    """All files under ``path`` whose extension is allowed, sorted lexicographically."""
    records = _gather_file_records(
        path, recurse_subdirectories, keep_extensions, storage_options, fs, include_size=False
    )
    return sorted(name for name, _ in records)


def get_all_file_paths_and_size_under(
    path: str,
    recurse_subdirectories: bool = False,
    keep_extensions: str | list[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    fs: AbstractFileSystem | None = None,
) -> list[tuple[str, int]]:
    """``(path, size in bytes)`` for all allowed files under ``path``, smallest first (stable on ties)."""
    records = _gather_file_records(
        path, recurse_subdirectories, keep_extensions, storage_options, fs, include_size=True
    )
    return sorted(records, key=lambda record: record[1])


def _split_files_as_per_blocksize(
    sorted_file_sizes: list[tuple[str, int]], max_bytes: int
) -> list[list[str]]:
    """Greedy grouping in the given order: a group closes before the file that would push it past ``max_bytes``.

    A file larger than ``max_bytes`` ends up in a group of its own.
    """
    groups: list[list[str]] = []
    current: list[str] = []
    current_size = 0
    for file_path, size in sorted_file_sizes:
        if current_size + size > max_bytes:
            if current:
                groups.append(current)
            current = []
            current_size = 0
        current.append(file_path)
        current_size += size
    if current:
        groups.append(current)
    return groups


def infer_dataset_name_from_path(path: str) -> str:
    """A dataset name for a file: its parent directory (local) or last URL component (remote), lowercased."""
    protocol, stripped = split_protocol(path)
    if protocol is None:
        local = pathlib.Path(path)
        parent = local.parent.name
        if parent and parent != ".":
            return parent.lower()
        return local.stem.lower()
    parts = stripped.rstrip("/").split("/")
    if len(parts) == 1:
        return parts[0]
    return parts[-1].lower()


def pandas_select_columns(df: pd.DataFrame, columns: list[str] | None, file_path: str) -> pd.DataFrame | None:
    """Keep the requested columns that exist, in the requested order; ``None`` when none of them exist."""
    if columns is None:
        return df
    present = [col for col in columns if col in df.columns]
    missing = [col for col in columns if col not in df.columns]
    if missing:
        logger.warning(f"Columns {missing} not found in {file_path}")
    if not present:
        logger.error(f"None of the columns {columns} were found in {file_path}")
        return None
    return df[present]


def check_output_mode(
    mode: str, fs: AbstractFileSystem, path: str, append_mode_implemented: bool = False
) -> None:
    """Validate a writer's output mode and prepare its output directory accordingly.

    ``overwrite`` removes an existing directory, ``error`` refuses an existing one, ``append`` needs support
    from the writer; every mode that does not raise leaves the directory in place.
    """
    normalised = mode.strip().lower()
    if normalised not in _ALLOWED_OUTPUT_MODES:
        raise ValueError(f"Invalid mode: {mode!r}. Allowed: {sorted(_ALLOWED_OUTPUT_MODES)}")
    if normalised == "append" and not append_mode_implemented:
        raise NotImplementedError("append mode is not implemented yet")
    if normalised == "error" and fs.exists(path):
        raise FileExistsError(f"Output directory {path} already exists")
    if normalised == "overwrite":
        logger.info(f"Overwriting output directory {path}")
        if fs.exists(path):
            delete_dir(path, fs=fs)
    fs.makedirs(path, exist_ok=True)


def _resolve_fs(
    path: str, fs: AbstractFileSystem | None, storage_options: dict[str, Any] | None
) -> AbstractFileSystem:
    if fs is not None and storage_options is not None:
        raise ValueError("fs and storage_options cannot be provided together")
    if fs is not None:
        return fs
    return url_to_fs(path, **(storage_options or {}))[0]


def delete_dir(
    path: str, fs: AbstractFileSystem | None = None, storage_options: dict[str, Any] | None = None
) -> None:
    """Recursively remove ``path`` if it is a directory; anything else is left alone."""
    fs = _resolve_fs(path, fs, storage_options)
    if fs.isdir(path):
        fs.rm(path, recursive=True)


def is_not_empty(
    path: str, fs: AbstractFileSystem | None = None, storage_options: dict[str, Any] | None = None
) -> bool:
    """True when ``path`` is an existing directory with at least one entry."""
    fs = _resolve_fs(path, fs, storage_options)
    if not fs.exists(path) or not fs.isdir(path):
        return False
    return len(fs.ls(path, detail=False)) > 0


def create_or_overwrite_dir(
    path: str, fs: AbstractFileSystem | None = None, storage_options: dict[str, Any] | None = None
) -> None:
    """Make ``path`` an empty directory, removing whatever it held before."""
    fs = _resolve_fs(path, fs, storage_options)
    if is_not_empty(path, fs=fs):
        logger.warning(f"Output directory {path} is not empty; deleting its contents")
        delete_dir(path, fs=fs)
    fs.makedirs(path, exist_ok=True)


def get_fs(path: str, storage_options: dict[str, Any] | None = None) -> AbstractFileSystem:
    """A filesystem instance for ``path``'s protocol (the local filesystem when there is none)."""
    protocol, _ = split_protocol(path)
    return fsspec.get_filesystem_class(protocol or "file")(**(storage_options or {}))
