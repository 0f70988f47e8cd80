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
