"""Resumable runs (`checkpoint_path`), the failed-task manifest and deterministic task ids.

A *source* is one task the executor starts from: the outputs of the pipeline's first (source) stage when the
run starts from an empty task (that stage then runs here, in the driver, to list the sources), else each
initial task. A source is *completed* once every task descending from it has ended (written out, filtered or
failed); completed sources are stored and skipped when the run is started again with the same directory.

Who decides completion:
- actor pool (and Xenna, same engine): the Rust scheduler, which tracks each task's roots
  (`Scheduler.completed_roots()`); the roots are the sources.
- Ray Data: every source starts with credit 1 that rides in its tasks' metadata; a stage call splits its
  inputs' credit over its outputs and hands back the credit of inputs that ended there (filtered or failed)
  with the block, like the count ledger, so a block Ray recomputes is counted once. The driver adds up the
  credit that reaches it (final tasks, handed-back credit) exactly (fractions); 1 means completed.
- in-process: sources go through all stages a chunk at a time; a chunk's sources complete with it.

Storage: LMDB, in Curator v1.3's layout so that either can resume the other's checkpoint:
`<dir>/.nemo_curator_metadata/<hostname>-<pid>.mdb`, single-file environments, one named DB
`completed_sources` with source id -> b"1". A run writes only its own file and starts from the union of all
files in the directory. LMDB is embedded (no server, no Ray actor, so it works with any Ray session or none),
completions are committed in groups at most `COMMIT_INTERVAL_S` after they happen. A commit reaches the
operating system (so it survives the driver's death: SIGKILL, OOM, Ctrl-C) but is not fsynced; the file is
fsynced every `SYNC_INTERVAL_S` and when the run ends. An fsync per group cost more than tiny tasks do; a
machine crash loses at most the completions since the last fsync (LMDB without fsync can then also tear
the file: it is skipped with a warning and its sources are redone). A source whose record is lost is only
redone; a source recorded is always complete.

Source ids (Curator's `get_source_id()`): a task's `get_deterministic_id()` when it has one (a file group:
a hash of its paths), else its position. Deterministic task ids: a source gets `0_<source id>`; below it
the v1.3 rules (1 -> k: `parent_<j>`, N -> N: `parent_<i>_0`, otherwise random `r<hex>`). They apply to
checkpointed runs only, so the ids stages choose themselves (v1.1.0 behaviour) are kept elsewhere.
A task with a random id made from several sources lists them in its metadata (`SOURCES_KEY`), and so do
the tasks made from it: the manifest names the sources of such a failed task on every executor.

Failed-task manifest: under `ignore_failures`, each failed task becomes one JSON line (task id, source id,
stage, error type, message, attempts, kind) in `failed_tasks.json` of `NEMO_CURATOR_FAILED_TASKS_DIR`, else of
`<dir>/.nemo_curator_metadata/.failed_tasks/local_attempt_<hex>/`. `retry_failed=True` on a rerun redoes
the sources listed there, even though they are recorded as completed; it renames those lists
`failed_tasks.json.retrying` first (the variable's directory gets the retry's own `failed_tasks.json`), and
`failed_tasks.json.retried` once it has finished.

Executors opt in with the `resumable` decorator on `execute`.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from loguru import logger

from nemo_curator.backends.failures import FailureRecord

if TYPE_CHECKING:
    from nemo_curator.stages.base import ProcessingStage
    from nemo_curator.tasks import Task

__all__ = [
    "FAILED_TASKS_DIR_ENV",
    "FAILED_TASKS_FILE",
    "Checkpoint",
    "active",
    "assign_task_ids",
    "completed_sources",
    "failed_sources",
    "read_failed_tasks",
    "resumable",
    "run_managed",
]

FAILED_TASKS_DIR_ENV = "NEMO_CURATOR_FAILED_TASKS_DIR"
FAILED_TASKS_FILE = "failed_tasks.json"
#: A manifest whose sources a retry is redoing, then one they were redone from.
RETRYING_SUFFIX = ".retrying"
RETRIED_SUFFIX = ".retried"
METADATA_DIR = ".nemo_curator_metadata"
DB_NAME = b"completed_sources"
_MAP_SIZE = 1 << 30
#: Completions are committed in groups, at most this long after they happen (see the module docstring).
COMMIT_INTERVAL_S = 0.2
#: The checkpoint file is fsynced at most this long after a commit, and when the run ends.
SYNC_INTERVAL_S = 5.0
#: Task metadata keys: the source a task descends from, and (Ray Data) the credit it carries.
SOURCE_KEY = "_source_id"
CREDIT_KEY = "_ckpt_credit"
#: A task made from several sources (a random id after an N -> K stage): all of them, sorted.
SOURCES_KEY = "_source_ids"
#: Stage spec kinds that hold state across tasks (Curator marks them `is_resumable = False`).
_STATEFUL_SPEC_KEYS = ("is_shuffle_stage", "is_lsh_stage", "is_raft_actor")

_ACTIVE: contextvars.ContextVar[Checkpoint | None] = contextvars.ContextVar(
    "nemo_curator_checkpoint", default=None
)
_E = TypeVar("_E")


def active() -> Checkpoint | None:
    """The checkpoint of the managed run in progress in this thread (None: plain run)."""
    return _ACTIVE.get()


# ------------------------------------------------------------------------------------------------ store
def _metadata_dir(path: str | os.PathLike[str]) -> Path:
    return Path(path).absolute() / METADATA_DIR


def _open_env(file: Path, *, readonly: bool) -> Any:
    import lmdb

    return lmdb.open(
        str(file),
        subdir=False,
        lock=False,
        readonly=readonly,
        # The writer fsyncs itself, every SYNC_INTERVAL_S (see `Checkpoint.flush`).
        sync=readonly,
        metasync=False,
        map_size=_MAP_SIZE,
        max_dbs=1,
        create=not readonly,
    )


def completed_sources(path: str | os.PathLike[str]) -> set[str]:
    """Source ids recorded as completed in checkpoint directory `path` (the union of every `*.mdb`)."""
    done: set[str] = set()
    directory = _metadata_dir(path)
    if not directory.is_dir():
        return done
    for file in sorted(directory.glob("*.mdb")):
        try:
            env = _open_env(file, readonly=True)
        except Exception as exc:  # another tool's file, or a torn one: the others still count
            logger.warning(f"Skipping unreadable checkpoint file {file}: {exc}")
            continue
        try:
            try:
                db = env.open_db(DB_NAME, create=False)
            except Exception:
                continue  # no completion recorded in it yet
            with env.begin(db=db) as txn:
                done.update(key.decode() for key, _ in txn.cursor())
        finally:
            env.close()
    return done


class Checkpoint:
    """The completed sources of one checkpoint directory; records new ones durably, in groups."""

    def __init__(self, path: str | os.PathLike[str], *, retry_failed: bool = False) -> None:
        if "://" in str(path):
            raise ValueError(f"checkpoint_path must be a local or shared POSIX path, got {path!r}")
        self.path = Path(path).absolute()
        self.metadata_dir = _metadata_dir(self.path)
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        self.completed = completed_sources(self.path)
        #: Manifests whose sources this run retries (renamed once the run has finished).
        self.retried_manifests: list[Path] = []
        if retry_failed:
            retry = failed_sources(self.path)
            unknown = [
                r["task_id"]
                for r in read_failed_tasks(self.path)
                if not r.get("source_id") and not r.get("source_ids")
            ]
            if unknown:
                logger.warning(
                    f"{len(unknown)} failed task(s) name no source (random ids after an N -> K stage, e.g. "
                    f"{unknown[0]}): they cannot be retried"
                )
            logger.info(f"Retrying {len(retry & self.completed)} source(s) with failed tasks")
            self.completed -= retry
            # Set aside before this run writes its own manifest (under NEMO_CURATOR_FAILED_TASKS_DIR that is
            # the same file name): still found by a later retry if this one dies, consumed when it finishes.
            self.retried_manifests = [_set_aside(m) for m in _manifests(self.path)]
        self._file = self.metadata_dir / f"{socket.gethostname()}-{os.getpid()}.mdb"
        self._env: Any = None
        self._db: Any = None
        self.manifest = ManifestWriter(failed_tasks_dir(self.path))
        #: Ray Data: credit received per open source.
        self._credit: dict[str, Fraction] = {}
        #: Actor pool: core root id -> source id.
        self._roots: dict[int, str] = {}
        self.recorded = 0
        self._pending: list[str] = []
        #: Failures to write, each with the sources it is known to descend from (when its ids do not say).
        self._pending_failures: list[tuple[FailureRecord, Collection[str]]] = []
        self._last_commit = time.monotonic()
        self._last_sync = self._last_commit
        self._unsynced = False

    # ---------------------------------------------------------------------------------- recording
    def record(
        self,
        source_ids: Iterable[str],
        failures: Sequence[FailureRecord] = (),
        failure_sources: Sequence[Collection[str]] | None = None,
    ) -> None:
        """Mark `source_ids` completed (their failed tasks in `failures`, with the sources each descends from
        in `failure_sources` when known). Written as one group commit at most `COMMIT_INTERVAL_S` later: a
        commit per completion would cost more than tiny tasks do, and a source whose record is lost to a crash
        is only redone."""
        self._pending_failures.extend(zip(failures, failure_sources or [()] * len(failures), strict=True))
        for key in source_ids:
            if key not in self.completed:
                self.completed.add(key)
                self._pending.append(key)
        if time.monotonic() - self._last_commit >= COMMIT_INTERVAL_S:
            self.flush()

    def flush(self, *, sync: bool = False) -> None:
        """Write the failures first (synced), then the completed sources in one commit; fsync the commits
        when `sync` or `SYNC_INTERVAL_S` after the last fsync."""
        now = self._last_commit = time.monotonic()
        if self._pending_failures:
            self.manifest.write(self._pending_failures)
            self._pending_failures = []
        if self._pending:
            if self._env is None:
                self._env = _open_env(self._file, readonly=False)
                self._db = self._env.open_db(DB_NAME, create=True)
            with self._env.begin(write=True, db=self._db) as txn:
                for key in self._pending:
                    txn.put(key.encode(), b"1")
            self.recorded += len(self._pending)
            self._pending = []
            self._unsynced = True
        if self._unsynced and (sync or now - self._last_sync >= SYNC_INTERVAL_S):
            self._env.sync(True)
            self._last_sync, self._unsynced = now, False

    def close(self, *, finished: bool) -> None:
        self.flush(sync=True)
        if self._env is not None:
            self._env.close()
            self._env = None
        self.manifest.close()
        if finished:
            # Their sources were redone: a later retry must not redo them again.
            for manifest in self.retried_manifests:
                if manifest.exists():
                    manifest.replace(manifest.with_name(FAILED_TASKS_FILE + RETRIED_SUFFIX))

    # ---------------------------------------------------------------------------------- actor pool
    def bind_roots(self, root_ids: Sequence[int], tasks: Sequence[Task[Any]]) -> None:
        for rid, task in zip(root_ids, tasks, strict=True):
            self._roots[rid] = task._metadata.get(SOURCE_KEY, task.task_id)

    def roots_completed(
        self,
        root_ids: Sequence[int],
        failures: Sequence[FailureRecord] = (),
        failure_roots: Sequence[Sequence[int]] | None = None,
    ) -> None:
        """`failure_roots`: the core's roots of each failure's tasks (their sources go to the manifest,
        for failed tasks whose ids name none)."""
        # Called every scheduling round, also with nothing new: that is when a pending group is committed.
        sources = (
            [{self._roots[r] for r in roots if r in self._roots} for roots in failure_roots]
            if failure_roots is not None
            else None
        )
        self.record([self._roots.pop(r) for r in root_ids if r in self._roots], failures, sources)

    # ---------------------------------------------------------------------------------- Ray Data
    def give_credit(self, tasks: Sequence[Task[Any]]) -> None:
        for task in tasks:
            task._metadata = {**task._metadata, CREDIT_KEY: {task._metadata[SOURCE_KEY]: (1, 1)}}

    def take_block(self, tasks: Sequence[Task[Any]], block_failures: list[Any]) -> list[Any]:
        """Count the credit of one final block; record what it completes; return the real failures."""
        failures: list[Any] = []
        got: dict[str, Fraction] = {}
        whole: list[str] = []  # sources whose whole credit came in one task (most): no fractions needed
        for task in tasks:
            credit = task._metadata.pop(CREDIT_KEY, None)
            if credit:
                if len(credit) == 1:
                    ((key, (num, den)),) = credit.items()
                    if num == den:
                        whole.append(key)
                        continue
                _add(got, credit)
        sources: list[Collection[str]] = []
        after_failure = False
        for entry in block_failures:
            credit = entry.pop(CREDIT_KEY, None) if isinstance(entry, dict) else None
            if credit:
                _add(got, credit)
            if isinstance(entry, dict) and not entry:
                # Credit alone. Right after a failure it is the failed batch's (the stage adapter hands it
                # back there): its sources are what a retry redoes when the ids are random (N -> K).
                if credit and after_failure:
                    sources[-1] = list(credit)
                after_failure = False
            else:
                failures.append(entry)
                sources.append(list(credit or ()))
                after_failure = True
        done = [key for key in whole if key not in got and key not in self._credit]
        for key in whole:
            if key in got or key in self._credit:  # a source seen in parts too: added up exactly
                got[key] = got.get(key, Fraction(0)) + 1
        for key, value in got.items():
            total = self._credit.get(key, Fraction(0)) + value
            if total >= 1:
                self._credit.pop(key, None)
                done.append(key)
            else:
                self._credit[key] = total
        if done or failures:
            self.record(done, [FailureRecord.from_dict(f) for f in failures], sources)
        return failures


#: Credit as it travels: source id -> (numerator, denominator), plain ints (cheaper to pickle than Fraction).
Credit = dict[str, tuple[int, int]]


def _add(into: dict[str, Fraction], credit: Credit) -> None:
    for key, (num, den) in credit.items():
        into[key] = into.get(key, Fraction(0)) + Fraction(num, den)


def _pack(credit: dict[str, Fraction]) -> Credit:
    return {key: (value.numerator, value.denominator) for key, value in credit.items()}


def split_credit(batch: Sequence[Task[Any]], outputs: Sequence[Task[Any]]) -> Credit | None:
    """Ray Data stage hook: spread the batch's credit over `outputs`; the credit to hand back when there are
    none (the batch's tasks ended here). None when the run carries no credit."""
    if not batch or CREDIT_KEY not in batch[0]._metadata:
        return None
    if len(batch) == 1 and len(outputs) == 1:  # the common case: the credit passes on unchanged
        if outputs[0] is not batch[0]:
            outputs[0]._metadata = {**outputs[0]._metadata, CREDIT_KEY: batch[0]._metadata[CREDIT_KEY]}
        return None
    total: dict[str, Fraction] = {}
    for task in batch:
        _add(total, task._metadata.get(CREDIT_KEY) or {})
    if not outputs:
        return _pack(total)
    share = _pack({key: value / len(outputs) for key, value in total.items()})
    for task in outputs:
        # A new dict: a stage may hand its input's metadata dict on to several outputs.
        task._metadata = {**task._metadata, CREDIT_KEY: share}
    return None


def batch_credit(batch: Sequence[Task[Any]]) -> Credit | None:
    """The credit of a batch that failed (handed back with its failure record)."""
    if not batch or CREDIT_KEY not in batch[0]._metadata:
        return None
    total: dict[str, Fraction] = {}
    for task in batch:
        _add(total, task._metadata.get(CREDIT_KEY) or {})
    return _pack(total)


# ------------------------------------------------------------------------------------------------ task ids
def assign_task_ids(inputs: Sequence[Task[Any]], outputs: Sequence[Task[Any]]) -> None:
    """Curator v1.3's deterministic ids, for tasks of a checkpointed run (inputs carrying a source id)."""
    if not inputs or not outputs or SOURCE_KEY not in inputs[0]._metadata:
        return
    n_in, n_out = len(inputs), len(outputs)
    if n_in == 1:
        parent = inputs[0]
        parent_id, source = parent.task_id, parent._metadata[SOURCE_KEY]
        several = parent._metadata.get(SOURCES_KEY)
        if n_out == 1:  # the common case, inlined: it runs for every task of every stage
            task = outputs[0]
            task.task_id = parent_id + "_0"
            md = task._metadata
            if md.get(SOURCE_KEY) != source or several is not None or SOURCES_KEY in md:
                _set(task, task.task_id, source, several)
            return
        for j, task in enumerate(outputs):
            _set(task, f"{parent_id}_{j}", source, several)
    elif n_in == n_out:
        # Read every parent first: a stage may hand an input back as another slot's output.
        parents = [(t.task_id, t._metadata.get(SOURCE_KEY, ""), t._metadata.get(SOURCES_KEY)) for t in inputs]
        for (pid, psource, several), task in zip(parents, outputs, strict=True):
            _set(task, f"{pid}_0", psource, several)
    else:
        sources = task_sources(inputs)
        one = sources[0] if len(sources) == 1 else ""
        for task in outputs:
            _set(task, "r" + uuid.uuid4().hex, one, None if one else sources)


def _set(task: Task[Any], task_id: str, source: str, several: list[str] | None = None) -> None:
    task.task_id = task_id
    md = task._metadata
    if md.get(SOURCE_KEY) != source or md.get(SOURCES_KEY) != several:
        md = {**md, SOURCE_KEY: source}  # a new dict: a stage may share one between tasks
        if several:
            md[SOURCES_KEY] = several
        else:
            md.pop(SOURCES_KEY, None)
        task._metadata = md


def task_sources(tasks: Iterable[Task[Any]]) -> list[str]:
    """The sources `tasks` descend from, as their metadata records them (sorted)."""
    found: set[str] = set()
    for task in tasks:
        if source := task._metadata.get(SOURCE_KEY):
            found.add(source)
        found.update(task._metadata.get(SOURCES_KEY) or ())
    return sorted(found)


def source_of(task_id: str) -> str:
    """The source id in a deterministic task id (`0_<source>_...`); "" when unknown (`r<hex>`)."""
    parts = task_id.split("_")
    return parts[1] if len(parts) > 1 and parts[0] == "0" else ""


def _source_id(task: Task[Any], position: int) -> str:
    get = getattr(task, "get_deterministic_id", None)
    det = get() if callable(get) else None
    if det is not None and "_" in str(det):
        raise ValueError(f"Deterministic id {det!r} of task {task.task_id} must not contain '_'")
    return str(det) if det is not None else str(position)


def _mark_sources(tasks: Sequence[Task[Any]]) -> list[Task[Any]]:
    seen: set[str] = set()
    for position, task in enumerate(tasks):
        source = _source_id(task, position)
        if source in seen:
            raise ValueError(
                f"Two source tasks have the same source id {source!r}: a checkpoint cannot tell them apart"
            )
        seen.add(source)
        task.task_id = f"0_{source}"
        task._metadata = {**task._metadata, SOURCE_KEY: source}
    return list(tasks)


# ------------------------------------------------------------------------------------------------ manifest
def failed_tasks_dir(checkpoint_path: str | os.PathLike[str] | None) -> Path | None:
    """Where this run's manifest goes: `NEMO_CURATOR_FAILED_TASKS_DIR`, else a new attempt directory under
    the checkpoint (as Curator v1.3's `configure_failed_task_manifest_dir`), else nowhere."""
    env = os.environ.get(FAILED_TASKS_DIR_ENV)
    if env:
        return Path(env)
    if checkpoint_path is None:
        return None
    return _metadata_dir(checkpoint_path) / ".failed_tasks" / f"local_attempt_{uuid.uuid4().hex}"


class ManifestWriter:
    """Appends failed tasks as JSON lines, flushed and synced before the sources they end are recorded."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._fh: Any = None

    def write(self, failures: Sequence[FailureRecord | tuple[FailureRecord, Collection[str]]]) -> None:
        """Each failure, or (failure, the sources it descends from: used when its task ids name none)."""
        if self.directory is None or not failures:
            return
        if self._fh is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.directory / FAILED_TASKS_FILE, "a", encoding="utf-8")
        for item in failures:
            failure, known = item if isinstance(item, tuple) else (item, ())
            for task_id in failure.task_ids or ("",):
                source = source_of(task_id)
                line: dict[str, Any] = {
                    "task_id": task_id,
                    "source_id": source or (next(iter(known)) if len(known) == 1 else ""),
                    "stage": failure.stage,
                    "error_type": failure.error_type,
                    "message": failure.message,
                    "attempts": failure.attempts,
                    "kind": failure.kind,
                }
                if not source and len(known) > 1:
                    line["source_ids"] = sorted(known)
                self._fh.write(json.dumps(line) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _manifests(checkpoint_path: str | os.PathLike[str]) -> list[Path]:
    """The manifests not consumed yet: `failed_tasks.json` (and `failed_tasks.json.retrying`, set aside by a
    retry that has not finished) in the checkpoint's attempt directories and in NEMO_CURATOR_FAILED_TASKS_DIR."""
    dirs = [_metadata_dir(checkpoint_path) / ".failed_tasks"]
    env = os.environ.get(FAILED_TASKS_DIR_ENV)
    if env:
        dirs.append(Path(env))
    found: list[Path] = []
    for directory, pattern in zip(dirs, ("**/", ""), strict=False):
        for name in (FAILED_TASKS_FILE, FAILED_TASKS_FILE + RETRYING_SUFFIX):
            for file in sorted(directory.glob(pattern + name)):
                if file.absolute() not in found:
                    found.append(file.absolute())
    return found


def _set_aside(manifest: Path) -> Path:
    if manifest.name == FAILED_TASKS_FILE:
        aside = manifest.with_name(FAILED_TASKS_FILE + RETRYING_SUFFIX)
        if aside.exists():  # a retry before this one died: keep both lists
            with open(aside, "a", encoding="utf-8") as out:
                out.write(manifest.read_text(encoding="utf-8"))
                out.flush()
                os.fsync(out.fileno())
            manifest.unlink()
        else:
            manifest.replace(aside)
        return aside
    return manifest


def read_failed_tasks(checkpoint_path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every failed task listed in the manifests of `checkpoint_path` (and `NEMO_CURATOR_FAILED_TASKS_DIR`)
    that no retry has consumed yet."""
    out: list[dict[str, Any]] = []
    for manifest in _manifests(checkpoint_path):
        with open(manifest, encoding="utf-8") as fh:
            out.extend(json.loads(line) for line in fh if line.strip())
    return out


def failed_sources(checkpoint_path: str | os.PathLike[str]) -> set[str]:
    """Source ids with a failed task in the manifests (what `retry_failed=True` redoes)."""
    out: set[str] = set()
    for r in read_failed_tasks(checkpoint_path):
        out.update([r["source_id"]] if r.get("source_id") else r.get("source_ids") or ())
    return out


# ------------------------------------------------------------------------------------------------ the run
def check_resumable(stages: Sequence[ProcessingStage[Any, Any]]) -> None:
    bad = [
        s.name
        for s in stages
        if getattr(s, "is_resumable", True) is False
        or any((s.ray_stage_spec() or {}).get(key) for key in _STATEFUL_SPEC_KEYS)
    ]
    if bad:
        raise ValueError(
            f"Stages {bad} cannot resume (is_resumable=False, or shuffle/LSH/RAFT stages that hold state across "
            "tasks): run without checkpoint_path"
        )


def resumable(
    execute: Callable[[_E, list[ProcessingStage[Any, Any]], list[Task[Any]] | None], list[Task[Any]]],
) -> Callable[..., list[Task[Any]]]:
    """Decorator for an executor's `execute(self, stages, initial_tasks=None)`: adds the keyword arguments
    `checkpoint_path` and `retry_failed` (and the failed-task manifest of `NEMO_CURATOR_FAILED_TASKS_DIR`),
    running the decorated method the plain way on the sources still to do."""

    @functools.wraps(execute)
    def wrapper(
        self: _E,
        stages: list[ProcessingStage[Any, Any]],
        initial_tasks: list[Task[Any]] | None = None,
        checkpoint_path: str | os.PathLike[str] | None = None,
        retry_failed: bool = False,
    ) -> list[Task[Any]]:
        return run_managed(
            self,
            functools.partial(execute, self),
            stages,
            initial_tasks,
            checkpoint_path,
            retry_failed=retry_failed,
        )

    # `inspect.signature` (and help()) show the arguments callers pass, not the decorated method's.
    del wrapper.__wrapped__  # type: ignore[attr-defined]
    return wrapper


def run_managed(
    executor: Any,
    run: Callable[[list[ProcessingStage[Any, Any]], list[Task[Any]] | None], list[Task[Any]]],
    stages: list[ProcessingStage[Any, Any]],
    initial_tasks: list[Task[Any]] | None,
    checkpoint_path: str | os.PathLike[str] | None,
    *,
    retry_failed: bool = False,
) -> list[Task[Any]]:
    """`executor`'s run (`run(stages, initial_tasks)`, its plain `execute`) with a checkpoint or a manifest."""
    if checkpoint_path is None:
        if retry_failed:
            raise ValueError("retry_failed=True needs the checkpoint_path of the run to retry")
        directory = failed_tasks_dir(None)
        # A plain run inside a checkpointed one (a stage that runs a pipeline) must not see the outer one.
        token = _ACTIVE.set(None)
        try:
            return run(stages, initial_tasks)
        finally:
            _ACTIVE.reset(token)
            if directory is not None:
                writer = ManifestWriter(directory)
                writer.write([FailureRecord.from_dict(f) for f in getattr(executor, "failures", [])])
                writer.close()
    if not stages:
        return []
    if os.environ.get("RAY_ADDRESS", "").startswith("ray://"):
        # Through Ray Client the driver loop runs on the cluster, out of reach of this process's store.
        raise NotImplementedError(
            "checkpoint_path is not supported through Ray Client (RAY_ADDRESS=ray://...)"
        )
    from nemo_curator.backends.base import validate_stages

    validate_stages(stages)
    check_resumable(stages)
    ckpt = Checkpoint(checkpoint_path, retry_failed=retry_failed)
    sources, rest = _sources(stages, initial_tasks)
    todo = [t for t in sources if t._metadata[SOURCE_KEY] not in ckpt.completed]
    logger.info(
        f"Checkpoint {ckpt.path}: {len(sources) - len(todo)} of {len(sources)} source(s) already completed"
    )
    if not rest:  # a one-stage pipeline: its outputs are the sources
        ckpt.record([t._metadata[SOURCE_KEY] for t in todo])
        ckpt.close(finished=True)
        return todo
    if not todo:
        ckpt.close(finished=True)
        executor.failures = []
        return []
    token = _ACTIVE.set(ckpt)
    finished = False
    try:
        results = run(rest, todo)
        finished = True
    finally:
        _ACTIVE.reset(token)
        ckpt.close(finished=finished)
    for task in results:
        task._metadata.pop(CREDIT_KEY, None)
    return results


def _shallow_copy(task: Task[Any]) -> Task[Any]:
    """A copy whose id, metadata and perf history can change without touching the caller's task; the
    payload is shared (executors copy or pickle it anyway)."""
    state = getattr(task, "__dict__", None)
    if state is None:
        out = copy.copy(task)
    else:  # what `copy.copy` does here, without its reduce protocol (several times slower)
        out = object.__new__(type(task))
        out.__dict__.update(state)
    out._stage_perf = list(task._stage_perf)
    out._metadata = dict(task._metadata)
    return out


def _sources(
    stages: list[ProcessingStage[Any, Any]], initial_tasks: list[Task[Any]] | None
) -> tuple[list[Task[Any]], list[ProcessingStage[Any, Any]]]:
    """The sources and the stages left to run on them. Starting from an empty task, the source stage (a
    listing stage such as file partitioning) runs here, so that its outputs can be skipped one by one."""
    from nemo_curator.backends.base import BaseStageAdapter, NodeInfo, WorkerMetadata, prepare_initial_tasks
    from nemo_curator.tasks.tasks import _EmptyTask

    tasks = prepare_initial_tasks(initial_tasks)
    if not all(isinstance(t, _EmptyTask) for t in tasks):
        return _mark_sources([_shallow_copy(t) for t in tasks]), stages
    adapter = BaseStageAdapter(copy.deepcopy(stages[0]))
    worker = WorkerMetadata(worker_id="driver")
    adapter.setup_on_node(NodeInfo(node_id="driver"), worker)
    adapter.setup(worker)
    try:
        outputs = [out for task in tasks for out in adapter.process_batch([task])]
    finally:
        adapter.teardown()
    return _mark_sources(outputs), stages[1:]
