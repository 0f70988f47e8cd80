"""Value checks shared by the executors' config validation."""

from __future__ import annotations

import math
from typing import Any

# Larger ints are refused: the Rust core counts in 64-bit integers.
_INT_LIMIT = 1 << 62


def is_int(v: Any) -> bool:
    """An int (not a bool) small enough for the core."""
    return isinstance(v, int) and not isinstance(v, bool) and -_INT_LIMIT < v < _INT_LIMIT


def is_number(v: Any) -> bool:
    """A finite int or float (not a bool, not NaN or infinity)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def check_ray_stage(stage: Any, owner: str) -> dict[str, Any]:
    """The stage's `ray_stage_spec()` (a dict); raises for what the Ray executors do not run: RAFT,
    LSH and shuffle stages."""
    from nemo_curator.backends.experimental.utils import RayStageSpecKeys

    spec = stage.ray_stage_spec() or {}
    for key in (
        RayStageSpecKeys.IS_RAFT_ACTOR,
        RayStageSpecKeys.IS_LSH_STAGE,
        RayStageSpecKeys.IS_SHUFFLE_STAGE,
    ):
        if spec.get(key.value) or spec.get(key):
            raise NotImplementedError(
                f"Stage '{stage.name}' sets ray_stage_spec '{key.value}': RAFT, LSH and shuffle stages are "
                f"not supported by {owner}."
            )
    return spec
