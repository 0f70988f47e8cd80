"""nemo_curator.backends.utils: merge_executor_configs, warn_on_env_var_override, register_loguru_serializer."""

from __future__ import annotations

import pytest

from nemo_curator.backends.utils import merge_executor_configs, warn_on_env_var_override


class TestMergeExecutorConfigs:
    def test_none_cases(self) -> None:
        assert merge_executor_configs(None, None) == {}
        override = {"a": {"b": 1}}
        merged = merge_executor_configs(None, override)
        assert merged == override and merged is not override and merged["a"] is not override["a"]
        base = {"x": [1]}
        merged = merge_executor_configs(base, None)
        assert merged == base and merged["x"] is not base["x"]

    def test_deep_merge(self) -> None:
        base = {
            "runtime_env": {"env_vars": {"A": "1", "B": "2"}, "pip": ["x"]},
            "reserved_cpus": 1.0,
            "keep": True,
        }
        override = {"runtime_env": {"env_vars": {"B": "3", "C": "4"}, "pip": ["y"]}, "reserved_cpus": 2.0}
        merged = merge_executor_configs(base, override)
        assert merged == {
            "runtime_env": {"env_vars": {"A": "1", "B": "3", "C": "4"}, "pip": ["y"]},
            "reserved_cpus": 2.0,
            "keep": True,
        }
        # Inputs untouched, and the result shares nothing with them.
        assert base["runtime_env"]["env_vars"] == {"A": "1", "B": "2"}
        assert override["runtime_env"]["env_vars"] == {"B": "3", "C": "4"}
        merged["runtime_env"]["pip"].append("z")
        assert override["runtime_env"]["pip"] == ["y"]

    def test_non_dict_replaces_dict_and_vice_versa(self) -> None:
        assert merge_executor_configs({"a": {"b": 1}}, {"a": 5}) == {"a": 5}
        assert merge_executor_configs({"a": 5}, {"a": {"b": 1}}) == {"a": {"b": 1}}


class TestWarnOnEnvVarOverride:
    def test_warns_listing_changed_keys(self, caplog: pytest.LogCaptureFixture) -> None:
        existing = {"runtime_env": {"env_vars": {"A": "1", "B": "2", "C": "3"}}}
        merged = {"runtime_env": {"env_vars": {"A": "1", "B": "20", "C": "30", "D": "4"}}}
        warn_on_env_var_override(existing, merged)
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 1
        assert "'B'" in warnings[0] and "'C'" in warnings[0]
        assert "'A'" not in warnings[0] and "'D'" not in warnings[0]

    @pytest.mark.parametrize(
        ("existing", "merged"),
        [
            (None, None),
            ({}, {"runtime_env": {"env_vars": {"A": "1"}}}),
            ({"runtime_env": {"env_vars": {"A": "1"}}}, {"runtime_env": {"env_vars": {"A": "1"}}}),
            ({"runtime_env": {}}, {"runtime_env": {"pip": []}}),
        ],
    )
    def test_silent_without_changes(
        self, caplog: pytest.LogCaptureFixture, existing: dict | None, merged: dict | None
    ) -> None:
        warn_on_env_var_override(existing, merged)
        assert not [r for r in caplog.records if r.levelname == "WARNING"]
