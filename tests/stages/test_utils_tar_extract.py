"""``nemo_curator.utils.file_utils.tar_safe_extract``: extracts ordinary archives, refuses path traversal."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from nemo_curator.utils.file_utils import tar_safe_extract


def _file(name: str, data: bytes = b"payload", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    return info, data


def _dir(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, None


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def _special(name: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


def _archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _extract(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tar:
        tar_safe_extract(tar, str(dest))


def _tree(root: Path) -> dict[str, str]:
    """Every entry under ``root``: files by content, symlinks by target, directories as ``<dir>``."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                out[rel] = "-> " + os.readlink(full)
            elif full.is_dir():
                out[rel] = "<dir>"
            else:
                out[rel] = full.read_bytes().decode()
    return out


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """The extraction directory, inside a sandbox whose other entries reveal escapes."""
    target = tmp_path / "sandbox" / "out"
    target.mkdir(parents=True)
    return target


def _sandbox_outside(dest: Path) -> dict[str, str]:
    """Everything in the sandbox that is not under ``dest``."""
    return {k: v for k, v in _tree(dest.parent).items() if not (k == "out" or k.startswith("out/"))}


def test_extracts_files_directories_and_inner_links(tmp_path: Path, dest: Path) -> None:
    archive = _archive(
        tmp_path / "ok.tar",
        [
            _dir("docs"),
            _file("docs/a.txt", b"alpha"),
            _file("docs/sub/b.txt", b"beta"),
            _file("top.txt", b"top"),
            _link("docs/sub/up", "../a.txt"),  # relative to the link's own directory: docs/a.txt
            _link("alias", "docs/sub"),
            _link("hard", "top.txt", tarfile.LNKTYPE),  # hard link targets name archive members
            _link("./dot/./rel", "../top.txt"),
        ],
    )
    _extract(archive, dest)
    tree = _tree(dest)
    assert tree == {
        "docs": "<dir>",
        "docs/a.txt": "alpha",
        "docs/sub": "<dir>",
        "docs/sub/b.txt": "beta",
        "docs/sub/up": "-> ../a.txt",
        "top.txt": "top",
        "alias": "-> docs/sub",
        "hard": "top",
        "dot": "<dir>",
        "dot/rel": "-> ../top.txt",
    }
    assert (dest / "docs" / "sub" / "up").read_text() == "alpha"
    assert (dest / "alias" / "b.txt").read_text() == "beta"
    assert os.stat(dest / "hard").st_ino == os.stat(dest / "top.txt").st_ino


def test_accepts_a_path_object_and_a_missing_destination(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "ok.tar", [_file("x/y.txt", b"y")])
    target = tmp_path / "new" / "dir"
    with tarfile.open(archive) as tar:
        tar_safe_extract(tar, target)
    assert (target / "x" / "y.txt").read_text() == "y"


def test_extracts_a_compressed_stream(tmp_path: Path, dest: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info, data = _file("z.txt", b"zipped")
        tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    with tarfile.open(fileobj=buffer, mode="r:gz") as tar:
        tar_safe_extract(tar, str(dest))
    assert _tree(dest) == {"z.txt": "zipped"}


Members = list[tuple[tarfile.TarInfo, bytes | None]]

# Each case builds its members from the sandbox directory (the parent of the target directory), so that
# absolute names and targets point into the sandbox: an extraction that honoured them would show up there.
UNSAFE: dict[str, tuple[Callable[[str], Members], str]] = {
    "dotdot": (lambda sb: [_file("../escape.txt")], "escapes the target directory"),
    "nested-dotdot": (lambda sb: [_file("a/../../escape.txt")], "escapes the target directory"),
    "deep-dotdot": (lambda sb: [_file("a/b/../../../escape.txt")], "escapes the target directory"),
    "absolute": (lambda sb: [_file(f"{sb}/escape.txt")], "absolute member path"),
    "symlink-up": (lambda sb: [_link("link", "../outside")], "points outside"),
    "symlink-up-from-subdir": (lambda sb: [_link("a/b/link", "../../../outside")], "points outside"),
    "symlink-absolute": (lambda sb: [_link("link", f"{sb}/victim")], "absolute target"),
    "hardlink-up": (lambda sb: [_link("hard", "../outside", tarfile.LNKTYPE)], "points outside"),
    "hardlink-absolute": (lambda sb: [_link("hard", f"{sb}/victim", tarfile.LNKTYPE)], "absolute target"),
    "char-device": (lambda sb: [_special("dev", tarfile.CHRTYPE)], "device or FIFO"),
    "block-device": (lambda sb: [_special("blk", tarfile.BLKTYPE)], "device or FIFO"),
    "fifo": (lambda sb: [_special("pipe", tarfile.FIFOTYPE)], "device or FIFO"),
}


@pytest.mark.parametrize("case", list(UNSAFE))
def test_refuses_unsafe_members_before_writing_anything(tmp_path: Path, dest: Path, case: str) -> None:
    build, message = UNSAFE[case]
    members = build(dest.parent.as_posix())
    # A harmless member first: a refused archive must leave no partial extraction behind.
    archive = _archive(tmp_path / "bad.tar", [_file("first.txt", b"first"), *members])
    with pytest.raises(ValueError, match=message) as err:
        _extract(archive, dest)
    assert members[0][0].name in str(err.value)
    assert str(archive) in str(err.value)
    assert _tree(dest) == {}
    assert _sandbox_outside(dest) == {}


def test_refuses_a_link_chain_that_only_escapes_on_disk(tmp_path: Path, dest: Path) -> None:
    # By name, "a/b" -> ".." is "a/.." = the root, which is inside; on disk "a" is "." so "a/b" is "b" and
    # its target ".." is the sandbox. The on-disk check refuses it before it is created.
    archive = _archive(tmp_path / "chain.tar", [_link("a", "."), _link("a/b", ".."), _file("a/b/pwn.txt")])
    with pytest.raises(ValueError, match="resolves outside"):
        _extract(archive, dest)
    assert _sandbox_outside(dest) == {}
    assert not (dest / "b").is_symlink()


def test_refuses_writing_through_a_symlink_already_in_the_destination(tmp_path: Path, dest: Path) -> None:
    outside = dest.parent / "victim"
    outside.mkdir()
    (dest / "data").symlink_to(outside)
    archive = _archive(tmp_path / "through.tar", [_file("data/pwn.txt", b"x")])
    with pytest.raises(ValueError, match="resolves outside"):
        _extract(archive, dest)
    assert list(outside.iterdir()) == []


def test_refuses_overwriting_a_file_through_an_existing_symlink(tmp_path: Path, dest: Path) -> None:
    victim = dest.parent / "victim.txt"
    victim.write_text("original")
    (dest / "f.txt").symlink_to(victim)
    archive = _archive(tmp_path / "over.tar", [_file("f.txt", b"overwritten")])
    with pytest.raises(ValueError, match="resolves outside"):
        _extract(archive, dest)
    assert victim.read_text() == "original"
