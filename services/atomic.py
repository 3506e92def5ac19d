"""Atomic local writes: a temporary name in the target's folder, renamed onto the target on a clean exit
(`atomic_open`, `atomic_path` for a file; `atomic_dir` for a folder of files).

A reader sees the old file or the whole new one, never half of it; an error (or Ctrl-C) removes the temporary.
Remote objects need none of this: one S3 PUT is atomic (see services.storage.write_bytes).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _make_parents(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; the ones created, deepest first."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `target` (same folder, dot name, same suffix) for a writer that wants a path.

    The file appears with the mode a plain `open()` would give it (0666 less the umask), not mkstemp's 0600;
    on an error the temporary goes, and so do the folders created for it."""
    target = Path(target)
    created = _make_parents(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    done = False
    try:
        yield Path(tmp)
        os.replace(tmp, target)
        done = True
    finally:
        Path(tmp).unlink(missing_ok=True)
        if not done:
            for folder in created:  # deepest first; one that gained other files stays
                with contextlib.suppress(OSError):
                    folder.rmdir()


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike, mode: str = "wb", **kwargs) -> Iterator[IO]:  # noqa: ANN003 - open()'s
    """An open file (mode 'w' or 'wb', open()'s keywords) whose contents replace `target` on a clean exit."""
    if mode not in ("w", "wb"):
        raise ValueError(f"{target}: atomic_open writes whole files (mode 'w' or 'wb', not {mode!r})")
    with atomic_path(target) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder beside `target` for a writer that fills a folder; whole or not at all.

    On a clean exit a new `target` is the temporary folder renamed; an existing one gets each file moved in
    (one rename each, its other files kept). On an error the temporary goes, and so do the folders created for it."""
    target = Path(target)
    created = _make_parents(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    done = False
    try:
        yield tmp
        if target.exists():
            _merge(tmp, target)
        else:
            os.replace(tmp, target)
        done = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not done:
            for folder in created:
                with contextlib.suppress(OSError):
                    folder.rmdir()


def _merge(source: Path, target: Path) -> None:
    """Move what `source` holds into the existing folder `target` (files replaced, folders merged)."""
    for entry in sorted(source.iterdir()):
        into = target / entry.name
        if entry.is_dir() and into.is_dir():
            _merge(entry, into)
        else:
            os.replace(entry, into)
