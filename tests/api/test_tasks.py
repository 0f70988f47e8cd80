"""nemo_curator.tasks: Task, EmptyTask, DocumentBatch, FileGroupTask, AudioBatch, ImageBatch, TaskPerfUtils."""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from nemo_curator.tasks import (
    AudioBatch,
    DocumentBatch,
    EmptyTask,
    FileGroupTask,
    ImageBatch,
    ImageObject,
    Task,
    _EmptyTask,
)
from nemo_curator.tasks.utils import TaskPerfUtils
from nemo_curator.utils.performance_utils import StagePerfStats


@dataclasses.dataclass
class _ListTask(Task[list[int]]):
    data: list[int] = dataclasses.field(default_factory=list)
    validated: int = 0

    @property
    def num_items(self) -> int:
        return len(self.data)

    def validate(self) -> bool:
        self.validated += 1
        return True


class _CustomInitTask(Task[str]):
    def __init__(self, task_id: str, payload: str) -> None:
        super().__init__(task_id=task_id, dataset_name="custom", data=payload)

    @property
    def num_items(self) -> int:
        return len(self.data)

    def validate(self) -> bool:
        return True


class TestTask:
    def test_is_dataclass_with_exact_field_order(self) -> None:
        names = [f.name for f in dataclasses.fields(Task)]
        assert names == ["task_id", "dataset_name", "data", "_stage_perf", "_metadata", "_uuid"]
        uuid_field = next(f for f in dataclasses.fields(Task) if f.name == "_uuid")
        assert uuid_field.init is False

    def test_is_abstract(self) -> None:
        with pytest.raises(TypeError):
            Task("a", "b", None)  # type: ignore[abstract]

    def test_positional_construction_and_defaults(self) -> None:
        task = _ListTask("t1", "ds", [1, 2, 3])
        assert (task.task_id, task.dataset_name, task.data) == ("t1", "ds", [1, 2, 3])
        assert task._stage_perf == []
        assert task._metadata == {}
        assert task.num_items == 3

    def test_defaults_are_not_shared(self) -> None:
        a, b = _ListTask("a", "ds"), _ListTask("b", "ds")
        a._metadata["k"] = 1
        a._stage_perf.append(StagePerfStats("s"))
        assert b._metadata == {} and b._stage_perf == []

    def test_post_init_calls_validate(self) -> None:
        assert _ListTask("t", "ds").validated == 1

    def test_uuid_unique_per_instance(self) -> None:
        uuids = {_ListTask(f"t{i}", "ds")._uuid for i in range(50)}
        assert len(uuids) == 50

    def test_uuid_not_an_init_argument(self) -> None:
        with pytest.raises(TypeError):
            _ListTask("t", "ds", [], _uuid="x")  # type: ignore[call-arg]

    def test_add_stage_perf_appends(self) -> None:
        task = _ListTask("t", "ds")
        first, second = StagePerfStats("a"), StagePerfStats("b")
        task.add_stage_perf(first)
        task.add_stage_perf(second)
        assert task._stage_perf == [first, second]
        assert task._stage_perf[0] is first

    def test_repr(self) -> None:
        assert repr(_CustomInitTask("t7", "xyz")) == "_CustomInitTask(task_id=t7, dataset_name=custom)"
        assert str(_CustomInitTask("t7", "xyz")) == "_CustomInitTask(task_id=t7, dataset_name=custom)"

    def test_subclass_with_own_init(self) -> None:
        task = _CustomInitTask("id1", "hello")
        assert task.data == "hello" and task.num_items == 5
        assert task._stage_perf == [] and task._metadata == {} and task._uuid

    def test_pickle_round_trip(self) -> None:
        task = _ListTask("t", "ds", [1])
        task._metadata["k"] = "v"
        task.add_stage_perf(StagePerfStats("s", process_time=1.5))
        clone = pickle.loads(pickle.dumps(task))
        assert clone.task_id == "t" and clone.data == [1] and clone._metadata == {"k": "v"}
        assert clone._stage_perf == [StagePerfStats("s", process_time=1.5)]
        assert clone._uuid == task._uuid


