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


def test_outputs_take_the_umask_like_a_plain_open(tmp_path):
    import os

    old = os.umask(0o027)
    try:
        with atomic_open(tmp_path / "report.html", "w") as f:
            f.write("x")
        (tmp_path / "plain.html").write_text("x")
    finally:
        os.umask(old)
    mode = (tmp_path / "report.html").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain.html").stat().st_mode & 0o777 == 0o640


def test_a_failed_write_removes_the_folders_created_for_it(tmp_path):
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "kept" / "new" / "deeper" / "out.mp4"):
        raise RuntimeError("encoder failed")
    assert [p.name for p in tmp_path.iterdir()] == ["kept"] and list((tmp_path / "kept").iterdir()) == []
