"""Helpers that classify storage URLs."""

from __future__ import annotations

from fsspec.core import url_to_fs


def is_remote_url(url: str) -> bool:
    """True unless ``url`` resolves to the local filesystem (plain paths and ``file://`` URLs).

    ``memory://``, ``s3://``, ``gs://`` and every other non-local protocol count as remote.
    """
    fs = url_to_fs(url)[0]
    protocol = fs.protocol
    if isinstance(protocol, (tuple, list)):
        protocol = protocol[0] if protocol else None
    return not (protocol is None or protocol == "file")
