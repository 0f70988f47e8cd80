"""``Score``, ``Filter`` and ``ScoreFilter``: apply ``DocumentFilter``s (or plain functions) to a batch.

Semantics are Curator 1.1.0's: per function, in order, ``Score`` adds a score column, ``Filter`` drops the
rows whose existing column fails the keep rule, and ``ScoreFilter`` does both (the score column only when
``score_field`` is given). A pandas batch stays pandas, with its original index kept and the score columns
also set on the input frame, as in Curator. A pyarrow batch stays pyarrow (Curator would hand back pandas).

Speed: when a ``DocumentFilter`` defines ``score_column``/``keep_column`` (see its docstring), the whole
column is scored at once on Arrow instead of one Python call per row; results are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from loguru import logger

from nemo_curator.stages.base import ProcessingStage
from nemo_curator.stages.text.filters.doc_filter import DocumentFilter, vectorised_keeper, vectorised_scorer
from nemo_curator.tasks import DocumentBatch

if TYPE_CHECKING:
    from nemo_curator.backends.base import NodeInfo, WorkerMetadata

_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)


# ---------------------------------------------------------------------------------------------------------
# Scoring and keeping one column


def _arrow_texts(values: pd.Series | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray | None:
    """``values`` as a null-free Arrow string array, or ``None`` if they are not all strings."""
    if isinstance(values, pd.Series):
        try:
            values = pa.array(values)
        except _ARROW_ERRORS:
            return None
    kind = values.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)):
        return None
    return values if values.null_count == 0 else None


def _as_series(values: pd.Series | pa.ChunkedArray) -> pd.Series:
    return values if isinstance(values, pd.Series) else values.to_pandas()


def _score(fn: DocumentFilter | Callable, values: pd.Series | pa.ChunkedArray) -> pd.Series:
    """The scores of ``values`` (``Series.apply`` of the score function), vectorised when possible."""
    scorer = vectorised_scorer(fn) if isinstance(fn, DocumentFilter) else None
    if scorer is not None and len(values):
        texts = _arrow_texts(values)
        result = scorer(texts) if texts is not None else None
        if result is not None:
            array = (
                result.to_numpy(zero_copy_only=False)
                if isinstance(result, pa.Array | pa.ChunkedArray)
                else result
            )
            index = values.index if isinstance(values, pd.Series) else None
            return pd.Series(np.asarray(array), index=index)
    series = _as_series(values)
    return series.apply(fn.score_document if isinstance(fn, DocumentFilter) else fn)


def _keep(fn: DocumentFilter | Callable, values: pd.Series, invert: bool) -> pd.Series:
    """The keep mask of ``values`` (``Series.apply`` of the keep function, then ``~`` if ``invert``)."""
    keeper = vectorised_keeper(fn) if isinstance(fn, DocumentFilter) else None
    if keeper is not None and isinstance(values.dtype, np.dtype) and values.dtype.kind in "biuf":
        mask = pd.Series(np.asarray(keeper(values.to_numpy()), dtype=bool), index=values.index)
    else:
        mask = values.apply(fn.keep_document if isinstance(fn, DocumentFilter) else fn)
    if len(mask) == 0:
        # An empty apply has no result type to infer; an empty boolean mask selects nothing either way.
        mask = mask.astype(bool)
    return ~mask if invert else mask


def _mask_array(mask: pd.Series, stage: str) -> np.ndarray:
    if mask.dtype == bool:
        return mask.to_numpy()
    values = mask.to_numpy()
    if all(isinstance(value, bool | np.bool_) for value in values):
        return values.astype(bool)
    msg = f"Stage {stage}: the keep function must return booleans, got values of dtype {mask.dtype}"
    raise TypeError(msg)


class _Frame:
    """The batch data a stage works on: the pandas frame itself, or a pyarrow table kept as Arrow.

    Arrow data falls back to pandas (``table.to_pandas()``) if a score column has no Arrow type.
    """

    def __init__(self, data: pd.DataFrame | pa.Table) -> None:
        self.data = data

    @property
    def is_pandas(self) -> bool:
        return isinstance(self.data, pd.DataFrame)

    def __len__(self) -> int:
        return len(self.data)

    def column(self, name: str) -> pd.Series | pa.ChunkedArray:
        if self.is_pandas:
            return self.data[name]
        if name not in self.data.column_names:
            raise KeyError(name)
        return self.data.column(name)

    def set_column(self, name: str, values: pd.Series) -> None:
        if not self.is_pandas:
            try:
                array = pa.Array.from_pandas(values)
            except _ARROW_ERRORS:
                self.data = self.data.to_pandas()
            else:
                table = self.data
                if name in table.column_names:
                    self.data = table.set_column(table.column_names.index(name), name, array)
                else:
                    self.data = table.append_column(name, array)
                return
        self.data[name] = values

    def keep(self, mask: pd.Series, stage: str) -> None:
        if self.is_pandas:
            self.data = self.data[mask.astype(bool) if len(mask) == 0 else mask]
        else:
            self.data = self.data.filter(pa.array(_mask_array(mask, stage), type=pa.bool_()))


def _is_empty(batch: DocumentBatch) -> bool:
    data = batch.data
    if isinstance(data, pd.DataFrame):
        return data.empty
    if isinstance(data, pa.Table):
        return data.num_rows == 0 or data.num_columns == 0
    return batch.to_pandas().empty


def _frame_of(batch: DocumentBatch) -> _Frame:
    return _Frame(batch.data if isinstance(batch.data, pa.Table) else batch.to_pandas())


def _output(batch: DocumentBatch, stage_name: str, frame: _Frame) -> DocumentBatch:
    return DocumentBatch(
        task_id=f"{batch.task_id}_{stage_name}",
        dataset_name=batch.dataset_name,
        data=frame.data,
        _metadata=batch._metadata,
        _stage_perf=batch._stage_perf,
    )


def _document_filters(functions: list[Any]) -> list[DocumentFilter]:
    return [fn for fn in functions if isinstance(fn, DocumentFilter)]


def _needs_actor(functions: list[Any]) -> bool:
    return any(
        hasattr(fn, "load_model") or hasattr(fn, "load_tokenizer") for fn in _document_filters(functions)
    )


def _downloads_models(functions: list[Any]) -> bool:
    return any(hasattr(fn, "model_check_or_download") for fn in _document_filters(functions))


def _setup_on_node(functions: list[Any]) -> None:
    for fn in _document_filters(functions):
        if hasattr(fn, "model_check_or_download"):
            fn.model_check_or_download()


def _setup(functions: list[Any]) -> None:
    for fn in _document_filters(functions):
        if hasattr(fn, "load_model"):
            fn.load_model()
        if hasattr(fn, "load_tokenizer"):
            fn.load_tokenizer()


# ---------------------------------------------------------------------------------------------------------
# Stages


@dataclass
class Score(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Adds one score column per function: ``score_fn`` (a ``DocumentFilter``, whose ``score_document`` is
    used, a callable, or a list of them) applied to ``text_field``, written to ``score_field``. No row is
    removed. For a list, give one ``score_field`` per function; ``text_field`` may be one name for all."""

    score_fn: Callable[[str], float | str] | DocumentFilter | list[DocumentFilter]
    score_field: str | list[str]
    text_field: str | list[str] = "text"
    name: str = "score_fn"

    def __post_init__(self) -> None:
        self.name, self.score_fn, self.text_field, _, self.score_field = _validate_and_normalize_filters(
            self.score_fn, self.text_field, None, self.score_field, "score"
        )

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], self.text_field

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], self.text_field + self.score_field

    def ray_stage_spec(self) -> dict[str, Any]:
        return {"is_actor_stage": _needs_actor(self.score_fn)}

    def setup_on_node(
        self, node_info: NodeInfo | None = None, worker_metadata: WorkerMetadata | None = None
    ) -> None:
        _setup_on_node(self.score_fn)

    def _setup_on_node_needed(self) -> bool:
        # Executors skip the per-node call (a Ray worker process) when no filter downloads anything.
        return _downloads_models(self.score_fn)

    def setup(self, worker_metadata: WorkerMetadata | None = None) -> None:
        _setup(self.score_fn)

    def process(self, batch: DocumentBatch) -> DocumentBatch:
        if _is_empty(batch):
            logger.info(f"Empty dataset for batch {batch.task_id}")
            return batch
        frame = _frame_of(batch)
        for fn, text_field, score_field in zip(self.score_fn, self.text_field, self.score_field, strict=True):
            frame.set_column(score_field, _score(fn, frame.column(text_field)))
        return _output(batch, self.name, frame)


