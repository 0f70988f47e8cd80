"""Helpers shared by the Ray executors: loguru pickling and executor-config merging."""

from __future__ import annotations

import copy
from typing import Any

from loguru import logger


def register_loguru_serializer() -> None:
    """Let Ray pickle objects holding loguru's logger: it travels as nothing and comes back as the worker's own.

    Call before ``ray.init``.
    """
    import ray

    ray.util.register_serializer(logger.__class__, serializer=lambda _: None, deserializer=lambda _: logger)


def merge_executor_configs(base: dict[str, Any] | None, override: dict[str, Any] | None) -> dict[str, Any]:
    """Deep-merge ``override`` into ``base`` (nested dicts merge, other values replace); inputs are untouched."""
    if base is None and override is None:
        return {}
    if base is None:
        return copy.deepcopy(override)  # type: ignore[arg-type]
    if override is None:
        return copy.deepcopy(base)
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = merge_executor_configs(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _env_vars(config: dict[str, Any] | None) -> dict[str, Any]:
    runtime_env = (config or {}).get("runtime_env") or {}
    return runtime_env.get("env_vars") or {}


def warn_on_env_var_override(existing: dict[str, Any] | None, merged: dict[str, Any] | None) -> None:
    """Warn about ``runtime_env.env_vars`` entries of ``existing`` whose value ``merged`` changes."""
    before = _env_vars(existing)
    after = _env_vars(merged)
    changed = sorted(key for key, value in before.items() if key in after and after[key] != value)
    if changed:
        details = ", ".join(f"{key}: {before[key]!r} -> {after[key]!r}" for key in changed)
        logger.warning(f"Executor config overrides runtime_env env_vars {changed} ({details})")
