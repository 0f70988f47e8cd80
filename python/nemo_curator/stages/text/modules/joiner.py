"""``DocumentJoiner``: joins the segments of each document back into one row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from nemo_curator.stages.base import ProcessingStage
from nemo_curator.tasks import DocumentBatch


@dataclass
class DocumentJoiner(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Joins the ``text_field`` of rows sharing ``document_id_field`` with ``separator``, in
    ``segment_id_field`` order; other columns take the first segment's value (the inverse of
    ``DocumentSplitter``). Rows come out ordered by document id.

    With ``max_length`` and ``length_field`` (both or neither), segments are joined greedily while the
    joined length (``length_field`` values plus separators) stays within ``max_length``; each joined piece
    is a row with renumbered segment ids and its length. Segments of one document must be in one batch.
    """

    separator: str = "\n\n"
    text_field: str = "text"
    segment_id_field: str = "segment_id"
    document_id_field: str = "id"
    drop_segment_id_field: bool = True
    max_length: int | None = None
    length_field: str | None = None
    name: str = "document_joiner"

    def __post_init__(self) -> None:
        if self.max_length is not None and self.length_field is None:
            msg = "max_length is specified but length_field is not"
            raise ValueError(msg)
        if self.max_length is None and self.length_field is not None:
            msg = "length_field is specified but max_length is not"
            raise ValueError(msg)

    def inputs(self) -> tuple[list[str], list[str]]:
        required = [self.text_field, self.segment_id_field, self.document_id_field]
        if self.length_field is not None:
            required.append(self.length_field)
        return ["data"], required

    def outputs(self) -> tuple[list[str], list[str]]:
        produced = [self.text_field, self.document_id_field]
        if not self.drop_segment_id_field:
            produced.append(self.segment_id_field)
        if self.length_field is not None:
            produced.append(self.length_field)
        return ["data"], produced

    def _join_segments(self, group: pd.DataFrame) -> pd.DataFrame:
        """Greedy joining of one document's segments under ``max_length``."""
        assert self.max_length is not None and self.length_field is not None
        rows: list[pd.Series] = []
        current: pd.Series | None = None
        text: Any = None
        length: Any = 0

        def emit() -> None:
            row = current.copy()  # type: ignore[union-attr]
            row[self.text_field] = text
            row[self.length_field] = length
            row[self.segment_id_field] = len(rows)
            rows.append(row)

        for _, row in group.sort_values(self.segment_id_field, kind="stable").iterrows():
            if current is None:
                current, text, length = row.copy(), row[self.text_field], row[self.length_field]
                continue
            proposed = length + row[self.length_field] + len(self.separator)
            if proposed <= self.max_length:
                text = text + self.separator + row[self.text_field]
                length = proposed
            else:
                emit()
                current, text, length = row.copy(), row[self.text_field], row[self.length_field]
        if current is not None:
            emit()
        return pd.DataFrame(rows) if rows else pd.DataFrame(columns=group.columns)

    def process(self, batch: DocumentBatch) -> DocumentBatch:
        df = batch.to_pandas()
        if df.empty:
            return batch
        if self.max_length is None:
            ordered = df.sort_values(self.segment_id_field, kind="stable")
            aggregations: dict[str, Any] = {}
            for column in ordered.columns:
                if column == self.text_field:
                    aggregations[column] = lambda texts: self.separator.join(texts.astype(str))
                elif column != self.document_id_field:
                    aggregations[column] = "first"
            joined = ordered.groupby(self.document_id_field, as_index=False).agg(aggregations)
        else:
            groups = [self._join_segments(group) for _, group in df.groupby(self.document_id_field)]
            joined = pd.concat(groups, ignore_index=True) if groups else pd.DataFrame(columns=df.columns)
        if self.drop_segment_id_field and self.segment_id_field in joined.columns:
            joined = joined.drop(columns=self.segment_id_field)
        return DocumentBatch(
            task_id=f"{batch.task_id}_{self.name}",
            dataset_name=batch.dataset_name,
            data=joined,
            _metadata=batch._metadata,
            _stage_perf=batch._stage_perf,
        )