@dataclass
class Filter(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Removes the rows whose ``filter_field`` value fails ``filter_fn`` (a ``DocumentFilter``, whose
    ``keep_document`` is used, a callable returning a bool, or a list of them; ``invert`` keeps the failing
    rows instead). For a list, give one ``filter_field`` per function."""

    filter_fn: Callable | DocumentFilter | list[DocumentFilter]
    filter_field: str | list[str]
    invert: bool | list[bool] = False
    name: str = "filter_fn"

    def __post_init__(self) -> None:
        self.name, self.filter_fn, self.filter_field, self.invert, _ = _validate_and_normalize_filters(
            self.filter_fn, self.filter_field, self.invert, None, "filter"
        )

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], self.filter_field

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], self.filter_field

    def compute_filter_mask(
        self, df: pd.DataFrame, filter_fn: Callable | DocumentFilter, filter_field: str, invert: bool
    ) -> pd.Series:
        """The boolean mask (True = keep) of ``df`` for one function."""
        return _keep(filter_fn, df[filter_field], invert)

    def process(self, batch: DocumentBatch) -> DocumentBatch:
        if _is_empty(batch):
            logger.info(f"Empty dataset for batch {batch.task_id}")
            return batch
        frame = _frame_of(batch)
        rows_in = len(frame)
        for fn, filter_field, invert in zip(self.filter_fn, self.filter_field, self.invert, strict=True):
            frame.keep(_keep(fn, _as_series(frame.column(filter_field)), invert), self.name)
        if len(frame) == 0:
            logger.info(f"All documents filtered out for batch {batch.task_id}")
        self._log_metrics({"documents_kept": len(frame), "documents_removed": rows_in - len(frame)})
        return _output(batch, self.name, frame)


@dataclass
class ScoreFilter(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Scores ``text_field`` with each ``DocumentFilter`` of ``filter_obj`` and removes the rows it would not
    keep (``invert`` keeps those instead); the score is stored in ``score_field`` when given. Filters of a
    list run in order, each on the rows the previous ones kept.

    ``ScoreFilter(WordCountFilter(min_words=50))`` is Curator's usual form.
    """

    filter_obj: DocumentFilter | list[DocumentFilter]
    text_field: str | list[str] = "text"
    score_field: str | list[str] | None = None
    invert: bool | list[bool] = False
    name: str = "score_filter"

    def __post_init__(self) -> None:
        self.name, self.filter_obj, self.text_field, self.invert, self.score_field = (
            _validate_and_normalize_filters(
                self.filter_obj, self.text_field, self.invert, self.score_field, "score_filter"
            )
        )
        for filter_obj in self.filter_obj:
            if not isinstance(filter_obj, DocumentFilter):
                msg = (
                    f"ScoreFilter needs DocumentFilter objects (with score_document and keep_document), got "
                    f"{filter_obj!r}; use Score and Filter for plain functions"
                )
                raise TypeError(msg)

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], self.text_field

    def outputs(self) -> tuple[list[str], list[str]]:
        # As in Curator, a filter without score_field contributes None here.
        return ["data"], self.text_field + self.score_field

    def ray_stage_spec(self) -> dict[str, Any]:
        return {"is_actor_stage": _needs_actor(self.filter_obj)}

    def setup_on_node(
        self, node_info: NodeInfo | None = None, worker_metadata: WorkerMetadata | None = None
    ) -> None:
        _setup_on_node(self.filter_obj)

    def _setup_on_node_needed(self) -> bool:
        # Executors skip the per-node call (a Ray worker process) when no filter downloads anything.
        return _downloads_models(self.filter_obj)

    def setup(self, worker_metadata: WorkerMetadata | None = None) -> None:
        _setup(self.filter_obj)

    def compute_filter_mask(
        self,
        df: pd.DataFrame,
        filter_obj: DocumentFilter,
        text_field: str,
        score_field: str | None,
        invert: bool,
    ) -> pd.Series:
        """Score ``df[text_field]`` (stored in ``df[score_field]`` when given) and return the keep mask."""
        scores = _score(filter_obj, df[text_field])
        if score_field is not None:
            df[score_field] = scores
        return _keep(filter_obj, scores, invert)

    def process(self, batch: DocumentBatch) -> DocumentBatch:
        if _is_empty(batch):
            logger.info(f"Empty dataset for batch {batch.task_id}")
            return batch
        frame = _frame_of(batch)
        rows_in = len(frame)
        for filter_obj, text_field, score_field, invert in zip(
            self.filter_obj, self.text_field, self.score_field, self.invert, strict=True
        ):
            scores = _score(filter_obj, frame.column(text_field))
            if score_field is not None:
                frame.set_column(score_field, scores)
            frame.keep(_keep(filter_obj, scores, invert), self.name)
        if len(frame) == 0:
            logger.info(f"All documents filtered out for batch {batch.task_id}")
        self._log_metrics({"documents_kept": len(frame), "documents_removed": rows_in - len(frame)})
        return _output(batch, self.name, frame)


