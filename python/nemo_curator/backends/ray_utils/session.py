"""Use the caller's Ray session when there is one; otherwise start (or connect) and clean up only that."""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any

import ray
from loguru import logger

from nemo_curator.backends.utils import register_loguru_serializer


class RaySession:
    """Context manager around `ray.init`.

    - Ray already initialised by the caller: reused as is, never shut down.
    - `RAY_ADDRESS` set: connects to that cluster and disconnects at exit.
    - Otherwise: starts a local Ray and shuts it down at exit.
    """

    def __init__(self, runtime_env: dict[str, Any] | None = None, **init_kwargs: Any) -> None:
        self._runtime_env = runtime_env
        self._init_kwargs = init_kwargs
        self.started = False

    def __enter__(self) -> RaySession:
        # Stages that hold a loguru logger must stay picklable for the workers.
        register_loguru_serializer()
        if ray.is_initialized():
            return self
        kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": True, **self._init_kwargs}
        if self._runtime_env:
            kwargs["runtime_env"] = self._runtime_env
        address = os.environ.get("RAY_ADDRESS")
        if address:
            logger.info(f"Connecting to the Ray cluster at {address}")
            kwargs["address"] = address
        else:
            logger.info("Starting a local Ray instance")
            kwargs.setdefault("include_dashboard", False)
        ray.init(**kwargs)
        self.started = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.started:
            ray.shutdown()
            self.started = False


def _client_address() -> str | None:
    address = os.environ.get("RAY_ADDRESS", "")
    return address if address.startswith("ray://") else None


def _client_connected() -> bool:
    try:
        return bool(ray.util.client.ray.is_connected())
    except Exception:  # pragma: no cover - depends on Ray internals
        return False


# What a run leaves on its executor for the caller to read.
_RUN_RESULTS = ("failures", "last_run", "last_run_stats")


@ray.remote(num_cpus=0)
def _execute_on_cluster(executor: Any, stages: Any, initial_tasks: Any) -> tuple[Any, dict[str, Any]]:
    out = executor.execute(stages, initial_tasks)
    return out, {k: getattr(executor, k) for k in _RUN_RESULTS if hasattr(executor, k)}


def execute_through_client(executor: Any, stages: Any, initial_tasks: Any) -> Any:
    """Through Ray Client (`ray.init("ray://...")`, or `RAY_ADDRESS=ray://...`) the driver loop cannot run on
    the client (no streaming generators, no object-ref iteration there): run the executor in a task on the
    cluster that needs no resources of its own, and hand back its results. Returns `NotImplemented` when
    the session is not a Ray Client one, so the caller runs the pipeline itself."""
    address = None if ray.is_initialized() else _client_address()
    if address is None and not _client_connected():
        return NotImplemented
    if address is not None:
        logger.info(f"Connecting to the Ray cluster at {address} (Ray Client): the run's driver runs there")
        ray.init(address)
    try:
        out, results = ray.get(_execute_on_cluster.remote(executor, stages, initial_tasks))
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from None
        raise
    finally:
        if address is not None:
            ray.shutdown()
    for key, value in results.items():
        setattr(executor, key, value)
    return out
