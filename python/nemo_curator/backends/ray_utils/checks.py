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
