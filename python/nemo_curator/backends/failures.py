"""The one error model of every executor: `FailureRecord` (what failed) and `StageFailedError` (the run stops).

A batch whose stage code raised (or whose worker died more often than the retries allow) becomes one
`FailureRecord`. Under `ignore_failures` the executor lists it in `executor.failures` and the run report and
goes on; otherwise it raises `StageFailedError`, whose `failure` is the record. Both pickle, so they cross
process boundaries whole (Ray workers, a driver running on the cluster for a Ray Client user).

Records read like the dicts executors used to hand out (`failure["stage"]`, `failure.get("traceback")`,
`to_dict()`), so code written against those keeps working.
"""

from __future__ import annotations

import traceback as _traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

__all__ = ["FailureKind", "FailureRecord", "StageFailedError", "describe_error", "failure_message"]

#: "user": the stage's own code raised (or returned something that is not a task); "infra": a worker, actor
#: or node died, or a call ran past its timeout.
FailureKind = Literal["user", "infra"]
_KINDS = ("user", "infra")


@dataclass(frozen=True)
class FailureRecord:
    """One failed batch (or one failed setup, with no task ids)."""

    #: Name of the stage that failed ("" when a worker that died may have run several stages).
    stage: str
    #: `task_id`s of the batch's input tasks (any sequence; stored as a tuple).
    task_ids: Sequence[str] = ()
    #: Type name of the original exception (or of the infrastructure error, e.g. "ActorDied").
    error_type: str = ""
    message: str = ""
    #: The original traceback, formatted ("" when there is none, e.g. a worker that died).
    traceback: str = ""
    #: Attempts made, the failed one included.
    attempts: int = 1
    kind: FailureKind = "user"

    def __post_init__(self) -> None:
        if isinstance(self.task_ids, str) or not isinstance(self.task_ids, Sequence):
            raise TypeError(f"FailureRecord task_ids must be a sequence of task ids, got {self.task_ids!r}")
        # A tuple, so the record stays immutable (and hashable) whatever sequence it was given.
        object.__setattr__(self, "task_ids", tuple(str(t) for t in self.task_ids))
        if self.kind not in _KINDS:
            raise ValueError(f"FailureRecord kind must be one of {list(_KINDS)}, got {self.kind!r}")
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"FailureRecord attempts must be an int >= 1, got {self.attempts!r}")

    @classmethod
    def from_exception(
        cls,
        stage: str,
        task_ids: Sequence[str],
        exc: BaseException,
        *,
        attempts: int = 1,
        kind: FailureKind = "user",
    ) -> FailureRecord:
        return cls(stage=stage, task_ids=tuple(task_ids), **describe_error(exc), attempts=attempts, kind=kind)

    @classmethod
    def from_dict(cls, failure: Mapping[str, Any] | FailureRecord) -> FailureRecord:
        """A record from a dict with (at least) `stage`; other known keys are optional, unknown ones
        (e.g. a setup's `phase`) are left out."""
        if isinstance(failure, FailureRecord):
            return failure
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in failure.items() if k in known}
        if "task_ids" in values:
            values["task_ids"] = tuple(values["task_ids"] or ())
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["task_ids"] = list(self.task_ids)
        return out

    def describe(self) -> str:
        """One line: the stage, the task ids, the attempts and the error."""
        where = f" on task(s) {list(self.task_ids)}" if self.task_ids else ""
        after = f" after {self.attempts} attempt(s)" if self.attempts > 1 else ""
        return f"Stage '{self.stage}' failed{where}{after}: {self.error_type}: {self.message}"

    def __str__(self) -> str:
        return f"{self.describe()}\n{self.traceback}".rstrip()

    # Read like the dicts executors handed out before: `failure["task_ids"]` is a list, as it was.
    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        value = getattr(self, key)
        return list(value) if key == "task_ids" else value

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self.keys() else default

    def keys(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self))

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())


class StageFailedError(RuntimeError):
    """A stage's user code raised (and `ignore_failures` is off), or a batch ran out of retries.

    Raised by every executor. The message names the stage, the task ids and the original error with its
    traceback; `failure` is the same as a `FailureRecord` (None only when no batch is to blame, e.g. the
    run was aborted for another reason).
    """

    def __init__(self, message: str, failure: FailureRecord | Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.failure: FailureRecord | None = None if failure is None else FailureRecord.from_dict(failure)

    @classmethod
    def from_record(cls, failure: FailureRecord) -> StageFailedError:
        return cls(str(failure), failure)

    def __reduce__(self) -> tuple[Any, ...]:
        # Crosses process boundaries whole (a driver running on the cluster for a Ray Client user).
        return (type(self), (str(self), self.failure))


def describe_error(exc: BaseException) -> dict[str, str]:
    """`error_type`, `message` and the formatted `traceback` of an exception."""
    return {
        "error_type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(_traceback.format_exception(exc)),
    }


def failure_message(failure: FailureRecord | Mapping[str, Any]) -> str:
    """The message of the `StageFailedError` for `failure`: what failed, then the traceback."""
    return str(FailureRecord.from_dict(failure))
