"""The main job: read JSONL -> heuristic quality filters -> content hash -> write Parquet."""

from __future__ import annotations

from nemo_curator.pipeline import Pipeline
from nemo_curator.stages.text.filters import (
    MeanWordLengthFilter,
    NonAlphaNumericFilter,
    RepeatedLinesFilter,
    WordCountFilter,
)
from nemo_curator.stages.text.hashing import AddContentHash
from nemo_curator.stages.text.io.reader import JsonlReader
from nemo_curator.stages.text.io.writer import ParquetWriter
from nemo_curator.stages.text.modules import ScoreFilter


def build_pipeline(input_dir: str, output_dir: str, files_per_partition: int = 2) -> Pipeline:
    """A curation pipeline as a Curator user writes it; runs unchanged on every executor.

    On the synthetic corpus (``corpus.py``) the filters keep about 73% of the documents: the prose and its
    duplicates (for a later dedup step). They drop the short documents, the boilerplate made of repeated
    lines, the symbol junk and the word salad.
    """
    return Pipeline(
        name="web_text_curation",
        description="Heuristic quality filtering of web text, with a content hash for later dedup",
        stages=[
            JsonlReader(input_dir, files_per_partition=files_per_partition, fields=["id", "url", "text"]),
            ScoreFilter(WordCountFilter(min_words=20, max_words=5000)),
            ScoreFilter(MeanWordLengthFilter(min_mean_word_length=3, max_mean_word_length=10)),
            ScoreFilter(NonAlphaNumericFilter(max_non_alpha_numeric_to_text_ratio=0.25)),
            # Curator's rule: keep documents whose distinct lines are at least 70% of their lines.
            ScoreFilter(RepeatedLinesFilter(max_repeated_line_fraction=0.7)),
            AddContentHash(),
            ParquetWriter(output_dir, mode="overwrite"),
        ],
    )
