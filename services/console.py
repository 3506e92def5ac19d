"""The console a command prints to: its standard streams as the process found them, and lines made safe to show."""

from __future__ import annotations

import os
import sys


def closed_streams() -> list[str]:
    """The standard streams closed when the process started (`>&-`; Python sets them to None), each given
    /dev/null: no file the command opens takes its descriptor, where a library's stray write to it would land."""
    closed = []
    for fd, name in ((1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            os.dup2(null := os.open(os.devnull, os.O_WRONLY), fd)
            if null != fd:
                os.close(null)
            setattr(sys, name, open(fd, "w", closefd=False))  # noqa: SIM115 - the process's stream, never closed
            closed.append(name)
    return closed


def shown(line: str) -> str:
    """`line` with its control characters escaped as Python writes them: a file name's ESC would act on the terminal
    (colour the line), a NUL would vanish."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in line)
