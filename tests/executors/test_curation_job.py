"""The main job (read JSONL -> filters -> hash -> write Parquet) gives identical files on every executor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from nemo_curator.backends.base import BaseExecutor
from nemo_curator.backends.in_process import InProcessExecutor
from nemo_curator.demo.corpus import generate_corpus
from nemo_curator.demo.pipeline import build_pipeline

pytestmark = pytest.mark.usefixtures("ray_session")


def _ray_executors() -> dict[str, BaseExecutor]:
    from nemo_curator.backends.experimental import RayActorPoolExecutor, RayDataExecutor

    return {
        "ray_actor_pool": RayActorPoolExecutor(config={"show_progress": False}),
        "ray_data": RayDataExecutor(),
    }


def _run(executor: BaseExecutor, corpus: Path, out: Path) -> dict[str, list[dict[str, Any]]]:
    results = build_pipeline(str(corpus), str(out), files_per_partition=2).run(executor) or []
    written = sorted(p for t in results for p in t.data)
    assert sorted(str(p) for p in out.glob("*.parquet")) == written
    return {Path(p).name: pq.read_table(p).to_pylist() for p in written}


@pytest.mark.parametrize("name", sorted(_ray_executors()))
def test_curation_job_matches_in_process(tmp_path: Path, name: str) -> None:
    corpus = tmp_path / "corpus"
    generate_corpus(corpus, num_docs=600, num_files=6, seed=3)
    expected = _run(InProcessExecutor(), corpus, tmp_path / "expected")
    got = _run(_ray_executors()[name], corpus, tmp_path / name)
    assert got == expected
    kept = sum(len(rows) for rows in got.values())
    assert 0 < kept < 600  # the filters removed the junk and kept the prose
    assert all(len(r["content_hash"]) == 32 for rows in got.values() for r in rows)
