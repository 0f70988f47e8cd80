"""The main job: read JSONL -> heuristic quality filters -> content hash -> write Parquet."""

from __future__ import annotations

from nemo_curator.pipeline import Pipeline
from nemo_curator.stages.text.filters import (
    MeanWordLengthFilter,
    NonAlphaNumericFilter,
    RepeatedLinesFilter,
    WordCountFilter,
)
from nemo_curator.stages.text.io.reader import JsonlReader
from nemo_curator.stages.text.io.writer import ParquetWriter
from nemo_curator.stages.text.modifiers import AddContentHash


def build_pipeline(input_dir: str, output_dir: str, files_per_partition: int = 2) -> Pipeline:
    """A curation pipeline as a Curator user writes it; runs unchanged on every executor."""
    return Pipeline(
        name="web_text_curation",
        description="Heuristic quality filtering of web text, with a content hash for later dedup",
        stages=[
            JsonlReader(input_dir, files_per_partition=files_per_partition, fields=["id", "url", "text"]),
            WordCountFilter(min_words=20, max_words=5000),
            MeanWordLengthFilter(min_length=3, max_length=10),
            NonAlphaNumericFilter(max_non_alpha_numeric_ratio=0.25),
            RepeatedLinesFilter(max_repeated_line_fraction=0.3),
            AddContentHash(),
            ParquetWriter(output_dir, mode="overwrite"),
        ],
    )