# ---------------------------------------------------------------------------------------------------------
# Normalisation of the constructor arguments


def _filter_name(fn: DocumentFilter | Callable) -> str:
    return fn.name if isinstance(fn, DocumentFilter) else getattr(fn, "__name__", type(fn).__name__)


def _get_filter_stage_name(filters: list[DocumentFilter | Callable], prefix: str) -> str:
    """The filter's own name for one function, ``<prefix>_chain_of_<names>`` for several."""
    if len(filters) == 1:
        return _filter_name(filters[0])
    return f"{prefix}_chain_of_" + "_".join(_filter_name(fn) for fn in filters)


def _format_single_field_list(field: Any, field_name: str, field_type: type = str) -> list[Any]:
    """A field for a single function: a scalar of ``field_type`` becomes ``[value]``; a list may hold one."""
    if isinstance(field, list):
        if len(field) > 1:
            msg = f"More {field_name} fields than functions provided: {field}"
            raise ValueError(msg)
        return field
    if isinstance(field, field_type):
        return [field]
    msg = f"{field_name} field must be a {field_type} or list of {field_type}: {field}"
    raise TypeError(msg)


def _format_field_list(field: Any, filter_count: int, field_name: str, field_type: type = str) -> list[Any]:
    """A field for ``filter_count`` functions: a scalar or one-element list is used for every function; a
    list must otherwise have one entry per function.

    (Curator 1.1.0 turns a one-element list into a list of lists, which breaks the stage; the element is
    used instead.)
    """
    if isinstance(field, list):
        if len(field) == 1:
            logger.info(f"Using the same {field_name} field for all functions: {field}")
            return field * filter_count
        if len(field) != filter_count:
            msg = f"Number of {field_name} fields must match number of functions: {field}"
            raise ValueError(msg)
        return field
    if isinstance(field, field_type):
        logger.info(f"Using the same {field_name} field for all functions: {field}")
        return [field] * filter_count
    msg = f"{field_name} field must be a {field_type} or list of {field_type}: {field}"
    raise TypeError(msg)


