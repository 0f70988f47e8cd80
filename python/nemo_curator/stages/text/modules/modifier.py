"""``Modify``: apply ``DocumentModifier``s (or plain functions) to columns of a batch, row by row."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nemo_curator.stages.base import ProcessingStage
from nemo_curator.stages.text.modifiers.doc_modifier import DocumentModifier
from nemo_curator.tasks import DocumentBatch


@dataclass
class Modify(ProcessingStage[DocumentBatch, DocumentBatch]):
    """Rewrites columns with modifiers applied in order, each to its input column(s).

    ``modifier_fn``: a ``DocumentModifier`` (its ``modify_document`` is used), a callable, or a list of them.
    ``input_fields``: one column for all (``str``), one per modifier (``list[str]``, or one name in a list for
    all), or several per modifier (``list[list[str]]``; the modifier is then called with keyword arguments
    named after the columns). ``output_fields``: ``None`` writes each result back to its single input column;
    a ``str`` names one output column for all; a list gives one name per modifier (``None`` entries: in place).
    """

    modifier_fn: Callable | DocumentModifier | list[DocumentModifier | Callable]
    input_fields: str | list[str] | list[list[str]] = "text"
    output_fields: str | list[str | None] | None = None
    name: str = "modifier_fn"

    def __post_init__(self) -> None:
        self.modifier_fn = _validate_and_normalize_modifiers(self.modifier_fn, self.input_fields)
        self._input_fields = _normalize_input_fields(self.input_fields, self.modifier_fn)
        self._output_fields = _normalize_output_fields(
            self.output_fields, self._input_fields, self.modifier_fn
        )
        self.name = _get_modifier_stage_name(self.modifier_fn)

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], sorted({column for columns in self._input_fields for column in columns})

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], sorted(set(self._output_fields))

    def process(self, batch: DocumentBatch) -> DocumentBatch:
        df = batch.to_pandas()
        for modifier, columns, output in zip(
            self.modifier_fn, self._input_fields, self._output_fields, strict=True
        ):
            fn = modifier.modify_document if isinstance(modifier, DocumentModifier) else modifier
            if len(columns) == 1:
                df[output] = df[columns[0]].apply(fn)
            else:
                df[output] = [fn(**record) for record in df[columns].to_dict("records")]
        return DocumentBatch(
            task_id=f"{batch.task_id}_{self.name}",
            dataset_name=batch.dataset_name,
            data=df,
            _metadata=batch._metadata,
            _stage_perf=batch._stage_perf,
        )


def _modifier_name(modifier: DocumentModifier | Callable) -> str:
    if isinstance(modifier, DocumentModifier):
        return modifier.name
    return getattr(modifier, "__name__", type(modifier).__name__)


def _get_modifier_stage_name(modifiers: list[DocumentModifier | Callable]) -> str:
    """The modifier's own name for one, ``modifier_chain_of_<names>`` for several."""
    if len(modifiers) == 1:
        return _modifier_name(modifiers[0])
    return "modifier_chain_of_" + "_".join(_modifier_name(m) for m in modifiers)


def _validate_and_normalize_modifiers(
    modifier: DocumentModifier | Callable | list[DocumentModifier | Callable],
    input_field: str | list[str] | list[list[str]] | None,
) -> list[DocumentModifier | Callable]:
    if input_field is None:
        msg = "Input field cannot be None"
        raise ValueError(msg)
    modifiers = modifier if isinstance(modifier, list) else [modifier]
    if not modifiers:
        msg = "modifier_fn list cannot be empty"
        raise ValueError(msg)
    if any(not (isinstance(m, DocumentModifier) or callable(m)) for m in modifiers):
        msg = "Each modifier must be a DocumentModifier or callable"
        raise TypeError(msg)
    return list(modifiers)


def _normalize_input_fields(
    input_fields: str | list[str] | list[list[str]], modifiers: list[DocumentModifier | Callable]
) -> list[list[str]]:
    """One list of input columns per modifier."""
    count = len(modifiers)
    if isinstance(input_fields, str):
        return [[input_fields] for _ in range(count)]
    if isinstance(input_fields, list) and all(isinstance(x, str) for x in input_fields):
        if len(input_fields) == 1:
            return [[input_fields[0]] for _ in range(count)]
        if len(input_fields) == count:
            return [[field] for field in input_fields]
        msg = (
            f"Number of input fields ({len(input_fields)}) must be 1 or equal to number of "
            f"modifiers ({count}). For multi-input per modifier, pass a list of lists."
        )
        raise ValueError(msg)
    if isinstance(input_fields, list) and all(isinstance(x, list) for x in input_fields):
        if len(input_fields) == 1:
            return [list(input_fields[0]) for _ in range(count)]
        if len(input_fields) == count:
            return [list(group) for group in input_fields]
        msg = f"Number of input field groups ({len(input_fields)}) must be 1 or equal to number of modifiers ({count})"
        raise ValueError(msg)
    msg = "input_fields must be str, list[str], or list[list[str]]"
    raise TypeError(msg)


def _normalize_output_fields(
    output_fields: str | list[str | None] | None,
    input_fields: list[list[str]],
    modifiers: list[DocumentModifier | Callable],
) -> list[str]:
    """One output column per modifier (``None`` = the modifier's single input column)."""

    def in_place(inputs: list[str]) -> str:
        if len(inputs) == 1:
            return inputs[0]
        msg = (
            "Implicit in-place (None) not allowed for a modifier with multiple input fields. "
            "Provide an explicit output column."
        )
        raise ValueError(msg)

    count = len(modifiers)
    if output_fields is None:
        if all(len(inputs) == 1 for inputs in input_fields):
            return [inputs[0] for inputs in input_fields]
        msg = (
            "output_fields must be provided when any modifier has multiple input fields. "
            "Provide a single name to reuse or a list[str] with one name per modifier."
        )
        raise ValueError(msg)
    if isinstance(output_fields, str):
        return [output_fields] * count
    if isinstance(output_fields, list):
        if len(output_fields) == 1:
            only: Any = output_fields[0]
            if only is None:
                return [in_place(inputs) for inputs in input_fields]
            return [only] * count
        if len(output_fields) == count:
            return [
                in_place(inputs) if name is None else name
                for name, inputs in zip(output_fields, input_fields, strict=True)
            ]
        msg = f"Number of output fields ({len(output_fields)}) must be 1 or equal to number of modifiers ({count})"
        raise ValueError(msg)
    msg = "output_field must be str, list[str | None], or None"
    raise TypeError(msg)
