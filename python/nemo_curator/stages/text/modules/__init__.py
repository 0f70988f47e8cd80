"""Curator's text-processing stages: scoring and filtering, modifying, ids, splitting and joining."""

from nemo_curator.stages.text.modules.add_id import AddId
from nemo_curator.stages.text.modules.joiner import DocumentJoiner
from nemo_curator.stages.text.modules.modifier import Modify
from nemo_curator.stages.text.modules.score_filter import Filter, Score, ScoreFilter
from nemo_curator.stages.text.modules.splitter import DocumentSplitter

__all__ = [
    "AddId",
    "DocumentJoiner",
    "DocumentSplitter",
    "Filter",
    "Modify",
    "Score",
    "ScoreFilter",
]
