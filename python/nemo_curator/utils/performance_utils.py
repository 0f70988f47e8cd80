"""Per-stage performance statistics attached to tasks by the executors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import attrs
from loguru import logger

if TYPE_CHECKING:
    from nemo_curator.stages.base import ProcessingStage

_NUMERIC_FIELDS = ("process_time", "actor_idle_time", "input_data_size_mb", "num_items_processed")


@attrs.define
class StagePerfStats:
    """Statistics of one stage execution over one batch.

    Times are in seconds. ``input_data_size_mb`` is the batch's item count divided by 2**20 (Curator passes an
    item count where the name suggests bytes; kept for compatibility).
    """

    stage_name: str
    process_time: float = 0.0
    actor_idle_time: float = 0.0
    input_data_size_mb: float = 0.0
    num_items_processed: int = 0
    custom_metrics: dict[str, float] = attrs.field(factory=dict)

    def __add__(self, other: StagePerfStats) -> StagePerfStats:
        if not isinstance(other, StagePerfStats):
            return NotImplemented
        custom = dict(self.custom_metrics)
        for key, value in other.custom_metrics.items():
            custom[key] = custom.get(key, 0.0) + value
        return StagePerfStats(
            stage_name=self.stage_name,
            process_time=self.process_time + other.process_time,
            actor_idle_time=self.actor_idle_time + other.actor_idle_time,
            input_data_size_mb=self.input_data_size_mb + other.input_data_size_mb,
            num_items_processed=self.num_items_processed + other.num_items_processed,
            custom_metrics=custom,
        )

    def __radd__(self, other: Any) -> StagePerfStats:
        # `sum(stats)` starts from the integer 0.
        if isinstance(other, int) and other == 0:
            return self
        return self.__add__(other)

    def reset(self) -> None:
        """Zero every counter and drop the custom metrics (the stage name is kept)."""
        self.process_time = 0.0
        self.actor_idle_time = 0.0
        self.input_data_size_mb = 0.0
        self.num_items_processed = 0
        self.custom_metrics = {}

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    def items(self) -> list[tuple[str, float | int]]:
        """The metrics as ``(name, value)`` pairs, without ``stage_name``; custom ones as ``custom.<name>``."""
        pairs: list[tuple[str, float | int]] = [(name, getattr(self, name)) for name in _NUMERIC_FIELDS]
        pairs.extend((f"custom.{key}", value) for key, value in self.custom_metrics.items())
        return pairs


class StageTimer:
    """Times the batches one stage instance processes (one timer per worker)."""

    def __init__(self, stage: ProcessingStage) -> None:
        self._stage_name = str(stage.name)
        self._last_active_time = time.time()
        self._initialized = False
        self._startup_time_s = 0.0
        self._idle_time_s = 0.0
        self._input_data_size_b = 0
        self._num_items = 0
        # Sum of the timed blocks' durations; only the mean per item is ever reported, so a running sum is
        # enough (no per-item list).
        self._process_time_s = 0.0
        self._start = self._last_active_time

    def reinit(self, stage_input_size: int = 1) -> None:
        """Start timing a new batch of ``stage_input_size`` items."""
        self._input_data_size_b = stage_input_size
        self._num_items = 0
        self._process_time_s = 0.0
        self._start = time.time()
        if self._initialized:
            self._idle_time_s = self._start - self._last_active_time
        else:
            self._startup_time_s = self._start - self._last_active_time
            self._idle_time_s = 0.0
            self._initialized = True

    @contextmanager
    def time_process(self, num_items: int = 1) -> Iterator[None]:
        """Time the enclosed block as the processing of ``num_items`` items."""
        started = time.time()
        try:
            yield
        finally:
            self._process_time_s += time.time() - started
            self._num_items += num_items

    def log_stats(self, verbose: bool = False) -> tuple[str, StagePerfStats]:
        """Close the current batch and return ``(stage_name, stats)``."""
        now = time.time()
        stats = StagePerfStats(
            stage_name=self._stage_name,
            process_time=now - self._start,
            actor_idle_time=self._idle_time_s,
            input_data_size_mb=self._input_data_size_b / 1024 / 1024,
            num_items_processed=self._num_items,
        )
        if verbose:
            per_item = self._process_time_s / self._num_items if self._num_items else 0.0
            logger.info(
                f"Stage {self._stage_name}: processed {self._num_items} items in {stats.process_time:.3f}s "
                f"({per_item:.6f}s per item), idle {stats.actor_idle_time:.3f}s, "
                f"startup {self._startup_time_s:.3f}s"
            )
        self._last_active_time = now
        return self._stage_name, stats
