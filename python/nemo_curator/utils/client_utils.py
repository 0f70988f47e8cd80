"""Storage helpers: classify URLs, and carry a path together with the filesystem that serves it."""

from __future__ import annotations

from typing import Any

import fsspec
from fsspec.core import url_to_fs


class FSPath:
    """A path on a given fsspec filesystem, openable without knowing which filesystem it lives on.

    Stages that list files through one filesystem (with its credentials) hand these to later stages, which
    then read the file through that same filesystem instance.
    """

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str) -> None:
        self._fs = fs
        self._path = path

    def open(self, mode: str = "rb", **kwargs: Any) -> Any:
        """Open the file through its filesystem (``fs.open(path, mode, **kwargs)``)."""
        return self._fs.open(self._path, mode, **kwargs)

    def __str__(self) -> str:
        return self._path

    def __repr__(self) -> str:
        return f"FSPath({self._path})"

    def as_posix(self) -> str:
        """The path as a URL that names its filesystem: ``"<protocol>://<path>"``.

        Only a filesystem without a protocol, or whose protocol is exactly the string ``"file"``, gives the
        bare path. A filesystem with several protocols uses the first, so fsspec's local filesystem
        (``("file", "local")``) gives ``file://<path>``, which fsspec, pyarrow and ffmpeg all open.
        """
        protocol = getattr(self._fs, "protocol", None)
        if not protocol or protocol == "file":
            return self._path
        if isinstance(protocol, (list, tuple)):
            protocol = protocol[0]
        return f"{protocol}://{self._path}"

    def get_bytes_cat_ranges(self, *, part_size: int = 10 * 1024**2) -> bytes:
        """The whole file's bytes, fetched as ``part_size`` byte ranges in one ``fs.cat_ranges`` call.

        Range reads let object stores serve the parts concurrently; a failed or short range raises.
        """
        if part_size <= 0:
            raise ValueError(f"FSPath.get_bytes_cat_ranges: part_size must be positive, got {part_size}")
        size = self._fs.size(self._path)
        if not size:
            return b""
        starts = list(range(0, size, part_size))
        ends = [min(start + part_size, size) for start in starts]
        blocks = self._fs.cat_ranges([self._path] * len(starts), starts, ends, on_error="raise")
        buffer = bytearray(size)
        for start, end, block in zip(starts, ends, blocks, strict=True):
            if len(block) != end - start:
                # A short range means the object changed or the store misbehaved; never pad it silently.
                raise OSError(
                    f"FSPath.get_bytes_cat_ranges: {self.as_posix()}: range {start}-{end} returned "
                    f"{len(block)} bytes, expected {end - start}"
                )
            buffer[start:end] = block
        return bytes(buffer)


def is_remote_url(url: str) -> bool:
    """True unless ``url`` resolves to the local filesystem (plain paths and ``file://`` URLs).

    ``memory://``, ``s3://``, ``gs://`` and every other non-local protocol count as remote.
    """
    fs = url_to_fs(url)[0]
    protocol = fs.protocol
    if isinstance(protocol, (tuple, list)):
        protocol = protocol[0] if protocol else None
    return not (protocol is None or protocol == "file")