class TestEmptyTask:
    def test_singleton_instance(self) -> None:
        assert isinstance(EmptyTask, _EmptyTask)
        assert isinstance(EmptyTask, Task)
        assert EmptyTask.task_id == "empty"
        assert EmptyTask.dataset_name == "empty"
        assert EmptyTask.data is None
        assert EmptyTask.num_items == 0
        assert EmptyTask.validate() is True
        assert [EmptyTask][0] is EmptyTask

    def test_calling_returns_fresh_empty_task(self) -> None:
        fresh = EmptyTask()
        assert isinstance(fresh, _EmptyTask)
        assert fresh is not EmptyTask
        assert fresh.task_id == "empty" and fresh.dataset_name == "empty" and fresh.data is None
        assert fresh._uuid != EmptyTask._uuid
        fresh._stage_perf.append(StagePerfStats("s"))
        fresh._metadata["x"] = 1
        assert EmptyTask._stage_perf == [] and EmptyTask._metadata == {}
        assert EmptyTask() is not EmptyTask()
        assert isinstance(fresh(), _EmptyTask)

    def test_repr(self) -> None:
        assert repr(EmptyTask) == "_EmptyTask(task_id=empty, dataset_name=empty)"


class TestDocumentBatch:
    def test_default_data_is_empty_table(self) -> None:
        batch = DocumentBatch("d", "ds")
        assert isinstance(batch.data, pa.Table)
        assert batch.num_items == 0

    def test_pyarrow_and_pandas_conversions(self) -> None:
        table = pa.table({"text": ["a", "bb"], "n": [1, 2]})
        batch = DocumentBatch("d", "ds", table)
        assert batch.to_pyarrow() is table
        df = batch.to_pandas()
        assert isinstance(df, pd.DataFrame) and list(df["text"]) == ["a", "bb"]
        pandas_batch = DocumentBatch("p", "ds", df)
        assert pandas_batch.to_pandas() is df
        assert pandas_batch.to_pyarrow().column("n").to_pylist() == [1, 2]
        assert batch.num_items == pandas_batch.num_items == 2
        assert batch.get_columns() == ["text", "n"]
        assert pandas_batch.get_columns() == ["text", "n"]

    def test_other_types_raise_type_error(self) -> None:
        batch = DocumentBatch("d", "ds", {"text": ["a"]})  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            batch.to_pyarrow()
        with pytest.raises(TypeError):
            batch.to_pandas()
        with pytest.raises(TypeError):
            batch.get_columns()

    def test_validate(self, caplog: pytest.LogCaptureFixture) -> None:
        assert DocumentBatch("ok", "ds", pa.table({"a": [1]})).validate() is True
        caplog.clear()
        assert DocumentBatch("empty", "ds", pa.table({"a": pa.array([], pa.int64())})).validate() is False
        assert any(r.levelname == "WARNING" for r in caplog.records)
        caplog.clear()
        no_columns = DocumentBatch("nocols", "ds", pd.DataFrame(index=[0, 1]))
        assert no_columns.validate() is False
        assert any(r.levelname == "WARNING" for r in caplog.records)
        # Never raises, even for unusable data.
        assert DocumentBatch("weird", "ds", 42).validate() is False  # type: ignore[arg-type]

    def test_repr_is_compact(self) -> None:
        batch = DocumentBatch("d1", "ds", pa.table({"a": list(range(1000))}))
        assert repr(batch) == "DocumentBatch(task_id=d1, dataset_name=ds)"


