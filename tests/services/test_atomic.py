"""services.atomic: the target is replaced whole on a clean exit and left as it was on an error."""

from __future__ import annotations

import pytest

from services.atomic import atomic_open, atomic_path


def test_clean_exit_replaces_the_target_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "new" / "report.png"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".report.png.") and tmp.suffix == ".png"
        assert not target.exists()  # nothing visible under the real name while writing
        tmp.write_bytes(b"png")
    assert target.read_bytes() == b"png" and [p.name for p in target.parent.iterdir()] == ["report.png"]


def test_an_error_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "index.html"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="half"), atomic_open(target, "w") as f:
        f.write("new, half written")
        raise RuntimeError("half")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["index.html"]
    with atomic_open(target, "w") as f:
        f.write("new")
    assert target.read_text() == "new"
    with pytest.raises(ValueError, match="index.html: atomic_open writes whole files"), atomic_open(target, "a"):
        pass


def test_folders_made_for_a_failed_write_go_with_it(tmp_path):
    target = tmp_path / "new" / "deeper" / "out.txt"
    with pytest.raises(RuntimeError), atomic_open(target, "w") as f:
        f.write("half")
        raise RuntimeError("the disk filled up")
    assert list(tmp_path.iterdir()) == []
    with atomic_open(target, "w") as f:
        f.write("whole")
    assert target.read_text() == "whole"
