"""Atomic local writes: a temporary beside the target, renamed onto it on a clean exit, removed on an error."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from services.errors import UserError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def parents_made(target: Path, tidy: bool = False) -> Iterator[None]:
    """Create the missing folders above `target`; on an error (`tidy`: on any exit) remove those of them left
    empty, deepest first."""
    missing = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    done = False
    try:
        yield
        done = True
    finally:
        if tidy or not done:
            for folder in missing:  # one that gained other files stays
                with contextlib.suppress(OSError):
                    folder.rmdir()


@contextlib.contextmanager
def held_alone(lock: Path, busy: str, advice: str) -> Iterator[None]:
    """One process at a time in the work `lock` guards: an flock on it (a process that dies, even by SIGKILL, holds
    it no more; the file, and the folders made for it if left empty, go at the end). A second is refused before it
    writes: a UserError `busy (who holds it; lock): advice`, with no note of work to resume (the work is not its)."""
    from services.cli import RESUME_NOTE

    with parents_made(lock, tidy=True):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
                taken = UserError(f"{busy} ({holder}; {lock}): {advice}")
                setattr(taken, RESUME_NOTE, "")
                raise taken from None
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                         f"{time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
            try:
                yield
            finally:
                lock.unlink(missing_ok=True)  # while still held: a process that opens it now locks a new file
        finally:
            os.close(fd)


@contextlib.contextmanager
def _named_as_target(tmp: str, target: Path) -> Iterator[None]:
    """An OSError about the temporary, or a file in it, names the target instead (a full disk names the output;
    `write()` names no file, so a full disk without a name is taken to be the temporary's)."""
    try:
        yield
    except OSError as err:
        name = tmp if err.filename is None and err.errno in (errno.ENOSPC, errno.EDQUOT) else err.filename
        if isinstance(name, str):
            name = name.removeprefix("file:")  # FFmpeg's URL of a local file (services.video_write)
        if err.errno is None or not isinstance(name, str) or not name.startswith(tmp):
            raise
        raise OSError(err.errno, err.strerror, f"{target}{name[len(tmp):]}") from err


class MadeMeanwhileError(UserError, FileExistsError):
    """A new output's name taken while it was written (another run's output, the user's file): left as it is."""


def _put_new(tmp: str, target: Path) -> None:
    """`tmp` named `target` only where nothing has that name: a hard link fails on a file made there meanwhile
    (a check, then a rename, where the filesystem has no links)."""
    taken = MadeMeanwhileError(f"{target}: made by something else while this was written; it is left as it is, "
                               "and this output was not kept")
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise taken from None
    except OSError:  # no hard links here (FAT, some network mounts)
        if os.path.lexists(target):
            raise taken from None
        os.replace(tmp, target)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, replace: bool = True) -> Iterator[Path]:
    """A temporary path beside `target` (dot name, same suffix) with a plain `open()`'s mode, not mkstemp's 0600.
    Without `replace`, a file that took `target`'s name meanwhile stays, and MadeMeanwhileError says so."""
    target = Path(target)
    with parents_made(target):
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent)
        os.fchmod(fd, 0o666 & ~_umask())
        os.close(fd)
        try:
            with _named_as_target(tmp, target):
                yield Path(tmp)
            if replace:
                os.replace(tmp, target)
            else:
                _put_new(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)


TEMPORARY_NAME = re.compile(r"\.(.+)\.[a-z0-9_]{8}\.tmp(\.[^.]*)?")  # atomic_path's: .NAME.XXXXXXXX.tmpSUFFIX


def remove_leftovers(targets: Iterable[str | os.PathLike], before: float) -> list[Path]:
    """Remove the temporaries of `targets` that writers killed before their rename left (a lost Ray node, Ctrl-C,
    SIGKILL): atomic_path's names, not written to since `before` (a time.time(); a live writer's is kept). Each
    folder is read once, however many targets it holds. Returns what went."""
    names: dict[Path, set[str]] = {}
    for target in map(Path, targets):
        names.setdefault(target.parent, set()).add(target.name)
    gone = []
    for folder, wanted in names.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:  # no such folder: nothing was written there
            continue
        for entry in entries:
            found = TEMPORARY_NAME.fullmatch(entry.name)
            if found and found[1] in wanted and (found[2] or "") == Path(found[1]).suffix:
                with contextlib.suppress(OSError):  # gone meanwhile
                    if entry.stat().st_mtime < before:
                        os.unlink(entry.path)
                        gone.append(Path(entry.path))
    return gone


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike, mode: str = "wb", **kwargs) -> Iterator[IO]:  # noqa: ANN003 - open()'s
    """An open file (mode 'w' or 'wb', open()'s keywords) whose contents replace `target` on a clean exit."""
    if mode not in ("w", "wb"):
        raise ValueError(f"{target}: atomic_open writes whole files (mode 'w' or 'wb', not {mode!r})")
    with atomic_path(target) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike, whole: tuple[str, ...] = ()) -> Iterator[Path]:
    """A temporary folder beside `target`: renamed to a new `target`, or its files moved into an existing one; the
    subfolders named in `whole` are the writer's own: an earlier one goes, never merged with the new."""
    target = Path(target)
    with parents_made(target):
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        os.chmod(tmp, 0o777 & ~_umask())
        try:
            with _named_as_target(str(tmp), target):
                yield tmp
            if target.exists():
                old = [target / name for name in whole if (target / name).is_dir() and not (target / name).is_symlink()]
                for folder in old:  # moved aside beside the temporary, removed with it below
                    os.replace(folder, tmp.with_suffix(f".{folder.name}.old.tmp"))
                _merge(tmp, target)
            else:
                os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            for name in whole:
                shutil.rmtree(tmp.with_suffix(f".{name}.old.tmp"), ignore_errors=True)


def _merge(source: Path, target: Path) -> None:
    """Move what `source` holds into the existing folder `target` (files replaced, folders merged)."""
    for entry in sorted(source.iterdir()):
        into = target / entry.name
        if entry.is_dir() and into.is_dir():
            _merge(entry, into)
        else:
            os.replace(entry, into)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


@contextlib.contextmanager
def scratch_dir(kind: str) -> Iterator[str]:
    """A temporary folder of this process in the system's temporary folder (fomm-KIND-HOST-PID-XXXXXXXX), removed
    after use. A process killed inside its own (a Tune trial stopped mid-report, a Ray worker at Ctrl-C, a lost
    actor) leaves it, a whole checkpoint maybe: those of this host's processes that no longer run go first."""
    prefix = f"fomm-{kind}-{socket.gethostname()}-"
    root = Path(tempfile.gettempdir())
    for old in root.glob(f"{glob.escape(prefix)}*"):
        pid = old.name.removeprefix(prefix).split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-") as tmp:
        yield tmp
