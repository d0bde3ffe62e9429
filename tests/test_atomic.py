"""Atomic writes: all-or-nothing, usual permissions, no temporary file left behind."""

import os

import pytest

from lit_omarl.utils.atomic import atomic_path, atomic_write_text, default_file_mode


def test_atomic_write_replaces_whole_file_with_usual_permissions(tmp_path):
    target = tmp_path / "sub" / "result.json"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert (target.stat().st_mode & 0o777) == default_file_mode()
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.json"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as (fd, tmp):
            os.write(fd, b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]
