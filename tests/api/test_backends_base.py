"""nemo_curator.backends.base: NodeInfo, WorkerMetadata, BaseExecutor, BaseStageAdapter, shared checks."""

from __future__ import annotations

import numpy as np
import pytest

from nemo_curator.backends.base import (
    BaseExecutor,
    BaseStageAdapter,
    NodeInfo,
    WorkerMetadata,
    prepare_initial_tasks,
    resolve_batch_size,
    validate_stage_outputs,
    validate_stages,
)
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.tasks import EmptyTask, Task, _EmptyTask
from nemo_curator.testing.stages import (
    AddThenFilterStage,
    BatchRecorderStage,
    FanOutStage,
    FilterEvenStage,
    IntTask,
    PassthroughStage,
    ReturnsNonTaskStage,
    make_int_tasks,
)
from nemo_curator.utils.performance_utils import StagePerfStats


class _Executor(BaseExecutor):
    def execute(self, stages: list[ProcessingStage], initial_tasks: list[Task] | None = None) -> list[Task]:
        return list(initial_tasks or [])


def test_node_info_and_worker_metadata_defaults() -> None:
    assert NodeInfo().node_id == ""
    assert NodeInfo(node_id="n1") == NodeInfo("n1")
    metadata = WorkerMetadata()
    assert (metadata.worker_id, metadata.allocation) == ("", None)
    assert WorkerMetadata(worker_id="w", allocation={"gpu": 0}).allocation == {"gpu": 0}


class TestBaseExecutor:
    def test_is_abstract(self) -> None:
        with pytest.raises(TypeError):
            BaseExecutor()  # type: ignore[abstract]

    def test_config_defaults_to_empty_dict(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("CURATOR_IGNORE_RAY_HEAD_NODE", raising=False)
        executor = _Executor()
        assert executor.config == {}
        assert executor.ignore_head_node is False
        config = {"a": 1}
        assert _Executor(config).config is config
        assert _Executor(None, ignore_head_node=True).ignore_head_node is True

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("1", True),
            ("true", True),
            ("YES", True),
            (" True ", True),
            ("0", False),
            ("no", False),
            ("", False),
        ],
    )
    def test_env_var_turns_on_ignore_head_node(
        self, monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
    ) -> None:
        monkeypatch.setenv("CURATOR_IGNORE_RAY_HEAD_NODE", value)
        assert _Executor().ignore_head_node is expected
        # A falsy env value leaves the argument in charge.
        assert _Executor(ignore_head_node=True).ignore_head_node is True


class TestBaseStageAdapter:
    def test_attaches_one_shared_perf_entry_per_output(self) -> None:
        adapter = BaseStageAdapter(FanOutStage(n=3, name="fan"))
        inputs = make_int_tasks(2)
        outputs = adapter.process_batch(inputs)
        assert [t.task_id for t in outputs] == [f"int_{i}_{j}" for i in range(2) for j in range(3)]
        entries = [t._stage_perf[-1] for t in outputs]
        assert all(len(t._stage_perf) == 1 for t in outputs)
        assert all(entry is entries[0] for entry in entries)
        stats = entries[0]
        assert isinstance(stats, StagePerfStats)
        assert stats.stage_name == "fan"
        assert stats.num_items_processed == 2  # sum of the input batch's num_items
        assert stats.process_time > 0
        assert stats.input_data_size_mb == pytest.approx(2 / 1024 / 1024)
        assert all(t._stage_perf == [] for t in inputs)

    def test_stage_name_attribute_not_class_name(self) -> None:
        outputs = BaseStageAdapter(PassthroughStage().with_(name="renamed")).process_batch(make_int_tasks(1))
        assert outputs[0]._stage_perf[0].stage_name == "renamed"

    def test_custom_metrics_attached_and_consumed(self) -> None:
        stage = BatchRecorderStage(batch_size=2)
        adapter = BaseStageAdapter(stage)
        first = adapter.process_batch(make_int_tasks(2))
        second = adapter.process_batch(make_int_tasks(1))
        assert first[0]._stage_perf[0].custom_metrics == {"batch_tasks": 2.0, "batch_items": 2.0}
        assert second[0]._stage_perf[0].custom_metrics == {"batch_tasks": 1.0, "batch_items": 1.0}
        assert not hasattr(stage, "_custom_metrics")

    def test_none_results_dropped(self) -> None:
        outputs = BaseStageAdapter(FilterEvenStage()).process_batch(make_int_tasks(5))
        assert [t.data for t in outputs] == [1, 3]
        assert isinstance(outputs, list)

    def test_all_filtered_returns_empty_list(self) -> None:
        assert BaseStageAdapter(FanOutStage(n=0)).process_batch(make_int_tasks(3)) == []

    def test_non_task_result_raises_type_error(self) -> None:
        adapter = BaseStageAdapter(ReturnsNonTaskStage(value=42))
        with pytest.raises(TypeError, match=r"Stage 'returns_non_task' returned an object of type int"):
            adapter.process_batch(make_int_tasks(1))

    def test_empty_task_batch(self) -> None:
        outputs = BaseStageAdapter(PassthroughStage()).process_batch([EmptyTask()])
        assert isinstance(outputs[0], _EmptyTask)
        assert outputs[0]._stage_perf[0].num_items_processed == 0

    def test_idle_time_measured_between_batches(self) -> None:
        adapter = BaseStageAdapter(PassthroughStage())
        first = adapter.process_batch(make_int_tasks(1))[0]._stage_perf[0]
        second = adapter.process_batch(make_int_tasks(1))[0]._stage_perf[0]
        assert first.actor_idle_time == 0.0
        assert second.actor_idle_time >= 0.0

    def test_lifecycle_forwarding(self) -> None:
        calls: list[tuple[str, object]] = []

        class _Recorder(PassthroughStage):
            def setup_on_node(
                self, node_info: NodeInfo | None = None, worker_metadata: WorkerMetadata | None = None
            ) -> None:
                calls.append(("setup_on_node", (node_info, worker_metadata)))

            def setup(self, worker_metadata: WorkerMetadata | None = None) -> None:
                calls.append(("setup", worker_metadata))

            def teardown(self) -> None:
                calls.append(("teardown", None))

        adapter = BaseStageAdapter(_Recorder())
        node, worker = NodeInfo("n"), WorkerMetadata("w")
        adapter.setup_on_node(node, worker)
        adapter.setup(worker)
        adapter.teardown()
        assert calls == [("setup_on_node", (node, worker)), ("setup", worker), ("teardown", None)]


