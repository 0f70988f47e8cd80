"""What the side-by-side check with NeMo Curator 1.1.0 runs, written against Curator's public API only.

Imported by ``make_reference.py`` in a venv holding only Curator (the reference) and by
``test_beside_curator.py`` after this package is installed over it, so every name used here must mean the
same thing in both.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import random
import re
from pathlib import Path
from typing import Any

N_FILES = 6
DOCS_PER_FILE = 30
FILES_PER_PARTITION = 2
ID_FIELD = "doc_id"
ID_PREFIX = "cmp"
# AddId: "<prefix>_<the batch's uuid4>_<row index in the batch>".
ID_PATTERN = re.compile(
    rf"^{ID_PREFIX}_([0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}})_(\d+)$"
)

_WORDS = (
    "data curation pipeline stage batch filter score document quality language model corpus token "
    "sentence paragraph heuristic river mountain garden library window village market kitchen"
).split()


def _sentence(rng: random.Random, words: int, end: str = ".") -> str:
    text = " ".join(rng.choice(_WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + end


def _document(rng: random.Random, kind: int) -> str:
    """Texts that each of the pipeline's filters keeps or drops, depending on ``kind``."""
    if kind == 0:  # too short for WordCountFilter
        return _sentence(rng, rng.randint(3, 15))
    if kind == 1:  # mostly symbols: NonAlphaNumericFilter drops it
        return " ".join(_sentence(rng, 8) + " ### $$$ %%% &&& *** ((( )))" for _ in range(6))
    if kind == 2:  # one line repeated: RepeatedLinesFilter drops it
        line = _sentence(rng, 12)
        return "\n".join([line] * 8 + [_sentence(rng, 12)])
    if kind == 3:  # mostly URLs: UrlsFilter drops it
        urls = " ".join(
            f"https://example{rng.randint(0, 999)}.com/{rng.choice(_WORDS)}/page" for _ in range(20)
        )
        return _sentence(rng, 25) + " " + urls
    if kind == 4:  # lines without an end mark: PunctuationFilter drops it
        return "\n".join(_sentence(rng, 10, end="") for _ in range(10))
    # A clean document of several paragraphs (kept), of varying length.
    return "\n\n".join(
        " ".join(_sentence(rng, rng.randint(6, 18)) for _ in range(rng.randint(2, 5)))
        for _ in range(rng.randint(2, 4))
    )


def write_corpus(directory: Path, seed: int = 20261203) -> list[Path]:
    """``N_FILES`` JSONL files of ``DOCS_PER_FILE`` documents each, the same for a given seed."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    for f in range(N_FILES):
        path = directory / f"part-{f:02d}.jsonl"
        with path.open("w") as out:
            for d in range(DOCS_PER_FILE):
                kind = rng.choice([0, 1, 2, 3, 4, 5, 5, 5, 5, 5])
                record = {"doc_key": f * DOCS_PER_FILE + d, "kind": kind, "text": _document(rng, kind)}
                out.write(json.dumps(record) + "\n")
        paths.append(path)
    return paths


def build_stages(input_dir: Path, output_dir: Path) -> list[Any]:
    """Curator's reader, score-filters with several heuristic filters, a score, AddId and a writer."""
    from nemo_curator.stages.text.filters import (
        MeanWordLengthFilter,
        NonAlphaNumericFilter,
        PunctuationFilter,
        RepeatedLinesFilter,
        UrlsFilter,
        WordCountFilter,
    )
    from nemo_curator.stages.text.io.reader import JsonlReader
    from nemo_curator.stages.text.io.writer import JsonlWriter
    from nemo_curator.stages.text.modules import AddId, Score, ScoreFilter

    return [
        JsonlReader(file_paths=str(input_dir), files_per_partition=FILES_PER_PARTITION),
        ScoreFilter(WordCountFilter(min_words=20), text_field="text", score_field="word_count"),
        ScoreFilter(NonAlphaNumericFilter(), text_field="text", score_field="non_alnum_ratio"),
        ScoreFilter(
            [RepeatedLinesFilter(), UrlsFilter(), PunctuationFilter()],
            text_field="text",
            score_field=["repeated_lines", "url_ratio", "no_endmark_ratio"],
        ),
        Score(MeanWordLengthFilter(), text_field="text", score_field="mean_word_length"),
        AddId(id_field=ID_FIELD, id_prefix=ID_PREFIX),
        JsonlWriter(path=str(output_dir)),
    ]


def run_directly(stages: list[Any]) -> list[Any]:
    """The stages called in order in this process, no executor: composites decomposed, ``batch_size``
    tasks per ``process_batch`` call, with each stage's setup and teardown around its work."""
    from nemo_curator.stages.base import CompositeStage
    from nemo_curator.tasks import EmptyTask

    flat: list[Any] = []
    for stage in stages:
        flat.extend(stage.decompose_and_apply_with() if isinstance(stage, CompositeStage) else [stage])
    tasks: list[Any] = [EmptyTask]
    for stage in flat:
        stage.setup_on_node()
        stage.setup()
        size = stage.batch_size or 1
        out: list[Any] = []
        for start in range(0, len(tasks), size):
            out.extend(t for t in stage.process_batch(tasks[start : start + size]) if t is not None)
        stage.teardown()
        tasks = out
    return tasks


