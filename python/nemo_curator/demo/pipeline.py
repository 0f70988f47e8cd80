"""The main job: read JSONL -> Curator's English heuristic filters -> content hash -> write Parquet.

Exact deduplication follows as its own step (`dedup.py`): the written content hashes are grouped and every
copy after the first is listed for removal, as Curator's exact-dedup identification does.
"""

from __future__ import annotations

from nemo_curator.pipeline import Pipeline
from nemo_curator.stages.text.filters import (
    BoilerPlateStringFilter,
    BulletsFilter,
    CommonEnglishWordsFilter,
    DocumentFilter,
    EllipsisFilter,
    LongWordFilter,
    MeanWordLengthFilter,
    NonAlphaNumericFilter,
    NumbersFilter,
    ParenthesesFilter,
    PunctuationFilter,
    RepeatedLinesByCharFilter,
    RepeatedLinesFilter,
    RepeatedParagraphsByCharFilter,
    RepeatedParagraphsFilter,
    RepeatingDuplicateNGramsFilter,
    RepeatingTopNGramsFilter,
    SymbolsToWordsFilter,
    UrlsFilter,
    WhiteSpaceFilter,
    WordCountFilter,
    WordsWithoutAlphabetsFilter,
)
from nemo_curator.stages.text.hashing import AddContentHash
from nemo_curator.stages.text.io.reader import JsonlReader
from nemo_curator.stages.text.io.writer import ParquetWriter
from nemo_curator.stages.text.modules import ScoreFilter


def heuristic_filters() -> list[DocumentFilter]:
    """The English heuristic filter set of Curator's quality-filtering tutorial, with its thresholds."""
    return [
        WordCountFilter(min_words=50, max_words=100_000),
        BoilerPlateStringFilter(),
        RepeatedLinesFilter(max_repeated_line_fraction=0.7),
        RepeatedParagraphsFilter(max_repeated_paragraphs_ratio=0.7),
        RepeatedLinesByCharFilter(max_repeated_lines_char_ratio=0.8),
        RepeatedParagraphsByCharFilter(max_repeated_paragraphs_char_ratio=0.8),
        RepeatingTopNGramsFilter(n=2, max_repeating_ngram_ratio=0.2),
        RepeatingTopNGramsFilter(n=3, max_repeating_ngram_ratio=0.18),
        RepeatingTopNGramsFilter(n=4, max_repeating_ngram_ratio=0.16),
        RepeatingDuplicateNGramsFilter(n=5, max_repeating_duplicate_ngram_ratio=0.15),
        RepeatingDuplicateNGramsFilter(n=10, max_repeating_duplicate_ngram_ratio=0.10),
        PunctuationFilter(max_num_sentences_without_endmark_ratio=0.85),
        WhiteSpaceFilter(max_white_space_ratio=0.25),
        NonAlphaNumericFilter(max_non_alpha_numeric_to_text_ratio=0.25),
        SymbolsToWordsFilter(max_symbol_to_word_ratio=0.1),
        NumbersFilter(max_number_to_text_ratio=0.15),
        UrlsFilter(max_url_to_text_ratio=0.2),
        BulletsFilter(max_bullet_lines_ratio=0.9),
        EllipsisFilter(max_num_lines_ending_with_ellipsis_ratio=0.3),
        LongWordFilter(max_word_length=1000),
        MeanWordLengthFilter(min_mean_word_length=3, max_mean_word_length=10),
        ParenthesesFilter(max_parentheses_ratio=0.1),
        CommonEnglishWordsFilter(min_num_common_words=2),
        WordsWithoutAlphabetsFilter(min_words_with_alphabets=0.8),
    ]


def build_pipeline(input_dir: str, output_dir: str, files_per_partition: int = 1) -> Pipeline:
    """A curation pipeline as a Curator user writes it (one `ScoreFilter` stage per filter); runs unchanged
    on every executor.

    On the synthetic corpus (``corpus.py``) the filters keep the prose and its duplicates (found next by
    ``dedup.py``) and drop the short documents, the boilerplate made of repeated lines, the symbol junk and
    the word salad.
    """
    return Pipeline(
        name="web_text_curation",
        description="Curator's English heuristic quality filters, then a content hash for exact dedup",
        stages=[
            JsonlReader(input_dir, files_per_partition=files_per_partition, fields=["id", "url", "text"]),
            *(ScoreFilter(f) for f in heuristic_filters()),
            AddContentHash(),
            ParquetWriter(output_dir, mode="overwrite"),
        ],
    )
