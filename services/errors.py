"""The user-error type of every package: a mistake in the command line or its inputs, answered with one line."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A mistake in the command line or its inputs; the message names the flag or file and what was expected.
    The packages' input errors subclass it; the model package (imports nothing of ours) sets `user_error = True`."""

    user_error = True


def is_user_error(err: BaseException) -> bool:
    """A UserError, or an exception whose class is marked `user_error = True`."""
    return isinstance(err, UserError) or getattr(type(err), "user_error", False) is True


class MissingWeightsError(UserError, FileNotFoundError):
    """A backend's weight file is not on this machine (nothing is downloaded at run time); `path` names it."""

    def __init__(self, backend: str, path: str | Path, how: str) -> None:
        self.path = path
        super().__init__(f"{backend}: weights file {path} is missing (no download at run time). {how}")
