"""The config base every executor config builds on, and the typed failure record (no Ray needed)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

import pytest
from loguru import logger

from nemo_curator.backends.config import ExecutorConfig, check_known_keys, parse_runtime_env
from nemo_curator.backends.experimental.ray_actor_pool.config import ActorPoolConfig
from nemo_curator.backends.experimental.ray_data.config import RayDataConfig
from nemo_curator.backends.failures import FailureRecord, StageFailedError, failure_message
from nemo_curator.backends.xenna.executor import XENNA_DEFAULTS, XennaConfig


@dataclass(frozen=True)
class _ToyConfig(ExecutorConfig):
    _owner = "ToyExecutor"

    flag: bool = False
    count: int = 1
    limit: int | None = None
    rate: float = 1.0
    budget: float | None = None
    env: dict[str, Any] = field(default_factory=dict)

    def _check(self) -> None:
        self._require_bool("flag")
        self._require_int("count", low=0)
        self._require_int("limit", low=1, optional=True)
        self._require_number("rate", low=0.0, open_low=True)
        self._require_number("budget", low=0.0, optional=True)
        self._require_dict("env")


def test_from_dict_builds_the_typed_config() -> None:
    config = _ToyConfig.from_dict({"flag": True, "count": 0, "limit": None, "rate": 0.5, "env": {"a": 1}})
    assert config == _ToyConfig(flag=True, count=0, rate=0.5, env={"a": 1})
    assert _ToyConfig.from_dict(None) == _ToyConfig()
    assert _ToyConfig.keys() == ["flag", "count", "limit", "rate", "budget", "env"]


def test_unknown_keys_are_named_with_the_valid_ones() -> None:
    with pytest.raises(
        ValueError, match=r"Unknown ToyExecutor config key\(s\) \['colour', 'cuont'\]; valid keys"
    ):
        _ToyConfig.from_dict({"cuont": 1, "colour": "red"})
    with pytest.raises(ValueError, match=r"Unknown X config key\(s\) \['b'\]; valid keys are \['a'\]"):
        check_known_keys("X", ["a", "b"], ["a"])
    check_known_keys("X", ["a"], ["a", "c"])  # nothing unknown: no error


@pytest.mark.parametrize(
    ("key", "value", "want"),
    [
        ("flag", 1, "a bool"),
        ("flag", "yes", "a bool"),
        ("count", -1, "an int >= 0"),
        ("count", True, "an int >= 0"),
        ("count", 1.0, "an int >= 0"),
        ("count", 10**30, "an int >= 0"),
        ("limit", 0, "a positive int or None"),
        ("rate", 0, "a number > 0"),
        ("rate", float("nan"), "a number > 0"),
        ("rate", float("inf"), "a number > 0"),
        ("rate", "1", "a number > 0"),
        ("budget", -0.5, "a number >= 0 or None"),
        ("env", [], "a dict"),
    ],
)
def test_bad_values_name_the_key_and_what_it_must_be(key: str, value: Any, want: str) -> None:
    with pytest.raises(ValueError) as info:
        _ToyConfig.from_dict({key: value})
    assert str(info.value) == f"ToyExecutor config '{key}' must be {want}, got {value!r}"


def test_the_executor_configs_share_the_base() -> None:
    for cls, owner in ((ActorPoolConfig, "RayActorPoolExecutor"), (RayDataConfig, "RayDataExecutor")):
        assert issubclass(cls, ExecutorConfig)
        with pytest.raises(ValueError, match=rf"{owner} config 'max_retries' must be an int >= 0, got -1"):
            cls.from_dict({"max_retries": -1})
        with pytest.raises(ValueError, match=rf"Unknown {owner} config key\(s\) \['nope'\]"):
            cls.from_dict({"nope": 1})
    assert issubclass(XennaConfig, ExecutorConfig)
    assert XENNA_DEFAULTS == {
        "logging_interval": 60,
        "ignore_failures": False,
        "execution_mode": "streaming",
        "cpu_allocation_percentage": 0.95,
        "autoscale_interval_s": 180,
        "max_workers_per_stage": None,
    }
    with pytest.raises(
        ValueError, match=r"'cpu_allocation_percentage' must be a number > 0 and <= 1, got 1.5"
    ):
        XennaConfig.from_dict({"cpu_allocation_percentage": 1.5})
    with pytest.raises(ValueError, match=r"'execution_mode' must be one of \['streaming', 'batch'\]"):
        XennaConfig.from_dict({"execution_mode": "eager"})


def test_runtime_env_gets_the_cuda_setting_on_a_copy() -> None:
    given = {"pip": ["x"], "env_vars": {"A": "1"}}
    env = parse_runtime_env(given)
    assert env == {"pip": ["x"], "env_vars": {"A": "1", "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": ""}}
    assert given == {"pip": ["x"], "env_vars": {"A": "1"}}  # the caller's dict is untouched
    assert parse_runtime_env(None) == {"env_vars": {"RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": ""}}
    warnings: list[str] = []
    handler = logger.add(lambda m: warnings.append(str(m)), level="WARNING", format="{message}")
    try:
        env = parse_runtime_env({"env_vars": {"RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES": "1"}})
    finally:
        logger.remove(handler)
    assert env["env_vars"]["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"] == ""
    assert any("overridden" in w for w in warnings)
    with pytest.raises(ValueError, match="env_vars"):
        parse_runtime_env({"env_vars": ["A=1"]})


# ------------------------------------------------------------------------------------------ failure record
def test_failure_record_is_typed_and_reads_like_a_dict() -> None:
    record = FailureRecord.from_exception(
        "clean", ["a", "b"], ValueError("bad row"), attempts=2, kind="infra"
    )
    assert (record.stage, record.task_ids, record.error_type, record.message) == (
        "clean",
        ("a", "b"),
        "ValueError",
        "bad row",
    )
    assert record["task_ids"] == ["a", "b"] and record["attempts"] == 2 and record.get("missing", 7) == 7
    assert dict(record) == record.to_dict() and "kind" in record
    with pytest.raises(KeyError):
        record["missing"]
    assert (
        record.describe()
        == "Stage 'clean' failed on task(s) ['a', 'b'] after 2 attempt(s): ValueError: bad row"
    )
    assert failure_message(record.to_dict()) == str(record)
    # A dict with extra keys (a setup's "phase") becomes a record without them.
    from_dict = FailureRecord.from_dict({**record.to_dict(), "phase": "setup"})
    assert from_dict == record and FailureRecord.from_dict(record) is record
    assert pickle.loads(pickle.dumps(record)) == record and hash(record) == hash(from_dict)


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"stage": "s", "task_ids": "t1"}, "task_ids"),
        ({"stage": "s", "kind": "other"}, "kind"),
        ({"stage": "s", "attempts": 0}, "attempts"),
    ],
)
def test_failure_record_rejects_bad_values(values: dict[str, Any], problem: str) -> None:
    with pytest.raises((TypeError, ValueError), match=problem):
        FailureRecord(**values)


def test_stage_failed_error_holds_a_record_and_pickles() -> None:
    error = StageFailedError(
        "it broke", {"stage": "s", "task_ids": ["t1"], "error_type": "E", "message": "m"}
    )
    assert isinstance(error.failure, FailureRecord) and error.failure.task_ids == ("t1",)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is StageFailedError and str(copy) == "it broke" and copy.failure == error.failure
    assert StageFailedError("no batch to blame").failure is None
