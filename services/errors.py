"""The user-error type of every package: a mistake in the command line or its inputs, answered with one line."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the command line or its inputs; the message names the flag or file and what was expected.
    The packages' input errors subclass it; the model package (imports nothing of ours) sets `user_error = True`."""

    user_error = True


def is_user_error(err: BaseException) -> bool:
    """A UserError, or an exception whose class is marked `user_error = True`."""
    return isinstance(err, UserError) or getattr(type(err), "user_error", False) is True
