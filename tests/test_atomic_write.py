"""siammae_common.atomic: the one temp-file-and-rename writer every output goes through."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from siammae_common.atomic import AtomicFile, atomic_write, write_text_atomic


def test_a_write_replaces_the_whole_file_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.json"
    write_text_atomic(target, "old")
    with atomic_write(target) as f:
        f.write(b"new")
        assert target.read_text() == "old"             # a reader sees the old file until the end
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    write_text_atomic(target, "kept")
    with pytest.raises(KeyboardInterrupt), atomic_write(target) as f:
        f.write(b"half")
        raise KeyboardInterrupt
    assert target.read_text() == "kept" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_the_file_gets_the_mode_a_plain_open_gives(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


def test_a_discarded_file_leaves_nothing(tmp_path: Path) -> None:
    out = AtomicFile(tmp_path / "x.tar", tmp_path / "x.tar.tmp")
    out.file.write(b"data")
    assert (tmp_path / "x.tar.tmp").exists()
    out.discard()
    assert list(tmp_path.iterdir()) == []
