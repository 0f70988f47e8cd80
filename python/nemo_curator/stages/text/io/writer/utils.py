"""Naming helpers for writer output files."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

T = TypeVar("T")


def get_deterministic_hash(inputs: Iterable[str], seed: str = "") -> str:
    """The first 12 hex characters of SHA-256 over the sorted inputs and the seed; input order does not matter."""
    payload = "|".join(sorted(inputs)) + "|" + seed
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]


def batched(iterable: Iterable[T], n: int) -> Iterator[tuple[T, ...]]:
    """Yield tuples of at most ``n`` consecutive items."""
    if n < 1:
        raise ValueError("n must be at least one")
    iterator = iter(iterable)
    while chunk := tuple(islice(iterator, n)):
        yield chunk
