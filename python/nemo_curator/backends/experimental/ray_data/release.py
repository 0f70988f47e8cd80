"""Stage actors of a Ray Data run, killed at once when the run fails or is interrupted.

After an error Ray Data shuts its executor down without force: it drops its actor handles and lets
reference counting end the actors, which takes 10-30 s while result blocks and handles are collected,
and the actors hold their CPUs and GPUs all that time (a notebook that runs again waits for them).
`StageActors` notes the handles of every actor pool while the run goes on, so the driver can kill them
itself when the run did not finish; after a run that finished it just forgets them.
"""

from __future__ import annotations

from typing import Any

import ray
from loguru import logger


class StageActors:
    """Handles of the actors Ray Data's actor pools started for one run."""

    def __init__(self) -> None:
        self._handles: dict[Any, None] = {}

    def note(self, executor: Any) -> None:
        """Record the actors the executor's pools hold now (Ray Data internals; a no-op if they change)."""
        if executor is None:
            return
        try:
            for op in list(executor._topology or {}):
                pool = getattr(op, "_actor_pool", None)
                if pool is None:
                    continue
                for handle in list(pool._running_actors):
                    self._handles[handle] = None
                for handle in list(pool._pending_actors.values()):
                    self._handles[handle] = None
        except Exception as exc:  # pragma: no cover - Ray internals changed
            logger.debug(f"cannot list Ray Data's actors: {exc}")

    def kill(self) -> int:
        """Kill every recorded actor; returns how many."""
        handles = list(self._handles)
        self._handles.clear()
        for handle in handles:
            try:
                ray.kill(handle, no_restart=True)
            except Exception as exc:  # an actor already gone
                logger.debug(f"kill of a stage actor failed: {exc}")
        return len(handles)

    def forget(self) -> None:
        self._handles.clear()
