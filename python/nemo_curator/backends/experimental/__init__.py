"""Curator's experimental Ray executors.

Both are resolved on first access, so importing this package does not import Ray Data.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY_EXPORTS = {
    "RayActorPoolExecutor": "nemo_curator.backends.experimental.ray_actor_pool",
    "RayDataExecutor": "nemo_curator.backends.experimental.ray_data",
}

__all__ = ["RayActorPoolExecutor", "RayDataExecutor"]


def __getattr__(name: str) -> Any:
    module_name = _LAZY_EXPORTS.get(name)
    if module_name is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
