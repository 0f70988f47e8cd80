"""File listing, grouping and output-directory helpers shared by the I/O stages.

Paths go through fsspec, so local paths and any fsspec URL (``s3://``, ``gs://``, ``memory://`` ...) work.
Local results are absolute POSIX paths; remote results keep their protocol prefix.
"""

from __future__ import annotations

import os
import pathlib
import tarfile
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import fsspec
from fsspec.core import split_protocol, url_to_fs
from fsspec.utils import infer_storage_options
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


def filter_files_by_extension(files_list: list[str], keep_extensions: str | list[str]) -> list[str]:
    """The files whose name ends with one of ``keep_extensions``, in their original order.

    Extensions may be given with or without the leading dot and may span several suffixes (``"jsonl.gz"``);
    matching is case-sensitive. Logs a warning when at least one file was dropped.
    """
    extensions = [keep_extensions] if isinstance(keep_extensions, str) else list(keep_extensions)
    suffixes = tuple(ext if ext.startswith(".") else f".{ext}" for ext in extensions)
    kept = [name for name in files_list if name.endswith(suffixes)]
    if len(kept) != len(files_list):
        logger.warning(
            f"Skipped {len(files_list) - len(kept)} of {len(files_list)} files whose extension is not "
            f"one of {list(suffixes)}"
        )
    return kept


def infer_protocol_from_paths(paths: Iterable[str]) -> str | None:
    """The protocol of the first non-local path (``"s3"``, ``"gcs"``, ``"abfs"`` ...); ``None`` if all are local.

    Plain paths and ``file://`` / ``local://`` URLs count as local.
    """
    for path in paths:
        protocol = infer_storage_options(path).get("protocol")
        if protocol and protocol not in ("file", "local"):
            return protocol
    return None


def check_disallowed_kwargs(kwargs: dict, disallowed_keys: list[str], raise_error: bool = True) -> None:
    """Refuse reader/writer keyword arguments that a stage sets itself.

    Raises ``ValueError`` naming the offending keys, or only logs a warning when ``raise_error`` is False.
    """
    found = sorted(set(kwargs).intersection(disallowed_keys))
    if not found:
        return
    msg = f"Unsupported keys in kwargs: {', '.join(found)}"
    if raise_error:
        raise ValueError(msg)
    logger.warning(msg)


def _within(path: str, root: str) -> bool:
    """True when the normalised ``path`` is ``root`` or lies below it (both absolute)."""
    return os.path.commonpath([path, root]) == root


def _check_tar_member_names(member: tarfile.TarInfo, archive: str) -> None:
    """Refuse, from the archive's own names, a member that would land or point outside the target directory.

    Member and link names are resolved as strings relative to the target directory (a symlink's target
    relative to the symlink's own directory, a hard link's relative to the archive root), before anything
    is written.
    """
    name = member.name
    root = os.sep + "root"  # a stand-in absolute directory: only the relative structure matters here
    if os.path.isabs(name):
        raise ValueError(f"tar_safe_extract: {archive}: absolute member path not allowed: {name!r}")
    if not _within(os.path.normpath(os.path.join(root, name)), root):
        raise ValueError(f"tar_safe_extract: {archive}: member path escapes the target directory: {name!r}")
    if member.isdev():
        raise ValueError(f"tar_safe_extract: {archive}: device or FIFO member not allowed: {name!r}")
    if member.issym() or member.islnk():
        kind = "symlink" if member.issym() else "hard link"
        link = member.linkname
        if os.path.isabs(link):
            raise ValueError(f"tar_safe_extract: {archive}: {kind} {name!r} has an absolute target {link!r}")
        base = os.path.join(root, os.path.dirname(name)) if member.issym() else root
        if not _within(os.path.normpath(os.path.join(base, link)), root):
            raise ValueError(
                f"tar_safe_extract: {archive}: {kind} {name!r} points outside the target directory ({link!r})"
            )


def _check_tar_member_on_disk(member: tarfile.TarInfo, dest: str, archive: str) -> None:
    """Refuse a member whose location or link target, resolved against what is on disk now, leaves ``dest``.

    Catches what name checks cannot: symlinks extracted earlier (or already present in ``dest``) that
    redirect a later member outside, e.g. ``a -> .`` followed by ``a/b -> ..``.
    """
    parent = os.path.realpath(os.path.join(dest, os.path.dirname(member.name)))
    # A link member replaces whatever is at its own path, so only its directory is resolved; any other
    # member is written through an existing symlink at its path, so that is resolved too.
    if member.issym() or member.islnk():
        location = os.path.join(parent, os.path.basename(member.name))
    else:
        location = os.path.realpath(os.path.join(dest, member.name))
    if not _within(location, dest):
        raise ValueError(
            f"tar_safe_extract: {archive}: member {member.name!r} resolves outside the target directory "
            f"(to {location!r})"
        )
    if member.issym() or member.islnk():
        base = parent if member.issym() else dest
        target = os.path.realpath(os.path.join(base, member.linkname))
        if not _within(target, dest):
            raise ValueError(
                f"tar_safe_extract: {archive}: link {member.name!r} -> {member.linkname!r} resolves outside "
                f"the target directory (to {target!r})"
            )


def tar_safe_extract(tar: tarfile.TarFile, path: str | os.PathLike[str]) -> None:
    """Extract every member of ``tar`` under ``path``, refusing path traversal.

    Raises ``ValueError`` for absolute member paths, members whose path escapes ``path`` (``../``), device
    and FIFO members, and symlinks or hard links whose target is absolute or outside ``path``. Every member
    is checked by name before anything is written, so such an archive extracts nothing; each member is
    checked again against the disk just before it is written (earlier symlinks cannot redirect it).
    """
    archive = tar.name if tar.name is not None else "<tar stream>"
    members = tar.getmembers()
    for member in members:
        _check_tar_member_names(member, str(archive))
    dest = os.path.realpath(os.fspath(path))
    # The standard library's "data" filter repeats the containment checks and drops special permission bits.
    extract_filter: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    for member in members:
        _check_tar_member_on_disk(member, dest, str(archive))
        tar.extract(member, dest, **extract_filter)
