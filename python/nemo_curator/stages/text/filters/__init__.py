from nemo_curator.stages.text.filters.heuristics import (
    HeuristicFilter,
    MeanWordLengthFilter,
    NonAlphaNumericFilter,
    RepeatedLinesFilter,
    WordCountFilter,
)

__all__ = [
    "HeuristicFilter",
    "MeanWordLengthFilter",
    "NonAlphaNumericFilter",
    "RepeatedLinesFilter",
    "WordCountFilter",
]
