from __future__ import annotations

import os
import stat

import pytest

from admin.common.atomic import atomic_path, atomic_write_text


def test_atomic_write_replaces_whole_file_with_usual_permissions(tmp_path):
    path = tmp_path / "out" / "file.txt"
    atomic_write_text(path, "hello\n")
    assert path.read_text() == "hello\n"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_failure_leaves_nothing_behind(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("killed half way")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_directory_is_promoted_whole(tmp_path):
    final = tmp_path / "bin"
    with atomic_path(final, directory=True) as tmp:
        (tmp / "a").write_text("1")
        assert not final.exists()
    assert (final / "a").read_text() == "1"