class TestValidateStageOutputs:
    def test_flattens_and_drops_none(self) -> None:
        a, b, c = make_int_tasks(3)
        assert validate_stage_outputs("s", [a, None, [b, [None, c]], ()]) == [a, b, c]
        assert validate_stage_outputs("s", None) == []
        assert validate_stage_outputs("s", a) == [a]
        assert validate_stage_outputs("s", (a, b)) == [a, b]
        assert validate_stage_outputs("s", np.array([a, None, b], dtype=object)) == [a, b]
        assert validate_stage_outputs("s", (t for t in [a, c])) == [a, c]

    @pytest.mark.parametrize("bad", ["text", 1.5, {"k": 1}, object()])
    def test_rejects_non_tasks(self, bad: object) -> None:
        task = make_int_tasks(1)[0]
        with pytest.raises(
            TypeError, match=rf"Stage 'my_stage' returned an object of type {type(bad).__name__}"
        ):
            validate_stage_outputs("my_stage", [task, bad])


class TestValidateStages:
    def test_accepts_valid_stages(self) -> None:
        validate_stages([])
        validate_stages([PassthroughStage(), FanOutStage(), BatchRecorderStage(batch_size=None)])

    def test_rejects_non_stage(self) -> None:
        with pytest.raises(TypeError, match=r"Stage 1 is not a ProcessingStage: got str"):
            validate_stages([PassthroughStage(), "nope"])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="list of ProcessingStage"):
            validate_stages(PassthroughStage())  # type: ignore[arg-type]

    def test_rejects_undecomposed_composite(self) -> None:
        with pytest.raises(TypeError, match=r"\('add_then_filter'\) is a CompositeStage"):
            validate_stages([AddThenFilterStage()])

    @pytest.mark.parametrize("bad", [0, -1, 2.0, "3", True])
    def test_rejects_bad_batch_size(self, bad: object) -> None:
        stage = PassthroughStage(name="bad_batch")
        stage.batch_size = bad  # type: ignore[assignment]
        with pytest.raises(ValueError, match=r"Stage 'bad_batch' has invalid batch_size"):
            validate_stages([stage])

    def test_rejects_unknown_ray_stage_spec_key(self) -> None:
        class _BadSpec(PassthroughStage):
            def ray_stage_spec(self) -> dict[str, object]:
                return {"is_actor_stage": True, "not_a_key": 1}

        with pytest.raises(
            ValueError,
            match=r"Invalid key not_a_key in ray_stage_spec for stage .*_BadSpec.*'spec'.*valid keys",
        ):
            validate_stages([_BadSpec(name="spec")])

    def test_accepts_enum_keys(self) -> None:
        from nemo_curator.backends.experimental.utils import RayStageSpecKeys

        class _EnumSpec(PassthroughStage):
            def ray_stage_spec(self) -> dict[str, object]:
                return {RayStageSpecKeys.IS_ACTOR_STAGE: True, RayStageSpecKeys.MAX_WORKERS: 2}

        validate_stages([_EnumSpec()])


class TestResolveBatchSize:
    def test_values(self, caplog: pytest.LogCaptureFixture) -> None:
        assert resolve_batch_size(PassthroughStage()) == 1
        assert resolve_batch_size(BatchRecorderStage(batch_size=64)) == 64
        assert resolve_batch_size(BatchRecorderStage(batch_size=np.int64(3))) == 3  # type: ignore[arg-type]
        caplog.clear()
        assert resolve_batch_size(BatchRecorderStage(batch_size=None)) == 1
        messages = [r.getMessage() for r in caplog.records]
        assert any(m.startswith("batch size not set for stage BatchRecorderStage(") for m in messages)
        assert any(m.endswith("Setting it to 1.") for m in messages)

    def test_invalid(self) -> None:
        with pytest.raises(ValueError, match="'batch_recorder'"):
            resolve_batch_size(BatchRecorderStage(batch_size=0))


class TestPrepareInitialTasks:
    def test_default_is_fresh_empty_task(self) -> None:
        for given in (None, []):
            tasks = prepare_initial_tasks(given)
            assert len(tasks) == 1
            assert isinstance(tasks[0], _EmptyTask) and tasks[0] is not EmptyTask
            assert tasks[0].task_id == "empty"

    def test_passes_tasks_through(self) -> None:
        given = make_int_tasks(3)
        tasks = prepare_initial_tasks(given)
        assert tasks == given and tasks is not given
        assert prepare_initial_tasks(iter(given)) == given

    def test_rejects_non_tasks(self) -> None:
        with pytest.raises(TypeError, match=r"initial_tasks\[1\] is not a Task: got int"):
            prepare_initial_tasks([IntTask("a", "ds", 1), 5])  # type: ignore[list-item]
