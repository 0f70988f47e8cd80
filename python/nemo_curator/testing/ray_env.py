"""One way to get a small local Ray for tests and benchmarks (shared by tests/conftest.py and benches/).

``ensure_local_ray(**options)`` gives a local Ray with those options. A Ray started here earlier with the same
options is reused (starting one costs seconds); a Ray with other options, or one the caller started some other
way, is shut down first. ``address="local"`` always: a fresh instance, never the last cluster that
``ray start`` or ``ray.cluster_utils`` registered in /tmp/ray (on a shared machine, someone else's).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

DEFAULT_NUM_CPUS = 4
DEFAULT_OBJECT_STORE_BYTES = 256 * 2**20

# The options and GCS address of the Ray this module started (None: none).
_started_with: dict[str, Any] | None = None
_started_address: str | None = None


def _current_address() -> str | None:
    import ray

    try:
        ctx = ray.get_runtime_context()
        return f"{ctx.gcs_address}/{ctx.get_node_id()}"
    except Exception:  # not initialised, or a Ray Client connection
        return None


def _options(
    num_cpus: int, num_gpus: int | None, object_store_memory: int | None, extra: dict[str, Any]
) -> dict[str, Any]:
    options: dict[str, Any] = {"num_cpus": num_cpus, **extra}
    # None: Ray's own choice (for scripts that measure with Ray's defaults).
    if object_store_memory is not None:
        options["object_store_memory"] = object_store_memory
    if num_gpus is not None:
        options["num_gpus"] = num_gpus
    return options


def ensure_local_ray(
    num_cpus: int = DEFAULT_NUM_CPUS,
    num_gpus: int | None = None,
    object_store_memory: int | None = DEFAULT_OBJECT_STORE_BYTES,
    **init_kwargs: Any,
) -> None:
    """A local Ray with these resources is initialised when this returns (reused when it already is)."""
    global _started_with, _started_address
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    wanted = _options(num_cpus, num_gpus, object_store_memory, init_kwargs)
    if ray.is_initialized():
        # Reused only if it is still the very session started here (a test may have replaced it).
        if _started_with == wanted and _current_address() == _started_address:
            return
        ray.shutdown()
    _started_with = _started_address = None
    ray.init(address="local", include_dashboard=False, log_to_driver=False, **wanted)
    _started_with, _started_address = wanted, _current_address()


def shutdown_local_ray() -> None:
    """Shut down the Ray that ``ensure_local_ray`` started, if it is still up (other sessions are left alone)."""
    global _started_with, _started_address
    import ray

    if _started_with is not None and ray.is_initialized() and _current_address() == _started_address:
        ray.shutdown()
    _started_with = _started_address = None


@contextmanager
def local_ray(
    num_cpus: int = DEFAULT_NUM_CPUS,
    num_gpus: int | None = None,
    object_store_memory: int | None = DEFAULT_OBJECT_STORE_BYTES,
    **init_kwargs: Any,
) -> Iterator[None]:
    """``ensure_local_ray`` for the block, shut down at its end (for scripts that want no reuse)."""
    ensure_local_ray(num_cpus, num_gpus, object_store_memory, **init_kwargs)
    try:
        yield
    finally:
        shutdown_local_ray()