def collect_output(output_dir: Path, results: list[Any]) -> dict[str, Any]:
    """What a run produced, in a form to compare across runs: every written file's rows without the
    AddId column, that column on its own, and the writer's returned tasks (sorted: executors may reorder)."""
    files: dict[str, list[dict[str, Any]]] = {}
    columns: dict[str, list[str]] = {}
    ids: dict[str, list[str]] = {}
    for path in sorted(output_dir.glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        ids[path.name] = [row.pop(ID_FIELD) for row in rows]
        columns[path.name] = list(rows[0]) if rows else []
        files[path.name] = rows
    tasks = sorted(
        (type(t).__name__, t.task_id, t.dataset_name, sorted(Path(p).name for p in t.data)) for t in results
    )
    return {"files": files, "columns": columns, "ids": ids, "tasks": [list(t) for t in tasks]}


def id_problems(output: dict[str, Any]) -> list[str]:
    """AddId's ids are random per batch: check their form, that each file's rows count 0.. under one
    batch uuid, and that no id or batch uuid repeats anywhere."""
    problems = []
    seen_ids: set[str] = set()
    seen_uuids: set[str] = set()
    for name, file_ids in output["ids"].items():
        uuids = set()
        for index, value in enumerate(file_ids):
            match = ID_PATTERN.match(value)
            if match is None:
                problems.append(f"{name}: id {value!r} does not look like {ID_PATTERN.pattern}")
                continue
            uuids.add(match.group(1))
            if int(match.group(2)) != index:
                problems.append(f"{name}: row {index} has id index {match.group(2)}")
            if value in seen_ids:
                problems.append(f"{name}: id {value!r} repeats")
            seen_ids.add(value)
        if len(uuids) > 1:
            problems.append(f"{name}: rows carry {len(uuids)} batch uuids, expected one")
        if uuids & seen_uuids:
            problems.append(f"{name}: batch uuid also used in another file")
        seen_uuids |= uuids
    return problems


# ------------------------------------------------------------------------------------------------------------
# The import surface: what each of Curator's package __init__ files exports


def _init_exports(source: str) -> list[str]:
    """The public names a package ``__init__`` exports: its ``__all__`` if it has one, else what it binds
    at top level by import, definition or assignment (dunder metadata included, private names not)."""
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return [ast.literal_eval(e) for e in node.value.elts]  # type: ignore[attr-defined]
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (
            node.level or (node.module or "").startswith("nemo_curator")
        ):
            names.extend(a.asname or a.name for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names.extend(t.id for t in node.targets if isinstance(t, ast.Name))
    return [n for n in names if not n.startswith("_") or (n.startswith("__") and n.endswith("__"))]


def curator_init_modules() -> dict[str, list[str]]:
    """Every ``__init__`` module the installed nemo-curator distribution ships, with its exports."""
    from importlib import metadata

    out: dict[str, list[str]] = {}
    for file in metadata.distribution("nemo-curator").files or []:
        if file.name != "__init__.py" or not str(file).startswith("nemo_curator/"):
            continue
        module = ".".join(Path(str(file)).parent.parts)
        out[module] = _init_exports(Path(str(file.locate())).read_text())
    return dict(sorted(out.items()))


def describe(value: Any) -> str:
    """A name's kind, and for Curator's base types which one it derives from."""
    if inspect.ismodule(value):
        return "module"
    if inspect.isclass(value):
        for base_module, base_name in (
            ("nemo_curator.stages.base", "CompositeStage"),
            ("nemo_curator.stages.base", "ProcessingStage"),
            ("nemo_curator.tasks.tasks", "Task"),
            ("nemo_curator.backends.base", "BaseExecutor"),
        ):
            base = getattr(importlib.import_module(base_module), base_name)
            if issubclass(value, base):
                return f"class derived from {base_name}"
        return "class"
    if inspect.isroutine(value):
        return "function"
    return type(value).__name__


def import_surface(modules: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """Import each module and resolve each export; for each module, its names' kinds or why it failed."""
    out: dict[str, dict[str, Any]] = {}
    for module_name, names in modules.items():
        try:
            module = importlib.import_module(module_name)
        except Exception as error:
            out[module_name] = {"error": f"{type(error).__name__}: {error}"[:300]}
            continue
        kinds: dict[str, str] = {}
        for name in names:
            try:
                kinds[name] = describe(getattr(module, name))
            except Exception as error:
                kinds[name] = f"error: {type(error).__name__}: {error}"[:300]
        out[module_name] = {"names": kinds}
    return out


def curator_module_names() -> list[str]:
    """Every module of the installed nemo-curator distribution (as files on disk: its RECORD)."""
    from importlib import metadata

    names = []
    for file in metadata.distribution("nemo-curator").files or []:
        path = Path(str(file))
        if path.suffix != ".py" or path.parts[0] != "nemo_curator":
            continue
        parts = path.with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names)


def import_errors(module_names: list[str]) -> dict[str, str]:
    """Each module imported in turn: ``""`` if it imports, else the error. A module whose parent package
    fails counts as failing too (it may have landed in ``sys.modules`` while that parent half-ran)."""
    out = {}
    for name in module_names:
        try:
            importlib.import_module(name)
            out[name] = ""
        except Exception as error:
            out[name] = f"{type(error).__name__}: {error}"[:300]
    for name in module_names:
        parts = name.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if out.get(parent):
                out[name] = out[name] or f"parent package {parent} fails: {out[parent]}"[:300]
                break
    return out
