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


def merge_executor_configs(
    base_config: dict[str, Any] | None, override_config: dict[str, Any] | None
) -> dict[str, Any]:
    """Deep-merge ``override_config`` into ``base_config`` (nested dicts merge, other values replace);
    inputs are untouched. Parameter names as in Curator (callers pass them by keyword)."""
    if base_config is None and override_config is None:
        return {}
    if base_config is None:
        return copy.deepcopy(override_config)  # type: ignore[arg-type]
    if override_config is None:
        return copy.deepcopy(base_config)
    merged = copy.deepcopy(base_config)
    for key, value in override_config.items():
        if isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = merge_executor_configs(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _env_vars(config: dict[str, Any] | None) -> dict[str, Any]:
    runtime_env = (config or {}).get("runtime_env") or {}
    return runtime_env.get("env_vars") or {}


def warn_on_env_var_override(
    existing_config: dict[str, Any] | None, merged_config: dict[str, Any] | None
) -> None:
    """Warn about ``runtime_env.env_vars`` entries of ``existing_config`` whose value ``merged_config`` changes."""
    before = _env_vars(existing_config)
    after = _env_vars(merged_config)
    changed = sorted(key for key, value in before.items() if key in after and after[key] != value)
    if changed:
        details = ", ".join(f"{key}: {before[key]!r} -> {after[key]!r}" for key in changed)
        logger.warning(f"Executor config overrides runtime_env env_vars {changed} ({details})")
