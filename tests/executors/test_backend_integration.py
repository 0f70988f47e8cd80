"""One JSONL job through every Ray executor, Curator's integration cases included (XennaExecutor in
"batch" and "streaming" mode, RayDataExecutor, RayActorPoolExecutor): files written, tasks returned, perf
stats per stage, custom metrics, and how often each stage was called (counted in a named Ray actor).

Pipeline: JsonlReader (file partitioning + reading, 2 files per partition) -> add a length column ->
split into one-row batches -> add a second length column -> a stage with setup -> JsonlWriter.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import ray

from nemo_curator.backends.base import BaseExecutor
from nemo_curator.pipeline import Pipeline
from nemo_curator.stages.text.io.reader import JsonlReader
from nemo_curator.stages.text.io.writer import JsonlWriter
from nemo_curator.tasks import FileGroupTask
from nemo_curator.tasks.utils import TaskPerfUtils
from nemo_curator.testing.stages import CallCounter, CountedAddLengthStage, SplitIntoRowsStage, StageWithSetup

pytestmark = pytest.mark.usefixtures("ray_session")

NUM_FILES = 5
DOCS_PER_FILE = 3
FILES_PER_PARTITION = 2
TOTAL_DOCS = NUM_FILES * DOCS_PER_FILE
STAGE_NAMES = [
    "jsonl_reader",
    "add_length",
    "split_into_rows",
    "add_length",
    "stage_with_setup",
    "jsonl_writer",
]


def _executor(name: str) -> BaseExecutor:
    from nemo_curator.backends.experimental import RayActorPoolExecutor, RayDataExecutor
    from nemo_curator.backends.xenna import XennaExecutor

    return {
        "xenna_batch": lambda: XennaExecutor({"execution_mode": "batch"}),
        "xenna_streaming": lambda: XennaExecutor({"execution_mode": "streaming"}),
        "ray_data": lambda: RayDataExecutor(),
        "ray_actor_pool": lambda: RayActorPoolExecutor(),
    }[name]()


@pytest.fixture(scope="module", params=["xenna_batch", "xenna_streaming", "ray_data", "ray_actor_pool"])
def run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, ray_session: None
) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp(request.param)
    input_dir, output_dir = tmp / "input", tmp / "output"
    input_dir.mkdir()
    for f in range(NUM_FILES):
        rows = [{"id": f"doc_{f}_{i}", "text": "word " * (f + i + 1)} for i in range(DOCS_PER_FILE)]
        pd.DataFrame(rows).to_json(input_dir / f"part_{f}.jsonl", orient="records", lines=True)
    counter = (
        ray.remote(CallCounter).options(name="stage_call_counter", namespace="stage_call_counter").remote()
    )
    pipeline = Pipeline(
        name="integration",
        stages=[
            JsonlReader(str(input_dir), files_per_partition=FILES_PER_PARTITION, fields=["id", "text"]),
            CountedAddLengthStage(output_column="doc_length_1"),
            SplitIntoRowsStage(),
            CountedAddLengthStage(output_column="doc_length_2"),
            StageWithSetup(marker_dir=str(tmp / "markers")),
            JsonlWriter(str(output_dir)),
        ],
    )
    tasks = pipeline.run(_executor(request.param))
    counts = ray.get(counter.counts.remote())
    ray.kill(counter)
    yield {"tasks": tasks or [], "output_dir": output_dir, "counts": counts}


def test_one_file_per_document_with_every_column(run: dict[str, Any]) -> None:
    files = sorted(Path(run["output_dir"]).glob("*.jsonl"))
    assert len(files) == TOTAL_DOCS
    ids = set()
    for path in files:
        lines = path.read_text().splitlines()
        assert len(lines) == 1
        row = json.loads(lines[0])
        assert set(row) == {"id", "text", "doc_length_1", "doc_length_2"}
        assert row["doc_length_1"] == row["doc_length_2"] == len(row["text"])
        ids.add(row["id"])
    assert ids == {f"doc_{f}_{i}" for f in range(NUM_FILES) for i in range(DOCS_PER_FILE)}


def test_output_tasks(run: dict[str, Any]) -> None:
    tasks = run["tasks"]
    assert len(tasks) == TOTAL_DOCS
    assert all(isinstance(t, FileGroupTask) for t in tasks)
    assert len({t.task_id for t in tasks}) == TOTAL_DOCS
    assert len({t.dataset_name for t in tasks}) == 1


def test_perf_stats_per_stage(run: dict[str, Any]) -> None:
    for task in run["tasks"]:
        perf = task._stage_perf
        assert [p.stage_name for p in perf] == STAGE_NAMES
        assert all(p.process_time > 0 for p in perf)
        # The first length and the split see the whole partition; after the split, one row each.
        assert perf[1].num_items_processed == perf[2].num_items_processed > 1
        assert perf[3].num_items_processed == perf[4].num_items_processed == perf[5].num_items_processed == 1


def test_custom_metrics_are_collected(run: dict[str, Any]) -> None:
    metrics = TaskPerfUtils.collect_stage_metrics(run["tasks"])
    for stage in metrics.values():
        assert (stage["process_time"] > 0).all()
    assert (metrics["add_length"]["custom.counter_actor_increment_s"] > 0).all()
    assert (metrics["add_length"]["custom.compute_len_s"] > 0).all()


def test_each_stage_is_called_once_per_batch(run: dict[str, Any]) -> None:
    assert run["counts"] == {
        "add_length_doc_length_1": math.ceil(NUM_FILES / FILES_PER_PARTITION),
        "add_length_doc_length_2": TOTAL_DOCS,
    }
