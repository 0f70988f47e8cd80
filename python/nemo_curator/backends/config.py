"""What every executor config shares: unknown-key errors, value checks that name the key, `runtime_env`.

An executor's settings are a frozen dataclass built on `ExecutorConfig`: `from_dict` refuses unknown keys
(naming them and the valid ones) and runs the subclass's `_check`, which uses the `_require_*` helpers so
that every bad value is a `ValueError` of the same shape: "<Executor> config '<key>' must be <what>, got
<value>".
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any, ClassVar, Self

from loguru import logger

from nemo_curator.backends.ray_utils.checks import is_int, is_number

__all__ = [
    "ExecutorConfig",
    "check_known_keys",
    "config_error",
    "is_int",
    "is_number",
    "parse_runtime_env",
    "per_stage",
]

_NOSET_CUDA = "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"


def check_known_keys(owner: str, given: Iterable[str], known: Iterable[str], *, also: str = "") -> None:
    """`ValueError` naming every key of `given` that is not in `known` and listing the valid ones."""
    valid = sorted(set(known))
    unknown = sorted(set(given) - set(valid), key=str)
    if unknown:
        raise ValueError(f"Unknown {owner} config key(s) {unknown}; valid keys are {valid}{also}")


def config_error(owner: str, key: str, want: str, value: Any) -> ValueError:
    return ValueError(f"{owner} config '{key}' must be {want}, got {value!r}")


def per_stage(key: str, value: Any, stage_names: list[str]) -> list[Any]:
    """Each stage's value of a setting given as one value or a dict of stage name -> value with an optional
    "default" entry (e.g. `call_timeout_s`); a dict naming no stage of the pipeline is an error."""
    if not isinstance(value, dict):
        return [value for _ in stage_names]
    unknown = sorted(set(value) - set(stage_names) - {"default"})
    if unknown:
        raise ValueError(f"{key} names no stage of this pipeline: {unknown}; stages are {stage_names}")
    return [value.get(name, value.get("default")) for name in stage_names]


def parse_runtime_env(runtime_env: Mapping[str, Any] | None) -> dict[str, Any]:
    """Copy of `runtime_env` whose env vars let Ray set `CUDA_VISIBLE_DEVICES` per actor."""
    env = copy.deepcopy(dict(runtime_env or {}))
    env_vars = env.setdefault("env_vars", {})
    if not isinstance(env_vars, dict):
        raise ValueError(f"runtime_env 'env_vars' must be a dict, got {env_vars!r}")
    if _NOSET_CUDA in env_vars:
        logger.warning(
            f"{_NOSET_CUDA} is set in runtime_env; it is overridden so that Ray assigns GPUs to actors."
        )
    env_vars[_NOSET_CUDA] = ""
    return env


class ExecutorConfig:
    """Base of the executors' config dataclasses (`@dataclass(frozen=True)` subclasses).

    Subclasses set `_owner` (the executor's name, for messages) and implement `_check` with the helpers
    below; `from_dict` is the one way to build one from a user's config dict.
    """

    _owner: ClassVar[str] = "executor"

    @classmethod
    def from_dict(cls, config: Mapping[str, Any] | None) -> Self:
        """Validate a user config dict: unknown keys and wrong values are errors that name the key."""
        config = dict(config or {})
        check_known_keys(cls._owner, config, cls.keys())
        out = cls(**config)
        out._check()
        return out

    @classmethod
    def keys(cls) -> list[str]:
        """The config keys (the dataclass fields)."""
        return [f.name for f in fields(cls)]  # type: ignore[arg-type]

    def _check(self) -> None:
        """Raise `ValueError` naming the first bad key; the default accepts everything."""

    # ------------------------------------------------------------------------------------------ helpers
    def _bad(self, key: str, want: str) -> ValueError:
        return config_error(self._owner, key, want, getattr(self, key))

    def _require_bool(self, *keys: str) -> None:
        for key in keys:
            if not isinstance(getattr(self, key), bool):
                raise self._bad(key, "a bool")

    def _require_int(self, *keys: str, low: int, optional: bool = False) -> None:
        """Ints >= `low` (or None, with `optional`)."""
        for key in keys:
            value = getattr(self, key)
            if optional and value is None:
                continue
            if not is_int(value) or value < low:
                want = "a positive int" if low == 1 and optional else f"an int >= {low}"
                raise self._bad(key, want + (" or None" if optional else ""))

    def _require_number(self, *keys: str, low: float, open_low: bool = False, optional: bool = False) -> None:
        """Finite numbers >= `low` (> `low` with `open_low`), or None with `optional`."""
        for key in keys:
            value = getattr(self, key)
            if optional and value is None:
                continue
            if not is_number(value) or (value <= low if open_low else value < low):
                want = f"a number {'>' if open_low else '>='} {low:g}"
                raise self._bad(key, want + (" or None" if optional else ""))

    def _require_per_stage_number(self, key: str) -> None:
        """A number > 0, a dict of stage name -> number > 0 (see `per_stage`), or None."""
        value = getattr(self, key)
        values = list(value.values()) if isinstance(value, dict) else [value]
        names_ok = not isinstance(value, dict) or all(isinstance(k, str) for k in value)
        if value is not None and not (names_ok and all(is_number(v) and v > 0 for v in values)):
            raise self._bad(key, "a number > 0, a dict of stage name -> number > 0, or None")

    def _require_dict(self, key: str, want: str = "a dict") -> None:
        if not isinstance(getattr(self, key), dict):
            raise self._bad(key, want)
