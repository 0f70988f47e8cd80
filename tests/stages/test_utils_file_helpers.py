"""``filter_files_by_extension``, ``infer_protocol_from_paths``, ``check_disallowed_kwargs`` and ``FSPath``."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from nemo_curator.utils.client_utils import FSPath
from nemo_curator.utils.file_utils import (
    check_disallowed_kwargs,
    filter_files_by_extension,
    infer_protocol_from_paths,
)

FILES = ["b.jsonl", "a.json", "c.JSONL", "d.jsonl.gz", "e.parquet", "dir/f.jsonl", "jsonl", "g.xjsonl"]


@pytest.mark.parametrize(
    ("keep", "expected"),
    [
        ("jsonl", ["b.jsonl", "dir/f.jsonl"]),
        (".jsonl", ["b.jsonl", "dir/f.jsonl"]),
        ([".jsonl", "json"], ["b.jsonl", "a.json", "dir/f.jsonl"]),
        (["jsonl.gz"], ["d.jsonl.gz"]),
        (["gz", ".parquet"], ["d.jsonl.gz", "e.parquet"]),
        ("JSONL", ["c.JSONL"]),  # case-sensitive, unlike the directory listing's filter
        ("csv", []),
    ],
)
def test_filter_files_by_extension(keep: str | list[str], expected: list[str]) -> None:
    assert filter_files_by_extension(FILES, keep) == expected


def test_filter_files_by_extension_keeps_input_order_and_warns_only_on_drops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    files = ["z.parquet", "a.parquet", "m.parquet"]
    assert filter_files_by_extension(files, "parquet") == files
    assert "Skipped" not in caplog.text
    assert filter_files_by_extension([*files, "x.csv"], ["parquet"]) == files
    assert "Skipped 1 of 4 files" in caplog.text
    assert filter_files_by_extension([], "parquet") == []


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (["/data/a.jsonl", "rel/b.jsonl"], None),
        (["file:///data/a.jsonl"], None),
        (["local:///data/a.jsonl"], None),
        ([], None),
        (["s3://bucket/a.parquet"], "s3"),
        (["/local/a", "gcs://bucket/a", "s3://bucket/b"], "gcs"),
        (["gs://bucket/a"], "gs"),
        (["abfs://container@account.dfs.core.windows.net/a"], "abfs"),
        (["memory://a"], "memory"),
        (["hdfs://namenode:8020/data"], "hdfs"),
        (["https://host/path/a.json"], "https"),
    ],
)
def test_infer_protocol_from_paths(paths: list[str], expected: str | None) -> None:
    assert infer_protocol_from_paths(paths) == expected


def test_infer_protocol_from_paths_takes_any_iterable_and_stops_at_the_first_remote() -> None:
    seen: list[str] = []

    def gen() -> object:
        for path in ["/a", "s3://b/c", "gcs://never/read"]:
            seen.append(path)
            yield path

    assert infer_protocol_from_paths(gen()) == "s3"
    assert seen == ["/a", "s3://b/c"]


def test_check_disallowed_kwargs_raises_naming_the_keys() -> None:
    with pytest.raises(ValueError, match=r"Unsupported keys in kwargs: columns, index$"):
        check_disallowed_kwargs(
            {"index": False, "compression": "snappy", "columns": ["a"]}, ["columns", "index"]
        )


def test_check_disallowed_kwargs_passes_allowed_and_empty_kwargs(caplog: pytest.LogCaptureFixture) -> None:
    assert check_disallowed_kwargs({"compression": "snappy"}, ["index"]) is None
    assert check_disallowed_kwargs({}, ["index"]) is None
    assert check_disallowed_kwargs({"index": 1}, []) is None
    assert "Unsupported" not in caplog.text


def test_check_disallowed_kwargs_only_warns_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    check_disallowed_kwargs({"engine": "pyarrow", "filters": []}, ["filters", "engine"], raise_error=False)
    assert "Unsupported keys in kwargs: engine, filters" in caplog.text
    assert any(record.levelname == "WARNING" for record in caplog.records)


# ------------------------------------------------------------------------------------------------------------
# FSPath


@pytest.fixture
def memfs() -> MemoryFileSystem:
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    fs.pseudo_dirs.clear()
    fs.pseudo_dirs.append("")
    yield fs
    fs.store.clear()


def test_fspath_str_repr_and_open(tmp_path: Path) -> None:
    file = tmp_path / "v.txt"
    fs = fsspec.filesystem("file")
    fspath = FSPath(fs, file.as_posix())
    assert str(fspath) == file.as_posix()
    assert repr(fspath) == f"FSPath({file.as_posix()})"
    with fspath.open("w") as handle:
        handle.write("hello")
    with fspath.open() as handle:  # binary by default
        assert handle.read() == b"hello"
    with fspath.open("rt", encoding="utf-8") as handle:
        assert handle.read() == "hello"


def test_fspath_reads_through_its_own_filesystem(memfs: MemoryFileSystem) -> None:
    memfs.pipe("/bucket/clip.mp4", b"\x00\x01video")
    fspath = FSPath(memfs, "/bucket/clip.mp4")
    with fspath.open("rb") as handle:
        assert handle.read() == b"\x00\x01video"
    assert fspath.as_posix() == "memory:///bucket/clip.mp4"
    assert fsspec.open(fspath.as_posix(), "rb").open().read() == b"\x00\x01video"


class _ProtocolOnly(fsspec.AbstractFileSystem):
    """A filesystem class whose only interesting attribute is its protocol (never registered)."""

    cachable = False


@pytest.mark.parametrize(
    ("protocol", "path", "expected"),
    [
        ("file", "/data/x", "/data/x"),
        ("s3", "bucket/key", "s3://bucket/key"),
        (("gcs", "gs"), "bucket/key", "gcs://bucket/key"),
        (["s3", "s3a"], "bucket/key", "s3://bucket/key"),
        (("file", "local"), "/data/x", "file:///data/x"),
        (None, "/data/x", "/data/x"),
        ("", "/data/x", "/data/x"),
    ],
)
def test_fspath_as_posix(protocol: object, path: str, expected: str) -> None:
    fs = _ProtocolOnly()
    fs.protocol = protocol
    assert FSPath(fs, path).as_posix() == expected


def test_fspath_as_posix_of_the_local_filesystem_is_a_file_url(tmp_path: Path) -> None:
    fs = fsspec.filesystem("file")
    path = (tmp_path / "a.bin").as_posix()
    assert FSPath(fs, path).as_posix() == f"file://{path}"


@pytest.mark.parametrize("part_size", [1, 3, 7, 52, 53, 1000])
def test_get_bytes_cat_ranges_reassembles_the_file(memfs: MemoryFileSystem, part_size: int) -> None:
    data = bytes(range(53))
    memfs.pipe("/obj", data)
    ranges: list[tuple[int, int]] = []
    real_cat_ranges = memfs.cat_ranges

    def recording_cat_ranges(
        paths: list[str], starts: list[int], ends: list[int], **kw: object
    ) -> list[bytes]:
        ranges.extend(zip(starts, ends, strict=True))
        return real_cat_ranges(paths, starts, ends, **kw)

    memfs.cat_ranges = recording_cat_ranges  # type: ignore[method-assign]
    try:
        assert FSPath(memfs, "/obj").get_bytes_cat_ranges(part_size=part_size) == data
    finally:
        del memfs.cat_ranges
    expected_starts = list(range(0, len(data), part_size))
    assert ranges == [(s, min(s + part_size, len(data))) for s in expected_starts]


def test_get_bytes_cat_ranges_of_a_local_file_and_an_empty_file(
    tmp_path: Path, memfs: MemoryFileSystem
) -> None:
    file = tmp_path / "f.bin"
    file.write_bytes(b"Hello, World! " * 100)
    assert (
        FSPath(fsspec.filesystem("file"), file.as_posix()).get_bytes_cat_ranges(part_size=64)
        == file.read_bytes()
    )
    memfs.pipe("/empty", b"")
    assert FSPath(memfs, "/empty").get_bytes_cat_ranges() == b""


def test_get_bytes_cat_ranges_errors(memfs: MemoryFileSystem) -> None:
    with pytest.raises(FileNotFoundError):
        FSPath(memfs, "/missing").get_bytes_cat_ranges()
    memfs.pipe("/obj", b"abcdef")
    with pytest.raises(ValueError, match="part_size must be positive"):
        FSPath(memfs, "/obj").get_bytes_cat_ranges(part_size=0)

    def short_cat_ranges(paths: list[str], starts: list[int], ends: list[int], **kw: object) -> list[bytes]:
        return [b"x" for _ in starts]

    memfs.cat_ranges = short_cat_ranges  # type: ignore[method-assign]
    try:
        with pytest.raises(OSError, match=r"memory:///obj: range 0-4 returned 1 bytes, expected 4"):
            FSPath(memfs, "/obj").get_bytes_cat_ranges(part_size=4)
    finally:
        del memfs.cat_ranges
