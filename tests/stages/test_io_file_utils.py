"""File listing, grouping, naming and output-mode helpers (spec: stages-io.md §3)."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pandas as pd
import pytest
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from nemo_curator.stages.file_partitioning import _parse_size as partitioning_parse_size
from nemo_curator.stages.text.io.writer.utils import batched, get_deterministic_hash
from nemo_curator.utils.client_utils import is_remote_url
from nemo_curator.utils.file_utils import (
    FILETYPE_TO_DEFAULT_EXTENSIONS,
    _parse_size,
    _split_files_as_per_blocksize,
    check_output_mode,
    create_or_overwrite_dir,
    delete_dir,
    get_all_file_paths_and_size_under,
    get_all_file_paths_under,
    get_fs,
    infer_dataset_name_from_path,
    is_not_empty,
    pandas_select_columns,
)


def _write(path: Path, size: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path.as_posix()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    _write(root / "a.jsonl", 5)
    _write(root / "B.JSON", 3)
    _write(root / "c.parquet", 7)
    _write(root / "d.jsonl.gz", 1)
    _write(root / "noext", 2)
    _write(root / "sub" / "e.jsonl", 3)
    _write(root / "sub" / "deeper" / "f.json", 4)
    return root


@pytest.fixture
def memfs() -> MemoryFileSystem:
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    fs.pseudo_dirs.clear()
    fs.pseudo_dirs.append("")
    yield fs
    fs.store.clear()


def test_default_extensions() -> None:
    assert FILETYPE_TO_DEFAULT_EXTENSIONS == {
        "parquet": [".parquet"],
        "jsonl": [".jsonl", ".json"],
        "megatron": [".bin", ".idx"],
    }


def test_is_remote_url() -> None:
    assert not is_remote_url("/tmp/some/dir")
    assert not is_remote_url("relative/dir")
    assert not is_remote_url("file:///tmp/some/dir")
    assert is_remote_url("memory://bucket/dir")


def test_listing_filters_extensions_case_insensitively_and_uses_last_suffix(tree: Path) -> None:
    found = get_all_file_paths_under(tree.as_posix(), keep_extensions=[".jsonl", "json"])
    # "B.JSON" matches ".json"; "d.jsonl.gz" ends in "gz" so it does not match ".jsonl"; sorted by name.
    assert found == [(tree / "B.JSON").as_posix(), (tree / "a.jsonl").as_posix()]


def test_listing_recursion(tree: Path) -> None:
    flat = get_all_file_paths_under(tree.as_posix(), keep_extensions=[".jsonl", ".json"])
    deep = get_all_file_paths_under(
        tree.as_posix(), recurse_subdirectories=True, keep_extensions=[".jsonl", ".json"]
    )
    assert len(flat) == 2
    assert deep == [
        (tree / "B.JSON").as_posix(),
        (tree / "a.jsonl").as_posix(),
        (tree / "sub" / "deeper" / "f.json").as_posix(),
        (tree / "sub" / "e.jsonl").as_posix(),
    ]


def test_listing_extension_forms(tree: Path) -> None:
    root = tree.as_posix()
    assert len(get_all_file_paths_under(root, keep_extensions=None)) == 5
    assert get_all_file_paths_under(root, keep_extensions=[]) == []
    assert get_all_file_paths_under(root, keep_extensions="PARQUET") == [(tree / "c.parquet").as_posix()]
    assert get_all_file_paths_under(root, keep_extensions=[""]) == [(tree / "noext").as_posix()]


def test_listing_single_file_glob_missing_and_relative(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file_path = (tree / "a.jsonl").as_posix()
    assert get_all_file_paths_under(file_path) == [file_path]
    assert get_all_file_paths_under((tree / "*.jsonl").as_posix()) == [file_path]
    assert get_all_file_paths_under((tree / "missing").as_posix()) == []
    monkeypatch.chdir(tmp_path)
    assert get_all_file_paths_under("data", keep_extensions=[".parquet"]) == [(tree / "c.parquet").as_posix()]


def test_listing_with_sizes_sorted_by_size_then_name(tree: Path) -> None:
    found = get_all_file_paths_and_size_under(
        tree.as_posix(), recurse_subdirectories=True, keep_extensions=[".jsonl", ".json", ".parquet"]
    )
    assert found == [
        ((tree / "B.JSON").as_posix(), 3),
        ((tree / "sub" / "e.jsonl").as_posix(), 3),
        ((tree / "sub" / "deeper" / "f.json").as_posix(), 4),
        ((tree / "a.jsonl").as_posix(), 5),
        ((tree / "c.parquet").as_posix(), 7),
    ]


def test_listing_remote_keeps_protocol(memfs: MemoryFileSystem) -> None:
    # fsspec memory paths are rooted at "/", so unstrip_protocol gives "memory:///...".
    memfs.pipe("/bucket/in/x.jsonl", b"12")
    memfs.pipe("/bucket/in/y.txt", b"1")
    memfs.pipe("/bucket/in/nested/z.jsonl", b"123")
    assert get_all_file_paths_under("memory://bucket/in", keep_extensions=[".jsonl"]) == [
        "memory:///bucket/in/x.jsonl"
    ]
    assert get_all_file_paths_and_size_under(
        "memory://bucket/in", recurse_subdirectories=True, keep_extensions=[".jsonl"]
    ) == [("memory:///bucket/in/x.jsonl", 2), ("memory:///bucket/in/nested/z.jsonl", 3)]


def test_split_files_as_per_blocksize() -> None:
    files = [("a", 3), ("b", 3), ("c", 5), ("d", 20), ("e", 1)]
    # a+b=6 fits 8; c would make 11 so the group closes; d alone exceeds 8; e starts a new group after d.
    assert _split_files_as_per_blocksize(files, 8) == [["a", "b"], ["c"], ["d"], ["e"]]
    assert _split_files_as_per_blocksize([("big", 100)], 8) == [["big"]]
    assert _split_files_as_per_blocksize([("a", 4), ("b", 4)], 8) == [["a", "b"]]
    assert _split_files_as_per_blocksize([], 8) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100 MB", 10**8),
        ("1kiB", 1024),
        ("5.4 kB", 5400),
        ("1e6 kB", 10**9),
        ("MB", 10**6),
        ("2 GiB", 2 * 2**30),
        ("12", 12),
        ("3b", 3),
        ("1 P", 10**15),
        (512, 512),
        (2.9, 2),
    ],
)
def test_parse_size(text: str | int | float, expected: int) -> None:
    assert _parse_size(text) == expected
    assert partitioning_parse_size(text) == expected


def test_parse_size_errors() -> None:
    with pytest.raises(ValueError, match="Could not interpret 'XB' as a byte unit"):
        _parse_size("12 XB")
    with pytest.raises(ValueError, match=r"Could not interpret '1\.2\.3' as a number"):
        _parse_size("1.2.3kb")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/data/MyDir/f.jsonl", "mydir"),
        ("File.jsonl", "file"),
        ("./Other.parquet", "other"),
        ("s3://Bucket", "Bucket"),
        ("s3://b/dir/A.jsonl", "a.jsonl"),
        ("memory://b/Dir/", "dir"),
    ],
)
def test_infer_dataset_name_from_path(path: str, expected: str) -> None:
    assert infer_dataset_name_from_path(path) == expected


def test_pandas_select_columns() -> None:
    df = pd.DataFrame({"a": [1], "b": [2], "c": [3]})
    assert pandas_select_columns(df, None, "f") is df
    assert list(pandas_select_columns(df, ["c", "missing", "a"], "f").columns) == ["c", "a"]
    assert pandas_select_columns(df, ["x", "y"], "f") is None


def test_check_output_mode_validation(tmp_path: Path) -> None:
    fs = LocalFileSystem()
    target = (tmp_path / "out").as_posix()
    with pytest.raises(
        ValueError, match=r"Invalid mode: 'bogus'. Allowed: \['append', 'error', 'ignore', 'overwrite'\]"
    ):
        check_output_mode("bogus", fs, target)
    with pytest.raises(NotImplementedError, match="append mode is not implemented yet"):
        check_output_mode("append", fs, target)
    check_output_mode("append", fs, target, append_mode_implemented=True)
    assert Path(target).is_dir()


def test_check_output_mode_error_ignore_overwrite(tmp_path: Path) -> None:
    fs = LocalFileSystem()
    target = tmp_path / "out"
    check_output_mode("error", fs, target.as_posix())
    assert target.is_dir()
    # An existing directory is an error even when empty.
    with pytest.raises(FileExistsError, match="already exists"):
        check_output_mode("error", fs, target.as_posix())
    (target / "keep.txt").write_text("x")
    check_output_mode(" IGNORE ", fs, target.as_posix())
    assert (target / "keep.txt").exists()
    check_output_mode("Overwrite", fs, target.as_posix())
    assert target.is_dir()
    assert list(target.iterdir()) == []


def test_dir_helpers(tmp_path: Path, memfs: MemoryFileSystem) -> None:
    target = tmp_path / "d"
    assert not is_not_empty(target.as_posix())
    create_or_overwrite_dir(target.as_posix())
    assert target.is_dir()
    assert not is_not_empty(target.as_posix())
    (target / "f").write_text("x")
    assert is_not_empty(target.as_posix(), fs=LocalFileSystem())
    create_or_overwrite_dir(target.as_posix(), storage_options={})
    assert target.is_dir()
    assert list(target.iterdir()) == []
    (target / "f").write_text("x")
    delete_dir(target.as_posix())
    assert not target.exists()
    with pytest.raises(ValueError, match="fs and storage_options cannot be provided together"):
        delete_dir(target.as_posix(), fs=LocalFileSystem(), storage_options={})
    with pytest.raises(ValueError, match="fs and storage_options cannot be provided together"):
        is_not_empty(target.as_posix(), fs=LocalFileSystem(), storage_options={})
    memfs.pipe("/bucket/x/y", b"1")
    assert is_not_empty("memory://bucket/x")
    delete_dir("memory://bucket/x")
    assert not memfs.exists("/bucket/x/y")


def test_get_fs() -> None:
    assert isinstance(get_fs("/tmp/x"), LocalFileSystem)
    assert isinstance(get_fs("memory://x"), MemoryFileSystem)


def test_get_deterministic_hash() -> None:
    inputs = ["/data/b.jsonl", "/data/a.jsonl"]
    assert get_deterministic_hash(inputs, "file_group_0_processed") == "8ea7d255f708"
    assert get_deterministic_hash(list(reversed(inputs)), "file_group_0_processed") == "8ea7d255f708"
    assert get_deterministic_hash(inputs, "file_group_1_processed") != "8ea7d255f708"
    assert len(get_deterministic_hash(["x"])) == 12


def test_batched() -> None:
    assert list(batched(range(5), 2)) == [(0, 1), (2, 3), (4,)]
    assert list(batched([], 3)) == []
    with pytest.raises(ValueError, match="n must be at least one"):
        list(batched([1], 0))
