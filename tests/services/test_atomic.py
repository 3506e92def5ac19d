"""services.atomic: the target is replaced whole on a clean exit and left as it was on an error."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from services.atomic import atomic_dir, atomic_open, atomic_path


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


def test_a_full_disk_names_the_file_being_written_not_its_temporary(tmp_path):
    target = tmp_path / "clip.mp4"
    with pytest.raises(OSError) as raised, atomic_path(target) as tmp:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))  # as a write into the temporary fails
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(target))
    with pytest.raises(OSError) as raised, atomic_path(target):
        raise OSError(errno.EIO, "Input/output error", "/some/input.mp4")  # another file's error: as it was
    assert raised.value.filename == "/some/input.mp4" and list(tmp_path.iterdir()) == []
    with pytest.raises(OSError) as raised, atomic_dir(tmp_path / "eval") as tmp:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "per_frame.parquet"))
    assert raised.value.filename == str(tmp_path / "eval" / "per_frame.parquet") and list(tmp_path.iterdir()) == []
    with pytest.raises(OSError) as raised, atomic_path(target):
        raise OSError(errno.ENOSPC, "No space left on device")  # as write() raises it: no file named
    assert raised.value.filename == str(target)


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


def test_a_folder_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "new" / "graphs"
    with pytest.raises(OSError), atomic_dir(target) as work:
        (work / "a.onnx").write_bytes(b"a")
        raise OSError(28, "No space left on device")  # a late failure: the first file was already written
    assert list(tmp_path.iterdir()) == []  # neither the folder, nor its parent made for it, nor a temporary
    with atomic_dir(target) as work:
        (work / "a.onnx").write_bytes(b"a")
        (work / "report").mkdir()
        (work / "report" / "index.html").write_text("<p>")
        assert not target.exists()  # nothing visible until the end
    assert sorted(p.name for p in target.parent.iterdir()) == ["graphs"]
    assert (target / "a.onnx").read_bytes() == b"a" and (target / "report" / "index.html").read_text() == "<p>"


def test_a_folder_written_again_keeps_its_other_files_and_replaces_the_subfolders_it_owns_whole(tmp_path):
    """An evaluation written again into its --out: the user's files stay, the report/ is the new one alone (the
    earlier cases' GIFs went with it; merged, they stayed beside the new index.html)."""
    target = tmp_path / "eval"
    for sub in ("report", "tables"):
        (target / sub).mkdir(parents=True)
        (target / sub / "old.gif").write_bytes(b"old")
    (target / "notes.txt").write_text("mine")
    with atomic_dir(target, whole=("report", "absent")) as work:
        for sub in ("report", "tables"):
            (work / sub).mkdir()
            (work / sub / "index.html").write_text("new")
    assert (target / "notes.txt").read_text() == "mine" and (target / "tables" / "old.gif").read_bytes() == b"old"
    assert sorted(p.name for p in (target / "report").iterdir()) == ["index.html"]
    assert (target / "report" / "index.html").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]  # no temporary, no old folder left


KILLED_WRITER = """
import os, signal, sys
from services.atomic import atomic_open
with atomic_open(sys.argv[1]) as f:
    f.write(b"half a video")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # as a lost node ends its writers: no clean-up runs
"""


def test_a_killed_writers_temporary_is_removed_by_a_later_write_and_a_live_ones_kept(tmp_path):
    import subprocess
    import sys
    import time
    from pathlib import Path

    from services.atomic import remove_leftovers

    target = tmp_path / "r4.mp4"
    root = Path(__file__).resolve().parents[2]
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], cwd=root, timeout=60)
    assert killed.returncode == -9
    (left,) = tmp_path.iterdir()  # what a SIGKILLed (or lost-node) writer leaves beside the output
    assert left.name.startswith(".r4.mp4.") and left.name.endswith(".tmp.mp4") and left.read_bytes() == b"half a video"
    other = tmp_path / ".r4.mp4.other.tmp.mp4"  # not atomic_path's name: kept
    other.write_bytes(b"")
    begun = time.time()
    time.sleep(0.05)  # file times tick coarser than time.time()
    live = tmp_path / ".r4.mp4.live1234.tmp.mp4"  # a writer still going: written to since
    live.write_bytes(b"frames")
    assert remove_leftovers([target], before=begun) == [left]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other.name, live.name])


def test_a_scratch_folder_of_a_killed_process_goes_when_the_next_one_is_made(tmp_path, monkeypatch):
    """A Ray worker killed while it staged a checkpoint (a Tune trial stopped mid-report, Ctrl-C, `ray job stop`)
    left its whole temporary folder under /tmp, one per such kill (15 seen after a day of test runs). The next
    scratch folder of that kind on the host removes those of processes that no longer run, not a live one's nor
    another host's."""
    import socket
    import subprocess
    import sys

    from services.atomic import scratch_dir

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()  # a process that ran and ended
    killed = tmp_path / f"fomm-checkpoint-{host}-{dead}-abcd1234"
    live = tmp_path / f"fomm-checkpoint-{host}-{os.getppid()}-efgh5678"
    elsewhere = tmp_path / f"fomm-checkpoint-other-host-{dead}-ijkl9012"
    other_kind = tmp_path / f"fomm-restore-{host}-{dead}-mnop3456"
    for folder in (killed, live, elsewhere, other_kind):
        folder.mkdir()
        (folder / "checkpoint.pth.tar").write_bytes(b"x" * 100)
    with scratch_dir("checkpoint") as tmp:
        assert Path(tmp).parent == tmp_path and Path(tmp).name.startswith(f"fomm-checkpoint-{host}-{os.getpid()}-")
        (Path(tmp) / "checkpoint.pth.tar").write_bytes(b"y")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (live, elsewhere, other_kind))
