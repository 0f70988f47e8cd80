"""``DocumentSplitter``: one row per segment of each document."""

from __future__ import annotations

from dataclasses import dataclass

from nemo_curator.stages.base import ProcessingStage
from nemo_curator.tasks import DocumentBatch


@dataclass
class DocumentSplitter(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Splits ``text_field`` on ``separator`` (``str.split``); each piece becomes a row, the other columns
    are copied, and ``segment_id_field`` (appended last) numbers the pieces 0, 1, ... within each document.

    The index is reset. Segments are numbered per original index label, so the input index should be
    unique. ``DocumentJoiner`` reverses the split given a document id column.
    """

    separator: str
    text_field: str = "text"
    segment_id_field: str = "segment_id"
    name: str = "document_splitter"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], [self.text_field]

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], [self.text_field, self.segment_id_field]

    def process(self, batch: DocumentBatch) -> DocumentBatch:
        source = batch.to_pandas()
        pieces = "_split_text"
        # assign() works on a copy: the input batch keeps its columns.
        df = source.assign(**{pieces: source[self.text_field].str.split(self.separator, regex=False)})
        df = df.explode(pieces)
        df[self.segment_id_field] = df.groupby(level=0).cumcount()
        df[self.text_field] = df[pieces]
        df = df.drop(columns=[pieces]).reset_index(drop=True)
        return DocumentBatch(
            task_id=f"{batch.task_id}_{self.name}",
            dataset_name=batch.dataset_name,
            data=df,
            _metadata=batch._metadata,
            _stage_perf=batch._stage_perf,
        )