def _validate_and_normalize_filters(
    _filter: DocumentFilter | Callable | list[DocumentFilter | Callable],
    input_field: str | list[str] | None,
    invert: bool | list[bool] | None,
    output_field: str | list[str] | None,
    fn_type: Literal["score", "filter", "score_filter"],
) -> tuple[str, list[Any], list[str], list[bool] | None, list[Any] | None]:
    """``(stage name, functions, input fields, invert flags, output fields)``, each a list with one entry
    per function (``None`` for what the stage does not use)."""
    input_field_name = "filter" if fn_type == "filter" else "text"
    if input_field is None:
        msg = f"{input_field_name}_field cannot be None"
        raise ValueError(msg)
    if output_field is None and fn_type == "score":
        msg = "score_field cannot be None"
        raise ValueError(msg)

    if isinstance(_filter, DocumentFilter) or callable(_filter):
        name = _filter.name if isinstance(_filter, DocumentFilter) else f"{fn_type}_fn"
        functions: list[Any] = [_filter]
        inputs = _format_single_field_list(input_field, input_field_name, field_type=str)
        inverts = _format_single_field_list(invert, "invert", field_type=bool) if fn_type != "score" else None
        if fn_type == "filter":
            outputs = None
        elif output_field is None:
            outputs = [None]
        else:
            outputs = _format_single_field_list(output_field, "score", field_type=str)
    elif isinstance(_filter, list):
        if not _filter:
            msg = f"{fn_type}: the list of functions is empty"
            raise ValueError(msg)
        for fn in _filter:
            if not (isinstance(fn, DocumentFilter) or callable(fn)):
                msg = f"{fn_type}: {fn!r} is neither a DocumentFilter nor callable"
                raise TypeError(msg)
        name = _get_filter_stage_name(_filter, prefix=fn_type)
        functions = list(_filter)
        count = len(functions)
        if fn_type == "filter" and (
            isinstance(input_field, str) or (isinstance(input_field, list) and len(input_field) == 1)
        ):
            msg = f"filter_field must be a list of strings if multiple filters are used: {input_field}"
            raise ValueError(msg)
        inputs = _format_field_list(input_field, count, input_field_name, field_type=str)
        inverts = _format_field_list(invert, count, "invert", field_type=bool) if fn_type != "score" else None
        if fn_type == "filter":
            outputs = None
        elif output_field is None:
            outputs = [None] * count
        elif isinstance(output_field, str) or (isinstance(output_field, list) and len(output_field) == 1):
            msg = f"score_field must be a list of strings if multiple filters are used: {output_field}"
            raise ValueError(msg)
        else:
            outputs = _format_field_list(output_field, count, "score", field_type=str)
    else:
        msg = f"{fn_type}: expected a DocumentFilter, a callable or a list of them, got {_filter!r}"
        raise TypeError(msg)
    return name, functions, inputs, inverts, outputs
