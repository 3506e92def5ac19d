"""Atomic local writes: a temporary name in the target's folder, renamed onto the target on a clean exit.

A reader sees the old file or the whole new one, never half of it; an error (or Ctrl-C) removes the temporary.
Remote objects need none of this: one S3 PUT is atomic (see services.storage.write_bytes).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `target` (same folder, dot name, same suffix) for a writer that wants a path.

    Folders created for the target are removed again when the write fails: nothing new is left behind."""
    target = Path(target)
    missing = [p for p in (target.parent, *target.parent.parents) if not p.exists()]  # deepest first
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    done = False
    try:
        yield Path(tmp)
        os.replace(tmp, target)
        done = True
    finally:
        Path(tmp).unlink(missing_ok=True)
        for folder in [] if done else missing:
            with contextlib.suppress(OSError):  # not empty: someone else wrote there meanwhile
                folder.rmdir()


@contextlib.contextmanager
def atomic_open(target: str | os.PathLike, mode: str = "wb", **kwargs) -> Iterator[IO]:  # noqa: ANN003 - open()'s
    """An open file (mode 'w' or 'wb', open()'s keywords) whose contents replace `target` on a clean exit."""
    if mode not in ("w", "wb"):
        raise ValueError(f"{target}: atomic_open writes whole files (mode 'w' or 'wb', not {mode!r})")
    with atomic_path(target) as tmp, open(tmp, mode, **kwargs) as f:
        yield f