class TestFileGroupTask:
    def test_fields_and_defaults(self) -> None:
        task = FileGroupTask("f", "ds", ["a.jsonl", "b.jsonl"])
        assert task.num_items == 2
        assert task.reader_config == {}
        assert FileGroupTask("g", "ds", ["x"], reader_config={"k": 1}).reader_config == {"k": 1}
        names = [f.name for f in dataclasses.fields(FileGroupTask)]
        assert names[:3] == ["task_id", "dataset_name", "data"] and "reader_config" in names

    def test_validate(self, caplog: pytest.LogCaptureFixture) -> None:
        assert FileGroupTask("f", "ds", ["a"]).validate() is True
        caplog.clear()
        empty = FileGroupTask("f", "ds", [])
        assert empty.validate() is False
        assert any(r.levelname == "WARNING" for r in caplog.records)
        with pytest.raises(TypeError):
            FileGroupTask("f", "ds", "a.jsonl")  # type: ignore[arg-type]

    def test_deterministic_id(self) -> None:
        paths = ["b.jsonl", "a.jsonl"]
        expected = hashlib.sha256(b"a.jsonl|b.jsonl|").hexdigest()[:12]
        assert FileGroupTask("x", "ds", paths).get_deterministic_id() == expected
        assert FileGroupTask("y", "ds", list(reversed(paths))).get_deterministic_id() == expected


class TestOtherTaskTypes:
    def test_audio_batch(self, tmp_path: Path) -> None:
        audio = tmp_path / "a.wav"
        audio.write_bytes(b"")
        single = AudioBatch("a", "ds", {"path": str(audio)}, filepath_key="path")
        assert single.data == [{"path": str(audio)}] and single.num_items == 1
        assert single.validate() is True
        missing = AudioBatch("b", "ds", [{"path": str(audio) + ".missing"}], filepath_key="path")
        assert missing.validate() is False
        assert AudioBatch("c", "ds").num_items == 0

    def test_image_batch(self) -> None:
        batch = ImageBatch("i", "ds", [ImageObject(image_path="x.jpg", image_id="x")])
        assert batch.num_items == 1 and batch.validate() is True
        assert ImageBatch("j", "ds").data == []
        assert ImageObject().metadata == {}


class TestTaskPerfUtils:
    @staticmethod
    def _task(*stats: StagePerfStats) -> _ListTask:
        task = _ListTask("t", "ds")
        for s in stats:
            task.add_stage_perf(s)
        return task

    def test_collect_stage_metrics(self) -> None:
        tasks = [
            self._task(
                StagePerfStats("a", process_time=1.0, num_items_processed=2, custom_metrics={"m": 3.0}),
                StagePerfStats("b", process_time=0.5),
            ),
            self._task(StagePerfStats("a", process_time=3.0, num_items_processed=4, custom_metrics={"m": 1})),
        ]
        metrics = TaskPerfUtils.collect_stage_metrics(tasks)
        assert set(metrics) == {"a", "b"}
        assert set(metrics["a"]) == {
            "process_time",
            "actor_idle_time",
            "input_data_size_mb",
            "num_items_processed",
            "custom.m",
        }
        np.testing.assert_array_equal(metrics["a"]["process_time"], [1.0, 3.0])
        np.testing.assert_array_equal(metrics["a"]["num_items_processed"], [2.0, 4.0])
        np.testing.assert_array_equal(metrics["a"]["custom.m"], [3.0, 1.0])
        assert metrics["a"]["num_items_processed"].dtype == np.float64
        assert "custom.m" not in metrics["b"]

    def test_aggregate_task_metrics(self) -> None:
        tasks = [
            self._task(StagePerfStats("a", process_time=1.0)),
            self._task(StagePerfStats("a", process_time=3.0)),
        ]
        agg = TaskPerfUtils.aggregate_task_metrics(tasks)
        assert agg["a_process_time_sum"] == pytest.approx(4.0)
        assert agg["a_process_time_mean"] == pytest.approx(2.0)
        assert agg["a_process_time_std"] == pytest.approx(1.0)
        assert agg["a_num_items_processed_sum"] == 0.0
        assert all(isinstance(v, float) for v in agg.values())
        prefixed = TaskPerfUtils.aggregate_task_metrics(tasks, prefix="run1")
        assert prefixed["run1_a_process_time_sum"] == pytest.approx(4.0)
        assert set(prefixed) == {f"run1_{k}" for k in agg}

    def test_no_tasks(self) -> None:
        assert TaskPerfUtils.collect_stage_metrics([]) == {}
        assert TaskPerfUtils.aggregate_task_metrics([]) == {}
